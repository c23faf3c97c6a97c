"""Convergence figures for `make bench`: the multi-AS topology (docs/convergence.md) on the dev stack.

Boots ``anycast lab up --stack dev --topology multi-as`` (replacing a running dev lab), runs the four scenarios of
lab/scenarios/convergence.py (a PoP's BIRD crashed; the PoP drained by the agent, RFC 8326 graceful shutdown first;
the same drain by plain withdrawal, ``--no-graceful``; the network withdrawn from the PoP's continent), and tears the
lab down. Measured, not asserted; without root it returns one row saying why.
"""

from __future__ import annotations

import sys
from typing import Any

from infra.model.stack import load_network
from lab.boot.up import down, up
from lab.net.netns import LabError
from lab.net.processes import require_tools
from lab.plan.multias import MULTI_AS
from lab.plan.topology import build_plan
from lab.scenarios.convergence import convergence
from lab.state import load_state

STACK = "dev"


def _say(text: str) -> None:
    print(f"  convergence: {text}", file=sys.stderr, flush=True)


def scenario(stack: str = STACK) -> dict[str, Any]:
    network = load_network(stack)
    up(stack, network, timeout=90, topology=MULTI_AS, quiet=True)
    state = load_state(stack)
    plan = build_plan(stack, network, only=list(state["pops"]), topology=MULTI_AS)
    return convergence(plan, state, say=_say)


def rows(report: dict[str, Any]) -> list[tuple[str, float, str]]:
    out: list[tuple[str, float, str]] = []
    for r in report["results"]:
        what = f"convergence dev multi-as ({r['scenario']} {','.join(r['pops'])})"
        served = r["served_again_s"]
        out += [
            (f"{what}: every client served again", float("nan") if served is None else float(served),
             f"s after the event ({len(r['before'])} eyeball clients; ok={r['ok']})"),
            (f"{what}: HTTP requests lost", float(r["http"][0]), f"of {r['http'][1]} (every 50 ms from each client)"),
            (f"{what}: DNS queries lost", float(r["dns"][0]), f"of {r['dns'][1]} (every 100 ms from each client)"),
            (f"{what}: BGP updates received by the transits", float(r["total_updates"]),
             "updates + withdraws: " + ", ".join(f"{k} {v}" for k, v in sorted(r["updates"].items()))),
            (f"{what}: last answer from the withdrawn PoP", float(r["moved_s"]), "s after the event"),
        ]
        if r["drain_s"] is not None:
            out.append((f"{what}: safe to stop", float(r["drain_s"]),
                        "s after the event (anycast-health --drain)"
                        + (f"; graceful-shutdown phase {r['gshut_s']:.2f} s" if r["gshut_s"] is not None else "")))
    return out


def run() -> list[tuple[str, float, str]]:
    try:
        require_tools()
    except LabError as exc:
        return [("convergence: skipped", 0.0, str(exc))]
    try:
        report = scenario(STACK)
    finally:
        down(STACK)
    return rows(report)
