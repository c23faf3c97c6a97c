"""Every rendered file of the dev stack equals its golden copy (regenerate with `make golden`, review as a diff)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.cli.render import write_rendered
from infra.model import Network
from tests.conftest import TEST_PASSWORD
from tests.regenerate_golden import GOLDEN


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory, dev_network: Network) -> Path:
    out = tmp_path_factory.mktemp("dev")
    write_rendered(dev_network, TEST_PASSWORD, out)
    return out


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_same_file_set(rendered: Path) -> None:
    assert _files(rendered) == _files(GOLDEN), "run `make golden` and review `git diff tests/golden`"


@pytest.mark.parametrize("name", _files(GOLDEN))
def test_file_matches_golden(rendered: Path, name: str) -> None:
    assert (rendered / name).read_text(encoding="utf-8") == (GOLDEN / name).read_text(encoding="utf-8"), (
        f"{name} differs from its golden copy: run `make golden` and review `git diff tests/golden`")
