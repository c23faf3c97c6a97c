"""Is a new PoP really serving? The readiness gate's checks and polling loop, without Pulumi.

The same code runs in two places: inside the Pulumi dynamic resource ``PopGate`` (infra/components/gate.py), whose
``create`` blocks ``pulumi up`` until the replaced PoP serves, and in ``anycast lab rollout``, which opens its sockets
inside a lab namespace (``connect``). Standard library only.

What "ready" means for one PoP (docs/deploy.md, "The readiness gate"), each seen from outside on its unicast address:

* HTTP: ``GET /healthz`` on port 80 answers 200 with ``X-PoP: <code>`` (Caddy listens on every address; /healthz
  stays plain HTTP when tls.enabled redirects everything else).
* DNS: a SOA query for the zone with the EDNS NSID option (RFC 5001) answers NOERROR with NSID ``<code>``. Unicast
  PoPs only: NSD on an anycast PoP listens on the anycast addresses alone, so its DNS is judged by the health agent's
  own DNS check in the status document (next item).
* Anycast PoPs: the health agent's status document (``http://<unicast>:9325/status``, schema 1 of
  userdata/files/anycast-health.py; the fields read here are listed in docs/deploy.md) names this PoP, every check
  passes, BIRD answers, at least ``sessions`` BGP sessions exist and all are Established, the anycast routes are
  exported and the PoP is not drained.
* DNSSEC, when the stack signs (``GateTarget.dnssec_margin``): the zone the PoP serves carries signatures that do not
  expire within the margin (``DNSSEC_GATE_MARGIN_S``, the alert's 14 days): on an anycast PoP the agent's
  ``dnssec.signature_expiration`` (the RRSIG of its own SOA query, with the DO bit), on a unicast PoP the RRSIG of a
  SOA query with the DO bit on its address. A PoP serving an unsigned zone, or a stale one, stops the rollout before
  the DS (which depends on every gate) changes.

After an in-place change that restarts the PoP (a plan resize: Vultr reboots the instance, and the provider returns when
its API shows the new plan, not when the PoP serves again) the gate also needs to see the restart itself, or it would
pass on the old, not yet rebooted PoP: ``GateTarget.restarted_after`` is the wall-clock time the restart was
requested. An anycast PoP must show a health agent started after it (``agent.started`` in the status document; the
agent starts with the boot, after the restart). A unicast PoP runs no agent: its polls count only once the gate saw it
not ready after that time, or ``RESTART_SETTLE_S`` after it (a heuristic, docs/deploy.md).

A PoP is ready when one poll finds nothing wrong ``consecutive`` times in a row. After ``timeout`` seconds
:func:`wait_ready` raises :class:`NotReady` naming the PoP and what was still missing at the last poll.
"""

from __future__ import annotations

import dataclasses
import json
import random
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from infra.contracts import DNS_PORT, HEALTH_STATUS_PORT, HEALTHZ_PATH, HTTP_PORT, STATUS_PATH, STATUS_SCHEMA

DEFAULT_TIMEOUT_S = 900.0  # rollout.gateTimeout's default: 15 minutes per PoP
DEFAULT_INTERVAL_S = 5.0
DEFAULT_CONSECUTIVE = 2
RESTART_SETTLE_S = 180.0  # unicast PoPs after a restart request: ready polls count from here if no outage was seen
ESTABLISHED = "established"

Connect = Callable[[int, int], socket.socket]  # (family, type) -> socket; the lab opens it inside a namespace


def plain_socket(family: int, kind: int) -> socket.socket:
    return socket.socket(family, kind)


@dataclass(frozen=True)
class GateTarget:
    """One PoP as the gate probes it. ``addresses``: its unicast addresses (IPv4 and/or IPv6)."""

    pop: str
    mode: str  # "anycast" | "unicast"
    addresses: tuple[str, ...]
    zone: str
    sessions: int = 1  # BGP sessions the status document must show Established (anycast PoPs)
    http_port: int = HTTP_PORT
    dns_port: int = DNS_PORT
    status_port: int = HEALTH_STATUS_PORT
    status_path: str = STATUS_PATH
    restarted_after: float | None = None  # wall-clock s: a restart was requested then (see the module docstring)
    dnssec_margin: float | None = None  # s; None: the stack does not sign. Else signatures must outlive now + margin


