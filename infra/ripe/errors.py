"""Errors of the RIPE clients, and RIPE's ``errormessages`` turned into readable text.

Every exception here carries a message meant for a person; the CLI prints ``str(exc)`` and nothing else, so no
traceback and never a credential (messages are built from RIPE's answer and our own object keys only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from infra.untrusted.text import printable

# RIPE's 401 template (RIPE-NCC/ripe-database-documentation docs/03.RIPE-Database-Structure/11.REST-API-Data-model.md):
# "Authorisation for [%s] %s failed\nusing \"%s:\"\nnot authenticated by: %s".
_AUTH_RE = re.compile(
    r'^Authorisation for \[(?P<type>[^\]]+)\] (?P<key>.+?) failed\s+using "(?P<attr>[^"]+):"\s+'
    r"(?:not authenticated by: (?P<mnts>.*)|no valid maintainer found)", re.S)
# The space itself (not a route object) answered for the prefix: its holder must authorise.
_SPACE_TYPES = {"inetnum", "inet6num"}


class RipeError(Exception):
    """Base of every error the RIPE clients raise; ``str()`` is the whole message for the user."""


class BadInput(RipeError):
    """The request cannot be made as asked: bad option, URL or configuration (exit code 2)."""


class CredentialError(BadInput):
    """The API key is missing or malformed (exit code 2)."""


class RipeUnavailable(RipeError):
    """RIPE could not be reached or kept failing (timeouts, 5xx, 429) within the retry budget."""


class RipeProtocolError(RipeError):
    """RIPE answered something this client cannot read (not JSON, not the expected shape)."""


@dataclass
class RipeRefused(RipeError):
    """RIPE answered with a 4xx: the request was understood and refused."""

    status: int
    action: str
    messages: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        # Messages and hints quote the server's text: printable() keeps escape sequences off the user's terminal.
        lines = [f"RIPE refused to {self.action} (HTTP {self.status})" + (":" if self.messages else "")]
        lines += ["  " + printable(m, 2000, one_line=False).replace("\n", "\n  ") for m in self.messages]
        lines += [f"hint: {printable(h, 2000)}" for h in self.hints]
        return "\n".join(lines)


@dataclass(frozen=True)
class ErrorMessage:
    severity: str
    text: str
    attribute: str | None = None

    def __str__(self) -> str:
        where = f" (attribute {self.attribute})" if self.attribute else ""
        return f"{self.severity}: {self.text}{where}"


def _substitute(template: str, args: list[Any]) -> str:
    """printf-style ``%s``/``%d`` substitution in order; ``%%`` is a literal percent, missing args stay empty."""
    values = iter(str(a.get("value", "")) if isinstance(a, dict) else "" for a in args)
    return re.sub(r"%%|%[sd]", lambda m: "%" if m[0] == "%%" else next(values, ""), template)


def error_messages(body: Any) -> list[ErrorMessage]:
    """The ``errormessages`` of a RIPE JSON body, with the ``%s`` arguments substituted (ripe-database-documentation REST-API-Data-model.md)."""
    if not isinstance(body, dict) or not isinstance(body.get("errormessages"), dict):
        return []
    raw = body["errormessages"].get("errormessage") or []
    out = []
    for m in raw if isinstance(raw, list) else []:
        if not isinstance(m, dict):
            continue
        attr = m.get("attribute")
        attr_name = printable(attr["name"], 40) if isinstance(attr, dict) and "name" in attr else None
        args = m.get("args")
        text = _substitute(str(m.get("text", ""))[:4000], args if isinstance(args, list) else []).strip()
        out.append(ErrorMessage(printable(m.get("severity", "Error"), 20), printable(text.replace("\r\n", "\n"), 2000, one_line=False),
                                attr_name))
    return out


def authorisation_hints(messages: list[ErrorMessage], maintainer: str | None) -> list[str]:
    """Tell the user which maintainer must authorise, from RIPE's "Authorisation for [...] failed" errors.

    The route(6) object needs its own ``mnt-by`` *and* the address space's ``mnt-routes`` (else ``mnt-lower``, else
    ``mnt-by``) (ripe-database-documentation
    docs/10.Authorisation/07.Protection-of-Route-Object-Space.md). With leased space that second maintainer belongs to the lessor, which is the
    usual reason a first ``apply`` fails.
    """
    hints = []
    space_seen = False
    for m in messages:
        match = _AUTH_RE.match(m.text)
        if not match:
            continue
        obj_type, key, attr = match["type"], match["key"].strip(), match["attr"]
        mnts = [x.strip() for x in (match["mnts"] or "").split(",") if x.strip()]
        who = " or ".join(mnts) if mnts else "(no valid maintainer on that object)"
        if obj_type in _SPACE_TYPES or (obj_type in ("route", "route6") and attr == "mnt-routes"):
            # RIPE lists mnt-routes, mnt-lower and mnt-by of the same space; the first one is the one that applies.
            if space_seen:
                continue
            space_seen = True
            hints.append(
                f"the address space {obj_type} {key} is protected by its {attr}: {who}. The holder of that "
                f"maintainer (for leased space: the lessor) must authorise the route object, e.g. by adding "
                f"{maintainer or 'your maintainer'} to mnt-routes of {key}, or by creating the object for you.")
        elif attr == "mnt-by" and maintainer and maintainer in mnts:
            hints.append(
                f"your API key is not accepted for {maintainer}: check that the key is valid, not expired, "
                f"bound to {maintainer} (or unrestricted), and that {maintainer} has 'auth: SSO <your e-mail>'.")
        else:
            hints.append(f"{obj_type} {key} must be authorised by {attr}: {who}.")
    return list(dict.fromkeys(hints))
