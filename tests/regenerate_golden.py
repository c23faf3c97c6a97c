"""Rewrite the golden files of the dev stack: `make golden`, then review the change with `git diff tests/golden`."""

from __future__ import annotations

import shutil
from pathlib import Path

from infra.cli.render import write_rendered
from infra.model.stack import load_network
from tests.conftest import TEST_PASSWORD

GOLDEN = Path(__file__).resolve().parent / "golden" / "dev"


def main() -> None:
    if GOLDEN.exists():
        shutil.rmtree(GOLDEN)
    count = write_rendered(load_network("dev"), TEST_PASSWORD, GOLDEN)
    for path in GOLDEN.rglob("*"):
        if path.is_file():
            path.chmod(0o644)  # the real password never lands here; keep the files ordinary in git
    print(f"wrote {count} golden files under {GOLDEN}")


if __name__ == "__main__":
    main()
