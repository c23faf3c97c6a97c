"""Strict JSON both ways: in, RFC 8259 only (no ``NaN``/``Infinity``, no duplicate keys, bounded nesting and numbers);
out, ``allow_nan=False`` so a non-finite float is an error here instead of a file other tools cannot read.

Python's ``json`` module accepts ``NaN``, ``Infinity`` and ``-Infinity`` by default and writes them too
(https://docs.python.org/3/library/json.html#infinite-and-nan-number-values); neither is JSON, and JavaScript's
``JSON.parse`` (Grafana, browsers) rejects them.
"""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

from infra.untrusted.errors import UntrustedInput
from infra.untrusted.text import printable

# Deepest nesting any document we read has: stack outputs reach 6 levels, Atlas results 4, RIPE answers 7.
MAX_DEPTH = 64


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses to inf
        raise ValueError(f"{text[:40]} is out of the range of a double")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {printable(key, 40)!r}")
        out[key] = value
    return out


def depth_of(value: Any, limit: int = MAX_DEPTH) -> int:
    """The nesting depth of parsed JSON (a scalar is 0), counting iteratively; stops past ``limit``."""
    deepest = 0
    todo: list[tuple[Any, int]] = [(value, 0)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict | list):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            todo += [(v, depth) for v in (item.values() if isinstance(item, dict) else item)]
    return deepest


def parse_json(text: str, source: str, max_depth: int = MAX_DEPTH) -> Any:
    """``text`` as strict JSON; UntrustedInput naming ``source`` and the problem (one line)."""
    try:
        data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float,
                          object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise UntrustedInput(f"{source}: JSON nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise UntrustedInput(f"{source} is not JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None
    except ValueError as exc:  # parse_constant, duplicates, an integer of more than 4300 digits
        raise UntrustedInput(f"{source} is not strict JSON ({printable(exc, 120)})") from None
    if depth_of(data, max_depth) > max_depth:
        raise UntrustedInput(f"{source}: JSON nested deeper than {max_depth} levels")
    return data


def finite(value: float, where: str) -> float:
    """``value`` if it is a finite number; ValueError naming ``where`` otherwise."""
    if not math.isfinite(value):
        raise ValueError(f"{where} is {value}, not a finite number")
    return value


def dumps(data: Any, **kwargs: Any) -> str:
    """``json.dumps`` refusing NaN and infinities (ValueError names the first one's path)."""
    try:
        return json.dumps(data, allow_nan=False, **kwargs)
    except ValueError:
        raise ValueError(f"refusing to write a non-finite number at {_nonfinite_path(data) or '?'}") from None


def _nonfinite_path(data: Any, path: str = "$") -> str | None:
    todo: list[tuple[Any, str]] = [(data, path)]
    while todo:
        item, where = todo.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return where
        if isinstance(item, dict):
            todo += [(v, f"{where}.{k}") for k, v in item.items()]
        elif isinstance(item, list | tuple):
            todo += [(v, f"{where}[{i}]") for i, v in enumerate(item)]
    return None
