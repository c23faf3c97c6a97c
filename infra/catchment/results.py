"""RIPE Atlas DNS results -> one :class:`Observation` per answer (or failure), the PoP identity taken from the
answer itself.

Atlas stores the DNS answer as base64 wire format (``result.abuf``); the NSID (EDNS0 option 3, RFC 5001) exists only
there, so dnspython decodes it (``dns.message.from_wire``) instead of hand-written parsing. The identity is the NSID
if present, else the CHAOS TXT answer (``id.server`` / ``hostname.bind``). Result format: RIPE Atlas "Measurement
Result Format", DNS (https://atlas.ripe.net/docs/apis/measurement-result-format/): ``prb_id``, ``af``,
``dst_addr``, ``result.rt``/``result.abuf`` or ``error``, and multi-server answers in ``resultset``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dns.edns
import dns.exception
import dns.message
import dns.rdataclass
import dns.rdatatype

from infra.catchment.atlas_schema import DnsQuery, DnsResult
from infra.untrusted.schema import validate
from infra.untrusted.text import printable

MAX_IDENTITY = 255  # an NSID option or a TXT string is at most this long on the wire anyway


class ResultsError(ValueError):
    """The results document as a whole is unusable (not a list of Atlas results)."""


@dataclass(frozen=True)
class Observation:
    """One probe's answer to one query: who answered (``identity``), how fast, or why there is nothing to use.

    ``error`` is set when the answer cannot be used at all (timeout, no abuf, malformed abuf, no identity).
    """

    probe_id: str
    af: int | None
    target: str | None
    rtt_ms: float | None
    identity: str | None
    source: str | None  # "nsid" or "chaos-txt"
    error: str | None = None


def decode_abuf(abuf: str) -> tuple[str | None, str | None]:
    """(NSID, CHAOS TXT) from a base64 wire-format answer; ValueError with a short reason if it cannot be decoded."""
    try:
        wire = base64.b64decode(abuf, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"abuf is not base64 ({exc})") from None
    try:
        msg = dns.message.from_wire(wire)
    except dns.message.ShortHeader:
        raise ValueError(f"abuf truncated: {len(wire)} bytes, shorter than a DNS header") from None
    except dns.exception.DNSException as exc:
        raise ValueError(f"abuf truncated or malformed ({len(wire)} bytes): {exc.__class__.__name__}") from None
    nsid = None
    for opt in msg.options:
        if opt.otype == dns.edns.OptionType.NSID:
            data = opt.to_wire() or b""
            nsid = printable(data.decode("utf-8", errors="replace"), MAX_IDENTITY) if data else None
    txt = None
    for rrset in msg.answer:
        if rrset.rdtype == dns.rdatatype.TXT and rrset.rdclass == dns.rdataclass.CH:
            for rd in rrset:
                txt = printable(b"".join(rd.strings).decode("utf-8", errors="replace"), MAX_IDENTITY)
                break
    return nsid, txt


def _one(probe_id: str, item: DnsQuery, parent: DnsResult) -> Observation:
    af = item.af if item.af is not None else parent.af
    target = item.dst_addr if item.dst_addr is not None else parent.dst_addr
    if item.error is not None:
        err = item.error
        why = (f"timeout after {printable(err['timeout'], 20)} ms" if "timeout" in err
               else "error: " + printable("; ".join(f"{k} {v}" for k, v in err.items()), 200))
        return Observation(probe_id, af, target, None, None, None, why)
    result = item.result
    if result is None:
        return Observation(probe_id, af, target, None, None, None, "no result and no error in the record")
    rtt = round(result.rt, 3) if result.rt is not None else None
    abuf = result.abuf
    if not abuf:
        return Observation(probe_id, af, target, rtt, None, None, "no abuf in the answer (NSID cannot be read)")
    try:
        nsid, txt = decode_abuf(abuf)
    except ValueError as exc:
        return Observation(probe_id, af, target, rtt, None, None, str(exc))
    if nsid:
        return Observation(probe_id, af, target, rtt, nsid, "nsid")
    if txt:
        return Observation(probe_id, af, target, rtt, txt, "chaos-txt")
    return Observation(probe_id, af, target, rtt, None, None, "answer carries neither an NSID nor a CHAOS TXT record")


def parse_results(data: Any, source: str = "results") -> list[Observation]:
    """Every observation in an Atlas DNS result list (a single result object is accepted too).

    Raises:
        ResultsError: ``data`` is not a list of result objects (e.g. an error document or another measurement type).
        UntrustedInput: a field we read has the wrong type (the message names its JSON path).
    """
    if isinstance(data, Mapping):
        if "error" in data and "prb_id" not in data:
            raise ResultsError(f"the results are an error document: {printable(data['error'], 200)}")
        data = [data]
    if not isinstance(data, list):
        raise ResultsError(f"expected a JSON list of RIPE Atlas results, got {type(data).__name__}")
    out: list[Observation] = []
    for i, rec in enumerate(data):
        if not isinstance(rec, Mapping) or "prb_id" not in rec:
            raise ResultsError(f"results[{i}]: not a RIPE Atlas result (no prb_id)")
        if rec.get("type", "dns") != "dns":
            raise ResultsError(f"results[{i}]: a {printable(repr(rec.get('type')), 40)} result; catchment needs a DNS "
                               "measurement")
    for rec in validate(list[DnsResult], data, source):
        pid = str(rec.prb_id)
        for sub in rec.resultset if rec.resultset is not None else [rec]:
            out.append(_one(pid, sub, rec))
    return out
