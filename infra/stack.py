"""Read a stack's network document straight from ``Pulumi.<stack>.yaml``, so nothing needs the Pulumi CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from infra.model import ConfigError, Network, parse_network

PROJECT = "anycast"
NETWORK_KEY = f"{PROJECT}:network"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def stack_file(stack: str, root: Path | None = None) -> Path:
    return (root or PROJECT_ROOT) / f"Pulumi.{stack}.yaml"


def read_stack_config(stack: str, root: Path | None = None) -> dict[str, Any]:
    """The ``config:`` mapping of a stack file; ConfigError if the file is missing or not YAML."""
    path = stack_file(stack, root)
    if not path.is_file():
        known = sorted(p.name.split(".")[1] for p in path.parent.glob("Pulumi.*.yaml"))
        raise ConfigError([f"--stack: no stack file {path.name} (stacks here: {', '.join(known) or 'none'})"])
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path.name}: not valid YAML: {exc}"]) from None
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(config, dict):
        raise ConfigError([f"{path.name}: has no 'config:' mapping"])
    return config


def load_network(stack: str, root: Path | None = None) -> Network:
    """The validated network of ``stack``; ConfigError names the file and every field at fault."""
    config = read_stack_config(stack, root)
    name = stack_file(stack, root).name
    if NETWORK_KEY not in config:
        raise ConfigError([f"{name}: has no '{NETWORK_KEY}' key"])
    return parse_network(config[NETWORK_KEY], source=name)
