"""The lab's public API: what ``anycast lab ...`` (lab/cli.py) and ``anycast catchment --lab`` (infra/cli) call.

Everything else under lab/ is internal. Functions raise :class:`LabError` (one line naming what is wrong and the fix);
the callers report it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from infra.catchment.analysis import ProbeInfo
from infra.catchment.results import Observation
from infra.model import Network
from lab.net.netns import LabError, list_namespaces
from lab.plan.topology import WellConnected, namespace_prefix
from lab.state import LabState

__all__ = ["LabError", "build_only", "check", "convergence", "down", "drain", "format_convergence", "format_report",
           "lab_observations", "parse_well_connected", "resolve_namespace", "restart_in_place", "rollout", "running_stacks",
           "signed", "up"]


def parse_well_connected(spec: str, network: Network) -> WellConnected:
    """``CODE:CONT[,CONT...]`` for ``--well-connected``; ValueError naming the option and the fix."""
    from lab.plan.topology import parse_well_connected as parse

    return parse(spec, network)


def build_only(stack: str, network: Network, only: list[str] | None, well_connected: tuple[WellConnected, ...],
               topology: str = "default") -> tuple[int, Path]:
    """Write every config under .lab/<stack>/ without booting (no root): (files written, that directory).
    KeyError for an unknown PoP code."""
    from lab.boot.up import build, lab_password
    from lab.plan.signing import lab_network
    from lab.plan.topology import build_plan
    from lab.state import lab_dir

    plan = build_plan(stack, lab_network(network), only, well_connected, topology=topology)  # a signing stack: the lab's key
    return build(plan, lab_password(), lab_dir(stack)), lab_dir(stack)


def signed(network: Network) -> Network:
    """``network`` signed with the lab's DNSSEC key (``anycast lab up --dnssec``); ConfigError for a bad lab key."""
    from lab.plan.signing import lab_network

    return lab_network(network, sign=True)


def up(stack: str, network: Network, *, only: list[str] | None = None, well_connected: tuple[WellConnected, ...] = (),
       timeout: float = 60, machines: bool = False, topology: str = "default") -> LabState:
    """Boot the lab; its state (as in .lab/<stack>/state.json). LabError or KeyError on failure."""
    from lab.boot.up import up as boot

    return boot(stack, network, only=only, well_connected=well_connected, timeout=timeout, machines=machines,
                topology=topology)


def check(stack: str, *, failover: bool = True, freeze: bool = True, progress: bool = True, monitoring: bool = True,
          health: bool = True, machines: bool = False) -> dict[str, Any]:
    """Every registered check group that applies to the running lab; the report (``ok`` is the verdict).
    ``machines``: refuse (LabError) unless the lab was booted in machine mode, whose rows then run as always."""
    from lab.checks import run_checks
    from lab.state import load_state

    if machines and load_state(stack).get("mode") != "machines":
        raise LabError(f"the {stack} lab runs its PoPs as processes, and the machine rows (cloud-init, systemd, "
                       f"journals, auditors) need containers: anycast lab down --stack {stack} && "
                       f"anycast lab up --stack {stack} --machines")

    return run_checks(stack, failover=failover, freeze=freeze, progress=progress, monitoring=monitoring, health=health)


def format_report(report: dict[str, Any]) -> str:
    from lab.checks import format_table

    return format_table(report)


def down(stack: str | None, say: Callable[[str], None] | None = None) -> int:
    """Remove every namespace, link and process of the lab (every lab when ``stack`` is None); namespaces removed."""
    from lab.boot.up import down as teardown

    return teardown(stack, say=say)


def convergence(stack: str, *, scenarios: tuple[str, ...] | None = None, pop: str | None = None,
                region: str | None = None, say: Callable[[str], None] = lambda _s: None) -> dict[str, Any]:
    """Crash, drain and region withdrawal in the running multi-AS lab (lab/scenarios/convergence.py): the report."""
    from infra.model.stack import load_network
    from lab.plan.topology import build_plan
    from lab.scenarios import convergence as conv
    from lab.state import load_state

    state = load_state(stack)
    plan = build_plan(stack, load_network(stack), only=list(state["pops"]), topology=state.get("topology", "default"))
    return conv.convergence(plan, state, scenarios or conv.SCENARIOS, pop=pop, region=region, say=say)


def format_convergence(report: dict[str, Any]) -> str:
    from lab.scenarios.convergence import format_table

    return format_table(report)


def rollout(stack: str, network: Network, *, gate_timeout: float | None = None, fault: str | None = None,
            keep_failed: bool = False, say: Callable[[str], None] = lambda _s: None) -> dict[str, Any]:
    from lab.scenarios.rollout import rollout as run

    return run(stack, network, gate_timeout=gate_timeout, fault=fault, keep_failed=keep_failed, say=say)


def restart_in_place(stack: str, network: Network, *, gate_timeout: float | None = None, down_s: float | None = None,
                     say: Callable[[str], None] = lambda _s: None) -> dict[str, Any]:
    """Every Vultr PoP restarted in its namespace wave by wave, each gated as after a resize (lab/scenarios/restart.py)."""
    from lab.scenarios.restart import DOWN_S
    from lab.scenarios.restart import restart_in_place as run

    return run(stack, network, gate_timeout=gate_timeout, down_s=DOWN_S if down_s is None else down_s, say=say)


def drain(stack: str, pop: str, action: str) -> tuple[int, str]:
    """``anycast-health --drain``/``--undrain`` (``action``) on an anycast PoP of the running lab: (exit, output).
    LabError if ``pop`` is not one of its anycast PoPs."""
    from lab.drivers.base import pop_driver
    from lab.state import load_state

    pops = load_state(stack)["pops"]
    pst = pops.get(pop)
    if pst is None or pst["mode"] != "anycast":
        anycast = ", ".join(c for c, p in sorted(pops.items()) if p["mode"] == "anycast")
        raise LabError(f"'{pop}' is not an anycast PoP of the {stack} lab ({anycast})")
    return pop_driver(pst).agent_cli(f"--{action}")


def running_stacks() -> list[str]:
    """Stacks with a running lab, from the backbone namespaces ``acl-<stack>-bb``."""
    return sorted(ns[len("acl-"):-len("-bb")] for ns in list_namespaces("acl-") if ns.endswith("-bb"))


def resolve_namespace(name: str, stack: str | None) -> str:
    """Map a short name (client, PoP code, u-<code>, bb) to its namespace; raise LabError if none or ambiguous."""
    all_ns = list_namespaces(namespace_prefix(stack))
    if name in all_ns:
        return name
    hits = [ns for ns in all_ns if ns.split("-", 2)[-1] in (f"c-{name}", f"p-{name}", f"q-{name}", name)]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise LabError(f"no lab namespace for '{name}' (running: {', '.join(all_ns) or 'none'})")
    raise LabError(f"'{name}' is ambiguous: {', '.join(hits)}; pass --stack")


def lab_observations(stack: str, network: Network) -> tuple[list[Observation], dict[str, ProbeInfo], list[str]]:
    """``anycast catchment --lab``: every client of the running lab asked which PoP answers it:
    (observations, the clients as probes, the PoPs in the lab). LabError if that lab is not running."""
    from lab.scenarios.catchment import lab_observations as observe

    return observe(stack, network)
