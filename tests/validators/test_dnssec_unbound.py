"""Debian's Unbound, validating with the lab DS as its only trust anchor, against real NSDs on loopback serving the
rendered signed zone: validated answers (AD) over IPv4 and IPv6, SERVFAIL for a tampered zone or a wrong anchor."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dns.dnssec
import dns.flags
import dns.rcode
import dns.rdatatype
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from infra.model import parse_network
from tests.dnssec_data import ENV, LAB_DS, NEXT_DS, signed_doc, signed_network
from tests.dnssec_servers import free_port, has_ipv6_loopback, nsd, resolve, unbound
from userdata import dnssec
from userdata.render import render_pop, zone_file_name

ZONE = "cdn.example.com"
pytestmark = pytest.mark.skipif(any(shutil.which(t) is None for t in ("nsd", "unbound", "unbound-checkconf"))
                                or os.geteuid() != 0, reason="needs Debian's nsd and unbound, as root (`make deps`)")


def _zone(code: str = "ams") -> str:
    net = signed_network()
    # signatures valid now: the resolver checks them against the real clock
    signing = dnssec.signing_from_env(net, ENV)
    return render_pop(net, net.pop(code), "pw", signing=signing).files[zone_file_name(net)]


def _anchor(ds: str) -> str:
    return f"{ZONE}. DS {ds}"


@pytest.mark.parametrize("family", ["127.0.0.1", "::1"])
def test_validated_answers_over_both_families(tmp_path: Path, family: str) -> None:
    if family == "::1" and not has_ipv6_loopback():
        pytest.skip("no IPv6 on the loopback interface here (a container without IPv6)")
    with nsd(tmp_path / "nsd", {ZONE: _zone()}, free_port()) as server, \
         unbound(tmp_path / "unbound", _anchor(LAB_DS), {ZONE: [f"{family}@{server.port}"]}, free_port()) as res:
        for qname, qtype in ((ZONE, "A"), (ZONE, "AAAA"), (f"www.{ZONE}", "A"), (f"pop.{ZONE}", "TXT")):
            answer = resolve(res, qname, qtype)
            assert answer.rcode() == dns.rcode.NOERROR and answer.flags & dns.flags.AD, (qname, qtype, answer)
        nx = resolve(res, f"nope.{ZONE}", "A")
        assert nx.rcode() == dns.rcode.NXDOMAIN and nx.flags & dns.flags.AD  # the NSEC proof validated


def test_tampered_zone_is_servfail(tmp_path: Path) -> None:
    tampered = _zone().replace("192.0.2.1", "192.0.2.66")  # what a hijacked PoP or an on-path attacker would serve
    with nsd(tmp_path / "nsd", {ZONE: tampered}, free_port()) as server, \
         unbound(tmp_path / "unbound", _anchor(LAB_DS), {ZONE: [f"127.0.0.1@{server.port}"]}, free_port()) as res:
        assert resolve(res, ZONE, "A").rcode() == dns.rcode.SERVFAIL
        good = resolve(res, f"pop.{ZONE}", "TXT")  # the untouched RRsets still validate
        assert good.rcode() == dns.rcode.NOERROR and good.flags & dns.flags.AD


def test_wrong_anchor_is_servfail(tmp_path: Path) -> None:
    with nsd(tmp_path / "nsd", {ZONE: _zone()}, free_port()) as server, \
         unbound(tmp_path / "unbound", _anchor(NEXT_DS), {ZONE: [f"127.0.0.1@{server.port}"]}, free_port()) as res:
        assert resolve(res, ZONE, "A").rcode() == dns.rcode.SERVFAIL


# --- rollover: a signed parent zone publishes the DS, Unbound trusts the parent's key ---------------------------------

TTL = 2  # seconds, every record of both zones: caches turn over within the test
WAIT = TTL + 1.5


def _child(keys: list[dict[str, Any]]) -> str:
    doc = signed_doc(keys)
    doc["dns"]["ttl"] = TTL
    net = parse_network(doc, source="rollover")
    return render_pop(net, net.pop("ams"), "pw", signing=dnssec.signing_from_env(net, ENV)).files[zone_file_name(net)]


class Parent:
    """example.com, signed with a key made for this test, delegating cdn.example.com with the DS set given."""

    def __init__(self) -> None:
        private = ec.generate_private_key(ec.SECP256R1())
        dnskey = dnssec.dnskey_of(private)
        self.key = dnssec.SigningKey("parent", private, dnskey, dnssec.ds_text("example.com", dnskey), True)

    def zone(self, ds: list[str]) -> str:
        records = "".join(f"cdn IN DS {d}\n" for d in ds)
        text = (f"$ORIGIN example.com.\n$TTL {TTL}\n@ IN SOA ns1.example.com. hostmaster.example.com. 1 3600 600 1209600 {TTL}\n"
                f"@ IN NS ns1.example.com.\nns1 IN A 127.0.0.1\ncdn IN NS ns1.example.com.\n{records}")
        return dnssec.sign_zone_text(text, "example.com", [self.key], datetime.now(UTC))


class Prober(threading.Thread):
    """A client asking the resolver every 50 ms for www A and the DNSKEY set, recording (rcode, AD) of each."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port, self.stop = port, threading.Event()
        self.seen: list[tuple[str, str]] = []

    def run(self) -> None:
        while not self.stop.is_set():
            for qname, qtype in ((f"www.{ZONE}", "A"), (ZONE, "DNSKEY")):
                try:
                    a = resolve(self.port, qname, qtype)
                    self.seen.append((qtype, "AD" if a.rcode() == dns.rcode.NOERROR and a.flags & dns.flags.AD
                                      else dns.rcode.to_text(a.rcode())))
                except Exception as exc:  # a timeout is a lost answer too
                    self.seen.append((qtype, type(exc).__name__))
            time.sleep(0.05)


