"""DNSSEC at render time (userdata/dnssec.py, docs/dnssec.md): keys, bad input, deterministic signing, the signed golden
zone, and validation of every RRSIG by dnspython against the DS (the real validators: tests/validators)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dns.dnssec
import dns.name
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.zone
import pytest

from infra.cli.main import main as cli
from infra.model import ConfigError, parse_network
from tests.dnssec_data import ENV, LAB_DS, LAB_KEY, NEXT_DS, NOW, signed_doc, signed_network
from userdata import dnssec
from userdata.render import render_network, render_pop, zone_file_name

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "dnssec" / "ams" / "cdn.example.com.zone"
ZONE = "cdn.example.com"
TWO_KEYS = [{"env": "ANYCAST_DNSSEC_KEY", "ds": LAB_DS}, {"env": "ANYCAST_DNSSEC_KEY_NEXT", "ds": NEXT_DS}]


def _signed(keys: list[dict[str, Any]] | None = None, now: datetime = NOW) -> dict[str, str]:
    net = signed_network(keys)
    signing = dnssec.signing_from_env(net, ENV, now)
    return {code: r.files[zone_file_name(net)] for code, r in render_network(net, "pw", signing).items()}


def _validate(text: str, ds_texts: list[str]) -> int:
    """Validate every RRset of ``text`` with dnspython: the DNSKEY set against the DS, the rest against the DNSKEY set.
    Returns the number of RRsets validated; raises dns.dnssec.ValidationFailure on the first bogus one."""
    origin = dns.name.from_text(ZONE)
    parsed = dns.zone.from_text(text, origin=ZONE, relativize=False)
    dnskeys = parsed.get_rrset(origin, dns.rdatatype.DNSKEY)
    assert dnskeys is not None
    anchored = {dns.dnssec.key_id(k) for k in dnskeys
                if any(dnssec.ds_text(ZONE, k) == ds for ds in ds_texts)}
    assert anchored, "no DNSKEY matches the DS"
    count = 0
    for name, node in parsed.nodes.items():
        for rdataset in node.rdatasets:
            if rdataset.rdtype == dns.rdatatype.RRSIG:
                continue
            found = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.RRSIG, rdataset.rdtype)
            assert found is not None, f"{name} {dns.rdatatype.to_text(rdataset.rdtype)} is unsigned"
            sigs = dns.rdataset.from_rdata_list(found.ttl, [s for s in found if rdataset.rdtype != dns.rdatatype.DNSKEY
                                                            or s.key_tag in anchored])
            assert sigs, "the DNSKEY set is not signed by a key the DS points to"
            dns.dnssec.validate((name, rdataset), (name, sigs), {origin: dnskeys}, now=(NOW + timedelta(days=1)).timestamp())
            count += 1
    return count


def test_signed_zone_validates_from_the_ds() -> None:
    zones = _signed()
    assert _validate(zones["ams"], [LAB_DS]) == 15  # SOA NS A AAAA DNSKEY + NSEC at 5 names + CNAME x2 + TXT + A AAAA (www)


def test_tampered_record_fails_validation() -> None:
    text = _signed()["ams"].replace('TXT "ams"', 'TXT "evil"')
    with pytest.raises(dns.dnssec.ValidationFailure):
        _validate(text, [LAB_DS])


def test_signed_zone_is_golden() -> None:
    assert _signed()["ams"] == GOLDEN.read_text(encoding="utf-8"), "run `make golden` and review `git diff tests/golden`"


def test_same_bytes_within_a_period_new_ones_in_the_next() -> None:
    first = _signed()
    inception, _ = dnssec.signing_window(NOW)
    later = _signed(now=inception + dnssec.CLOCK_SKEW + dnssec.SIGNING_PERIOD - timedelta(seconds=1))
    assert later == first  # a pulumi up within the period replaces no PoP
    after = _signed(now=inception + dnssec.CLOCK_SKEW + dnssec.SIGNING_PERIOD)
    assert after["ams"] != first["ams"]


def test_every_pop_serves_the_same_signatures_except_its_own_records() -> None:
    zones = _signed()
    ams, ewr = (set(zones[c].splitlines()[3:]) for c in ("ams", "ewr"))
    differ = sorted(line.split()[0] for line in ams ^ ewr)
    assert differ == ["pop"] * 4  # pop TXT and its RRSIG; everything else byte-identical, the NSEC chain included


def test_window_survives_a_week_down() -> None:
    inception, expiration = dnssec.signing_window(NOW)
    assert expiration - inception == dnssec.VALIDITY
    # signed at the very start of a period, served unreplaced for two periods (a PoP down for a week, then late)
    assert expiration - (inception + 2 * dnssec.SIGNING_PERIOD) >= timedelta(days=14)
    assert dnssec.earliest_expiration(_signed()["ams"], ZONE) == expiration


def test_rollover_double_signature() -> None:
    both = _signed(TWO_KEYS)["ams"]
    # every RRset signed by both keys, so a resolver holding either DS validates
    assert _validate(both, [LAB_DS]) == _validate(both, [NEXT_DS]) == 15
    rrsigs = [line.split() for line in both.splitlines() if line.split()[3:4] == ["RRSIG"]]
    assert {int(f[10]) for f in rrsigs} == {50133, 42681} and len(rrsigs) == 2 * 15
    # step 2: the old DS withdrawn, the zone still double-signed
    step2 = signed_network([{**TWO_KEYS[0], "publishDs": False}, TWO_KEYS[1]])
    assert [k.ds for k in dnssec.load_keys(step2, ENV) if k.publish_ds] == [NEXT_DS]


def test_private_key_lands_nowhere() -> None:
    net = signed_network()
    signing = dnssec.signing_from_env(net, ENV, NOW)
    body = "".join(LAB_KEY.splitlines()[1:-1])
    secret = dnssec.parse_private_key(LAB_KEY, "x").private_numbers().private_value.to_bytes(32, "big")
    for pop in net.pops:
        for text in render_pop(net, pop, "pw", signing=signing).files.values():
            assert body[:40] not in text and secret.hex() not in text.lower()
    assert LAB_KEY not in repr(signing)


@pytest.mark.parametrize(("env", "message"), [
    ({}, "dns.dnssec.keys[0].env: ANYCAST_DNSSEC_KEY is not set"),
    ({"ANYCAST_DNSSEC_KEY": "not a key"}, "dns.dnssec.keys[0].env (ANYCAST_DNSSEC_KEY): the key is not a PEM private key"),
    ({"ANYCAST_DNSSEC_KEY": ENV["ANYCAST_DNSSEC_KEY_NEXT"]},
     f"dns.dnssec.keys[0].ds: '{LAB_DS}' does not match the key in ANYCAST_DNSSEC_KEY (its DS is '{NEXT_DS}')"),
])
def test_bad_key_material_is_one_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        dnssec.load_keys(signed_network(), env)
    assert len(exc.value.errors) == 1 and exc.value.errors[0].startswith(message), exc.value.errors


@pytest.mark.parametrize(("ds", "message"), [
    ("50133 8 2 " + "A" * 64, "algorithm 8 is not supported"),
    ("50133 13 1 " + "A" * 40, "use digest type 2"),
    ("50133 13 2 zz", "is not a DS record"),
    ("70000 13 2 " + "A" * 64, "key tag 70000 is over 65535"),
])
def test_bad_ds_is_one_line(ds: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_network(signed_doc([{"env": "ANYCAST_DNSSEC_KEY", "ds": ds}]), source="signed")
    assert len(exc.value.errors) == 1 and "dns.dnssec.keys[0].ds" in exc.value.errors[0] and message in exc.value.errors[0]


def test_other_variables_refused() -> None:
    doc = signed_doc([{"env": "AWS_SECRET_ACCESS_KEY", "ds": LAB_DS}])
    with pytest.raises(ConfigError, match=r"dns.dnssec.keys\[0\].env: 'AWS_SECRET_ACCESS_KEY' may not hold a DNSSEC key"):
        parse_network(doc, source="signed")


def test_a_vultr_unicast_pop_serves_the_anycast_addresses_signed(dev_doc: dict[str, Any]) -> None:
    """dev as shipped (sao is a Vultr unicast PoP): its @ and www, unknown until boot unsigned, are the anycast
    addresses in a signed zone, so every record validates and the PoP runs no anycast-local-addresses."""
    dev_doc["dns"]["dnssec"] = {"keys": [{"env": "ANYCAST_DNSSEC_KEY", "ds": LAB_DS}]}
    net = parse_network(dev_doc, source="signed")
    rendered = render_network(net, "pw", dnssec.signing_from_env(net, ENV, NOW))
    sao = rendered["sao"]
    zone = sao.files[zone_file_name(net)]
    assert "$INCLUDE" not in zone and "anycast-local-addresses" not in sao.user_data
    parsed = dns.zone.from_text(zone, origin=ZONE, relativize=True)
    ams = dns.zone.from_text(rendered["ams"].files[zone_file_name(net)], origin=ZONE, relativize=True)
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        assert parsed.get_rdataset("www", rdtype) == ams.get_rdataset("www", rdtype) is not None
    assert {str(r) for r in parsed.get_rdataset("@", dns.rdatatype.A) or ()} == {str(net.service.ipv4)}
    assert _validate(zone, [LAB_DS]) > 5
    plain = dict(dev_doc)
    plain["dns"] = {k: v for k, v in dev_doc["dns"].items() if k != "dnssec"}
    unsigned = render_pop(parse_network(plain, source="dev"), net.pop("sao"), "pw")
    assert "$INCLUDE" in unsigned.files[zone_file_name(net)] and "anycast-local-addresses" in unsigned.user_data


def test_render_without_keys_refuses() -> None:
    net = signed_network()
    with pytest.raises(ConfigError, match=r"dns\.dnssec: the zone is to be signed but no key was loaded"):
        render_pop(net, net.pops[0], "pw")


def test_cli_prints_the_ds(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ANYCAST_DNSSEC_KEY", LAB_KEY)
    assert cli(["dnssec", "ds", "--zone", ZONE]) == 0
    assert capsys.readouterr().out == LAB_DS + "\n"
    monkeypatch.setenv("ANYCAST_DNSSEC_KEY", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    assert cli(["dnssec", "ds", "--zone", ZONE]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ANYCAST_DNSSEC_KEY: the key is not a PEM private key" in err and "AAAA" not in err


def test_period_turns_on_thursday_midnight_before_the_weekly_deploy() -> None:
    """deploy.yml's schedule (Thursday 06:00 UTC) runs after the period turns, so each weekly run re-signs once."""
    inception, _ = dnssec.signing_window(NOW)
    start = inception + dnssec.CLOCK_SKEW
    assert (start.weekday(), start.hour, start.minute) == (3, 0, 0)
