"""bgp.ipv6NeighborRoute: auto in the lab, on the free stack (IPv6 only, 3 PoPs): the PoPs learn their IPv6 default
route from their upstream's router advertisements (a link-local gateway), route the multihop neighbour as a /128 via
it before BIRD starts, and keep it through an in-place restart. Needs root; boots and tears down the free lab (~1 min).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from infra.model.stack import load_network
from lab.boot.up import down, up
from lab.checks import run_checks
from lab.drivers.base import pop_driver
from lab.scenarios.restart import restart_in_place
from tests.helpers.environment import LAB_REASON as REASON

pytestmark = [pytest.mark.lab, pytest.mark.slow]
STACK = "free"
NEIGHBOR = "2001:19f0:ffff::1"


def _routes(state: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """PoP -> (its IPv6 default route, its route to the neighbour), as the kernel shows them."""
    out = {}
    for code, pst in state["pops"].items():
        d = pop_driver(pst)
        out[code] = (d.exec(["ip", "-6", "route", "show", "default"]).stdout.strip(),
                     d.exec(["ip", "-6", "route", "show", f"{NEIGHBOR}/128"]).stdout.strip())
    return out


@pytest.fixture(scope="module")
def reports() -> Iterator[dict[str, Any]]:
    if REASON:
        pytest.skip(REASON)
    try:
        state = up(STACK, load_network(STACK), quiet=True, timeout=60)
        out: dict[str, Any] = {"routes": _routes(dict(state))}
        out["checks"] = run_checks(STACK, failover=False, freeze=False, progress=False, health=False, monitoring=False)
        out["restart"] = restart_in_place(STACK, load_network(STACK), gate_timeout=60)
        out["after"] = run_checks(STACK, failover=False, freeze=False, progress=False, health=False, monitoring=False)
        yield out
    finally:
        down(STACK)


def test_the_default_route_is_router_advertised_and_the_neighbour_goes_through_it(reports: dict[str, Any]) -> None:
    assert sorted(reports["routes"]) == ["ams", "ewr", "sgp"]
    for code, (default, neighbor) in reports["routes"].items():
        assert default.startswith("default via fe80::") and " proto ra " in default, (code, default)
        gateway = default.split()[2]
        assert neighbor.startswith(f"{NEIGHBOR} via {gateway} dev eth0 proto static"), (code, neighbor)


@pytest.mark.parametrize("which", ["checks", "after"])
def test_lab_check_neighbor6_rows_pass_before_and_after_an_in_place_restart(reports: dict[str, Any], which: str) -> None:
    rows = reports[which]["checks"]
    assert len([c for c in rows if c["group"] == "neighbor6" and c["ok"]]) == 3, [c for c in rows if c["group"] == "neighbor6"]
    assert [(c["name"], c["detail"]) for c in rows if not c["ok"]] == []


def test_in_place_restart_on_free_loses_no_dns(reports: dict[str, Any]) -> None:
    r = reports["restart"]
    assert r["ok"], r["failed"]
    assert r["load"]["dns"][0] == 0 and r["load"]["dns"][1] > 40, r["load"]["lost_at"]
