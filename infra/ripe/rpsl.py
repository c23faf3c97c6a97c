"""RPSL objects as ordered attribute lists: parse the text form, convert to and from RIPE's REST JSON.

An object is an ordered list of ``(name, value)`` pairs; names repeat (``descr``, ``mnt-by``, ``remarks``) and the
first attribute names the type and holds the key
(RIPE-NCC/ripe-database-documentation ``docs/03.RIPE-Database-Structure/11.REST-API-Data-model.md``). Both forms keep that order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import ip_network
from typing import Any

from infra.ripe.errors import RipeProtocolError
from infra.ripe.schema import Answer
from infra.untrusted.errors import UntrustedInput
from infra.untrusted.schema import validate
from infra.untrusted.text import printable

# RFC 2622 2: an attribute name is letters, digits, "-" and "_", starting with a letter, followed by ":".
_ATTR_RE = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9_-]*):\s*(?P<value>.*)$")
# Attributes the database writes itself; they are never sent back in a PUT.
GENERATED = frozenset({"created", "last-modified"})


class RpslSyntaxError(ValueError):
    """A text object that is not RPSL; the message names the line."""


@dataclass(frozen=True)
class Attribute:
    name: str
    value: str


@dataclass(frozen=True)
class RpslObject:
    """One RPSL object; ``attributes[0]`` is the type attribute (``route: 192.0.2.0/24``)."""

    attributes: tuple[Attribute, ...]

    @property
    def type(self) -> str:
        return self.attributes[0].name

    def values(self, name: str) -> list[str]:
        return [a.value for a in self.attributes if a.name == name]

    def first(self, name: str) -> str | None:
        found = self.values(name)
        return found[0] if found else None

    @property
    def key(self) -> str:
        """The primary key: route(6) objects join prefix and origin (``192.0.2.0/24AS64500``)."""
        if self.type in ("route", "route6"):
            return f"{self.attributes[0].value}{(self.first('origin') or '').upper()}"
        return self.attributes[0].value

    def without_generated(self) -> RpslObject:
        return RpslObject(tuple(a for a in self.attributes if a.name not in GENERATED))

    def to_json(self, source: str) -> dict[str, Any]:
        """The REST request body for this object (ripe-database-documentation REST-API-Data-model.md)."""
        return {"objects": {"object": [{
            "type": self.type,
            "source": {"id": source},
            "attributes": {"attribute": [{"name": a.name, "value": a.value} for a in self.attributes]},
        }]}}

    def to_text(self) -> str:
        return "".join(f"{a.name + ':':<16}{a.value}\n" for a in self.attributes)


def make(pairs: Iterable[tuple[str, str]]) -> RpslObject:
    attrs = tuple(Attribute(n, v) for n, v in pairs)
    if not attrs:
        raise ValueError("an RPSL object needs at least one attribute")
    return RpslObject(attrs)


def from_json(body: Any) -> list[RpslObject]:
    """The objects of a REST response; RipeProtocolError naming the JSON path if the body does not have the
    documented shape (infra/ripe/schema.py). Values are made printable: they are shown in plans and messages."""
    if not isinstance(body, dict):
        raise RipeProtocolError("RIPE answered JSON without the expected objects.object[].attributes list")
    try:
        answer = validate(Answer, body, "RIPE's answer")
    except UntrustedInput as exc:
        raise RipeProtocolError(f"{exc}; expected objects.object[].attributes.attribute[] with name and value") from None
    return [make((a.name, printable(a.value)) for a in obj.attributes.attribute) for obj in answer.objects.object]


def parse_text(text: str) -> list[RpslObject]:
    """Parse RPSL text: objects separated by blank lines, ``#`` comment lines skipped.

    Continuation lines start with a space, a tab or ``+`` (RFC 2622 2) and are joined to the previous value with one
    space, so ``descr: a`` + ``+ b`` reads ``a b``. End-of-line ``#`` comments are kept: in RIPE's data ``#`` can
    belong to the value, so stripping is left to the caller. Raises RpslSyntaxError naming the line.
    """
    objects: list[RpslObject] = []
    current: list[list[str]] = []

    def flush() -> None:
        if current:
            objects.append(make((n, v) for n, v in current))
            current.clear()

    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if line.startswith("#") or line.startswith("%"):
            continue
        if not line:
            flush()
            continue
        if line[0] in " \t+":
            if not current:
                raise RpslSyntaxError(f"line {lineno}: continuation line before any attribute")
            more = line[1:].strip()
            current[-1][1] = f"{current[-1][1]} {more}".strip() if more else current[-1][1]
            continue
        m = _ATTR_RE.match(line)
        if not m:
            raise RpslSyntaxError(f"line {lineno}: '{line[:40]}' is neither an attribute nor a continuation")
        current.append([m["name"].lower(), m["value"].strip()])
    flush()
    return objects


# RIPE's route/route6 template (ripe-database-documentation docs/04.RPSL-Object-Types/01.Descriptions-of-Primary-Objects.md),
# plus admin-c/tech-c seen on stored objects and the generated pair.
ROUTE_MANDATORY = ("origin", "mnt-by", "source")
ROUTE_SINGLE = frozenset({"route", "route6", "origin", "source", "aggr-mtd", "aggr-bndry", "export-comps", "components"})
ROUTE_OPTIONAL = frozenset({"descr", "remarks", "notify", "org", "member-of", "holes", "pingable", "ping-hdl", "inject",
                            "aggr-mtd", "aggr-bndry", "export-comps", "components", "mnt-lower", "mnt-routes",
                            "admin-c", "tech-c", *GENERATED})
_ASN_RE = re.compile(r"^AS\d{1,10}$", re.I)
_SOURCE_RE = re.compile(r"^[A-Z][A-Z0-9-]*$", re.I)


def route_problems(obj: RpslObject) -> list[str]:
    """Why ``obj`` is not a valid RIPE route/route6 object; [] if it is. Checks attributes, not authorisation."""
    if obj.type not in ("route", "route6"):
        return [f"'{obj.type}' is not route or route6"]
    problems = []
    known = {obj.type, *ROUTE_MANDATORY, *ROUTE_OPTIONAL}
    counts: dict[str, int] = {}
    for a in obj.attributes:
        counts[a.name] = counts.get(a.name, 0) + 1
        if a.name not in known:
            problems.append(f"'{a.name}' is not an attribute of {obj.type}")
    for name in ROUTE_MANDATORY:
        if name not in counts:
            problems.append(f"mandatory attribute '{name}' is missing")
    for name in sorted(ROUTE_SINGLE & counts.keys()):
        if counts[name] > 1:
            problems.append(f"'{name}' may appear only once, found {counts[name]}")
    try:
        net = ip_network(obj.attributes[0].value, strict=True)
        if (net.version == 4) != (obj.type == "route"):
            problems.append(f"{obj.type}: {net} is IPv{net.version}")
    except ValueError:
        problems.append(f"{obj.type}: '{obj.attributes[0].value}' is not a prefix")
    origin = obj.first("origin")
    if origin is not None and not _ASN_RE.match(origin):
        problems.append(f"origin: '{origin}' is not an AS number like AS64500")
    source = obj.first("source")
    if source is not None and not _SOURCE_RE.match(source):
        problems.append(f"source: '{source}' is not a database name")
    return problems
