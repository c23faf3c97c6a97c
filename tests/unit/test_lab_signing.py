"""The signed lab's parts without namespaces (lab/plan/signing.py, lab/checks/dnssec.py): the lab's key replaces the
stack's, the zone it renders validates from the lab DS, each client's Unbound config passes unbound-checkconf, dig's
output is read right, the tamper changes only www's addresses, and the tampered PoP has clients in and out of its
catchment. The rows themselves: tests/lab/test_lab_dnssec.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import dns.dnssec
import dns.name
import dns.rdatatype
import dns.zone
import pytest

from infra.model import ConfigError
from infra.model.stack import load_network
from lab.api import LabError
from lab.checks.dnssec import TAMPERED, parse_dig, pick_tamper_pop, tamper
from lab.plan.geodns import expected_pop
from lab.plan.signing import LAB_KEY_ENV, lab_ds, lab_network, render_lab_pop, state_network, unbound_conf
from lab.plan.topology import build_plan
from tests.dnssec_data import LAB_DS, NEXT_DS, NEXT_KEY, signed_network
from tests.helpers.environment import needs_tools
from userdata.render import zone_file_name

ZONE = "cdn.example.com"
DIG_AD = """; <<>> DiG 9.18 <<>> +dnssec @127.0.0.1 pop.cdn.example.com TXT
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1
;; flags: qr rd ra ad; QUERY: 1, ANSWER: 2, AUTHORITY: 0, ADDITIONAL: 1

;; ANSWER SECTION:
pop.cdn.example.com.\t60\tIN\tTXT\t"ams"
pop.cdn.example.com.\t60\tIN\tRRSIG\tTXT 13 4 60 20270101230000 20261202230000 50133 cdn.example.com. abc=

