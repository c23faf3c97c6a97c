"""A tiny DNS server on 127.0.0.1 (UDP, ephemeral port) for the preflight DNS checks: it plays both the recursive
resolver and the parent zone's authoritative server, answering from a dict of records. A name in ``referrals`` is
answered as a parent answers for a delegated child: its NS in the authority section, addresses of in-zone
nameservers as glue. ``silent`` makes it swallow queries (a resolver that never answers)."""

from __future__ import annotations

import socket
import threading
from types import TracebackType

import dns.flags
import dns.message
import dns.rcode
import dns.rrset


class FakeDns:
    def __init__(self, records: dict[tuple[str, str], list[str]] | None = None, referrals: set[str] | None = None,
                 silent: bool = False) -> None:
        self.records = {(n.rstrip(".").lower(), t): v for (n, t), v in (records or {}).items()}
        self.referrals = {r.rstrip(".").lower() for r in (referrals or set())}
        self.silent = silent
        self.queries: list[tuple[str, str, bool]] = []  # (name, type, recursion desired)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self._stop = threading.Event()

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def __enter__(self) -> FakeDns:
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            query = dns.message.from_wire(data)
            q = query.question[0]
            name, rdtype = q.name.to_text().rstrip(".").lower(), dns.rdatatype.to_text(q.rdtype)
            self.queries.append((name, rdtype, bool(query.flags & dns.flags.RD)))
            if self.silent:
                continue
            self._sock.sendto(self._answer(query, name, rdtype).to_wire(), peer)

    def _answer(self, query: dns.message.Message, name: str, rdtype: str) -> dns.message.Message:
        reply = dns.message.make_response(query)
        values = self.records.get((name, rdtype))
        if not values and not any(n == name for n, _ in self.records):
            reply.set_rcode(dns.rcode.NXDOMAIN)
            return reply
        if not values:
            return reply  # NODATA
        rrset = dns.rrset.from_text_list(name + ".", 300, "IN", rdtype, values)
        if name in self.referrals and rdtype == "NS":
            reply.authority.append(rrset)
            for ns in values:
                for t in ("A", "AAAA"):
                    if (ns.rstrip(".").lower(), t) in self.records:
                        reply.additional.append(dns.rrset.from_text_list(ns, 300, "IN", t, self.records[(ns.rstrip(".").lower(), t)]))
        else:
            reply.flags |= dns.flags.AA
            reply.answer.append(rrset)
        return reply
