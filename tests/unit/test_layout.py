"""The layout follows the data flow: only the Pulumi components (and the program and policy pack that use them)
import ``pulumi``; the model, renderers, outputs, clients, CLI and lab run without a Pulumi engine."""

from __future__ import annotations

import ast
from pathlib import Path

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