def rearmed(target: GateTarget, old_restart_at: Any, new_restart_at: Any) -> GateTarget | None:
    """The gate after an in-place update (``PopGate.update``, and ``anycast lab rollout --restart-in-place``): the
    target re-armed with ``restarted_after`` when the restart mark moved, or None when nothing restarted the PoP (no
    polling; a gate from before restart marks gets its first mark from a newly created one: no restart either)."""
    if new_restart_at is None or old_restart_at in (None, new_restart_at):
        return None
    return dataclasses.replace(target, restarted_after=float(new_restart_at))


class NotReady(RuntimeError):
    """The PoP did not become ready in time; the message names it and what was missing."""

    def __init__(self, pop: str, waited: float, problems: list[str]) -> None:
        self.pop, self.waited, self.problems = pop, waited, problems
        super().__init__(f"PoP {pop} not ready after {waited:.0f} s: " + "; ".join(problems)
                         + " (the old PoP keeps serving; see docs/deploy.md, 'When a wave fails')")


# --- HTTP (raw sockets, so the lab can open them inside a namespace) -----------------------------------------------

@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def http_get(address: str, port: int, path: str, timeout: float, connect: Connect = plain_socket) -> HttpAnswer:
    """One ``GET`` (HTTP/1.0, the body ends when the server closes); raises OSError or ValueError."""
    sock = connect(_family(address), socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((address, port))
        host = f"[{address}]" if ":" in address else address
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: anycast-gate\r\n\r\n".encode())
        data = b""
        deadline = time.monotonic() + timeout
        while True:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if len(data) > 1 << 20:
                raise ValueError("answer larger than 1 MiB")
    finally:
        sock.close()
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("no complete HTTP answer")
    lines = head.decode("iso-8859-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP status line: {lines[0][:60]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return HttpAnswer(int(parts[1]), headers, body)


# --- DNS with NSID (RFC 5001) ----------------------------------------------------------------------------------------

def nsid_query(qname: str, qid: int) -> bytes:
    """A SOA query with an EDNS0 OPT record asking for the NSID (RFC 5001)."""
    header = struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 1)
    labels = b"".join(bytes([len(p)]) + p.encode("ascii") for p in qname.rstrip(".").split(".") if p)
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 4) + struct.pack("!HH", 3, 0)
    return header + labels + b"\x00" + struct.pack("!HH", 6, 1) + opt


def _skip_name(data: bytes, off: int) -> int:
    while True:
        n = data[off]
        if n & 0xC0 == 0xC0:
            return off + 2
        if n == 0:
            return off + 1
        off += n + 1


def parse_nsid(data: bytes, qid: int) -> str | None:
    """The NSID in a response to :func:`nsid_query` (None if absent, wrong id, or an error rcode)."""
    if len(data) < 12:
        return None
    rid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", data[:12])
    if rid != qid or not flags & 0x8000 or flags & 0x000F:
        return None
    off = 12
    for _ in range(qd):
        off = _skip_name(data, off) + 4
    for i in range(an + ns + ar):
        off = _skip_name(data, off)
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", data[off:off + 10])
        off += 10
        if rtype == 41 and i >= an + ns:
            end, o = off + rdlen, off
            while o + 4 <= end:
                code, length = struct.unpack("!HH", data[o:o + 4])
                if code == 3:
                    return data[o + 4:o + 4 + length].decode(errors="replace")
                o += 4 + length
        off += rdlen
    return None


def dnssec_query(qname: str, qid: int) -> bytes:
    """A SOA query with RD clear and an EDNS0 OPT record with the DO bit (RFC 3225): a signed zone adds its RRSIG."""
    header = struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 1)
    labels = b"".join(bytes([len(p)]) + p.encode("ascii") for p in qname.rstrip(".").split(".") if p)
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0x8000, 0)  # TTL field: extended rcode 0, version 0, DO
    return header + labels + b"\x00" + struct.pack("!HH", 6, 1) + opt


