"""The layout follows the data flow: only the Pulumi components (and the program and policy pack that use them)
import ``pulumi``; the model, renderers, outputs, clients, CLI and lab run without a Pulumi engine. Packages import
only downwards (contracts <- model <- renderers/generators <- components/lab/clients <- CLI), never in a cycle."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Code that runs inside a Pulumi engine: the program, its components, the policy pack.
MAY_IMPORT_PULUMI = ("__main__.py", "infra/components/", "policies/")
PACKAGES = ("infra", "userdata", "lab", "policies", "bench")


def _pulumi_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        found += [n for n in names if n == "pulumi" or n.startswith(("pulumi.", "pulumi_", "ediri_vultr"))]
    return found


def _sources() -> list[Path]:
    return [ROOT / "__main__.py"] + [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]


def test_only_components_import_pulumi() -> None:
    offenders = {}
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        imports = _pulumi_imports(path)
        if imports and not rel.startswith(MAY_IMPORT_PULUMI) and rel != "bench/program.py":
            offenders[rel] = imports
    assert offenders == {}, f"pulumi imported outside infra/components: {offenders}"


def test_components_do_import_pulumi() -> None:
    # The check above must be able to fail: the component modules are where the imports are.
    components = sorted((ROOT / "infra" / "components").glob("*.py"))
    assert [p.name for p in components if _pulumi_imports(p)] == ["gate.py", "geodns.py", "network.py", "pop.py", "ripe_routes.py", "tls.py"]


def test_cli_modules_live_in_infra_cli() -> None:
    # Library modules raise; only the CLI prints. A module that registers sub-commands belongs to infra/cli
    # (or to lab/cli.py, the lab's own command group).
    registering = [p.relative_to(ROOT).as_posix() for p in _sources()
                   if "def register(" in p.read_text(encoding="utf-8")]
    assert all(r.startswith("infra/cli/") or r == "lab/cli.py" for r in registering), registering


# The import direction, bottom first: a package may import its own layer or a lower one, never a higher one. The
# stack files (Pulumi.<stack>.yaml) and infra/data are the config the model reads; contracts (ports, paths, schemas
# shared by renderers, components, lab and agents) sit below everything. A new package must be placed here.
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    # stdlib (and pydantic) only: wire contracts, writing files, printing text, reading untrusted input
    ("contracts and I/O safety", frozenset({"contracts", "infra.contracts", "infra.safe_write", "infra.terminal", "infra.untrusted"})),
    ("model", frozenset({"infra.model"})),
    ("renderers and generators", frozenset({"userdata", "infra.derived", "infra.monitoring", "infra.docs"})),
    ("components, lab and clients", frozenset({"infra.components", "infra.readiness", "infra.ripe", "infra.catchment",
                                               "infra.preflight",
                                               "lab", "policies"})),
    ("CLI and program", frozenset({"infra.cli", "__main__", "bench"})),
)
LAYER_OF = {unit: i for i, (_, units) in enumerate(LAYERS) for unit in units}
OURS = ("infra", "userdata", "lab", "policies", "bench", "contracts")


def _unit(module: str) -> str:
    """The package a module belongs to for the direction rule: infra's sub-packages and modules count one by one."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "infra" and len(parts) > 1 else parts[0]


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level == 0:
        base = node.module or ""
    else:  # relative: from the module's package, one level up per extra dot
        package = module.split(".") if is_package else module.split(".")[:-1]
        base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
    # ``from infra import model`` imports the sub-package infra.model.
    return [f"{base}.{a.name}" if base in OURS else base for a in node.names]


def import_graph(root: Path, paths: Iterable[Path]) -> dict[str, set[str]]:
    """unit -> the other units it imports (at module level or inside functions), from an AST walk of ``paths``."""
    graph: dict[str, set[str]] = {}
    for path in paths:
        module = _module_name(path, root)
        src = _unit(module)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for name in _imported(node, module, path.name == "__init__.py"):
                if name.split(".")[0] in OURS and (dst := _unit(name)) not in (src, "infra"):
                    graph.setdefault(src, set()).add(dst)
    return graph


def direction_problems(graph: dict[str, set[str]]) -> list[str]:
    """Unplaced packages, upward imports and cycles between packages, one line each."""
    problems = [f"{u}: not in LAYERS (place the new package in tests/unit/test_layout.py)"
                for u in sorted(set(graph) | {d for ds in graph.values() for d in ds}) if u not in LAYER_OF]
    for src in sorted(graph):
        for dst in sorted(graph[src]):
            if src in LAYER_OF and dst in LAYER_OF and LAYER_OF[dst] > LAYER_OF[src]:
                problems.append(f"{src} ({LAYERS[LAYER_OF[src]][0]}) imports {dst} ({LAYERS[LAYER_OF[dst]][0]}): "
                                "imports go down the layers only")
    # Cycles within a layer (one across layers has an upward import, reported above): depth-first search, each cycle
    # reported once, by its smallest rotation.
    cycles: set[tuple[str, ...]] = set()

    def visit(node: str, trail: list[str]) -> None:
        for nxt in sorted(d for d in graph.get(node, ()) if LAYER_OF.get(d) == LAYER_OF.get(node)):
            if nxt in trail:
                cycle = trail[trail.index(nxt):]
                k = cycle.index(min(cycle))
                cycles.add(tuple(cycle[k:] + cycle[:k]))
            else:
                visit(nxt, [*trail, nxt])

    for start in sorted(graph):
        visit(start, [start])
    problems += [f"import cycle: {' -> '.join([*c, c[0]])}" for c in sorted(cycles)]
    return problems


def test_packages_import_downwards_without_cycles() -> None:
    graph = import_graph(ROOT, _sources())
    assert direction_problems(graph) == []
    # The walk sees the real imports: the CLI reaches the model and the components use the renderers.
    assert "infra.model" in graph["infra.cli"] and "userdata" in graph["infra.components"]


@pytest.mark.parametrize(("files", "expected"), [
    # the model importing the CLI (inside a function, where a lazy import hides from a casual reader)
    ({"infra/model/x.py": "def f():\n    from infra.cli import main\n"},
     ["infra.model (model) imports infra.cli (CLI and program): imports go down the layers only"]),
    # a relative import upwards, from a renderer to the lab
    ({"userdata/x.py": "from ..lab import topology\n"},
     ["userdata (renderers and generators) imports lab (components, lab and clients): imports go down the layers only"]),
    # two clients importing each other
    ({"infra/ripe/x.py": "import infra.catchment.atlas\n", "infra/catchment/y.py": "from infra.ripe import client\n"},
     ["import cycle: infra.catchment -> infra.ripe -> infra.catchment"]),
    # a package nobody placed
    ({"infra/newthing/x.py": "from infra.model import Network\n"},
     ["infra.newthing: not in LAYERS (place the new package in tests/unit/test_layout.py)"]),
    # contracts are importable by everyone
    ({"infra/model/x.py": "from infra import contracts\n", "lab/y.py": "import contracts.ports\n"}, []),
])
def test_direction_check_catches_violations(tmp_path: Path, files: dict[str, str], expected: list[str]) -> None:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    assert direction_problems(import_graph(tmp_path, sorted(tmp_path.rglob("*.py")))) == expected
