"""Read a stack's network document straight from ``Pulumi.<stack>.yaml``, so nothing needs the Pulumi CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from infra.model.errors import ConfigError
from infra.model.schema import Network, parse_network

PROJECT = "anycast"
NETWORK_KEY = f"{PROJECT}:network"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def project_root() -> Path:
    """Like the Pulumi CLI, use the project in the current directory; else the one this package belongs to."""
    cwd = Path.cwd()
    return cwd if (cwd / "Pulumi.yaml").is_file() else PROJECT_ROOT


def stack_file(stack: str, root: Path | None = None) -> Path:
    return (root or project_root()) / f"Pulumi.{stack}.yaml"


def read_stack_config(stack: str, root: Path | None = None) -> dict[str, Any]:
    """The ``config:`` mapping of a stack file; ConfigError if the file is missing or not YAML."""
    path = stack_file(stack, root)
    if not path.is_file():
        known = sorted(p.name.split(".")[1] for p in path.parent.glob("Pulumi.*.yaml"))
        raise ConfigError([f"--stack: no stack file {path.name} (stacks here: {', '.join(known) or 'none'})"])
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path.name}: not UTF-8 text (byte {exc.start}); save the file as UTF-8"]) from None
    except OSError as exc:
        raise ConfigError([f"{path.name}: cannot read it: {exc.strerror or exc}"]) from None
    except RecursionError:
        raise ConfigError([f"{path.name}: nested too deeply to be a stack file"]) from None
    except ValueError as exc:  # PyYAML converts digits with int(): Python refuses more than 4300 of them
        raise ConfigError([f"{path.name}: {str(exc).split(';')[0]} (a number with thousands of digits?)"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([f"{path.name}: not valid YAML{where}: {problem}"]) from None
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
