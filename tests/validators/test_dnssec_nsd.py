"""A real NSD serves the signed zone on loopback: dig +dnssec gets RRSIGs, dnspython validates the answers against
the lab DS, and the health agent's DNS check reads the served signatures' expiration (what the alert watches)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import dns.dnssec
import dns.message
import dns.name
import dns.query
import dns.rdatatype
import pytest

from infra.contracts import DNSSEC_GATE_MARGIN_S
from infra.readiness import GateTarget, dns_signature_expiration, signature_problems
from tests import dnssec_servers as servers
from tests.dnssec_data import ENV, LAB_DS, NOW, signed_network
from userdata import dnssec
from userdata.render import render_pop, zone_file_name

AGENT = Path(__file__).resolve().parents[2] / "userdata" / "files" / "anycast-health.py"
ZONE = "cdn.example.com"
pytestmark = pytest.mark.skipif(shutil.which("nsd") is None or os.geteuid() != 0,
                                reason="needs Debian's nsd and root (`make deps`, run as root)")


def _agent() -> ModuleType:
    spec = importlib.util.spec_from_file_location("anycast_health_nsd_test", AGENT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def nsd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    net = signed_network()
    zone_text = render_pop(net, net.pop("ams"), "pw", signing=dnssec.signing_from_env(net, ENV, NOW)).files[zone_file_name(net)]
    with servers.nsd(tmp_path_factory.mktemp("nsd"), {ZONE: zone_text}, servers.free_port()) as server:
        yield server.port, zone_text


def test_nsd_answers_validate_from_the_ds(nsd: tuple[int, str]) -> None:
    port, _ = nsd
    origin = dns.name.from_text(ZONE)
    keys = dns.query.udp(dns.message.make_query(origin, "DNSKEY", want_dnssec=True), "127.0.0.1", port=port, timeout=2)
    dnskey = keys.find_rrset(keys.answer, origin, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
    assert [dnssec.ds_text(ZONE, k) for k in dnskey] == [LAB_DS]
    when = (NOW.timestamp() + 86400)
    for qname, qtype in ((ZONE, "SOA"), (ZONE, "A"), (f"www.{ZONE}", "AAAA"), (f"pop.{ZONE}", "TXT")):
        answer = dns.query.udp(dns.message.make_query(qname, qtype, want_dnssec=True), "127.0.0.1", port=port, timeout=2)
        rrset = answer.find_rrset(answer.answer, dns.name.from_text(qname), dns.rdataclass.IN, dns.rdatatype.from_text(qtype))
        sig = answer.find_rrset(answer.answer, dns.name.from_text(qname), dns.rdataclass.IN, dns.rdatatype.RRSIG,
                                dns.rdatatype.from_text(qtype))
        dns.dnssec.validate(rrset, sig, {origin: dnskey}, now=when)
    # a name that does not exist: NXDOMAIN with the NSEC proof, signed
    nx = dns.query.udp(dns.message.make_query(f"nope.{ZONE}", "A", want_dnssec=True), "127.0.0.1", port=port, timeout=2)
    assert nx.rcode() == 3 and any(r.rdtype == dns.rdatatype.NSEC for r in nx.authority)


def test_agent_reads_the_served_expiration(nsd: tuple[int, str]) -> None:
    port, zone_text = nsd
    agent = _agent()
    check = agent.DnsCheck("127.0.0.1", port, ZONE, agent.QTYPES["SOA"], 1.0)
    seen: dict[str, int | None] = {"expiration": None}
    assert agent.check_dns(check, seen) is None  # the health check itself still passes with the DO bit
    assert seen["expiration"] == int(dnssec.earliest_expiration(zone_text, ZONE).timestamp())


def test_the_readiness_gate_reads_the_served_expiration(nsd: tuple[int, str]) -> None:
    """What the gate asks a unicast PoP of a signing stack (infra/readiness.py): the same expiration, judged by margin."""
    port, zone_text = nsd
    expiration = dns_signature_expiration("127.0.0.1", port, ZONE, 2.0)
    assert expiration == int(dnssec.earliest_expiration(zone_text, ZONE).timestamp())
    target = GateTarget(pop="ams", mode="unicast", addresses=("127.0.0.1",), zone=ZONE, dnssec_margin=DNSSEC_GATE_MARGIN_S)
    assert signature_problems(expiration, target, NOW.timestamp(), "NSD") == []  # 26 days left at render time
    late = NOW.timestamp() + 20 * 86400
    assert "within the 14-day margin" in signature_problems(expiration, target, late, "NSD")[0]
    assert signature_problems(expiration, replace(target, dnssec_margin=None), late, "NSD") == []
