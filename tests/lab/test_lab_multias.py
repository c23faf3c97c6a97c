"""`anycast lab up --topology multi-as` on the dev stack with real daemons: three BIRD transits between the PoPs'
upstreams and three eyeball-AS clients; every session comes up, every eyeball is routed, and a PoP crash converges
(every client served again within the check's limit, the transits saw the withdrawal, the PoP comes back); the same
PoP drained by plain withdrawal loses probes (the edge drops the route while its update is still on its 0.5 s way to
the transits) and drained with RFC 8326 graceful shutdown first loses no DNS query and no more HTTP requests. Needs
root; boots and tears down the dev lab (~2 minutes).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from infra.model.stack import load_network
from lab.boot.up import down, up
from lab.checks import run_checks
from lab.net.netns import list_namespaces
from lab.state import load_state
from tests.helpers.environment import LAB_REASON as REASON

pytestmark = [pytest.mark.lab, pytest.mark.slow]
STACK = "dev"


@pytest.fixture(scope="module")
def lab() -> Iterator[dict[str, Any]]:
    if REASON:
        pytest.skip(REASON)
    try:
        up(STACK, load_network(STACK), quiet=True, timeout=90, topology="multi-as")
        out: dict[str, Any] = {"state": load_state(STACK), "namespaces": list_namespaces(f"acl-{STACK}-")}
        out["checks"] = run_checks(STACK, failover=True, freeze=False, progress=False, health=False, monitoring=False)
        yield out
    finally:
        down(STACK)


def test_topology_is_recorded_with_its_transits(lab: dict[str, Any]) -> None:
    state = lab["state"]
    assert state["topology"] == "multi-as"
    assert {t["asn"] for t in state["transits"].values()} == {64496, 64497, 64498}
    assert sorted(state["clients"]) == ["de", "jp", "us"]
    assert {f"acl-{STACK}-t-{n}" for n in ("eu", "na", "ap")} <= set(lab["namespaces"])


def test_only_multi_as_rows_run_and_all_pass(lab: dict[str, Any]) -> None:
    checks = lab["checks"]["checks"]
    assert {c["group"] for c in checks} == {"multi-as"}, "the default topology's groups do not apply here"
    names = [c["name"] for c in checks]
    assert any("served again within" in n for n in names), names
    failed = [(c["name"], c["detail"]) for c in checks if not c["ok"]]
    assert not failed, failed


def test_crash_is_measured(lab: dict[str, Any]) -> None:
    m = lab["checks"]["measurements"]["convergence_crash"]
    assert m["served_again_s"] is not None and m["served_again_s"] < 15
    assert sum(m["updates"].values()) > 0
    assert m["http"][1] > 20, "clients probed during the crash"


def test_graceful_shutdown_drain_loses_less_than_plain_withdrawal(lab: dict[str, Any]) -> None:
    plain = lab["checks"]["measurements"]["convergence_drain_plain"]
    graceful = lab["checks"]["measurements"]["convergence_drain"]
    # The topology makes a plain withdrawal lose by construction: the edge drops its route at once, the transits keep
    # forwarding to it until the withdrawal has crossed the 0.5 s relay, while every client probes every 50/100 ms.
    assert plain["http"][0] + plain["dns"][0] > 0, plain
    assert plain["gshut_s"] is None, "--no-graceful skipped the 65535:0 phase"
    assert graceful["gshut_s"] is not None and graceful["drain_s"] > graceful["gshut_s"], graceful
    assert graceful["dns"][0] == 0, graceful
    assert graceful["http"][0] <= plain["http"][0], (graceful, plain)
    assert graceful["http"][1] > 20 and graceful["dns"][1] > 10, "clients probed during the drain"