def parse_rrsig_expiration(data: bytes, qid: int) -> int | None:
    """The earliest expiration (Unix seconds) of the RRSIGs in the answer section of a response to
    :func:`dnssec_query`; None for no RRSIG. ValueError for a wrong id, an error rcode or a truncated answer."""
    if len(data) < 12:
        raise ValueError("short DNS answer")
    rid, flags, qd, an, _ns, _ar = struct.unpack("!HHHHHH", data[:12])
    if rid != qid or not flags & 0x8000:
        raise ValueError("not the answer to this query")
    if flags & 0x000F:
        raise ValueError(f"rcode {flags & 0x000F}")
    off = 12
    for _ in range(qd):
        off = _skip_name(data, off) + 4
    found = []
    for _ in range(an):
        off = _skip_name(data, off)
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", data[off:off + 10])
        off += 10
        if rtype == 46 and rdlen >= 12:  # RRSIG: type covered 2, algorithm 1, labels 1, original TTL 4, expiration 4
            found.append(struct.unpack("!I", data[off + 8:off + 12])[0])
        off += rdlen
    return min(found) if found else None


def dns_signature_expiration(server: str, port: int, qname: str, timeout: float,
                             connect: Connect = plain_socket) -> int | None:
    """The expiration of the RRSIG a server answers ``qname`` SOA with (DO set); None if it has none. OSError or
    ValueError when there is no usable answer."""
    sock = connect(_family(server), socket.SOCK_DGRAM)
    qid = random.randrange(65536)
    try:
        sock.settimeout(timeout)
        sock.sendto(dnssec_query(qname, qid), (server, port))
        deadline = time.monotonic() + timeout
        while True:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            data, _ = sock.recvfrom(4096)
            try:
                return parse_rrsig_expiration(data, qid)
            except ValueError as exc:
                if "not the answer" not in str(exc):
                    raise
            except (struct.error, IndexError):
                raise ValueError("malformed DNS answer") from None
    finally:
        sock.close()


def signature_problems(expiration: float | None, target: GateTarget, now: float, where: str) -> list[str]:
    """Why the served signatures (earliest RRSIG ``expiration``) keep a PoP of a signing stack from being ready."""
    if target.dnssec_margin is None:
        return []
    if expiration is None:
        return [f"DNSSEC: {where} serves {target.zone} without signatures; the stack signs (dns.dnssec)"]
    left = expiration - now
    if left < target.dnssec_margin:
        return [f"DNSSEC: {where} serves signatures expiring in {left / 86400:.1f} days, within the "
                f"{target.dnssec_margin / 86400:.0f}-day margin (a stale zone: re-render, docs/dnssec.md)"]
    return []


def dns_nsid(server: str, port: int, qname: str, timeout: float, connect: Connect = plain_socket) -> str | None:
    """The NSID a server answers a SOA query with; None on timeout, error rcode or no NSID."""
    sock = connect(_family(server), socket.SOCK_DGRAM)
    qid = random.randrange(65536)
    try:
        sock.settimeout(timeout)
        sock.sendto(nsid_query(qname, qid), (server, port))
        deadline = time.monotonic() + timeout
        while True:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            data, _ = sock.recvfrom(4096)
            if (nsid := parse_nsid(data, qid)) is not None:
                return nsid
    except (OSError, struct.error, IndexError):
        return None
    finally:
        sock.close()


# --- The status document --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PopStatus:
    """The fields of the health agent's status document (schema 1) that the gate reads (docs/deploy.md)."""

    pop: str
    state: str  # announced | withdrawn | drained | changing | unknown
    reason: str
    checks: dict[str, bool]
    bird_reachable: bool
    sessions: dict[str, str]  # BGP protocol name -> BGP state, lower case ("established")
    exported: bool
    drained: bool
    agent_started: float | None = None  # agent.started: wall-clock time the agent process started
    signature_expiration: float | None = None  # dnssec.signature_expiration: earliest served RRSIG; None: unsigned


