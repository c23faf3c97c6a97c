"""pydantic validation of untrusted documents, with errors as one line naming the JSON path.

``UntrustedInput("--results: r.json: $[3].result.rt: Input should be a valid number")`` instead of a KeyError
traceback or a field quietly read as something else.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from infra.untrusted.errors import UntrustedInput
from infra.untrusted.text import printable

T = TypeVar("T")
_INSTANCE = re.compile(r" or instance of \w+")  # pydantic's "a valid dictionary or instance of PopOut": ours, not theirs


class Loose(BaseModel):
    """A document from a server or tool we do not control: unknown fields are ignored (APIs grow), the fields we
    use are checked strictly (no ``"12"`` for 12), floats must be finite."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True, allow_inf_nan=False)


def json_path(loc: tuple[int | str, ...]) -> str:
    out = "$"
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}"
        else:
            out += f"[{printable(part, 40)!r}]"
    return out


@lru_cache(maxsize=64)
def _adapter(kind: Any) -> TypeAdapter[Any]:
    """One adapter per schema: building one costs milliseconds, validating with it microseconds."""
    return TypeAdapter(kind)


def validate(kind: type[T], data: Any, source: str) -> T:
    """``data`` as ``kind`` (a pydantic model or any type TypeAdapter takes); UntrustedInput naming the first bad
    field's JSON path (and how many more there are)."""
    try:
        return _adapter(kind).validate_python(data)  # type: ignore[arg-type]
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        first = errors[0]
        # Union members each report; the tag-less location is the useful one.
        loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith(("function-", "tagged-"))))
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        msg = _INSTANCE.sub("", str(first["msg"]).removeprefix("Value error, "))
        raise UntrustedInput(f"{source}: {json_path(loc)}: {printable(msg, 160)}{more}") from None
