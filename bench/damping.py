"""Route flap damping figures for `make bench` (docs/maintenance.md): a PoP's service crash-loops for 30 s behind an
FRR transit with RFC 7196's damping parameters, once without the agent's own damping and once with it
(lab/scenarios/damping.py, the scenario of tests/validators/test_damping_transit.py). Measured, not asserted; without
root, bird2 or frr it returns one row saying why."""

from __future__ import annotations

import sys

from lab.scenarios.damping import missing, run_crash_loop


def rows_for(agent_damping: bool) -> list[tuple[str, float, str]]:
    r = run_crash_loop(agent_damping)
    what = f"damping: {r.seconds} s crash loop {'with' if agent_damping else 'without'} the agent's damping"
    return [(f"{what}: withdrawals", float(r.withdrawals), "announcement withdrawn by the agent"),
            (f"{what}: highest figure of merit at the transit", float(r.peak_penalty),
             "FRR penalty (1000 per withdrawal; suppress 6000, reuse 750, half-life 15 min: RFC 7196)"),
            (f"{what}: prefix suppressed by the transit", 1.0 if r.suppressed else 0.0, "1 yes, 0 no")]


def run() -> list[tuple[str, float, str]]:
    if (why := missing()) is not None:
        return [("damping: skipped", 0.0, why)]
    out: list[tuple[str, float, str]] = []
    for agent_damping in (False, True):
        print(f"  damping: crash loop, agent damping {'on' if agent_damping else 'off'} (~40 s)", file=sys.stderr,
              flush=True)
        out += rows_for(agent_damping)
    return out