def _rollover(tmp: Path, steps: list[tuple[str, list[dict[str, Any]] | list[str]]]) -> tuple[Prober, set[str]]:
    parent = Parent()
    first = [{"env": "ANYCAST_DNSSEC_KEY", "ds": LAB_DS}]
    with nsd(tmp / "parent", {"example.com": parent.zone([LAB_DS])}, free_port()) as p, \
         nsd(tmp / "child", {ZONE: _child(first)}, free_port()) as c, \
         unbound(tmp / "unbound", f"example.com. DS {parent.key.ds}",
                 {"example.com": [f"127.0.0.1@{p.port}"], ZONE: [f"127.0.0.1@{c.port}"]}, free_port()) as res:
        prober = Prober(res)
        prober.start()
        time.sleep(WAIT)
        for what, value in steps:
            if what == "child":
                c.replace(ZONE, _child(value))  # type: ignore[arg-type]
            else:
                p.replace("example.com", parent.zone(value))  # type: ignore[arg-type]
            time.sleep(WAIT)
        prober.stop.set()
        prober.join(timeout=10)
        final = resolve(res, ZONE, "DNSKEY")
        tags = {str(dns.dnssec.key_id(k)) for rrset in final.answer if rrset.rdtype == dns.rdatatype.DNSKEY for k in rrset}
    return prober, tags


@pytest.mark.slow
def test_double_signature_rollover_loses_no_validation(tmp_path: Path) -> None:
    """docs/dnssec.md's three steps, each waiting out the caches: every answer to the client validated (AD)."""
    both = [{"env": "ANYCAST_DNSSEC_KEY", "ds": LAB_DS}, {"env": "ANYCAST_DNSSEC_KEY_NEXT", "ds": NEXT_DS}]
    prober, tags = _rollover(tmp_path, [
        ("child", both), ("parent", [LAB_DS, NEXT_DS]),  # step 1: both keys sign, both DS published
        ("parent", [NEXT_DS]),  # step 2: the old DS withdrawn
        ("child", [{"env": "ANYCAST_DNSSEC_KEY_NEXT", "ds": NEXT_DS}]),  # step 3: the old key removed
    ])
    outcomes = Counter(result for _, result in prober.seen)
    assert len(prober.seen) > 100 and set(outcomes) == {"AD"}, outcomes
    assert tags == {NEXT_DS.split()[0]}


@pytest.mark.slow
def test_switching_keys_at_once_breaks_validation(tmp_path: Path) -> None:
    """The control: the new key alone while the parent still holds the old DS turns into SERVFAIL for the client."""
    prober, _ = _rollover(tmp_path, [("child", [{"env": "ANYCAST_DNSSEC_KEY_NEXT", "ds": NEXT_DS}])])
    outcomes = Counter(result for _, result in prober.seen)
    assert outcomes["AD"] > 0 and outcomes["SERVFAIL"] > 0, outcomes
