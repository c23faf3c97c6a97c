"""Lab figures for `make bench`: prod boot-to-convergence, failover timings, leaked routes (measured, not asserted).

Boots the prod stack (replacing a running prod lab), runs the checks with five Caddy-kill failovers and one frozen
PoP, and tears the lab down. Needs root; without it (or without namespaces) it returns one row saying why.
"""

from __future__ import annotations

import statistics
import time

from infra.model.stack import load_network
from lab.boot.up import down, up
from lab.checks import run_checks
from lab.net.netns import LabError
from lab.net.processes import require_tools

STACK = "prod"
RUNS = 5


def _median(values: list[float | None]) -> float:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else float("nan")


def run() -> list[tuple[str, float, str]]:
    try:
        require_tools()
    except LabError as exc:
        return [("lab: skipped", 0.0, str(exc))]
    network = load_network(STACK)
    rows: list[tuple[str, float, str]] = []
    try:
        t0 = time.monotonic()
        state = up(STACK, network, timeout=90)
        boot = time.monotonic() - t0
        rows.append(("lab prod: up and converged", boot,
                     f"s ({len(state['pops'])} PoPs, {len(state['pops'])} upstreams, {len(state['clients'])} clients; "
                     "target <= 30)"))
        report = run_checks(STACK, failover=True, freeze=True, progress=True, failover_runs=RUNS)
    finally:
        down(STACK)
    m = report["measurements"]
    kills = m.get("kill_caddy", [])
    rows += [
        ("lab prod: checks passed", float(sum(c["ok"] for c in report["checks"])), f"of {len(report['checks'])}"),
        ("lab prod: Caddy killed -> withdrawn at upstream", _median([k["withdraw_s"] for k in kills]),
         f"s median of {len(kills)} (target <= 1)"),
        ("lab prod: Caddy killed -> client on next PoP", _median([k["switch_s"] for k in kills]), f"s median of {len(kills)}"),
        ("lab prod: HTTP requests lost per failover", _median([float(k["lost"]) for k in kills]),
         "median (one request every 20 ms)"),
        ("lab prod: DNS queries lost per failover", _median([float(k["dns_lost"]) for k in kills]),
         "median (one query every 20 ms; NSD stays up when Caddy dies)"),
        ("lab prod: Caddy back -> re-announced", _median([k["recover_s"] for k in kills]), "s median (rise 3 x 200 ms)"),
        ("lab prod: Caddy killed -> Prometheus alert AnycastPopWithdrawn firing",
         _median([k.get("alert_fire_s") for k in kills]),
         "s median (lab: 1 s scrape + 1 s evaluation, for 0s; production adds for: 1m and 15 s intervals)"),
        ("lab prod: Caddy back -> AnycastPopWithdrawn cleared", _median([k.get("alert_clear_s") for k in kills]),
         "s median (re-announce after rise, then a scrape and an evaluation)"),
    ]
    if "prometheus" in m:
        p = m["prometheus"]
        rows.append(("lab prod: Prometheus started -> every target up", float(p["startup_s"] + p["targets_up_s"]),
                     f"s ({p['targets']} targets; Prometheus applies discovered targets every 5 s)"))
    if "freeze" in m:
        f = m["freeze"]
        rows += [
            ("lab prod: frozen PoP -> withdrawn at upstream", f["withdraw_s"] or float("nan"),
             f"s (hold time {network.bgp.hold_time}; target <= 10)"),
            ("lab prod: frozen PoP -> DNS queries lost", float(f["dns_lost"]), f"of {f['dns_probes']} (50 ms apart, 200 ms timeout)"),
            ("lab prod: SIGCONT -> re-established and serving", f["recover_s"] or float("nan"),
             "s (the PoP's BIRD waits error wait time, rendered 5 s, after the hold-timer NOTIFICATION)"),
        ]
    rows.append(("lab prod: routes leaked (1,000 injected)", float(m.get("routes_leaked", -1)), "routes (target 0)"))
    return rows
