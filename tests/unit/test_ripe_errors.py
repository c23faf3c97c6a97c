"""RIPE's errormessages as readable text, the authorisation hints, and keys that never print."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.ripe.credentials import ApiKey, RpkiKey, ripe_api_key, rpki_api_key
from infra.ripe.errors import CredentialError, RipeRefused, authorisation_hints, error_messages

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ripe-db"


def recorded(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())["data"]


def test_args_are_substituted_in_order() -> None:
    msgs = error_messages(recorded("route6_delete_401_auth_error.json"))
    assert msgs[0].text == ('Authorisation for [route6] 2a09:4c2::/32AS58057 failed\nusing "mnt-by:"\n'
                            "not authenticated by: TEST49-MNT")
    assert msgs[2].text.endswith("not authenticated by: RIPE-NCC-HM-MNT, TEST49-MNT")
    assert (msgs[3].severity, msgs[3].text) == ("Info", "Dry-run performed, no changes to the database have been made")


def test_missing_args_and_escaped_percent() -> None:
    msgs = error_messages(recorded("route_delete_dryrun_errormessages.json"))
    assert msgs[1].text.endswith("no valid maintainer found")
    bodies = json.loads((FIXTURES / "whois_rest_tests_expected_error_bodies.json").read_text())["items"]
    [no_entries] = error_messages(bodies[0]["json"])
    assert no_entries.text == "ERROR:101: no entries found\n\nNo entries found in source %s."
    assert error_messages(bodies[1]["json"])[0].text == "The validated collection is empty"


def test_attribute_is_named() -> None:
    msgs = error_messages(recorded("create_inetnum_400_errors.json"))
    assert [m.attribute for m in msgs] == ["inetnum", "netname", "admin-c", "tech-c"]
    assert str(msgs[0]).startswith("Error: Syntax error in <img")


def test_lessor_hint_from_the_space_errors() -> None:
    msgs = error_messages(recorded("route_delete_dryrun_errormessages.json"))
    hints = authorisation_hints(msgs, "EXAMPLE-MNT")
    assert len(hints) == 2  # the route's own mnt-by, then the address space once (not once per attribute)
    assert "TEST14-MNT" in hints[0]
    assert "the address space inetnum 209.251.254.0 - 211.255.255.255 is protected by its mnt-lower" in hints[1]
    assert "lessor" in hints[1]


def test_own_maintainer_hint_points_at_the_key() -> None:
    body = {"errormessages": {"errormessage": [{"severity": "Error", "text": 'Authorisation for [%s] %s failed\nusing "%s:"\nnot authenticated by: %s',
                                                "args": [{"value": "route"}, {"value": "192.0.2.0/24AS64500"},
                                                         {"value": "mnt-by"}, {"value": "EXAMPLE-MNT"}]}]}}
    [hint] = authorisation_hints(error_messages(body), "EXAMPLE-MNT")
    assert "API key is not accepted for EXAMPLE-MNT" in hint and "auth: SSO" in hint


def test_refused_message_reads_as_text() -> None:
    msgs = error_messages(recorded("create_person_401_auth_error.json"))
    exc = RipeRefused(401, "create person", [m.text for m in msgs], authorisation_hints(msgs, None))
    text = str(exc)
    assert text.startswith("RIPE refused to create person (HTTP 401):")
    assert "organisation ORG-TEST-RIPE" in text and "%s" not in text and "Traceback" not in text


SECRET = "very-Secret-Value-42"


@pytest.mark.parametrize("raw", ["", "nocolon{S}", ":{S}", "{S}:", "id:with space {S}", "id:caf\u00e9{S}"])
def test_malformed_keys_never_echo_the_value(raw: str) -> None:
    with pytest.raises(CredentialError) as info:
        ripe_api_key({"RIPE_API_KEY": raw.format(S=SECRET)})
    assert SECRET not in str(info.value)
    assert "RIPE_API_KEY" in str(info.value)


def test_keys_do_not_print_themselves() -> None:
    key = ripe_api_key({"RIPE_API_KEY": f"KEYID:{SECRET}"})
    assert SECRET not in repr(key) and SECRET not in str(key) and SECRET not in f"{key!r} {vars(type(key))}"
    assert key.authorization().startswith("Basic ")
    rpki = RpkiKey.parse(SECRET, "X")
    assert SECRET not in repr(rpki) and rpki.header() == {"ncc-api-authorization": SECRET}
    assert isinstance(ApiKey.parse(f"a:{SECRET}", "X"), ApiKey)


def test_config_secret_is_the_fallback() -> None:
    assert ripe_api_key({}, config_value="K:S").key_id == "K"
    with pytest.raises(CredentialError, match="anycast:ripeApiKey"):
        ripe_api_key({}, config_value="bad")
    with pytest.raises(CredentialError, match="RIPE_RPKI_API_KEY"):
        rpki_api_key({})