def _need(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind):
        raise ValueError(f"{where}{key}: missing or not {getattr(kind, '__name__', 'the right type')}")
    return value


def parse_status(doc: Any) -> PopStatus:
    """Validate a status document (userdata/files/anycast-health.py, ``Agent._publish``, schema 1); ValueError names
    the field that does not fit."""
    if not isinstance(doc, dict):
        raise ValueError("status: expected a JSON object")
    if doc.get("schema") != STATUS_SCHEMA:
        raise ValueError(f"status.schema: {doc.get('schema')!r} is not {STATUS_SCHEMA}, the schema this gate reads")
    checks = _need(doc, "checks", dict, "status.")
    bird = _need(doc, "bird", dict, "status.")
    sessions = {}
    for name, value in _need(bird, "sessions", dict, "status.bird.").items():
        state = value.get("bgp_state") if isinstance(value, dict) else None
        sessions[name] = str(state).lower() if state else "down"  # no BGP state: the protocol is down or starting
    exported = _need(doc, "exported", dict, "status.")
    drain = _need(doc, "drain", dict, "status.")
    agent = doc.get("agent")
    started = agent.get("started") if isinstance(agent, dict) else None
    signed = doc.get("dnssec")
    expiration = signed.get("signature_expiration") if isinstance(signed, dict) else None
    return PopStatus(
        pop=_need(doc, "pop", str, "status."), state=str(doc.get("state")), reason=str(doc.get("reason") or ""),
        checks={str(k): isinstance(v, dict) and v.get("ok") is True for k, v in checks.items()},
        bird_reachable=bird.get("reachable") is True, sessions=sessions,
        exported=_need(exported, "anycast", bool, "status.exported."), drained=_need(drain, "drained", bool, "status.drain."),
        agent_started=float(started) if isinstance(started, int | float) and not isinstance(started, bool) else None,
        signature_expiration=(float(expiration) if isinstance(expiration, int | float) and not isinstance(expiration, bool)
                              else None))


def status_problems(status: PopStatus, target: GateTarget, now: float | None = None) -> list[str]:
    """What in a (parsed) status document keeps the PoP from being ready; [] when nothing. ``now``: wall-clock s."""
    problems = signature_problems(status.signature_expiration, target, time.time() if now is None else now,
                                  "the health agent's DNS check")
    if status.pop != target.pop:
        problems.append(f"status endpoint answers for PoP {status.pop!r}, not {target.pop!r}")
    failed = sorted(name for name, ok in status.checks.items() if not ok)
    if failed:
        problems.append("health checks failing: " + ", ".join(failed))
    if not status.checks:
        problems.append("the status document lists no health checks")
    if not status.bird_reachable:
        problems.append("BIRD's control socket does not answer the agent")
    down = sorted(f"{name} {state}" for name, state in status.sessions.items() if state != ESTABLISHED)
    if down:
        problems.append("BGP sessions not Established: " + ", ".join(down))
    if len(status.sessions) < target.sessions:
        problems.append(f"{len(status.sessions)} BGP sessions, expected {target.sessions}")
    if target.mode == "anycast" and not status.exported:
        problems.append(f"anycast routes not exported (agent: {status.state}" + (f", {status.reason})" if status.reason else ")"))
    if status.drained:
        problems.append("the PoP is drained")
    if target.restarted_after is not None and (status.agent_started is None or status.agent_started <= target.restarted_after):
        problems.append(f"not restarted yet: the health agent started at {status.agent_started}, before the restart "
                        f"requested at {target.restarted_after:.0f}")
    return problems


# --- One poll and the loop ------------------------------------------------------------------------------------------

