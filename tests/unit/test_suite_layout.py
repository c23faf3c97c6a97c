"""The test suite's own rules: code shared by tests lives in tests/helpers (or another non-test module), never in a
``test_*.py`` file that others import; every module under tests/lab is marked ``lab`` (the fast tier leaves it out,
and lab modules never run at the same time: they share the dev namespaces)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers.tiers import SLOW, is_slow

TESTS = Path(__file__).resolve().parents[1]


def _imported_modules(path: Path) -> list[str]:
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append(node.module)
    return out


def imports_of_test_modules(path: Path) -> list[str]:
    return [m for m in _imported_modules(path) if m.startswith("tests.") and m.rsplit(".", 1)[-1].startswith("test_")]


def test_no_test_module_imports_another() -> None:
    offenders = {str(p.relative_to(TESTS)): found for p in sorted(TESTS.rglob("*.py"))
                 if (found := imports_of_test_modules(p))}
    assert offenders == {}, "move what they share to tests/helpers/"


def test_the_check_sees_a_test_module_import(tmp_path: Path) -> None:
    bad = tmp_path / "test_x.py"
    bad.write_text("from tests.lab.test_lab_dev import REASON\nimport tests.unit.test_program\nfrom tests.helpers import program\n")
    assert imports_of_test_modules(bad) == ["tests.lab.test_lab_dev", "tests.unit.test_program"]


def test_every_lab_module_is_marked_lab() -> None:
    for path in sorted((TESTS / "lab").glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        marks = [ast.unparse(n.value) for n in tree.body if isinstance(n, ast.Assign)
                 and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in n.targets)]
        assert marks and "pytest.mark.lab" in marks[0], f"{path.name}: pytestmark must include pytest.mark.lab"


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test_")}


def test_every_slow_entry_names_a_test() -> None:
    for entry in SLOW:
        path, _, name = entry.partition("::")
        file = TESTS.parent / path
        assert file.is_file(), f"tests/helpers/tiers.py: {path} does not exist"
        assert not name or name in _test_names(file), f"tests/helpers/tiers.py: no {name} in {path}"


def test_slow_matches_parameters_but_not_longer_names() -> None:
    assert is_slow("tests/unit/test_bad_input.py::test_unreadable_stack_files[content1-nested too deeply]")
    assert is_slow("tests/validators/test_health_agent_bird.py::test_crash_loop_is_damped")
    assert not is_slow("tests/unit/test_bad_input.py::test_unreadable_stack_files_more")
