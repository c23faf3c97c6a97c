"""DNSSEC in the lab (docs/dnssec.md): dev booted signed with the lab's key (``anycast lab up --dnssec``); a validating
Unbound in every client namespace, anchored at the lab's DS, gets answers with the AD bit over IPv4 and IPv6 from the
PoP its GeoDNS answer and BGP send it to (São Paulo's Vultr unicast PoP included); a www record altered at one PoP
(NSD reloaded) is SERVFAIL exactly at the resolvers in that PoP's catchment, and validates again once restored; a CSK
rollover by double signature, the DS served by a signed parent, loses no validation at any resolver, while the control
(switching keys at once) does. Needs root, Debian's unbound; boots and tears down the dev lab (~2 min)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from infra.model.stack import load_network
from lab.api import signed
from lab.boot.up import down, up
from lab.checks import run_checks
from tests.helpers.environment import LAB_TOOLS, lab_unavailable

pytestmark = [pytest.mark.lab, pytest.mark.slow]
STACK = "dev"
REASON = lab_unavailable((*LAB_TOOLS, "unbound", "unbound-control", "unbound-checkconf"), "the signed lab")


@pytest.fixture(scope="module")
def report() -> Iterator[dict[str, Any]]:
    if REASON:
        pytest.skip(REASON)
    try:
        state = up(STACK, signed(load_network(STACK)), quiet=True, timeout=60)
        assert state.get("dnssec", {}).get("ds"), "state.json records the lab's DS"
        yield run_checks(STACK, failover=False, freeze=False, progress=False, health=False, monitoring=False)
    finally:
        down(STACK)


def _rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in report["checks"] if c["group"] == "dnssec"]


def test_every_client_validates_over_ipv4_and_ipv6(report: dict[str, Any]) -> None:
    rows = {c["name"].split(" over ")[1].split()[0]: c for c in _rows(report) if c["name"].startswith("validated")}
    assert sorted(rows) == ["IPv4", "IPv6"]
    for row in rows.values():
        assert row["ok"], row["detail"]
        assert "br->sao" in row["detail"] and "de->ams" in row["detail"] and "us->ewr" in row["detail"], row["detail"]


def test_a_tampered_pop_is_servfail_in_its_catchment_only_then_validates_again(report: dict[str, Any]) -> None:
    tamper = [c for c in _rows(report) if "tampered" in c["name"]]
    restored = [c for c in _rows(report) if "restored" in c["name"]]
    assert len(tamper) == 1 and tamper[0]["ok"], tamper
    assert "SERVFAIL" in tamper[0]["detail"] and "NOERROR AD" in tamper[0]["detail"]
    assert len(restored) == 1 and restored[0]["ok"], restored


def test_the_rollover_loses_no_validation_and_the_control_does(report: dict[str, Any]) -> None:
    rollover = [c for c in _rows(report) if c["name"].startswith("CSK rollover")]
    control = [c for c in _rows(report) if c["name"].startswith("control")]
    assert len(rollover) == 1 and rollover[0]["ok"] and "all AD" in rollover[0]["detail"], rollover
    assert len(control) == 1 and control[0]["ok"], control
    seen = report["measurements"]["dnssec_rollover"]["seen"]
    assert len(seen) == 22 and all(set(c) == {"AD"} for c in seen.values()), seen


def test_no_other_row_fails_on_the_signed_lab(report: dict[str, Any]) -> None:
    assert [(c["name"], c["detail"][:300]) for c in report["checks"] if not c["ok"]] == []
