"""RPSL attribute handling, checked on real samples: irrd's route objects (good and malformed) and RIPE's own."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from infra.ripe.errors import RipeProtocolError
from infra.ripe.rpsl import RpslSyntaxError, from_json, make, parse_text, route_problems

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def samples() -> dict[str, str]:
    """irrd's samples by name (the ``##### NAME (...)`` headers split them)."""
    text = (FIXTURES / "rpsl" / "irrd_rpsl_samples_route.txt").read_text()
    parts = re.split(r"^##### (\S+).*$", text, flags=re.M)
    return {parts[i]: parts[i + 1].strip("\n") + "\n" for i in range(1, len(parts), 2)}


def recorded(name: str) -> dict:
    return json.loads((FIXTURES / "ripe-db" / name).read_text())["data"]


def test_continuation_lines_join_the_previous_value() -> None:
    [route] = parse_text(samples()["SAMPLE_ROUTE"])
    assert route.values("descr") == [
        "example route",
        "the route attribute should have the extra zero removed, but this value should not: 192.0.02.0/24"]
    [autnum] = parse_text(samples()["SAMPLE_AUT_NUM"])
    assert autnum.values("descr") == ["description foo"]
    assert len(autnum.values("export")) == 13 and autnum.values("remarks")[0] == "---> Uplinks"


def test_tab_and_space_continuations() -> None:
    [obj] = parse_text("route: 192.0.2.0/24\ndescr: one\n two\n\tthree\n+\norigin: AS64500\n")
    assert obj.values("descr") == ["one two three"] and obj.key == "192.0.2.0/24AS64500"


def test_order_and_repeats_are_kept() -> None:
    [as_set] = parse_text(samples()["SAMPLE_AS_SET"])
    assert as_set.type == "as-set" and as_set.key == "AS65537:AS-SETTEST"
    assert as_set.values("members") == ["AS65538, AS65539", "AS65537", "AS-OTHERSET"]
    assert [a.name for a in as_set.attributes][:3] == ["as-set", "descr", "members"]


def test_route6_sample_and_ripe_rest_objects_are_valid() -> None:
    [route6] = parse_text(samples()["SAMPLE_ROUTE6"])
    assert route6.key == "2001:db8::/48AS65537"
    assert route_problems(route6) == ["'changed' is not an attribute of route6"]  # RIPE dropped changed: long ago
    ripe = parse_text((FIXTURES / "rpsl" / "ripe_whois_rest_test_route_objects.txt").read_text())
    assert [o.key for o in ripe] == ["193.254.30.0/24AS12726", "2001::/32AS12726"]
    assert ripe[0].values("mnt-routes") == ["OWNER-MNT {192.168.0.0/16}"]
    assert all(route_problems(o) == [] for o in ripe)


def test_irrd_sample_route_problems_as_ripe_would_see_them() -> None:
    [route] = parse_text(samples()["SAMPLE_ROUTE"])
    assert route_problems(route) == [
        "'changed' is not an attribute of route",
        "'rpki-ov-state' is not an attribute of route",
        "route: '192.0.02.0/24' is not a prefix"]


@pytest.mark.parametrize("name, problem", [
    ("SAMPLE_MISSING_MANDATORY_ATTRIBUTE", "mandatory attribute 'mnt-by' is missing"),
    ("SAMPLE_UNKNOWN_ATTRIBUTE", "'foo' is not an attribute of route"),
    ("SAMPLE_INVALID_MULTIPLE_ATTRIBUTE", "'source' may appear only once, found 2"),
    ("SAMPLE_MALFORMED_PK", "route: 'not-a-prefix' is not a prefix"),
    ("SAMPLE_MALFORMED_SOURCE", "source: '+TEST$$$' is not a database name"),
    ("SAMPLE_MISSING_SOURCE", "mandatory attribute 'source' is missing"),
])
def test_malformed_samples_are_reported(name: str, problem: str) -> None:
    [obj] = parse_text(samples()[name])
    assert problem in route_problems(obj)


def test_empty_line_splits_an_object() -> None:
    first, second = parse_text(samples()["SAMPLE_MALFORMED_EMPTY_LINE"])
    assert "mandatory attribute 'source' is missing" in route_problems(first)
    assert second.type == "changed"  # what the blank line left behind is not a route


@pytest.mark.parametrize("name, line", [("SAMPLE_MALFORMED_ATTRIBUTE_NAME", 3),
                                        ("SAMPLE_LINE_NEITHER_CONTINUATION_NOR_ATTR", 4)])
def test_syntax_errors_name_the_line(name: str, line: int) -> None:
    with pytest.raises(RpslSyntaxError, match=f"line {line}: "):
        parse_text(samples()[name])


def test_template_parses() -> None:
    [template] = parse_text(samples()["TEMPLATE_ROUTE_OBJECT"])
    mandatory = [a.name for a in template.attributes if a.value.startswith("[mandatory]")]
    assert mandatory == ["route", "origin", "mnt-by", "source"]


@pytest.mark.parametrize("name, key", [
    ("route6_lookup_2a09-4c2--_32AS58057.json", "2a09:4c2::/32AS58057"),
    ("route_lookup_193.4.0.0_16AS102_with_managed_attrs.json", "193.4.0.0/16AS102"),
    ("route_lookup_211.43.192.0_19AS9777_nonauth.json", "211.43.192.0/19AS9777"),
    ("search_typefilter_ROUTE_211.43.192.0.json", "211.43.192.0/19AS9777"),
])
def test_recorded_json_reads_as_valid_objects(name: str, key: str) -> None:
    [obj] = from_json(recorded(name))
    assert obj.key == key and route_problems(obj) == []


def test_json_round_trip_keeps_order_and_text_form() -> None:
    [obj] = from_json(recorded("route_lookup_193.4.0.0_16AS102_with_managed_attrs.json"))
    again = from_json(obj.to_json("RIPE"))
    assert again == [obj]
    assert parse_text(obj.to_text()) == [obj]
    assert obj.to_json("RIPE")["objects"]["object"][0]["source"] == {"id": "RIPE"}


def test_bodies_without_objects() -> None:
    assert from_json(recorded("search_404_no_entries.json")) == []
    with pytest.raises(RipeProtocolError):
        from_json({"objects": {"object": [{"attributes": None}]}})
    with pytest.raises(ValueError):
        make([])
