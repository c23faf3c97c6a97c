"""Health-agent figures for `make bench`: Caddy or NSD killed at a dev-lab PoP -> withdrawn at the upstream, requests
lost at one every 20 ms (median of RUNS each), agent frozen -> watchdog withdrawal, drain losses; then the anchors
(bench/anchors.py) on the same PoP. Measured, not asserted. Boots the dev lab (replacing a running one) and tears it
down; without root it returns one row saying why.
"""

from __future__ import annotations

import statistics
import sys
from typing import Any

from infra.model.stack import load_network
from lab.boot.up import down, up
from lab.net.netns import LabError
from lab.net.processes import require_tools, stop
from lab.plan.topology import build_plan
from lab.scenarios.faults import Fixture, crash, drain_and_stop, frozen_agent, pick_victim
from lab.state import load_state

STACK = "dev"
RUNS = 10


def _median(values: list[float | None]) -> float:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else float("nan")


def _say(text: str) -> None:
    print(f"... {text}", file=sys.stderr, flush=True)


def _fresh_agent(fx: Fixture) -> None:
    """Stop the PoP's agent as systemd would (SIGTERM: the supervisor stops it and its ExecStopPost withdraws) and
    start it again. The agent's damping remembers every withdrawal (figure of merit: 1000 each, half-life 15 min, held
    down once one more would pass 5000), so after about five crashes it keeps the PoP down, as it should in a crash
    loop; each measured crash here is an independent event, so each starts from an agent with no history (its
    damping state lives in its memory)."""
    stop(fx.pst["pids"]["health"], timeout=10.0)
    fx.restart("health")


def measure(fx: Fixture, runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {"caddy": [], "nsd": []}
    for i in range(runs):
        for service in ("caddy", "nsd"):
            _fresh_agent(fx)
            r = crash(fx, service)
            _say(f"{service} kill {i + 1}/{runs}: {r.detail}")
            out[service].append(r)
    _fresh_agent(fx)
    out["frozen"] = frozen_agent(fx)
    _say(out["frozen"].detail)
    _fresh_agent(fx)
    out["drain"] = drain_and_stop(fx)
    _say(out["drain"].detail)
    return out


def run() -> list[tuple[str, float, str]]:
    try:
        require_tools()
    except LabError as exc:
        return [("health: skipped", 0.0, str(exc))]
    network = load_network(STACK)
    rows: list[tuple[str, float, str]] = []
    try:
        up(STACK, network, quiet=True, timeout=90)
        state = load_state(STACK)
        plan = build_plan(STACK, network, only=list(state["pops"]))
        victim = pick_victim(plan)
        if victim is None:
            return [("health: skipped", 0.0, "no client with two anycast PoPs")]
        client, pop, nxt = victim
        fx = Fixture(plan, state, client, pop, nxt)
        m = measure(fx, RUNS)
        where = f"{STACK} lab, {pop} ({client.name} -> {nxt})"
        for service, what in (("caddy", "Caddy"), ("nsd", "NSD")):
            rs = m[service]
            rows += [
                (f"health: {what} killed -> withdrawn at upstream", _median([r.withdraw_s for r in rs]) * 1000,
                 f"ms median of {len(rs)}, max {max((r.withdraw_s or 0) for r in rs) * 1000:.0f} ms; {where}; goal <= 50"),
                (f"health: {what} killed -> HTTP requests lost", _median([float(r.lost) for r in rs]),
                 f"median of {len(rs)} (one every 20 ms), max {max(r.lost for r in rs)}; goal <= 3"),
                (f"health: {what} killed -> DNS queries lost", _median([float(r.dns_lost) for r in rs]),
                 f"median of {len(rs)} (one every 20 ms), max {max(r.dns_lost for r in rs)}"),
                (f"health: {what} back -> re-announced and serving", _median([r.recover_s for r in rs]),
                 "s median (rise 3 x 200 ms after the restart)"),
            ]
        f, d = m["frozen"], m["drain"]
        rows += [
            ("health: agent frozen + Caddy killed -> withdrawn", f.withdraw_s if f.withdraw_s is not None else float("nan"),
             f"s (the watchdog: WatchdogSec={fx.unit.watchdog_sec:g}); {f.lost} HTTP requests lost"),
            ("health: drain -> HTTP requests lost", float(d.lost), f"of {d.probes} (goal 0); DNS {d.dns_lost}/{d.dns_probes}"),
            ("health: drain -> safe to stop", float(d.extra["safe_s"]), "s (withdrawn, then drain.quiet_s 2 s without packets)"),
        ]
        try:
            from bench.anchors import run_anchors
        except ModuleNotFoundError:
            return rows
        rows += run_anchors(fx, m, _say)
    finally:
        down(STACK)
    return rows
