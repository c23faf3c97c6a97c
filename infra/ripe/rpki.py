"""ROAs through the RIPE NCC RPKI management API
(https://www.ripe.net/publications/documentation/developer-documentation/rpki-management-api/): list, then publish only what is missing.

Paths ``GET /api/rpki/roas`` and ``POST /api/rpki/roas/publish`` with ``{"added": [...], "deleted": [...]}`` and the
field ``maximalLength`` come from RIPE's rpki-core code and a third-party summary; RIPE's page confirms only the base,
the header and JSON POSTs. The response shape of ``GET /roas`` is read leniently for that reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any

from infra.model import Network
from infra.ripe.credentials import RpkiKey
from infra.ripe.errors import RipeProtocolError, RipeRefused, error_messages
from infra.ripe.transport import RetryPolicy, Transport, base_url
from infra.untrusted.text import printable

RPKI_HOST = "https://my.ripe.net"
API_PATH = "/api/rpki"


@dataclass(frozen=True, order=True)
class Roa:
    asn: int
    prefix: IPv4Network | IPv6Network
    max_length: int

    def to_json(self) -> dict[str, Any]:
        return {"asn": f"AS{self.asn}", "prefix": str(self.prefix), "maximalLength": self.max_length}

    def __str__(self) -> str:
        return f"AS{self.asn} {self.prefix} maxLength {self.max_length}"


def parse_roa(item: Any) -> Roa:
    try:
        asn = str(item["asn"]).upper().removeprefix("AS")
        prefix = ip_network(str(item["prefix"]), strict=True)
        raw_max = item.get("maximalLength", item.get("maxLength"))
        max_length = int(raw_max) if raw_max is not None else prefix.prefixlen
        if not 0 <= int(asn) < 2**32 or not prefix.prefixlen <= max_length <= prefix.max_prefixlen:
            raise ValueError("out of range")
        return Roa(int(asn), prefix, max_length)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise RipeProtocolError(f"the RPKI API returned a ROA this client cannot read: {printable(item, 80)}") from None


class RpkiClient:
    """``roas()`` and ``publish(added, deleted)``; raises RipeRefused, RipeUnavailable, RipeProtocolError."""

    def __init__(self, key: RpkiKey, base_url_: str | None = None, policy: RetryPolicy | None = None,
                 sleep: Callable[[float], None] | None = None, on_retry: Callable[[str], None] | None = None) -> None:
        headers = {"Accept": "application/json", "Content-Type": "application/json", **key.header()}
        self._t = Transport(base_url(base_url_) if base_url_ else RPKI_HOST, headers, policy, sleep, on_retry=on_retry)

    def roas(self) -> list[Roa]:
        reply = self._t.request("GET", f"{API_PATH}/roas", what="list ROAs")
        if reply.status >= 400:
            raise _refused(reply.status, reply.body, reply.text, "list ROAs")
        items = reply.body
        if isinstance(items, dict):  # tolerate a wrapped list
            items = items.get("roas", items.get("items"))
        if not isinstance(items, list):
            why = f" ({reply.problem})" if reply.problem else ""
            raise RipeProtocolError(f"list ROAs: the RPKI API did not answer with a JSON list{why}")
        return [parse_roa(i) for i in items]

    def publish(self, added: list[Roa], deleted: list[Roa]) -> None:
        """One request, so additions and deletions take effect together."""
        what = "publish ROAs"
        body = {"added": [r.to_json() for r in added], "deleted": [r.to_json() for r in deleted]}
        reply = self._t.request("POST", f"{API_PATH}/roas/publish", body=body, what=what)
        if reply.status >= 400:
            raise _refused(reply.status, reply.body, reply.text, what)


def _refused(status: int, body: Any, text: str, what: str) -> RipeRefused:
    messages = [m.text for m in error_messages(body)]
    if not messages and isinstance(body, dict):
        messages = [printable(body[k], 200) for k in ("error", "message", "detail") if k in body]
    if not messages:
        messages = [printable(" ".join(text.split()), 200) or "no message"]
    hints = ["the RPKI API key is wrong, expired or lacks write access (RIPE_RPKI_API_KEY)"] if status in (401, 403) else []
    return RipeRefused(status, what, messages, hints)


@dataclass(frozen=True)
class RoaPlan:
    add: list[Roa]
    delete: list[Roa]
    ok: list[Roa]
    warnings: list[str]

    def lines(self) -> list[str]:
        return ([f"{'unchanged':>10}  ROA {r}" for r in self.ok] + [f"{'create':>10}  ROA {r}" for r in self.add]
                + [f"{'delete':>10}  ROA {r}" for r in self.delete] + [f"warning: {w}" for w in self.warnings])


def wanted_roas(network: Network) -> list[Roa]:
    """One ROA per announced prefix: origin = the ROA origin ASN (AS20473 for a Vultr-assigned private ASN),
    maxLength = the prefix length, so no more-specific can be hijacked with a valid origin (RFC 9319)."""
    return [Roa(network.roa_origin_asn, p, p.prefixlen) for p in network.announced_prefixes]


def plan_roas(wanted: list[Roa], existing: list[Roa], prune: bool = False) -> RoaPlan:
    """Add the missing ROAs; warn about too-permissive ones. ``prune`` deletes only ROAs for exactly our prefix and
    origin with a maxLength longer than the prefix (the permissive twins the exact ROA replaces); no other ROA is
    ever deleted."""
    have = set(existing)
    add = [r for r in wanted if r not in have]
    ok = [r for r in wanted if r in have]
    delete: list[Roa] = []
    warnings = []
    for roa in sorted(have, key=lambda r: (r.prefix.version, str(r.prefix), r.asn, r.max_length)):
        for w in wanted:
            if roa == w or roa.prefix.version != w.prefix.version:
                continue
            if roa.prefix == w.prefix and roa.asn == w.asn and roa.max_length > w.max_length:
                if prune:
                    delete.append(roa)
                    continue
                warnings.append(f"ROA {roa} is too permissive: any /{roa.max_length} inside {w.prefix} with origin "
                                f"AS{roa.asn} is valid, which helps forged-origin hijacks; `--prune` replaces it "
                                f"with maxLength {w.max_length}")
            elif roa.prefix != w.prefix and _covers(roa.prefix, w.prefix) and roa.max_length >= w.prefix.prefixlen:
                warnings.append(f"covering ROA {roa} also makes {w.prefix} valid from AS{roa.asn}; "
                                "left alone (not managed here)")
    return RoaPlan(add, delete, ok, warnings)


def _covers(outer: IPv4Network | IPv6Network, inner: IPv4Network | IPv6Network) -> bool:
    return outer.version == inner.version and inner.subnet_of(outer)  # type: ignore[arg-type]
