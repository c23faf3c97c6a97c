"""Where a lab keeps its state (``.lab/<stack>/state.json``), and reading and writing it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lab.net.netns import LabError

LAB_ROOT = Path(__file__).resolve().parents[1] / ".lab"


def lab_dir(stack: str, root: Path | None = None) -> Path:
    return (root or LAB_ROOT) / stack


def state_path(stack: str, root: Path | None = None) -> Path:
    return lab_dir(stack, root) / "state.json"


def load_state(stack: str) -> dict[str, Any]:
    path = state_path(stack)
    if not path.exists():
        raise LabError(f"no lab state at {path}: run `anycast lab up --stack {stack}` first")
    return dict(json.loads(path.read_text(encoding="utf-8")))


def save_state(stack: str, state: dict[str, Any]) -> None:
    state_path(stack).write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")
