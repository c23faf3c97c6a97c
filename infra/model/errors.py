"""Validation errors as one ``field.path: message`` line each, in the config's own key names."""

from __future__ import annotations

import re

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from infra.model.fields import shown


def _field_error(field: str, message: str) -> PydanticCustomError:
    """An error for ``field`` (relative to the model being validated); :func:`format_errors` joins the path."""
    return PydanticCustomError("anycast", "{message}", {"field": field, "message": message})


class ConfigError(ValueError):
    """A network document that does not validate; ``errors`` holds one ``path: message`` line per problem."""

    def __init__(self, errors: list[str], source: str = "") -> None:
        self.errors = errors
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(prefix + e for e in errors))


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def format_errors(exc: ValidationError) -> list[str]:
    """pydantic errors as ``field.path: message`` lines, in the config's own key names."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "union["))))
        ctx = err.get("ctx") or {}
        if err["type"] == "anycast":
            path = _path(loc + tuple(_split(ctx["field"])))
            lines.append(f"{path}: {ctx['message']}")
            continue
        # A union of IP types reports once per member; the first is enough.
        path = _path(tuple(p for p in loc if not (isinstance(p, str) and ("IPv4" in p or "IPv6" in p))))
        kind, value = err["type"], err.get("input")
        if kind == "missing":
            msg = "is required"
        elif kind == "extra_forbidden":
            msg = "is not a known field (check the spelling; see the field list in docs/config.md)"
        elif kind in ("less_than_equal", "greater_than_equal", "less_than", "greater_than"):
            bound = {"less_than_equal": "at most {le}", "greater_than_equal": "at least {ge}",
                     "less_than": "less than {lt}", "greater_than": "more than {gt}"}[kind].format(**ctx)
            msg = f"{shown(value)} is out of range: must be {bound}"
        elif kind in ("int_parsing", "int_type", "int_from_float"):
            msg = f"{shown(value)} is not a whole number"
        elif kind == "literal_error":
            msg = f"{shown(value)} is not one of {ctx.get('expected')}"
        else:
            msg = err["msg"].removeprefix("Value error, ")
        path = path or "network"
        if not any(x.startswith(path + ": ") for x in lines):
            lines.append(f"{path}: {msg}")
    return lines


def _split(field: str) -> list[int | str]:
    parts: list[int | str] = []
    for token in re.findall(r"[^.\[\]]+|\[\d+\]", field):
        parts.append(int(token[1:-1]) if token.startswith("[") else token)
    return parts
