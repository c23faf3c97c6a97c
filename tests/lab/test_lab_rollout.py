"""`anycast lab rollout` on the dev stack with real daemons: a good change replaces every PoP wave by wave with
nothing lost, a broken change (NSD refuses its config) stops at the canary with nothing lost and the old network
intact, an in-place restart (``--restart-in-place``, a resize's reboot) is gated wave by wave with no DNS query lost,
and the static lab checks pass afterwards. Needs root; boots and tears down the dev lab (~2.5 minutes).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bench.rollout import changed_network
from infra.model.stack import load_network
from lab.boot.up import down, up
from lab.checks import run_checks
from lab.net.netns import list_namespaces
from lab.scenarios.restart import restart_in_place
from lab.scenarios.rollout import rollout
from lab.state import load_state
from tests.helpers.environment import LAB_REASON as REASON

pytestmark = [pytest.mark.lab, pytest.mark.slow]
STACK = "dev"


@pytest.fixture(scope="module")
def reports() -> Iterator[dict[str, Any]]:
    if REASON:
        pytest.skip(REASON)
    try:
        up(STACK, load_network(STACK), quiet=True, timeout=60)
        network = changed_network(STACK)
        out: dict[str, Any] = {"before": load_state(STACK)}
        out["good"] = rollout(STACK, network)
        out["after_good"] = load_state(STACK)
        out["broken"] = rollout(STACK, network, fault="nsd-config", gate_timeout=20, interval=0.5)
        out["after_broken"] = load_state(STACK)
        out["restart"] = restart_in_place(STACK, network, gate_timeout=60)
        out["after_restart"] = load_state(STACK)
        out["namespaces"] = list_namespaces(f"acl-{STACK}-")
        out["checks"] = run_checks(STACK, failover=False, freeze=False, progress=False, health=False, monitoring=False)
        yield out
    finally:
        down(STACK)


def test_good_change_replaces_every_pop_in_waves_with_nothing_lost(reports: dict[str, Any]) -> None:
    good = reports["good"]
    assert good["ok"], good["failed"]
    assert good["waves"] == [["ams"], ["ewr", "sao"]]  # rollout.waves [1, all] over the Vultr PoPs
    assert [r["pop"] for r in good["replaced"]] == ["ams", "ewr", "sao"]
    assert all(files == [f"zones/{STACK_ZONE}"] for files in good["changed"].values())
    before, after = reports["before"]["pops"], reports["after_good"]["pops"]
    for code in ("ams", "ewr", "sao"):
        assert after[code]["generation"] == 1 and after[code]["namespace"] == f"acl-dev-q-{code}"
        assert after[code]["unicast_ipv4"] != before[code]["unicast_ipv4"], "a replaced PoP has a new address"
    http, dns = good["load"]["http"], good["load"]["dns"]
    assert http[1] > 200 and dns[1] > 40, "clients probed during the whole rollout"
    assert dns[0] == 0, good["load"]["lost_by_client"]
    # The goal is 0 (measured 0 on dev and 0-1 of ~24,000 on prod). What may be lost is an HTTP request whose TCP
    # connection is open at the instant the upstream moves the prefix to the new PoP (which resets it): at most a
    # couple, and only right after a switch. (Load.summary's at_switch/elsewhere cannot tell here: the old and the new
    # PoP answer with the same code.)
    switches = [r["switched_at_s"] for r in good["replaced"] if r["switched_at_s"] is not None]
    assert len(switches) == 2  # ams and ewr are anycast; sao is reached through GeoDNS
    assert http[0] <= 2, good["load"]["lost_at"]
    for _client, _kind, at in good["load"]["lost_at"]:
        assert any(abs(at - t) < 1.0 for t in switches), f"a loss at {at} s, not at a switch {switches}"


STACK_ZONE = "cdn.example.com.zone"


def test_broken_change_stops_at_the_canary_with_the_old_network_intact(reports: dict[str, Any]) -> None:
    broken = reports["broken"]
    assert not broken["ok"] and broken["stopped_at_wave"] == 1 and broken["passed_waves"] == 0
    assert set(broken["failed"]) == {"ams"}
    assert "PoP ams not ready after" in broken["failed"]["ams"] and "health checks failing: dns" in broken["failed"]["ams"]
    assert reports["after_broken"]["pops"] == reports["after_good"]["pops"], "the old network is what it was"
    assert "acl-dev-p-ams" not in reports["namespaces"], "the failed canary was removed"
    assert {"acl-dev-q-ams", "acl-dev-q-ewr", "acl-dev-q-sao"} <= set(reports["namespaces"])
    http, dns = broken["load"]["http"], broken["load"]["dns"]
    assert http[1] > 100 and (http[0], dns[0]) == (0, 0), broken["load"]["lost_by_client"]


def test_in_place_restart_is_gated_wave_by_wave_with_no_dns_lost(reports: dict[str, Any]) -> None:
    r = reports["restart"]
    assert r["ok"], r["failed"]
    assert r["waves"] == [["ams"], ["ewr", "sao"]] and [x["pop"] for x in r["restarted"]] == ["ams", "ewr", "sao"]
    before, after = reports["after_broken"]["pops"], reports["after_restart"]["pops"]
    for code in ("ams", "ewr", "sao"):
        assert after[code]["namespace"] == before[code]["namespace"], "restarted in place, not replaced"
        assert all(after[code]["pids"][d] != before[code]["pids"][d] for d in before[code]["pids"]), "every daemon restarted"
    for x in r["restarted"]:
        # The re-armed gate did not pass on the old processes: it passed after the PoP booted again, and its first
        # poll found it not restarted yet (anycast: the agent started before the request; unicast: no outage seen
        # yet, or already down).
        assert x["booted_s"] < x["ready_s"], x
        assert x["gate_log"] and not x["gate_log"][0].endswith(": ready"), x["gate_log"]
        if x["mode"] == "anycast":
            assert x["withdrawn_s"] is not None and x["announced_s"] is not None, "the upstream saw the withdrawal"
            assert x["requested_s"] <= x["withdrawn_s"] < x["announced_s"] <= x["ready_s"], x
    # The next wave started only after every PoP of the previous one was ready again.
    w1, w2 = r["wave_times"]
    assert w1["ready_s"] is not None and w2["started_s"] >= w1["ready_s"], r["wave_times"]
    http, dns = r["load"]["http"], r["load"]["dns"]
    assert http[1] > 200 and dns[1] > 40, "clients probed during the whole restart"
    assert dns[0] == 0, r["load"]["lost_at"]
    # At most the one request each client may have in flight when its route moves away from the restarting PoP and
    # back (2 anycast PoPs restarted), and only then.
    assert http[0] <= 2 * len(reports["after_restart"]["clients"]), r["load"]["lost_at"]
    assert r["load"]["elsewhere"] == 0, r["load"]["lost_at"]
    moves = [t for x in r["restarted"] for t in (x["withdrawn_s"], x["announced_s"]) if t is not None]
    for _client, _kind, at in r["load"]["lost_at"]:
        assert any(abs(at - t) < 1.0 for t in moves), f"a loss at {at} s, not when a route moved {moves}"


def test_lab_check_passes_after_both_rollouts(reports: dict[str, Any]) -> None:
    failed = [(c["name"], c["detail"]) for c in reports["checks"]["checks"] if not c["ok"]]
    assert failed == []
