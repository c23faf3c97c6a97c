"""``anycast lab check``: a registry of check groups, each in its own module of this package.

A module registers its group with :func:`register_group` (an order, a name, and when it applies); :func:`run_checks`
imports every module here, runs each group that applies, in order, against the running lab, and returns the report.
Each check is a :class:`Check` (group, name, ok, detail); measurements are numbers with their target. The report is a
JSON-safe dict; :func:`format_table` prints it for people. Every row can fail: a row over zero observations (no
session, no target, no log) is a FAIL, never a vacuous PASS (tests/unit/test_lab_checks.py breaks each condition).

A new group is one new module here::

    from lab.checks import Check, Context, register_group

    @register_group(45, "my group", applies=lambda ctx: ctx.options.failover)
    def my_group(ctx: Context) -> None:
        ctx.say("what it does")
        ctx.guarded("mine", "my check", lambda: [Check("mine", "it works", True, "detail")])
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from infra.model import Network
from infra.model.stack import load_network
from lab.drivers.base import LabDriver, lab_driver
from lab.plan.signing import state_network
from lab.plan.topology import ClientPlan, LabPlan, build_plan, state_generations
from lab.scenarios.faults import pick_victim
from lab.state import LabState, load_state, save_state


@dataclass(frozen=True)
class Check:
    group: str
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Options:
    """What ``anycast lab check`` was asked to run (its --skip-* flags)."""

    failover: bool = True
    freeze: bool = True
    monitoring: bool = True
    health: bool = True
    failover_runs: int = 1


@dataclass
class Context:
    """The running lab as every check group sees it, and the report being written."""

    stack: str
    network: Network
    plan: LabPlan
    state: LabState
    options: Options
    say: Callable[[str], None]
    checks: list[Check] = field(default_factory=list)
    measurements: dict[str, Any] = field(default_factory=dict)
    monitor: Any = None  # the lab's Prometheus (lab.monitor.prometheus.Stack) while the monitoring group runs it
    cleanups: list[Callable[[], None]] = field(default_factory=list)  # run after every group, last first

    @property
    def base(self) -> Path:
        return Path(self.state["dir"])

    @cached_property
    def driver(self) -> LabDriver:
        """How this lab runs its PoPs (processes or machines): the groups ask the driver, never the mode."""
        return lab_driver(self.state)

    @cached_property
    def victim(self) -> tuple[ClientPlan, str, str] | None:
        """(client, its PoP, the PoP it should move to) for the failover groups, None if no client has two."""
        return pick_victim(self.plan)

    def guarded(self, group: str, name: str, step: Callable[[], list[Check]]) -> None:
        """Run one step; a failure inside it (the lab's, or a bug's) becomes a FAIL row instead of a traceback that
        aborts the whole check."""
        try:
            self.checks.extend(step())
        except Exception as exc:  # every failure must end as a row, never as a traceback
            self.checks.append(Check(group, name, False, f"{type(exc).__name__}: {str(exc)[:300]}"))

    def save(self) -> None:
        save_state(self.stack, self.state)


@dataclass(frozen=True)
class Group:
    order: int
    name: str
    run: Callable[[Context], None]
    applies: Callable[[Context], bool]
    topologies: tuple[str, ...] = ("default",)  # lab topologies whose labs it checks (lab/plan/multias.py)


_GROUPS: dict[str, Group] = {}


def register_group(order: int, name: str, applies: Callable[[Context], bool] = lambda ctx: True,
                   topologies: tuple[str, ...] = ("default",)
             ) -> Callable[[Callable[[Context], None]], Callable[[Context], None]]:
    """Add a check group: ``run(ctx)`` appends its rows (through ``ctx.guarded``) when ``applies(ctx)`` and the lab
    runs one of ``topologies``; groups run by ``order``."""
    def add(run: Callable[[Context], None]) -> Callable[[Context], None]:
        if name in _GROUPS and _GROUPS[name].run.__module__ != run.__module__:
            raise ValueError(f"check group {name!r} registered twice ({_GROUPS[name].run.__module__}, {run.__module__})")
        _GROUPS[name] = Group(order, name, run, applies, topologies)
        return run
    return add


def groups() -> list[Group]:
    """Every registered group, in order (imports every module of this package first)."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return sorted(_GROUPS.values(), key=lambda g: (g.order, g.name))


def run_checks(stack: str, failover: bool = True, freeze: bool = True, progress: bool = True,
               failover_runs: int = 1, monitoring: bool = True, health: bool = True) -> dict[str, Any]:
    """Run every check against the running lab of ``stack``; return the report (``ok`` is the verdict)."""
    def say(text: str) -> None:
        if progress:
            print(f"... {text}", file=sys.stderr, flush=True)

    state = load_state(stack)
    network = state_network(load_network(stack), state)  # signed with the lab key if booted so
    topology = state.get("topology", "default")
    plan = build_plan(stack, network, only=list(state["pops"]), generations=state_generations(state),  # after rollouts
                      topology=topology)
    ctx = Context(stack, network, plan, state, Options(failover, freeze, monitoring, health, failover_runs), say)
    try:
        for group in groups():
            if topology in group.topologies and group.applies(ctx):
                group.run(ctx)
    finally:
        for cleanup in reversed(ctx.cleanups):
            cleanup()
    return {"stack": stack, "ok": all(c.ok for c in ctx.checks), "checks": [asdict(c) for c in ctx.checks],
            "measurements": ctx.measurements}


def format_table(report: dict[str, Any]) -> str:
    rows = [(c["group"], "PASS" if c["ok"] else "FAIL", c["name"], c["detail"]) for c in report["checks"]]
    w0 = max(len(r[0]) for r in rows)
    w2 = min(70, max(len(r[2]) for r in rows))
    lines = [f"{'group':<{w0}}  {'':4}  {'check':<{w2}}  detail", "-" * (w0 + w2 + 40)]
    for g, ok, name, detail in rows:
        lines.append(f"{g:<{w0}}  {ok}  {name:<{w2}}  {detail}")
    passed = sum(1 for c in report["checks"] if c["ok"])
    lines.append("-" * (w0 + w2 + 40))
    lines.append(f"{passed}/{len(rows)} checks passed: " + ("OK" if report["ok"] else "FAILED"))
    return "\n".join(lines)