;; Query time: 1 msec
"""


def test_the_lab_signs_an_unsigned_stack_on_request_and_replaces_a_signing_stacks_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LAB_KEY_ENV, raising=False)
    dev = load_network("dev")
    assert lab_network(dev) is dev and dev.dns.dnssec is None
    signed = lab_network(dev, sign=True)
    assert signed.dns.dnssec is not None and [k.ds for k in signed.dns.dnssec.keys] == [LAB_DS] == [lab_ds(dev)]
    assert state_network(dev, {"dnssec": {"ds": LAB_DS}}).dns.dnssec == signed.dns.dnssec
    assert state_network(dev, {}).dns.dnssec is None
    # A stack signing with another key (here the next one) runs in the lab with the lab's key, as the BGP password.
    other = signed_network([{"env": "ANYCAST_DNSSEC_KEY", "ds": NEXT_DS}])
    assert [k.ds for k in lab_network(other).dns.dnssec.keys] == [LAB_DS]  # type: ignore[union-attr]
    monkeypatch.setenv(LAB_KEY_ENV, NEXT_KEY)
    assert [k.ds for k in lab_network(dev, sign=True).dns.dnssec.keys] == [NEXT_DS]  # type: ignore[union-attr]
    monkeypatch.setenv(LAB_KEY_ENV, "not a key")
    with pytest.raises(ConfigError, match=rf"{LAB_KEY_ENV}: the key is not a PEM private key"):
        lab_network(dev, sign=True)


def test_the_lab_zone_validates_from_the_lab_ds_at_every_pop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LAB_KEY_ENV, raising=False)
    net = lab_network(load_network("dev"), sign=True)
    origin = dns.name.from_text(ZONE)
    for code in ("ams", "ewr", "sao"):
        zone = dns.zone.from_text(render_lab_pop(net, code, "pw").files[zone_file_name(net)], origin=ZONE, relativize=False)
        dnskey = zone.get_rrset(origin, dns.rdatatype.DNSKEY)
        assert dnskey is not None
        ds = dns.dnssec.make_ds(origin, dnskey[0], "SHA256")
        assert f"{ds.key_tag} 13 2 {ds.digest.hex().upper()}" == LAB_DS
        sig = zone.get_rrset(dns.name.from_text(f"www.{ZONE}"), dns.rdatatype.RRSIG, dns.rdatatype.A)
        www = zone.get_rrset(dns.name.from_text(f"www.{ZONE}"), dns.rdatatype.A)
        assert sig is not None and www is not None
        dns.dnssec.validate(www, sig, {origin: dnskey})


@needs_tools("unbound-checkconf")
@pytest.mark.parametrize("version", [4, 6])
def test_every_clients_unbound_config_passes_unbound_checkconf(tmp_path: Path, version: int) -> None:
    plan = build_plan("dev", lab_network(load_network("dev"), sign=True))
    for client in plan.clients[:3]:
        conf = tmp_path / f"{client.name}{version}.conf"
        conf.write_text(unbound_conf(plan, client, version, tmp_path, LAB_DS), encoding="utf-8")
        out = subprocess.run(["unbound-checkconf", str(conf)], capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stdout + out.stderr
        text = conf.read_text(encoding="utf-8")
        assert f'trust-anchor: "{ZONE}. DS {LAB_DS}"' in text and ("do-ip6: no" if version == 4 else "do-ip4: no") in text
    br = next(c for c in plan.clients if c.name == "br")
    assert f"stub-addr: {plan.pop('sao').unicast_ipv4}\n" in unbound_conf(plan, br, 4, tmp_path, LAB_DS)


def test_dig_output_is_read_right() -> None:
    answer = parse_dig(DIG_AD, "TXT")
    assert (answer.status, answer.ad, answer.values) == ("NOERROR", True, ("ams",))
    servfail = parse_dig(DIG_AD.replace("status: NOERROR", "status: SERVFAIL").replace("rd ra ad;", "rd ra;"), "TXT")
    assert (servfail.status, servfail.ad) == ("SERVFAIL", False)
    assert parse_dig(";; communications error to 127.0.0.1#53: timed out\n", "A").status.startswith(";; communications")


def test_the_tamper_changes_only_wwws_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LAB_KEY_ENV, raising=False)
    net = lab_network(load_network("dev"), sign=True)
    text = render_lab_pop(net, "ams", "pw").files[zone_file_name(net)]
    changed = tamper(text)
    diff = [(a, b) for a, b in zip(text.splitlines(), changed.splitlines(), strict=True) if a != b]
    assert [b.split() for _, b in diff] == [["www", "60", "IN", "A", TAMPERED["A"]],
                                                                 ["www", "60", "IN", "AAAA", TAMPERED["AAAA"]]]
    with pytest.raises(LabError, match="no www A/AAAA line"):
        tamper("@ 60 IN SOA ns1 hostmaster 1 2 3 4 5\n")


def test_the_tampered_pop_has_clients_in_and_out_of_its_catchment() -> None:
    plan = build_plan("dev", load_network("dev"))
    picked = pick_tamper_pop(plan)
    assert picked is not None
    code, mine, others = picked
    assert plan.network.pop(code).is_anycast and mine and others
    assert all(expected_pop(plan, c) == code for c in mine) and all(expected_pop(plan, c) != code for c in others)


@needs_tools("unbound-checkconf")
def test_the_rollover_parts_parent_zone_keys_and_resolver_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lab.scenarios.dnssec_rollover import PARENT_PORT, TTL, Parent, keyed

    monkeypatch.delenv(LAB_KEY_ENV, raising=False)
    net = lab_network(load_network("dev"), sign=True)
    both = keyed(net, ["ANYCAST_DNSSEC_KEY", "ANYCAST_DNSSEC_KEY_NEXT"])
    assert [k.ds for k in both.dns.dnssec.keys] == [LAB_DS, NEXT_DS] and both.dns.ttl == TTL  # type: ignore[union-attr]
    zone = dns.zone.from_text(render_lab_pop(both, "ams", "pw").files[zone_file_name(both)], origin=ZONE, relativize=False)
    www = dns.name.from_text(f"www.{ZONE}")
    sigs = zone.get_rrset(www, dns.rdatatype.RRSIG, dns.rdatatype.A)
    assert sigs is not None and sorted(s.key_tag for s in sigs) == sorted([int(LAB_DS.split()[0]), int(NEXT_DS.split()[0])])
    parent = Parent(net)
    ptext = parent.zone([LAB_DS, NEXT_DS])
    pzone = dns.zone.from_text(ptext, origin="example.com", relativize=False)
    ds = pzone.get_rrset(dns.name.from_text(ZONE), dns.rdatatype.DS)
    assert ds is not None and len(ds) == 2
    assert pzone.get_rrset(dns.name.from_text(ZONE), dns.rdatatype.RRSIG, dns.rdatatype.DS) is not None
    plan = build_plan("dev", net)
    conf = tmp_path / "u.conf"
    conf.write_text(unbound_conf(plan, plan.clients[0], 6, tmp_path, LAB_DS, (parent.key.ds, PARENT_PORT)), encoding="utf-8")
    out = subprocess.run(["unbound-checkconf", str(conf)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    text = conf.read_text(encoding="utf-8")
    assert f'trust-anchor: "example.com. DS {parent.key.ds}"' in text and LAB_DS not in text
    assert f'name: "example.com"\n  stub-addr: ::1@{PARENT_PORT}\n' in text and f'name: "{ZONE}"' in text
