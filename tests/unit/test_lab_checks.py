"""Every row of `anycast lab check` can fail (issue 14, part 9): the row-building functions get fabricated observations
(BGP neighbours, BIRD protocols, received routes, logs, probe results, failover timings) instead of a running lab;
a healthy set must PASS, and breaking each condition must FAIL — including the "zero observations" cases that used
to pass vacuously."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infra.model.stack import load_network
from lab.checks import Check
from lab.checks import core as lab_checks
from lab.checks.core import check_logs, check_routes, check_sessions, expected_logs, expected_routes
from lab.checks.monitoring import monitoring_rows
from lab.monitor.blackbox import ProbeResult, lab_outputs, probe_plan
from lab.net import bgp
from lab.net.probes import Prober
from lab.plan.topology import LabPlan, build_plan
from lab.scenarios.faults import _after_event, failover_problems

PLAN = build_plan("dev", load_network("dev"))


def state_of(plan: LabPlan) -> dict[str, Any]:
    return {"dir": "/nonexistent",
            "pops": {p.code: {"bird_socket": f"pop:{p.code}", "unicast_ipv4": p.unicast_ipv4, "unicast_ipv6": p.unicast_ipv6}
                     for p in plan.pops},
            "clients": {c.name: {"bird_socket": f"client:{c.name}"} for c in plan.clients}}


class FakeBgp:
    """What a healthy lab's upstreams and BIRDs report; tests break one thing at a time."""

    def __init__(self, plan: LabPlan) -> None:
        self.plan = plan
        self.down: set[str] = set()  # neighbour addresses reported not Established
        self.bird: dict[str, dict[str, tuple[str, str]]] = {}
        for p in plan.pops:
            self.bird[f"pop:{p.code}"] = {f"upstream{s.version}": ("up", "Established") for s in p.sessions}
        for c in plan.clients:
            self.bird[f"client:{c.name}"] = {f"up_{p.code}{s.version}": ("up", "Established") for p in plan.pops
                                             for s in p.sessions}
        self.routes: dict[tuple[str, str, int], dict[str, bgp.ReceivedRoute]] = {}
        for p in plan.pops:
            for s in p.sessions:
                want = expected_routes(plan.network, plan.network.pop(p.code), s.version)
                self.routes[(p.upstream_namespace, str(s.pop_address), s.version)] = {
                    prefix: bgp.ReceivedRoute(prefix, path, comms) for prefix, (path, comms) in want.items()}

    def neighbors(self, ns: str) -> dict[str, bgp.Neighbor]:
        p = next(p for p in self.plan.pops if p.upstream_namespace == ns)
        addresses = [str(s.pop_address) for s in p.sessions]
        addresses += [str(c.backbone_v4 if s.version == 4 else c.backbone_v6) for c in self.plan.clients for s in p.sessions]
        return {a: bgp.Neighbor(a, 64500, a not in self.down, 6 if a not in self.down else 1) for a in addresses}

    def bird_protocols(self, sock: str) -> dict[str, tuple[str, str]]:
        return self.bird[str(sock)]

    def adj_in(self, ns: str, neighbor: str, version: int) -> dict[str, bgp.ReceivedRoute]:
        return dict(self.routes.get((ns, neighbor, version), {}))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeBgp:
    f = FakeBgp(PLAN)
    monkeypatch.setattr(lab_checks.bgp, "neighbors", f.neighbors)
    monkeypatch.setattr(lab_checks.bgp, "bird_protocols", f.bird_protocols)
    monkeypatch.setattr(lab_checks.bgp, "adj_in", f.adj_in)
    return f


def verdicts(rows: list[Check]) -> list[bool]:
    return [r.ok for r in rows]


# --- bgp ---------------------------------------------------------------------------------------------------------

def test_sessions_pass_when_all_are_up(fake: FakeBgp) -> None:
    assert verdicts(check_sessions(PLAN, state_of(PLAN))) == [True, True]


def test_a_pop_session_down_fails(fake: FakeBgp) -> None:
    fake.down.add(str(PLAN.pops[0].sessions[0].pop_address))
    assert verdicts(check_sessions(PLAN, state_of(PLAN))) == [False, True]


def test_a_bird_upstream_not_established_fails(fake: FakeBgp) -> None:
    fake.bird[f"pop:{PLAN.pops[1].code}"]["upstream6"] = ("start", "Connect")
    assert verdicts(check_sessions(PLAN, state_of(PLAN)))[0] is False


def test_a_client_session_down_fails(fake: FakeBgp) -> None:
    fake.down.add(str(PLAN.clients[0].backbone_v6))
    assert verdicts(check_sessions(PLAN, state_of(PLAN))) == [True, False]


def test_zero_sessions_fail_instead_of_passing_vacuously(fake: FakeBgp) -> None:
    no_sessions = dataclasses.replace(PLAN, pops=tuple(dataclasses.replace(p, sessions=()) for p in PLAN.pops))
    assert verdicts(check_sessions(no_sessions, state_of(no_sessions))) == [False, False]
    no_clients = dataclasses.replace(PLAN, clients=())
    assert verdicts(check_sessions(no_clients, state_of(no_clients))) == [True, False]


