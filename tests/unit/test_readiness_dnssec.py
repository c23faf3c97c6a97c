"""The readiness gate on a signing stack (infra/readiness.py, docs/dnssec.md): a PoP whose served zone is unsigned, or
whose signatures expire within the margin, is not ready; the margin comes from the stack, the DO query and the RRSIG
parsing work on wire answers built by dnspython from the signed golden zone (the real NSD: tests/validators)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.zone
import pytest

from infra.components.gate import target_from
from infra.contracts import DNSSEC_GATE_MARGIN_S
from infra.readiness import GateTarget, dnssec_query, observe, parse_rrsig_expiration, parse_status, signature_problems, status_problems
from tests.fake_pop import FakePop, FakePopState, status_document

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "dnssec" / "ams" / "cdn.example.com.zone"
ZONE = "cdn.example.com"
DAY = 86400.0
SIGNED = GateTarget(pop="ams", mode="anycast", addresses=("127.0.0.1",), zone=ZONE, sessions=2,
                    dnssec_margin=DNSSEC_GATE_MARGIN_S)


def _signed_status(expiration: float | None) -> dict[str, Any]:
    return {**status_document("ams"), "dnssec": {"signature_expiration": expiration}}


def test_the_margin_is_the_alerts_14_days() -> None:
    assert DNSSEC_GATE_MARGIN_S == 14 * DAY


@pytest.mark.parametrize(("left_days", "problem"), [
    (None, "DNSSEC: the health agent's DNS check serves cdn.example.com without signatures; the stack signs (dns.dnssec)"),
    (13.5, "DNSSEC: the health agent's DNS check serves signatures expiring in 13.5 days, within the 14-day margin"),
    (-1.0, "DNSSEC: the health agent's DNS check serves signatures expiring in -1.0 days, within the 14-day margin"),
    (23.0, None),
])
def test_anycast_pop_signatures_judged_from_the_status_document(left_days: float | None, problem: str | None) -> None:
    now = 1_800_000_000.0
    status = parse_status(_signed_status(None if left_days is None else now + left_days * DAY))
    problems = status_problems(status, SIGNED, now)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problems[0].startswith(problem)
    assert status_problems(status, replace(SIGNED, dnssec_margin=None), now) == []  # an unsigned stack ignores it


def test_a_status_document_without_the_dnssec_field_is_unsigned() -> None:
    status = parse_status(status_document("ams"))
    assert status.signature_expiration is None
    assert status_problems(status, SIGNED, time.time())[0].endswith("without signatures; the stack signs (dns.dnssec)")
    assert parse_status({**status_document("ams"), "dnssec": {"signature_expiration": True}}).signature_expiration is None


def test_observe_refuses_a_stale_anycast_pop_and_passes_a_fresh_one() -> None:
    with FakePop(FakePopState("ams", status=_signed_status(time.time() + 3 * DAY))) as fake:
        target = replace(SIGNED, http_port=fake.http_port, dns_port=fake.dns_port, status_port=fake.http_port)
        problems = observe(target)
        assert len(problems) == 1 and "expiring in 3.0 days, within the 14-day margin" in problems[0]
        fake.state.status = _signed_status(time.time() + 20 * DAY)
        assert observe(target) == []


def _answer(qid: int, signed: bool = True, rcode: dns.rcode.Rcode = dns.rcode.NOERROR) -> tuple[bytes, int]:
    """A NOERROR answer to ``dnssec_query`` from the golden signed zone (its SOA, and its RRSIG if ``signed``)."""
    zone = dns.zone.from_text(GOLDEN.read_text(encoding="utf-8"), origin=ZONE, relativize=False)
    query = dns.message.from_wire(dnssec_query(ZONE, qid))
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    origin = dns.name.from_text(ZONE)
    soa = zone.get_rrset(origin, dns.rdatatype.SOA)
    sig = zone.get_rrset(origin, dns.rdatatype.RRSIG, dns.rdatatype.SOA)
    assert soa is not None and sig is not None
    if rcode == dns.rcode.NOERROR:
        response.answer = [soa, sig] if signed else [soa]
    return response.to_wire(), min(rd.expiration for rd in sig)


def test_the_do_query_is_a_soa_query_with_do_and_rd_clear() -> None:
    query = dns.message.from_wire(dnssec_query(ZONE + ".", 4242))
    assert query.id == 4242 and not query.flags & dns.flags.RD and query.ednsflags & dns.flags.DO
    assert [(str(q.name), q.rdtype) for q in query.question] == [(ZONE + ".", dns.rdatatype.SOA)]


def test_rrsig_expiration_parsed_from_the_wire() -> None:
    wire, expiration = _answer(7)
    assert parse_rrsig_expiration(wire, 7) == expiration == 1798844400  # 2027-01-01 23:00 UTC, as in the golden zone
    assert parse_rrsig_expiration(_answer(7, signed=False)[0], 7) is None
    with pytest.raises(ValueError, match="not the answer"):
        parse_rrsig_expiration(wire, 8)
    with pytest.raises(ValueError, match="rcode 2"):
        parse_rrsig_expiration(_answer(7, rcode=dns.rcode.SERVFAIL)[0], 7)


def test_signature_problems_for_a_unicast_pop_name_the_address() -> None:
    unicast = replace(SIGNED, mode="unicast")
    assert signature_problems(None, unicast, 0.0, "DNS on 192.0.2.7") == [
        "DNSSEC: DNS on 192.0.2.7 serves cdn.example.com without signatures; the stack signs (dns.dnssec)"]


def test_the_pulumi_gate_carries_the_margin_only_for_a_signing_stack() -> None:
    props = {"pop": "ams", "mode": "anycast", "addresses": ["192.0.2.7"], "zone": ZONE, "sessions": 2}
    assert target_from(props).dnssec_margin is None
    assert target_from({**props, "dnssecMarginSeconds": DNSSEC_GATE_MARGIN_S}).dnssec_margin == DNSSEC_GATE_MARGIN_S


def test_observe_asks_a_unicast_pop_for_its_signatures() -> None:
    with FakePop(FakePopState("ams")) as fake:  # its DNS answers the SOA without any RRSIG
        target = replace(SIGNED, mode="unicast", http_port=fake.http_port, dns_port=fake.dns_port)
        assert observe(target) == [
            "DNSSEC: DNS on 127.0.0.1 serves cdn.example.com without signatures; the stack signs (dns.dnssec)"]
        assert observe(replace(target, dnssec_margin=None)) == []
