"""Rollout figures for `make bench`: the gated, wave-by-wave replacement of every PoP of the prod lab (docs/deploy.md).

Boots the prod lab (replacing a running one), then
1. a good change: the zone's TTL (``dns.ttl`` + 60), which changes every PoP's zone file, so every Vultr PoP is
   replaced in the stack's waves ([1, 2, 5, all]); requests lost by clients probing every 20 ms, total time;
2. a broken change on top (``--fault nsd-config``: NSD refuses its config on every PoP): the rollout must stop at
   the canary with nothing lost and the old network intact;
3. an in-place restart (``--restart-in-place``: every Vultr PoP restarted in its namespace, as a plan resize reboots
   it, each gate re-armed): requests lost, how long each PoP was withdrawn, whether each wave started only after
   the previous one was ready again;
4. ``anycast lab check`` (static checks) afterwards;
and tears the lab down. Measured, not asserted; without root it returns one row saying why.
"""

from __future__ import annotations

import sys
from itertools import pairwise
from typing import Any

from infra.model import Network, parse_network
from infra.model.stack import read_stack_config
from lab.boot.up import down, up
from lab.checks import run_checks
from lab.net.netns import LabError
from lab.net.processes import require_tools
from lab.scenarios.restart import restart_in_place
from lab.scenarios.rollout import rollout

STACK = "prod"
BROKEN_GATE_TIMEOUT_S = 60.0  # the stack's 15 minutes would only make the bench slow: the verdict is the same


def changed_network(stack: str, ttl_delta: int = 60) -> Network:
    """The stack's network with the zone TTL raised: a change that reaches every PoP's files."""
    doc = read_stack_config(stack)["anycast:network"]
    dns = dict(doc["dns"])
    dns["ttl"] = int(dns.get("ttl", 60)) + ttl_delta
    return parse_network({**doc, "dns": dns}, source=f"Pulumi.{stack}.yaml with dns.ttl + {ttl_delta}")


def _say(text: str) -> None:
    print(f"  rollout: {text}", file=sys.stderr, flush=True)


def scenario(stack: str = STACK) -> dict[str, Any]:
    """Boot, good rollout, broken rollout, in-place restart, checks; the four reports."""
    from infra.model.stack import load_network

    up(stack, load_network(stack), timeout=120)
    network = changed_network(stack)
    good = rollout(stack, network, say=_say)
    broken = rollout(stack, network, fault="nsd-config", gate_timeout=BROKEN_GATE_TIMEOUT_S, say=_say)
    restart = restart_in_place(stack, network, gate_timeout=BROKEN_GATE_TIMEOUT_S, say=_say)
    checks = run_checks(stack, failover=False, freeze=False, progress=False, health=False)
    return {"good": good, "broken": broken, "restart": restart, "checks": checks}


def run() -> list[tuple[str, float, str]]:
    try:
        require_tools()
    except LabError as exc:
        return [("rollout: skipped", 0.0, str(exc))]
    try:
        r = scenario(STACK)
    finally:
        down(STACK)
    good, broken, checks = r["good"], r["broken"], r["checks"]
    gl, bl = good["load"], broken["load"]
    gates = [x["gate_s"] for x in good["replaced"]]
    failed_checks = [c["name"] for c in checks["checks"] if not c["ok"]]
    rs = r["restart"]
    rl = rs["load"]
    withdrawn = [x["withdrawn_for_s"] for x in rs["restarted"] if x["withdrawn_for_s"] is not None]
    times = rs["wave_times"]
    in_order = sum(1 for a, b in pairwise(times) if a["ready_s"] is not None and b["started_s"] >= a["ready_s"])
    return [
        ("rollout prod (good change): total time", float(good["seconds"]),
         f"s for {len(good['replaced'])} PoPs in {len(good['waves'])} waves {[len(w) for w in good['waves']]}, ok={good['ok']}"),
        ("rollout prod (good change): slowest gate", max(gates) if gates else float("nan"), "s (new PoP booted -> serving)"),
        ("rollout prod (good change): HTTP requests lost", float(gl["http"][0]), f"of {gl['http'][1]} (every 20 ms from each client)"),
        ("rollout prod (good change): DNS queries lost", float(gl["dns"][0]), f"of {gl['dns'][1]}"),
        ("rollout prod (broken change): stopped at wave", float(broken.get("stopped_at_wave", 0)),
         f"of {len(broken['waves'])}; failed: {', '.join(broken['failed']) or 'none'}"),
        ("rollout prod (broken change): requests lost", float(bl["http"][0] + bl["dns"][0]),
         f"of {bl['http'][1] + bl['dns'][1]} HTTP+DNS (gate timeout {BROKEN_GATE_TIMEOUT_S:.0f} s)"),
        ("rollout prod (in-place restart): total time", float(rs["seconds"]),
         f"s for {len(rs['restarted'])} PoPs in {len(rs['waves'])} waves, each down {rs['down_s']:.0f} s, ok={rs['ok']}"),
        ("rollout prod (in-place restart): HTTP requests lost", float(rl["http"][0]), f"of {rl['http'][1]}"),
        ("rollout prod (in-place restart): DNS queries lost", float(rl["dns"][0]), f"of {rl['dns'][1]}"),
        ("rollout prod (in-place restart): longest withdrawal", max(withdrawn) if withdrawn else float("nan"),
         f"s at the upstream (shortest {min(withdrawn) if withdrawn else float('nan'):.1f} s, {len(withdrawn)} anycast PoPs)"),
        ("rollout prod (in-place restart): waves started after the previous was ready", float(in_order),
         f"of {max(len(times) - 1, 0)}"),
        ("rollout prod: lab check afterwards, rows passed", float(sum(c["ok"] for c in checks["checks"])),
         f"of {len(checks['checks'])}" + (f"; failed: {', '.join(failed_checks)}" if failed_checks else "")),
    ]
