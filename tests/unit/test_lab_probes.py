"""The lab's in-process DNS probe: NSID query building and response parsing (no namespaces needed)."""

from __future__ import annotations

import struct

from infra.readiness import nsid_query, parse_nsid


def _response(qid: int, nsid: bytes | None, rcode: int = 0, answers: int = 1) -> bytes:
    query = nsid_query("cdn.example.com", qid)
    question = query[12:query.index(b"\x00\x00\x29")]  # up to the OPT record's root name
    header = struct.pack("!HHHHHH", qid, 0x8400 | rcode, 1, answers, 0, 1)
    soa = b"\xc0\x0c" + struct.pack("!HHIH", 6, 1, 60, 22) + b"\x00" * 22
    opts = b"" if nsid is None else struct.pack("!HH", 3, len(nsid)) + nsid
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, len(opts)) + opts
    return header + question + soa * answers + opt


def test_query_asks_for_nsid() -> None:
    q = nsid_query("cdn.example.com", 7)
    assert struct.unpack("!HHHHHH", q[:12]) == (7, 0, 1, 0, 0, 1)
    assert q.endswith(b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 4) + struct.pack("!HH", 3, 0))


def test_nsid_is_read_from_the_opt_record() -> None:
    assert parse_nsid(_response(7, b"ams"), 7) == "ams"
    assert parse_nsid(_response(7, b"fra", answers=0), 7) == "fra"


def test_wrong_id_error_or_missing_nsid_give_none() -> None:
    assert parse_nsid(_response(7, b"ams"), 8) is None
    assert parse_nsid(_response(7, b"ams", rcode=2), 7) is None
    assert parse_nsid(_response(7, None), 7) is None
    assert parse_nsid(b"\x00\x07", 7) is None