def test_a_client_bird_without_upstream_protocols_fails(fake: FakeBgp) -> None:
    fake.bird[f"client:{PLAN.clients[0].name}"] = {"device1": ("up", "")}
    rows = check_sessions(PLAN, state_of(PLAN))
    assert verdicts(rows) == [True, False] and "has no up_ protocol" in rows[1].detail


# --- routes ------------------------------------------------------------------------------------------------------

def _anycast_session(plan: LabPlan) -> tuple[str, str, int]:
    p = next(p for p in plan.pops if p.mode == "anycast")
    s = p.sessions[0]
    return p.upstream_namespace, str(s.pop_address), s.version


def test_routes_pass_when_exactly_expected(fake: FakeBgp) -> None:
    assert all(verdicts(check_routes(PLAN)))


@pytest.mark.parametrize("breakage", ["missing", "extra", "wrong path", "wrong community", "unicast announces"])
def test_each_route_deviation_fails(fake: FakeBgp, breakage: str) -> None:
    key = _anycast_session(PLAN)
    got = fake.routes[key]
    prefix, route = next(iter(got.items()))
    if breakage == "missing":
        del got[prefix]
    elif breakage == "extra":
        got["198.51.100.0/24"] = bgp.ReceivedRoute("198.51.100.0/24", route.as_path, route.communities)
    elif breakage == "wrong path":
        got[prefix] = dataclasses.replace(route, as_path=(*route.as_path, 64511))
    elif breakage == "wrong community":
        got[prefix] = dataclasses.replace(route, communities=route.communities | {"64511:1"})
    else:
        p = next(p for p in PLAN.pops if p.mode == "unicast")
        s = p.sessions[0]
        fake.routes[(p.upstream_namespace, str(s.pop_address), s.version)] = {prefix: route}
    assert verdicts(check_routes(PLAN)).count(False) == 1


def test_a_pop_without_sessions_fails_its_route_row(fake: FakeBgp) -> None:
    plan = dataclasses.replace(PLAN, pops=(dataclasses.replace(PLAN.pops[0], sessions=()), *PLAN.pops[1:]))
    rows = check_routes(plan)
    assert verdicts(rows)[0] is False and "no BGP session to observe" in rows[0].detail


# --- logs --------------------------------------------------------------------------------------------------------

def write_logs(base: Path, plan: LabPlan) -> None:
    for rel in expected_logs(plan):
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text("started\n", encoding="utf-8")


def test_logs_pass_when_present_and_clean(tmp_path: Path) -> None:
    write_logs(tmp_path, PLAN)
    assert check_logs(tmp_path, expected_logs(PLAN)).ok


@pytest.mark.parametrize("breakage", ["no logs at all", "a log missing", "an error line"])
def test_each_log_condition_fails(tmp_path: Path, breakage: str) -> None:
    if breakage != "no logs at all":
        write_logs(tmp_path, PLAN)
    if breakage == "a log missing":
        (tmp_path / f"pops/{PLAN.pops[0].code}/nsd.log").unlink()
    if breakage == "an error line":
        (tmp_path / f"pops/{PLAN.pops[0].code}/bird.log").write_text("2026 <ERR> something broke\n", encoding="utf-8")
    assert not check_logs(tmp_path, expected_logs(PLAN)).ok
    if breakage == "no logs at all":
        assert not check_logs(tmp_path).ok  # even without a list of expected logs, zero logs read is no PASS


def test_expected_logs_name_every_daemon() -> None:
    logs = expected_logs(PLAN)
    anycast = next(p.code for p in PLAN.pops if p.mode == "anycast")
    unicast = next(p.code for p in PLAN.pops if p.mode == "unicast")
    assert f"pops/{anycast}/health.log" in logs and f"pops/{unicast}/health.log" not in logs
    assert all(f"upstreams/{p.code}/gobgpd.log" in logs for p in PLAN.pops)


# --- monitoring --------------------------------------------------------------------------------------------------

NEAREST = next(p.code for p in PLAN.pops if p.mode == "anycast")
PROBES = probe_plan(lab_outputs(PLAN.network, state_of(PLAN), {}), NEAREST)
TIMING = {"exporter_start_s": 0.1, "probes": len(PROBES), "total_s": 0.5}


def results(change: Callable[[list[ProbeResult]], list[ProbeResult]] = lambda r: r) -> list[ProbeResult]:
    healthy = [ProbeResult(p, 1 if p.expect_success else 0, 0.01, None) for p in PROBES]
    return change(healthy)


def test_monitoring_rows_pass_on_healthy_results() -> None:
    got = monitoring_rows(PLAN, "de", NEAREST, results(), TIMING, "test")
    assert len(got) == 5 and all(verdicts(got)), got


def _fails(res: list[ProbeResult], nearest: str | None = NEAREST) -> list[str]:
    return [r.name for r in monitoring_rows(PLAN, "de", nearest, res, TIMING, "test") if not r.ok]


