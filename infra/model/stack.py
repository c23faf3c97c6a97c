"""Read a stack's network document straight from ``Pulumi.<stack>.yaml``, so nothing needs the Pulumi CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infra.model import stack_yaml
from infra.model.errors import ConfigError
from infra.model.schema import Network, parse_network

PROJECT = "anycast"
NETWORK_KEY = f"{PROJECT}:network"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def project_root() -> Path:
    """Like the Pulumi CLI, the closest folder holding ``Pulumi.yaml``, from the current one upwards (DetectProjectPathFrom
    in pulumi/pulumi sdk/go/common/workspace/paths.go); ConfigError if there is none, rather than another project's."""
    cwd = Path.cwd()
    for folder in (cwd, *cwd.parents):
        if (folder / "Pulumi.yaml").is_file():
            return folder
    raise ConfigError([f"no Pulumi.yaml in {cwd} or above it: run this in the project's folder (the one with "
                       "Pulumi.yaml and the Pulumi.<stack>.yaml files)"])


def stack_file(stack: str, root: Path | None = None) -> Path:
    return (root or project_root()) / f"Pulumi.{stack}.yaml"


def read_stack_config(stack: str, root: Path | None = None) -> dict[str, Any]:
    """The ``config:`` mapping of a stack file; ConfigError if the file is missing or not YAML."""
    path = stack_file(stack, root)
    if not path.is_file():
        known = sorted(p.name.split(".")[1] for p in path.parent.glob("Pulumi.*.yaml"))
        raise ConfigError([f"--stack: no stack file {path.name} (stacks here: {', '.join(known) or 'none'})"])
    doc = stack_yaml.load(path)  # read as the Pulumi CLI reads it: see infra/model/stack_yaml.py
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(config, dict):
        raise ConfigError([f"{path.name}: has no 'config:' mapping"])
    return _namespaced(config, path)


def _namespaced(config: dict[str, Any], path: Path) -> dict[str, Any]:
    """Pulumi reads a config key without a ``project:`` prefix as this project's (stackConfigNamespacedWithProject in
    pulumi/pulumi sdk/go/common/workspace/loaders.go); when both spellings are there, which one wins is Go's map order."""
    out: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in config.items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        if full in out:
            raise ConfigError([f"{path.name}: config has both '{spelled[full]}' and '{key}', the same key to Pulumi; "
                               "keep one"])
        out[full], spelled[full] = value, key
    return out


def load_network(stack: str, root: Path | None = None) -> Network:
    """The validated network of ``stack``; ConfigError names the file and every field at fault."""
    config = read_stack_config(stack, root)
    name = stack_file(stack, root).name
    if NETWORK_KEY not in config:
        raise ConfigError([f"{name}: has no '{NETWORK_KEY}' key"])
    return parse_network(config[NETWORK_KEY], source=name)