def observe(target: GateTarget, timeout: float = 2.0, connect: Connect = plain_socket) -> list[str]:
    """Probe the PoP once; the list of what is not ready yet (empty: ready)."""
    problems: list[str] = []
    for address in target.addresses:
        try:
            answer = http_get(address, target.http_port, HEALTHZ_PATH, timeout, connect)
            xpop = answer.headers.get("x-pop")
            if answer.status != 200 or xpop != target.pop:
                problems.append(f"HTTP on {address}: status {answer.status}, X-PoP {xpop!r} (want 200, {target.pop!r})")
        except (OSError, ValueError) as exc:
            problems.append(f"HTTP on {address}: {type(exc).__name__}: {exc}")
        if target.mode == "unicast":
            nsid = dns_nsid(address, target.dns_port, target.zone, timeout, connect)
            if nsid != target.pop:
                problems.append(f"DNS on {address}: NSID {nsid!r} (want {target.pop!r})" if nsid else
                                f"DNS on {address}: no NOERROR answer with an NSID for {target.zone} SOA")
            if target.dnssec_margin is not None:
                try:
                    expiration = dns_signature_expiration(address, target.dns_port, target.zone, timeout, connect)
                    problems += signature_problems(expiration, target, time.time(), f"DNS on {address}")
                except (OSError, ValueError) as exc:
                    problems.append(f"DNSSEC on {address}: {type(exc).__name__}: {exc}")
    if target.mode == "anycast":
        address = target.addresses[0] if target.addresses else ""
        where = f"status endpoint http://{address}:{target.status_port}{target.status_path}"
        try:
            answer = http_get(address, target.status_port, target.status_path, timeout, connect)
            if answer.status != 200:
                problems.append(f"{where}: HTTP {answer.status}")
            else:
                problems += status_problems(parse_status(json.loads(answer.body)), target)
        except (OSError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
            problems.append(f"{where}: {type(exc).__name__}: {exc}")
    if not target.addresses:
        problems.append("no unicast address to probe")
    return problems


@dataclass
class GateResult:
    pop: str
    seconds: float
    polls: int
    log: list[str] = field(default_factory=list)


def wait_ready(target: GateTarget, timeout: float = DEFAULT_TIMEOUT_S, interval: float = DEFAULT_INTERVAL_S,
               consecutive: int = DEFAULT_CONSECUTIVE, connect: Connect = plain_socket,
               probe: Callable[[GateTarget], list[str]] | None = None,
               clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
               say: Callable[[str], None] | None = None, wall: Callable[[], float] = time.time,
               settle: float = RESTART_SETTLE_S) -> GateResult:
    """Poll until ``consecutive`` polls in a row find nothing wrong; raise :class:`NotReady` after ``timeout`` s.

    ``say`` gets one line whenever the set of problems changes (not every poll). With ``target.restarted_after`` on a
    unicast PoP, good polls count only after a bad one was seen, or ``settle`` s after the restart request.
    """
    if timeout <= 0 or interval <= 0 or consecutive < 1:
        raise ValueError("timeout and interval must be positive, consecutive at least 1")
    check = probe or (lambda t: observe(t, min(2.0, interval), connect))
    start = clock()
    good = polls = 0
    last: list[str] | None = None
    result = GateResult(target.pop, 0.0, 0)
    restart_unseen = target.restarted_after is not None and target.mode == "unicast"
    while True:
        problems = check(target)
        polls += 1
        if restart_unseen:
            assert target.restarted_after is not None
            if problems or wall() >= target.restarted_after + settle:
                restart_unseen = False
            else:
                problems = [f"not restarted yet: no outage seen since the restart request; counting from "
                            f"{settle:.0f} s after it"]
        if problems != last:
            line = f"{target.pop}: " + ("ready" if not problems else "; ".join(problems))
            result.log.append(f"{clock() - start:.1f}s {line}")
            if say:
                say(line)
            last = problems
        good = good + 1 if not problems else 0
        if good >= consecutive:
            result.seconds, result.polls = clock() - start, polls
            return result
        elapsed = clock() - start
        if elapsed >= timeout:
            raise NotReady(target.pop, elapsed, problems or ["flapping: ready, then not ready again"])
        sleep(min(interval, timeout - elapsed))