def test_no_dns_target_fails_both_the_targets_row_and_the_dns_row() -> None:
    failed = _fails(results(lambda rs: [r for r in rs if r.probe.kind != "dns"]))
    assert any(n.startswith("outputs from the lab's addresses") for n in failed)
    assert any(n.startswith("every DNS target") for n in failed)


def test_a_pop_without_its_http_target_fails_the_targets_row() -> None:
    victim = next(p.code for p in PLAN.pops)
    failed = _fails(results(lambda rs: [r for r in rs if r.probe.why != f"generated target, pop {victim}"]))
    assert [n for n in failed if n.startswith("outputs from")]


@pytest.mark.parametrize("kind", ["http", "dns"])
def test_one_failing_generated_target_fails_its_row(kind: str) -> None:
    def break_one(rs: list[ProbeResult]) -> list[ProbeResult]:
        i = next(i for i, r in enumerate(rs) if r.probe.kind == kind and r.probe.why.startswith("generated"))
        return [*rs[:i], dataclasses.replace(rs[i], success=0, error="timeout"), *rs[i + 1:]]

    failed = _fails(results(break_one))
    assert failed == [f"every {kind.upper()} target: " + ("probe_success 1 with the expected X-PoP" if kind == "http"
                                                           else "probe_success 1, zone SOA and id.server")
                      + f" ({sum(1 for p in PROBES if p.kind == kind and p.why.startswith('generated'))})"]


def test_sharp_and_negative_rows_fail() -> None:
    sharp_missing = results(lambda rs: [r for r in rs if r.probe.why.startswith(("generated", "negative"))])
    assert [n for n in _fails(sharp_missing) if n.startswith("anycast HTTP from de")]
    wrong_pop = results(lambda rs: [dataclasses.replace(r, success=0) if r.probe.why.startswith("anycast answered") else r
                                    for r in rs])
    assert [n for n in _fails(wrong_pop) if n.startswith("anycast HTTP from de")]
    negative_passes = results(lambda rs: [dataclasses.replace(r, success=1) if not r.probe.expect_success else r for r in rs])
    assert [n for n in _fails(negative_passes) if n.startswith("negative:")]
    no_negative = results(lambda rs: [r for r in rs if r.probe.expect_success])
    assert [n for n in _fails(no_negative) if n.startswith("negative:")]


# --- failover ----------------------------------------------------------------------------------------------------

GOOD: dict[str, Any] = {"nxt": "ewr", "withdraw": 0.6, "withdraw_limit": 3.0, "switch": 0.7, "recover": 2.0, "probes": 50,
                        "dns_probes": 50, "dns_switch": 0.7, "lost_after": 0, "dns_lost_after": 0}


def test_failover_passes_when_http_and_dns_move_and_stay() -> None:
    assert failover_problems(**GOOD) == []


@pytest.mark.parametrize("change, problem", [
    ({"withdraw": None}, "the upstream never withdrew the prefix"),
    ({"withdraw": 3.5}, "withdrawn after 3.50 s, over the 3 s limit"),
    ({"switch": None}, "HTTP never answered from ewr"),
    ({"probes": 0, "switch": None}, "no HTTP probe ran"),
    ({"lost_after": 2}, "2 HTTP probes failed after the move to ewr"),
    ({"dns_switch": None}, "DNS never answered from ewr"),
    ({"dns_probes": 0, "dns_switch": None}, "no DNS probe ran"),
    ({"dns_lost_after": 3}, "3 DNS probes failed after the move to ewr"),
    ({"recover": None}, "not back on the PoP after the restore"),
])
def test_each_failover_condition_fails(change: dict[str, Any], problem: str) -> None:
    assert failover_problems(**(GOOD | change)) == [problem]


def test_samples_are_counted_up_to_the_restore_not_only_in_the_loss_window() -> None:
    """Seen in the lab: DNS moved within 0.02 s, so no DNS query fell between the kill and the HTTP switch; the
    prober did run (three queries before the restore), which is what "probed" means."""
    http, dns = Prober("ns", "192.0.2.1"), Prober("ns", "192.0.2.1", qname="example.net")
    http.samples = [(0.5, "ams"), (1.01, None), (1.02, "ewr"), (1.04, None), (1.06, "ewr"), (2.5, "ams")]
    dns.samples = [(0.5, "ams"), (1.021, "ewr"), (1.041, None), (1.061, "ewr"), (2.5, "ams")]
    after = _after_event(http, dns, 1.0, 1.02, 2.0, "ewr")
    assert (after.lost_after, after.dns_lost_after, after.http_samples, after.dns_samples) == (1, 1, 4, 3)
    assert after.dns_switch == pytest.approx(0.021)
    assert dns.lost(1.0, 1.02) == (0, 0)  # the loss window alone holds no DNS sample
    problems = failover_problems(**(GOOD | {"dns_switch": after.dns_switch, "dns_probes": after.dns_samples,
                                            "lost_after": after.lost_after, "dns_lost_after": after.dns_lost_after}))
    assert problems == ["1 HTTP probes failed after the move to ewr", "1 DNS probes failed after the move to ewr"]
