"""lab/'s layout (docs/lab.md "Layout"): the sub-packages import each other in one direction only, and `lab check` is a
registry of groups that each module adds itself to."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lab import checks

LAB = Path(__file__).resolve().parents[2] / "lab"


def _part(module: str) -> str | None:
    """lab.checks.core -> checks; lab.state -> state; not lab -> None."""
    parts = module.split(".")
    return parts[1] if parts[0] == "lab" and len(parts) > 1 else None


def import_graph() -> dict[str, set[str]]:
    """Sub-package (or top-level module) of lab -> the other ones its files import (at any depth of the file)."""
    graph: dict[str, set[str]] = {}
    for path in LAB.rglob("*.py"):
        rel = path.relative_to(LAB.parent).with_suffix("")
        src = _part(".".join(rel.parts))
        if src is None or src == "__init__":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] if node.module != "lab" else [f"lab.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                dst = _part(name)
                if dst is not None and dst != src:
                    graph.setdefault(src, set()).add(dst)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first walk (each reported once, from where the walk met it)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                walk(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node, [node])
    return found


def test_no_import_cycles_between_lab_parts() -> None:
    graph = import_graph()
    assert {"drivers", "checks", "scenarios", "cloud", "monitor", "boot"} <= set(graph)  # the parts that import others
    assert cycles(graph) == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"checks": {"tls"}, "tls": {"checks"}}) == [["checks", "tls", "checks"]]
    assert cycles({"checks": {"net"}, "net": set()}) == []


def test_cli_uses_only_the_public_api() -> None:
    for path in (LAB / "cli.py", LAB.parent / "infra" / "cli" / "catchment.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        used = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
                and n.module.startswith("lab")}
        used |= {f"lab.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "lab"
                 for a in n.names}
        assert used <= {"lab", "lab.api"}, f"{path.name} reaches into {sorted(used - {'lab', 'lab.api'})}"


def test_check_groups_register_themselves_in_order() -> None:
    names = [g.name for g in checks.groups()]
    assert names == ["bgp", "multi-as", "neighbor6", "routes", "leak", "clients", "dnssec", "tls", "logs", "machines", "monitoring",
                     "audit", "failover", "watchdog", "multi-as convergence", "health", "multi-as drain", "freeze"]


def test_a_group_name_is_registered_once() -> None:
    def other(ctx: checks.Context) -> None:
        return None

    other.__module__ = "somewhere.else"
    with pytest.raises(ValueError, match="registered twice"):
        checks.register_group(1, "bgp")(other)
