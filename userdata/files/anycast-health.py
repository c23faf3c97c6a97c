#!/usr/bin/env python3
"""anycast-health: announce this PoP's anycast routes only while Caddy and NSD answer; withdraw within milliseconds.

Reads ``/etc/anycast/health.json`` (see ``userdata/health_config.py``; every key is checked at start, a wrong type or
an unknown key is refused with one line naming it). Its keys, defaults, ``/status`` fields and metric names are the
project's ``infra/contracts.py``, copied here to stay standard-library only (tests/unit/test_contracts.py compares
them). The PoP is **fail-closed**: the rendered bird.conf starts the anycast static protocols ``disabled``, so BIRD (at
boot, after a crash or restart) announces nothing until this agent enables them.

* **Polling** (hangs): every ``interval_ms`` a ``GET <path>`` to Caddy must answer 200 and a ``<qname> <qtype>`` query
  (built with struct) to NSD must answer NOERROR, each within ``timeout_ms``. ``fall`` bad rounds in a row withdraw,
  ``rise`` good rounds announce.
* **Events** (crashes): the agent keeps one idle TCP connection open to Caddy and one to NSD (DNS over TCP) and waits
  on them with ``poll``. The kernel closes them the instant the process dies; the agent then checks that service at
  once and, if it fails, withdraws without waiting for ``fall`` (an idle-timeout close passes the check and the
  connection is simply reopened).
* **Reconciling**: every round the agent reads BIRD's actual protocol states over a persistent control-socket
  connection (``show protocols all``) and corrects them, so a restarted BIRD is re-enabled only when checks pass.
  Replies are judged by BIRD's codes (0008/0009 disabled, 0010/0011 enabled), never by birdc's exit code.
* **Damping**: a withdrawal less than ``damping.stable_s`` after an announcement is a flap; each flap in a row doubles a
  hold-down (``min_hold_down_s`` .. ``max_hold_down_s``) before the next announcement. The agent also keeps the
  RFC 2439 figure of merit a damping transit keeps (1000 per withdrawal, ``half_life_s``) and announces only while one
  more withdrawal stays at or below ``max_penalty`` (5000, below RFC 7196's suppress threshold of 6000).
* **Drain**: while ``drain.file`` exists the PoP stays withdrawn (``--drain`` / ``--undrain``; see ``drain()``). A drain
  first enables ``drain.gshut_protocols`` (RFC 8326 graceful shutdown: BIRD exports the same routes with 65535:0),
  waits up to ``drain.gshut_s`` for connections to go quiet, then withdraws (``--drain --no-graceful``: withdraws at
  once, the plain withdrawal the graceful one is measured against). Whenever the agent withdraws it disables
  those protocols too, so a graceful-shutdown route never outlives the anycast one.
* **systemd**: ``READY=1`` after the first round, ``WATCHDOG=1`` every round, ``STATUS=`` on changes, sent to
  ``$NOTIFY_SOCKET`` with a plain datagram socket (sd_notify(3) protocol; no library).
* **Status**: JSON at ``/status`` and Prometheus text at ``/metrics`` on ``status.address``:``status.port``.

Standard library only: it runs as ``/usr/local/sbin/anycast-health`` on a PoP and unchanged in the lab.
Exit codes: 0 on SIGTERM/SIGINT (and for --drain/--undrain when done), 1 when --drain times out, 2 for a bad config.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import itertools
import json
import math
import os
import random
import select
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

QTYPES = {"A": 1, "NS": 2, "SOA": 6, "TXT": 16, "AAAA": 28}
BIRD_OK_CODES = {"disable": ("0008", "0009"), "enable": ("0010", "0011")}
STATUS_SCHEMA = 1
EVENT_TRY_S = 0.01  # the first quick re-check after a watched connection closed
WITHDRAWAL_PENALTY = 1000  # RFC 2439 figure of merit per withdrawal (FRR, Junos, IOS all add 1000)


class ConfigProblem(ValueError):
    """health.json is missing a field or has a wrong value."""


# ---------------------------------------------------------------------------------------------------------------------
# Configuration: every key is declared with its type; anything else is refused with one line naming the key.

_INT, _STR, _STRS, _NUM = "an integer", "a string", "a list of strings", "a number"
SCHEMA: dict[str, Any] = {
    "pop": (_STR, None),
    "interval_ms": (_INT, 200),
    "rise": (_INT, 3),
    "fall": (_INT, 2),
    "http": {"host": (_STR, None), "port": (_INT, 80), "path": (_STR, "/healthz"), "timeout_ms": (_INT, 300)},
    "dns": {"server": (_STR, None), "port": (_INT, 53), "qname": (_STR, None), "qtype": (_STR, "SOA"),
            "timeout_ms": (_INT, 300)},
    "bird": {"socket": (_STR, None), "protocols": (_STRS, None), "timeout_ms": (_INT, 250)},
    "damping": {"stable_s": (_NUM, 10), "min_hold_down_s": (_NUM, 5), "max_hold_down_s": (_NUM, 120),
                "half_life_s": (_NUM, 900), "max_penalty": (_NUM, 5000)},
    "status": {"address": (_STR, "::"), "port": (_INT, 9325)},
    "drain": {"file": (_STR, "/var/lib/anycast/drain"), "quiet_s": (_NUM, 2), "timeout_s": (_NUM, 60),
              "ports": ([_INT], [53, 80, 443]), "gshut_protocols": (_STRS, []), "gshut_s": (_NUM, 30),
              "quiet_fraction": (_NUM, 0.1), "quiet_per_s": (_NUM, 1)},
}
OPTIONAL_SECTIONS = {"http", "dns", "damping", "status", "drain"}


def _typed(value: Any, kind: Any, where: str) -> Any:
    def bad(what: str) -> ConfigProblem:
        return ConfigProblem(f"{where}: expected {what}, got {json.dumps(value)}")

    if kind == _INT:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad(_INT)
    elif kind == _NUM:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad(_NUM)
    elif kind == _STR:
        if not isinstance(value, str) or not value:
            raise bad("a non-empty string")
    elif kind == _STRS:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise bad(_STRS)
    elif isinstance(kind, list) and not (isinstance(value, list)
                                         and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise bad("a list of integers")
    return value


def _section(data: Any, schema: dict[str, Any], prefix: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigProblem(f"{prefix.rstrip('.') or 'health.json'}: expected an object, got {json.dumps(data)}")
    for key in data:
        if key not in schema:
            raise ConfigProblem(f"{prefix}{key}: unknown key (known: {', '.join(sorted(schema))})")
    out: dict[str, Any] = {}
    for key, spec in schema.items():
        if isinstance(spec, dict):
            if key in data:
                out[key] = _section(data[key], spec, f"{prefix}{key}.")
            elif key not in OPTIONAL_SECTIONS:
                raise ConfigProblem(f"{prefix}{key}: is required")
            elif key in ("damping", "status", "drain"):
                out[key] = _section({}, spec, f"{prefix}{key}.")
            continue
        kind, default = spec
        if key in data:
            out[key] = _typed(data[key], kind, f"{prefix}{key}")
        elif default is None:
            raise ConfigProblem(f"{prefix}{key}: is required")
        else:
            out[key] = default
    return out


@dataclass(frozen=True)
class HttpCheck:
    host: str
    port: int
    path: str
    timeout: float


@dataclass(frozen=True)
class DnsCheck:
    server: str
    port: int
    qname: str
    qtype: int
    timeout: float


@dataclass(frozen=True)
class Damping:
    stable_s: float = 10.0
    min_hold_down_s: float = 5.0
    max_hold_down_s: float = 120.0
    half_life_s: float = 900.0
    max_penalty: float = 5000.0


@dataclass(frozen=True)
class DrainConfig:
    file: str = "/var/lib/anycast/drain"
    quiet_s: float = 2.0
    timeout_s: float = 60.0
    ports: tuple[int, ...] = (53, 80, 443)
    gshut_protocols: tuple[str, ...] = ()
    gshut_s: float = 30.0
    quiet_fraction: float = 0.1  # graceful phase: quiet below this fraction of the packet rate before it
    quiet_per_s: float = 1.0  # ... or below this many packets/s (after the withdrawal: only this)


@dataclass(frozen=True)
class Config:
    pop: str
    interval: float
    rise: int
    fall: int
    http: HttpCheck | None
    dns: DnsCheck | None
    bird_socket: str
    protocols: tuple[str, ...]
    bird_timeout: float = 0.25
    damping: Damping = Damping()
    status_address: str = "::"
    status_port: int = 9325
    drain: DrainConfig = DrainConfig()


def load_config(data: Any) -> Config:
    """Validate the parsed health.json; raises ConfigProblem naming the field (one line)."""
    c = _section(data, SCHEMA, "")
    http = dns = None
    if "http" in c:
        h = c["http"]
        http = HttpCheck(h["host"], h["port"], h["path"], h["timeout_ms"] / 1000)
    if "dns" in c:
        d = c["dns"]
        qtype = d["qtype"].upper()
        if qtype not in QTYPES:
            raise ConfigProblem(f"dns.qtype: '{qtype}' is not one of {', '.join(QTYPES)}")
        dns = DnsCheck(d["server"], d["port"], d["qname"], QTYPES[qtype], d["timeout_ms"] / 1000)
    if http is None and dns is None:
        raise ConfigProblem("http, dns: at least one check is required")
    if not c["bird"]["protocols"]:
        raise ConfigProblem("bird.protocols: needs at least one protocol")
    for key in ("interval_ms", "rise", "fall"):
        if c[key] < 1:
            raise ConfigProblem(f"{key}: must be at least 1, got {c[key]}")
    for sec, key in (("http", "timeout_ms"), ("dns", "timeout_ms"), ("bird", "timeout_ms")):
        if sec in c and c[sec][key] < 1:
            raise ConfigProblem(f"{sec}.{key}: must be at least 1, got {c[sec][key]}")
    dm, st, dr = c["damping"], c["status"], c["drain"]
    if not 0 <= dm["min_hold_down_s"] <= dm["max_hold_down_s"]:
        raise ConfigProblem("damping.min_hold_down_s: must be between 0 and damping.max_hold_down_s")
    if dm["max_penalty"] and (dm["max_penalty"] < 2 * WITHDRAWAL_PENALTY or dm["half_life_s"] <= 0):
        raise ConfigProblem(f"damping.max_penalty: 0 (off) or at least {2 * WITHDRAWAL_PENALTY} with a positive "
                            f"damping.half_life_s, got {dm['max_penalty']} and {dm['half_life_s']}")
    if not 0 <= st["port"] <= 65535:
        raise ConfigProblem(f"status.port: must be 0-65535 (0: no status server), got {st['port']}")
    return Config(pop=c["pop"], interval=c["interval_ms"] / 1000, rise=c["rise"], fall=c["fall"], http=http, dns=dns,
                  bird_socket=c["bird"]["socket"], protocols=tuple(c["bird"]["protocols"]),
                  bird_timeout=c["bird"]["timeout_ms"] / 1000,
                  damping=Damping(float(dm["stable_s"]), float(dm["min_hold_down_s"]), float(dm["max_hold_down_s"]),
                                  float(dm["half_life_s"]), float(dm["max_penalty"])),
                  status_address=st["address"], status_port=st["port"],
                  drain=DrainConfig(dr["file"], float(dr["quiet_s"]), float(dr["timeout_s"]), tuple(dr["ports"]),
                                    tuple(dr["gshut_protocols"]), float(dr["gshut_s"]), float(dr["quiet_fraction"]),
                                    float(dr["quiet_per_s"])))


# ---------------------------------------------------------------------------------------------------------------------
# Checks

def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def check_http(check: HttpCheck) -> str | None:
    """None if ``GET path`` answers 200, else the reason."""
    conn = http.client.HTTPConnection(check.host, check.port, timeout=check.timeout)
    try:
        conn.request("GET", check.path, headers={"User-Agent": "anycast-health", "Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        return None if resp.status == 200 else f"http status {resp.status}"
    except (OSError, http.client.HTTPException) as exc:
        return f"http {type(exc).__name__}: {exc}"
    finally:
        conn.close()


def dns_query(qname: str, qtype: int, qid: int) -> bytes:
    """A standard query with RD clear (an authoritative server is asked), with an EDNS OPT record asking for DNSSEC
    records (DO bit, RFC 3225): a signed zone answers with the RRSIG too, whose expiration /metrics exposes."""
    header = struct.pack("!HHHHHH", qid, 0x0000, 1, 0, 0, 1)
    labels = b"".join(bytes([len(p)]) + p.encode("ascii") for p in qname.rstrip(".").split(".") if p)
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0x00008000, 0)  # root, OPT, UDP size 1232, DO, no options
    return header + labels + b"\x00" + struct.pack("!HH", qtype, 1) + opt


RRSIG = 46


def _skip_name(data: bytes, at: int) -> int:
    while True:
        n = data[at]
        if n & 0xC0 == 0xC0:
            return at + 2
        if n == 0:
            return at + 1
        at += 1 + n


def rrsig_expiration(data: bytes) -> int | None:
    """The earliest RRSIG expiration (Unix seconds, RFC 4034 section 3.1.5) in the answer section, None if there is
    none or the message does not parse (the health check does not depend on it)."""
    try:
        qdcount, ancount = struct.unpack("!HH", data[4:8])
        at = 12
        for _ in range(qdcount):
            at = _skip_name(data, at) + 4
        found = []
        for _ in range(ancount):
            at = _skip_name(data, at)
            rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", data[at:at + 10])
            at += 10
            if rtype == RRSIG and rdlen >= 18:
                found.append(struct.unpack("!I", data[at + 8:at + 12])[0])
            at += rdlen
        return min(found) if found else None
    except (IndexError, struct.error):
        return None


def check_dns(check: DnsCheck, signatures: dict[str, int | None] | None = None) -> str | None:
    """None if the server answers the query with NOERROR and at least one answer record, else the reason.
    ``signatures["expiration"]`` gets the answer's earliest RRSIG expiration (None: unsigned)."""
    qid = random.randrange(0, 65536)
    sock = socket.socket(_family(check.server), socket.SOCK_DGRAM)
    sock.settimeout(check.timeout)
    deadline = time.monotonic() + check.timeout
    try:
        # Connected, so the kernel reports ICMP port unreachable (a dead NSD) as ECONNREFUSED at once instead of
        # leaving the query to time out (Linux udp(7): errors reach only connected sockets without IP_RECVERR).
        sock.connect((check.server, check.port))
        sock.send(dns_query(check.qname, check.qtype, qid))
        while True:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            data = sock.recv(4096)
            if len(data) < 12:
                continue
            rid, flags, _qd, ancount, _ns, _ar = struct.unpack("!HHHHHH", data[:12])
            if rid != qid or not flags & 0x8000:
                continue  # not our answer
            rcode = flags & 0x000F
            if rcode != 0:
                return f"dns rcode {rcode}"
            if signatures is not None:
                signatures["expiration"] = rrsig_expiration(data)
            return None if ancount > 0 else "dns empty answer"
    except OSError as exc:
        return f"dns {type(exc).__name__}: {exc}"
    finally:
        sock.close()


class Watch:
    """An idle TCP connection to a service: it becomes readable (EOF or reset) the moment the process dies."""

    def __init__(self, name: str, host: str, port: int, timeout: float) -> None:
        self.name, self.host, self.port, self.timeout = name, host, port, timeout
        self.sock: socket.socket | None = None

    def connect(self) -> bool:
        if self.sock is not None:
            return True
        sock = socket.socket(_family(self.host), socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect((self.host, self.port))
        except OSError:
            sock.close()
            return False
        sock.setblocking(False)
        self.sock = sock
        return True

    def fired(self) -> bool:
        """Called when poll says readable: True if the peer closed (the watch is then closed too)."""
        assert self.sock is not None
        try:
            data = self.sock.recv(4096)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if data:
            return False  # a server never talks first; ignore
        self.close()
        return True

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


# ---------------------------------------------------------------------------------------------------------------------
# BIRD

class BirdError(RuntimeError):
    """BIRD refused a command or the control socket failed."""


class Bird:
    """A persistent connection to BIRD's control socket (it also closes when BIRD dies, which we poll for)."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path, self.timeout = path, timeout
        self.sock: socket.socket | None = None
        self.version = ""

    def _connect(self) -> socket.socket:
        if self.sock is not None:
            return self.sock
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
            buf = b""
            while b"\n" not in buf:  # the welcome line: 0001 BIRD x.y.z ready.
                chunk = sock.recv(4096)
                if not chunk:
                    raise BirdError("control socket closed before the welcome line")
                buf += chunk
        except OSError as exc:
            sock.close()
            raise BirdError(f"{self.path}: {exc.strerror or exc}") from exc
        except BirdError:
            sock.close()
            raise
        self.version = buf.decode(errors="replace").split("\n")[0][5:].strip()
        self.sock = sock
        return sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def fileno(self) -> int | None:
        return self.sock.fileno() if self.sock is not None else None

    def command(self, command: str) -> str:
        """Send one command and return the reply (all lines, codes kept). The reply ends with a line whose 4-digit
        code is followed by a space (``0000 ``, ``0009 x: disabled``); continuation lines start ``DDDD-`` or a space."""
        sock = self._connect()
        try:
            sock.settimeout(self.timeout)
            sock.sendall(command.encode() + b"\n")
            buf = b""
            deadline = time.monotonic() + self.timeout
            while True:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                if not chunk:
                    raise BirdError(f"control socket closed during '{command}'")
                buf += chunk
                if buf.endswith(b"\n"):
                    for line in buf.decode(errors="replace").split("\n")[:-1]:
                        if len(line) >= 5 and line[:4].isdigit() and line[4] == " ":
                            if line[0] in "89":  # 8xxx run-time error, 9xxx parse error
                                raise BirdError(f"'{command}': {line.strip()}")
                            return buf.decode(errors="replace")
        except (OSError, BirdError) as exc:
            self.close()
            if isinstance(exc, BirdError):
                raise
            raise BirdError(f"'{command}': {exc.strerror or exc}") from exc

    def set_protocol(self, protocol: str, enabled: bool) -> str:
        """Enable or disable one protocol; return BIRD's reply; raise BirdError unless BIRD confirms it."""
        verb = "enable" if enabled else "disable"
        reply = self.command(f"{verb} {protocol}")
        for line in reply.splitlines():
            if line[:4] in BIRD_OK_CODES[verb] and protocol in line:
                return line[5:].strip()
        raise BirdError(f"'{verb} {protocol}': unexpected reply {reply.strip()!r}")

    def protocols(self) -> dict[str, dict[str, Any]]:
        """``show protocols all``: name -> {proto, state, info, bgp_state, imported, exported}."""
        return parse_protocols(self.command("show protocols all"))


def parse_protocols(reply: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for raw in reply.splitlines():
        code = raw[:4] if len(raw) >= 5 and raw[:4].isdigit() and raw[4] in "- " else None
        text = raw[5:] if code else raw[1:] if raw.startswith(" ") else raw
        if code == "1002":
            parts = text.split()
            if len(parts) >= 4:
                current = {"proto": parts[1], "state": parts[3], "info": " ".join(parts[5:]),
                           "bgp_state": None, "imported": 0, "exported": 0}
                out[parts[0]] = current
            continue
        if current is None:
            continue
        s = text.strip()
        if s.startswith("BGP state:"):
            current["bgp_state"] = s.split(":", 1)[1].strip()
        elif s.startswith("Routes:"):
            words = s.split(":", 1)[1].replace(",", " ").split()
            for n, w in itertools.pairwise(words):
                if w in ("imported", "exported") and n.isdigit():
                    current[w] += int(n)
    return out


def bird_command(path: str, command: str, timeout: float = 2.0) -> str:
    """One command on a fresh connection (for --drain and tests)."""
    b = Bird(path, timeout)
    try:
        return b.command(command)
    finally:
        b.close()


def set_protocol(path: str, protocol: str, enabled: bool, timeout: float = 2.0) -> str:
    b = Bird(path, timeout)
    try:
        return b.set_protocol(protocol, enabled)
    finally:
        b.close()


# ---------------------------------------------------------------------------------------------------------------------
# State machines

@dataclass
class Hysteresis:
    """Rise/fall state machine. ``healthy`` is None until the first decision."""

    rise: int
    fall: int
    healthy: bool | None = None
    good: int = 0
    bad: int = 0

    def feed(self, ok: bool) -> bool:
        """Record one round; return True if the state changed (or was decided for the first time)."""
        if ok:
            self.good, self.bad = self.good + 1, 0
            if self.healthy is not True and self.good >= self.rise:
                self.healthy = True
                return True
        else:
            self.bad, self.good = self.bad + 1, 0
            if self.healthy is not False and self.bad >= self.fall:
                self.healthy = False
                return True
        return False

    def force_down(self) -> bool:
        """An event proved a service dead: down now, without waiting for ``fall`` rounds."""
        self.bad, self.good = max(self.bad, self.fall), 0
        changed = self.healthy is not False
        self.healthy = False
        return changed


@dataclass
class Damper:
    """Hold-down after flaps: a withdrawal within ``stable_s`` of the last announcement doubles the wait.

    Route flap damping upstream (RFC 2439) adds 1000 to a prefix's figure of merit per withdrawal, halves it every
    half-life and suppresses the prefix above a threshold (RFC 7196: at least 6000, half-life 15 min). The agent keeps
    the same figure for its own withdrawals and announces only while one more withdrawal leaves it at or below
    ``max_penalty``: a crash loop then never reaches the transit's suppress threshold (0: off)."""

    cfg: Damping
    flaps: int = 0
    announced_at: float | None = None
    withdrawn_at: float | None = None
    penalty: float = 0.0
    penalty_at: float = 0.0

    def announced(self, now: float) -> None:
        self.announced_at = now

    def figure_of_merit(self, now: float) -> float:
        if not self.penalty or self.cfg.half_life_s <= 0:
            return 0.0
        return self.penalty * 0.5 ** ((now - self.penalty_at) / self.cfg.half_life_s)

    def withdrawn(self, now: float, flap: bool = True) -> None:
        """Every withdrawal counts upstream (a drain too); only ``flap`` ones count as flaps in a row."""
        self.penalty, self.penalty_at = self.figure_of_merit(now) + WITHDRAWAL_PENALTY, now
        if not flap:
            self.announced_at = None
            return
        if self.announced_at is not None and now - self.announced_at < self.cfg.stable_s:
            self.flaps += 1
        else:
            self.flaps = 0
        self.announced_at = None
        self.withdrawn_at = now

    def penalty_until(self) -> float:
        """Monotonic time from which figure of merit + one withdrawal <= max_penalty (0.0: now)."""
        if not self.cfg.max_penalty or self.penalty + WITHDRAWAL_PENALTY <= self.cfg.max_penalty:
            return 0.0
        return self.penalty_at + self.cfg.half_life_s * math.log2(
            self.penalty / (self.cfg.max_penalty - WITHDRAWAL_PENALTY))

    def hold_down(self) -> float:
        if self.flaps == 0:
            return 0.0
        return min(self.cfg.max_hold_down_s, self.cfg.min_hold_down_s * 2 ** (self.flaps - 1))

    def until(self) -> float:
        """Monotonic time before which no announcement may happen."""
        flaps = 0.0 if self.withdrawn_at is None else self.withdrawn_at + self.hold_down()
        return max(flaps, self.penalty_until())


def sd_notify(message: str) -> bool:
    """sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET (abstract names start with '@')."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(message.encode())
        return True
    except OSError:
        return False


def watchdog_interval() -> float | None:
    """$WATCHDOG_USEC in seconds if the watchdog is meant for this process (sd_watchdog_enabled(3) rules)."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1e6


# ---------------------------------------------------------------------------------------------------------------------
# The agent

def _wall(mono: float | None) -> float | None:
    return None if mono is None else round(time.time() - (time.monotonic() - mono), 3)


@dataclass
class CheckState:
    ok: bool | None = None
    detail: str | None = None
    latency_s: float | None = None
    checked_at: float | None = None
    failures: int = 0
    events: int = 0


@dataclass
class Agent:
    cfg: Config
    log: Any = field(default=sys.stderr)
    state: Hysteresis = field(init=False)
    damper: Damper = field(init=False)
    wanted: bool = field(default=False, init=False)
    bird: Bird = field(init=False)
    watches: dict[str, Watch] = field(init=False)
    checks: dict[str, CheckState] = field(init=False)
    bird_problem: str | None = field(default=None, init=False)
    bird_protocols: dict[str, dict[str, Any]] = field(default_factory=dict, init=False)
    drained: bool = field(default=False, init=False)
    withdrawals: dict[str, int] = field(default_factory=lambda: {"check": 0, "event": 0, "drain": 0}, init=False)
    last_cycle: float | None = field(default=None, init=False)
    last_ping: float | None = field(default=None, init=False)
    started: float = field(default_factory=time.monotonic, init=False)
    reason: str = field(default="starting: no checks yet", init=False)
    lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    snapshot: dict[str, Any] = field(default_factory=dict, init=False)
    watchdog: float | None = field(default=None, init=False)
    ready: bool = field(default=False, init=False)
    signatures: dict[str, int | None] = field(default_factory=lambda: {"expiration": None}, init=False)

    def __post_init__(self) -> None:
        self.state = Hysteresis(self.cfg.rise, self.cfg.fall)
        self.damper = Damper(self.cfg.damping)
        self.bird = Bird(self.cfg.bird_socket, self.cfg.bird_timeout)
        self.watches = {}
        self.checks = {}
        if self.cfg.http is not None:
            self.watches["http"] = Watch("http", self.cfg.http.host, self.cfg.http.port, self.cfg.http.timeout)
            self.checks["http"] = CheckState()
        if self.cfg.dns is not None:
            self.watches["dns"] = Watch("dns", self.cfg.dns.server, self.cfg.dns.port, self.cfg.dns.timeout)
            self.checks["dns"] = CheckState()
        self.watchdog = watchdog_interval()
        self._publish()

    def say(self, text: str) -> None:
        print(f"anycast-health[{self.cfg.pop}]: {text}", file=self.log, flush=True)

    # -- checks
    def check_one(self, name: str, timeout: float | None = None) -> str | None:
        t = time.monotonic()
        if name == "http":
            assert self.cfg.http is not None
            reason = check_http(self.cfg.http if timeout is None else dataclasses.replace(self.cfg.http, timeout=timeout))
        else:
            assert self.cfg.dns is not None
            reason = check_dns(self.cfg.dns if timeout is None else dataclasses.replace(self.cfg.dns, timeout=timeout),
                               self.signatures)
        cs = self.checks[name]
        cs.latency_s, cs.checked_at, cs.ok, cs.detail = time.monotonic() - t, t, reason is None, reason
        if reason:
            cs.failures += 1
        return reason

    def probe(self) -> list[str]:
        """The failure reasons of this round (empty: healthy)."""
        return [r for name in self.checks if (r := self.check_one(name))]

    # -- decisions
    def decide(self, cause: str) -> None:
        """Set ``wanted`` from health, drain and hold-down; push it to BIRD at once if it changed."""
        now = time.monotonic()
        self.drained = os.path.exists(self.cfg.drain.file)
        if self.drained:
            want, why = False, f"drained ({self.cfg.drain.file} exists)"
        elif self.state.healthy is not True:
            want = False
            bad = [f"{n}: {c.detail}" for n, c in self.checks.items() if c.ok is False]
            why = "unhealthy: " + "; ".join(bad) if bad else "waiting for rise good checks"
        elif now < self.damper.until():
            merit = (f" (figure of merit {self.damper.figure_of_merit(now):.0f}: one more withdrawal would pass "
                     f"damping.max_penalty {self.cfg.damping.max_penalty:g})" if now < self.damper.penalty_until() else "")
            want, why = False, (f"hold-down after {self.damper.flaps} flap(s) in a row{merit}: announcing in "
                                f"{self.damper.until() - now:.1f} s")
        else:
            want, why = True, "healthy"
        if want != self.wanted:
            if want:
                self.damper.announced(now)
            else:
                self.damper.withdrawn(now, flap=cause != "drain" and not self.drained)
                self.withdrawals["drain" if self.drained else cause] += 1
            self.say(("announcing: " if want else "withdrawing: ") + why)
            self.wanted = want
            self.reconcile()
            self.notify_status(why)
        elif why.startswith("hold-down") and not self.reason.startswith("hold-down"):
            self.say(why)  # healthy again, held down: said once
        self.reason = why

    def reconcile(self) -> None:
        """Read BIRD's actual state and correct every protocol that differs from ``wanted``."""
        try:
            protos = self.bird.protocols()
            for name in self.cfg.protocols:
                p = protos.get(name)
                if p is None:
                    raise BirdError(f"protocol {name} is not in BIRD's configuration")
                if (p["state"] == "up") != self.wanted or (self.wanted and "disabled" in p["info"]):
                    reply = self.bird.set_protocol(name, self.wanted)
                    self.say(f"bird: {reply}")
                    protos = self.bird.protocols()
            if not self.wanted:
                for name in self.cfg.drain.gshut_protocols:
                    if protos.get(name, {}).get("state") == "up":
                        self.say(f"bird: {self.bird.set_protocol(name, False)}")
                        protos = self.bird.protocols()
            self.bird_protocols = protos
            problem = None
        except BirdError as exc:
            self.bird_protocols = {}
            problem = str(exc)
        if problem != self.bird_problem:
            self.say(f"bird: {problem} (the PoP announces nothing while BIRD is unreachable or failing)"
                     if problem else f"bird: reachable again ({self.bird.version})")
            self.bird_problem = problem

    def on_event(self, name: str) -> None:
        """A watched connection closed: check that service now; withdraw at once if it fails."""
        self.checks[name].events += 1
        # A dying daemon's other sockets may still exist for a moment (NSD's UDP socket lives in several processes):
        # quick tries (EVENT_TRY_S, doubling) until a refusal (dead), an answer (alive: an idle-timeout close) or the
        # check's timeout; a slow but live server passes once a try outlasts its latency.
        full = (self.cfg.http if name == "http" else self.cfg.dns)
        assert full is not None
        deadline = time.monotonic() + full.timeout
        try_s = EVENT_TRY_S
        while True:
            reason = self.check_one(name, timeout=max(0.001, min(try_s, deadline - time.monotonic())))
            if reason is None:
                self.watches[name].connect()  # an idle-timeout close: reopen
                return
            if "Refused" in reason or "Reset" in reason or time.monotonic() >= deadline:
                break
            try_s *= 2
        self.say(f"{name} connection closed and the check fails ({reason})")
        if self.state.force_down():
            self.decide("event")

    def cycle(self) -> None:
        reasons = self.probe()
        self.state.feed(not reasons)
        self.decide("check")
        self.reconcile()
        for w in self.watches.values():
            w.connect()
        self.last_cycle = time.monotonic()
        self._publish()
        if not self.ready:
            self.ready = sd_notify("READY=1\nSTATUS=" + self.reason)
        if self.watchdog is not None and sd_notify("WATCHDOG=1"):
            self.last_ping = time.monotonic()

    def notify_status(self, why: str) -> None:
        sd_notify(f"STATUS={'announced' if self.wanted else 'withdrawn'}: {why}")

    def run(self, stop: threading.Event) -> None:
        self.say(f"checking every {int(self.cfg.interval * 1000)} ms and on connection close, rise {self.cfg.rise}, "
                 f"fall {self.cfg.fall}, protocols {', '.join(self.cfg.protocols)}, watchdog "
                 + (f"{self.watchdog:.1f} s" if self.watchdog else "off"))
        next_at = time.monotonic()
        poller = select.poll()
        registered: dict[int, str] = {}
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_at:
                self.cycle()
                next_at += self.cfg.interval
                if next_at < time.monotonic():
                    next_at = time.monotonic() + self.cfg.interval
            # (Re)register the sockets to wait on: the two watches and BIRD's control connection.
            want = {w.sock.fileno(): n for n, w in self.watches.items() if w.sock is not None}
            if (fd := self.bird.fileno()) is not None:
                want[fd] = "bird"
            for fd in set(registered) - set(want):
                poller.unregister(fd)
            for fd in set(want) - set(registered):
                poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
            registered = want
            timeout_ms = max(0, int((next_at - time.monotonic()) * 1000) + 1)
            try:
                events = poller.poll(timeout_ms)
            except InterruptedError:
                continue
            for fd, _ in events:
                name = registered.get(fd)
                if name == "bird":
                    self.bird.close()  # BIRD went away (or restarted): reconcile with the new one now
                    self.reconcile()
                elif name is not None and self.watches[name].fired():
                    self.on_event(name)

    # -- status
    def _publish(self) -> None:
        sessions = {n: {"state": p["state"], "bgp_state": p["bgp_state"], "routes_exported": p["exported"],
                        "routes_imported": p["imported"]}
                    for n, p in sorted(self.bird_protocols.items()) if p["proto"] == "BGP"}
        protocols = {n: {"state": self.bird_protocols[n]["state"], "info": self.bird_protocols[n]["info"]}
                     if n in self.bird_protocols else None for n in self.cfg.protocols}
        up = [p is not None and p["state"] == "up" for p in protocols.values()]
        exported = sum(s["routes_exported"] for s in sessions.values())
        if self.bird_problem is not None or not self.bird_protocols:
            state = "unknown"
        elif self.wanted and all(up):
            state = "announced"
        elif not self.wanted and not any(up):
            state = "drained" if self.drained else "withdrawn"
        else:
            state = "changing"
        now = time.monotonic()
        snap = {
            "schema": STATUS_SCHEMA,
            "pop": self.cfg.pop,
            "time": round(time.time(), 3),
            "state": state,
            "reason": self.reason,
            "healthy": self.state.healthy,
            "announce": {"wanted": self.wanted, "hold_down_until": _wall(self.damper.until()) if now < self.damper.until() else None,
                         "flaps": self.damper.flaps, "announced_since": _wall(self.damper.announced_at),
                         "withdrawals": dict(self.withdrawals)},
            "drain": {"drained": self.drained, "file": self.cfg.drain.file},
            "checks": {n: {"ok": c.ok, "detail": c.detail,
                           "latency_ms": None if c.latency_s is None else round(c.latency_s * 1000, 3),
                           "checked_at": _wall(c.checked_at), "failures": c.failures, "events": c.events,
                           "watch": "open" if self.watches[n].sock is not None else "closed"}
                       for n, c in self.checks.items()},
            "bird": {"reachable": self.bird_problem is None and bool(self.bird_protocols), "error": self.bird_problem,
                     "version": self.bird.version or None, "protocols": protocols, "sessions": sessions},
            "exported": {"anycast": state == "announced" and exported > 0, "routes": exported},
            "dnssec": {"signature_expiration": self.signatures["expiration"]},
            "agent": {"pid": os.getpid(), "started": _wall(self.started), "interval_ms": int(self.cfg.interval * 1000),
                      "rise": self.cfg.rise, "fall": self.cfg.fall,
                      "last_cycle_age_s": None if self.last_cycle is None else round(now - self.last_cycle, 3),
                      "watchdog": {"enabled": self.watchdog is not None, "timeout_s": self.watchdog,
                                   "last_ping_age_s": None if self.last_ping is None else round(now - self.last_ping, 3)}},
        }
        with self.lock:
            self.snapshot = snap

    def status(self) -> dict[str, Any]:
        with self.lock:
            snap = json.loads(json.dumps(self.snapshot))
        if self.last_cycle is not None:  # ages at the time of the request (a wedged loop shows here)
            snap["agent"]["last_cycle_age_s"] = round(time.monotonic() - self.last_cycle, 3)
        return snap


def metrics(status: dict[str, Any]) -> str:
    """The status in Prometheus text exposition format (version 0.0.4)."""
    out: list[str] = []

    def metric(name: str, kind: str, text: str, samples: list[tuple[str, Any]]) -> None:
        out.append(f"# HELP {name} {text}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            v = "NaN" if value is None else str(float(value) if isinstance(value, bool) else value)
            out.append(f"{name}{labels} {v}")

    def b(x: Any) -> int | None:
        return None if x is None else int(bool(x))

    checks = status["checks"]
    sessions = status["bird"]["sessions"]
    agent = status["agent"]
    metric("anycast_health_info", "gauge", "Constant 1 with the PoP code and the status schema.",
           [(f'{{pop="{status["pop"]}",schema="{status["schema"]}"}}', 1)])
    metric("anycast_health_check_up", "gauge", "1 if the last check of this service passed.",
           [(f'{{check="{n}"}}', b(c["ok"])) for n, c in checks.items()])
    metric("anycast_health_check_latency_seconds", "gauge", "Duration of the last check.",
           [(f'{{check="{n}"}}', None if c["latency_ms"] is None else c["latency_ms"] / 1000) for n, c in checks.items()])
    metric("anycast_health_check_failures_total", "counter", "Failed checks since the agent started.",
           [(f'{{check="{n}"}}', c["failures"]) for n, c in checks.items()])
    metric("anycast_health_connection_closed_total", "counter", "Watched connections that closed (crash events).",
           [(f'{{check="{n}"}}', c["events"]) for n, c in checks.items()])
    metric("anycast_health_healthy", "gauge", "1 healthy, 0 unhealthy (NaN before the first decision).",
           [("", b(status["healthy"]))])
    metric("anycast_health_announce_wanted", "gauge", "1 if the agent wants the anycast routes announced.",
           [("", b(status["announce"]["wanted"]))])
    metric("anycast_health_announced", "gauge", "1 if BIRD has every anycast protocol up (routes announced).",
           [("", b(status["state"] == "announced"))])
    metric("anycast_health_withdrawals_total", "counter", "Withdrawals by cause (check, event, drain).",
           [(f'{{cause="{k}"}}', v) for k, v in sorted(status["announce"]["withdrawals"].items())])
    metric("anycast_health_flaps", "gauge", "Flaps in a row (withdrawn within damping.stable_s of announcing).",
           [("", status["announce"]["flaps"])])
    metric("anycast_health_drained", "gauge", "1 while the drain file exists.", [("", b(status["drain"]["drained"]))])
    metric("anycast_health_bird_up", "gauge", "1 if BIRD's control socket answers.", [("", b(status["bird"]["reachable"]))])
    metric("anycast_health_bgp_session_up", "gauge", "1 if the BGP session is Established.",
           [(f'{{session="{n}"}}', b(s["bgp_state"] == "Established")) for n, s in sessions.items()])
    metric("anycast_health_bgp_routes_exported", "gauge", "Routes BIRD exports over the session.",
           [(f'{{session="{n}"}}', s["routes_exported"]) for n, s in sessions.items()])
    metric("anycast_health_watchdog_enabled", "gauge", "1 if systemd's watchdog is armed for the agent.",
           [("", b(agent["watchdog"]["enabled"]))])
    metric("anycast_health_watchdog_last_ping_age_seconds", "gauge", "Seconds since the last WATCHDOG=1.",
           [("", agent["watchdog"]["last_ping_age_s"])])
    metric("anycast_health_last_cycle_age_seconds", "gauge", "Seconds since the last completed check round.",
           [("", agent["last_cycle_age_s"])])
    metric("anycast_health_dnssec_signature_expiration_timestamp_seconds", "gauge",
           "Earliest RRSIG expiration in NSD's answer to the DNS check (NaN: unsigned zone).",
           [("", status["dnssec"]["signature_expiration"])])
    return "\n".join(out) + "\n"


def serve_status(agent: Agent) -> ThreadingHTTPServer | None:
    """``/status`` (JSON) and ``/metrics`` (Prometheus) on status.address:status.port, in a daemon thread."""
    if agent.cfg.status_port == 0:
        return None

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/", "/status"):
                body, ctype = (json.dumps(agent.status(), indent=2, sort_keys=True) + "\n").encode(), "application/json"
            elif path == "/metrics":
                body, ctype = metrics(agent.status()).encode(), "text/plain; version=0.0.4; charset=utf-8"
            else:
                self.send_error(404, "try /status or /metrics")
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        address_family = _family(agent.cfg.status_address)

        def server_bind(self) -> None:
            if self.address_family == socket.AF_INET6:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            # Not HTTPServer.server_bind: its socket.getfqdn() asks DNS for the bind address's name, which held a
            # restarted agent (and so the PoP's re-announcement) 5 s when the resolver did not answer.
            socketserver.TCPServer.server_bind(self)
            self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    server = Server((agent.cfg.status_address, agent.cfg.status_port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="status").start()
    return server


# ---------------------------------------------------------------------------------------------------------------------
# Drain: withdraw, wait until BIRD has sent the withdrawals and the traffic to the service addresses has stopped,
# then say it is safe.

BASELINE_S = 1.0  # the graceful phase measures the packet rate this long before announcing 65535:0
# The ruleset's named counter of packets reaching the service addresses from outside (infra/contracts.py
# ARRIVALS_COUNTER; userdata/templates/nftables.conf.j2): its first rule counts them, whatever their state, before
# anything is accepted. Reading it takes CAP_NET_ADMIN (root's shell, anycast-reboot.service).
NFT = "nft"
ARRIVALS_COUNTER = ("inet", "anycast", "arrivals")
SAMPLE_S = 0.2  # the counter is read at most this often (one `nft` run each)


def _hexaddr(addr: str) -> str:
    """The address as /proc/net/tcp{,6} prints it (host byte order per 32-bit word)."""
    raw = socket.inet_pton(_family(addr), addr)
    return "".join(f"{struct.unpack('<I', raw[i:i + 4])[0]:08X}" for i in range(0, len(raw), 4))


OPEN_STATES = {"01", "02", "03", "04", "08", "09", "0B"}  # ESTABLISHED, SYN_SENT/RECV, FIN_WAIT1, CLOSE_WAIT, LAST_ACK, CLOSING


def service_connections(addresses: list[str], ports: tuple[int, ...]) -> dict[tuple[str, str], str]:
    """TCP connections to ``addresses``:``ports`` in this network namespace from elsewhere (the agent's own checks come
    from the service address itself and are left out): (local, remote) -> /proc state code."""
    local = {_hexaddr(a) for a in addresses}
    want = {f"{h}:{p:04X}" for h in local for p in ports}
    out: dict[tuple[str, str], str] = {}
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path, encoding="ascii") as fh:
                lines = fh.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 3 and f[3] != "0A" and f[1] in want and f[2].split(":")[0] not in local:
                out[(f[1], f[2])] = f[3]
    return out


def arrivals() -> int | None:
    """Packets that reached the service addresses from outside since the ruleset was loaded (``ARRIVALS_COUNTER``),
    or None when the counter cannot be read (no such ruleset, no CAP_NET_ADMIN, no nft). Per destination: SSH,
    Prometheus scrapes of the unicast address, BGP and the agent's own checks (over lo) are not in it."""
    try:
        res = subprocess.run([NFT, "-j", "list", "counter", *ARRIVALS_COUNTER], capture_output=True, text=True,
                             timeout=5, check=False)
        found = [i["counter"]["packets"] for i in json.loads(res.stdout)["nftables"]
                 if i.get("counter", {}).get("name") == ARRIVALS_COUNTER[2]]
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError, AttributeError):
        return None
    # one counter, an int (JSON true is a bool, an int to Python)
    return found[0] if res.returncode == 0 and len(found) == 1 and type(found[0]) is int else None


class Quiet:
    """Has the traffic to the service addresses stopped? No TCP connection to them open, and over the last
    ``drain.quiet_s`` at most ``limit`` packets/s reached them (``arrivals()``, read at most every ``SAMPLE_S``; a
    count that falls, the ruleset loaded again, starts the window again). Without the counter (``counting`` False):
    no connection open for ``drain.quiet_s``, which misses connections shorter than a look and every UDP query. The
    window starts when the object is made."""

    def __init__(self, cfg: Config, addresses: list[str], limit: float, counting: bool, window: float = 0) -> None:
        self.cfg, self.addresses, self.limit, self.counting = cfg, addresses, limit, counting
        self.window = window or cfg.drain.quiet_s
        self.samples: list[tuple[float, int]] = []
        self.since = time.monotonic()

    def rate(self) -> float | None:
        """Packets/s over the last ``window`` (``drain.quiet_s``), None until the samples span it or without a count."""
        now = time.monotonic()
        if not self.samples or now - self.samples[-1][0] >= SAMPLE_S:
            count = arrivals()
            if count is None:
                return None
            if self.samples and count < self.samples[-1][1]:
                self.samples.clear()
            self.samples.append((now, count))
            while len(self.samples) > 2 and self.samples[-1][0] - self.samples[1][0] >= self.window:
                self.samples.pop(0)
        (t, n), (t_last, n_last) = self.samples[0], self.samples[-1]
        return (n_last - n) / (t_last - t) if t_last - t >= self.window else None

    def check(self) -> tuple[bool, str]:
        """(quiet, what it saw)."""
        conns = service_connections(self.addresses, self.cfg.drain.ports)
        busy = sum(1 for st in conns.values() if st in OPEN_STATES)
        seen = f"{busy} connection(s) open, " if busy else ""
        if not self.counting:
            if busy:
                self.since = time.monotonic()
            idle = time.monotonic() - self.since
            return idle >= self.window, f"{seen}none open for {idle:.1f} s (no packet counter)"
        rate = self.rate()
        if rate is None:
            return False, f"{seen}counting packets"
        return not busy and rate <= self.limit, f"{seen}{rate:.1f} packets/s, at most {self.limit:.1f}"


def graceful_shutdown(cfg: Config, bird: Bird, addresses: list[str], say: Any, counting: bool = True) -> None:
    """First phase of --drain (RFC 8326): while the PoP is announced, enable ``drain.gshut_protocols`` (the same routes,
    exported with 65535:0 and prepends), then wait until traffic has moved, at most ``drain.gshut_s``: quiet when over
    the last ``drain.quiet_s`` the packets reaching the service addresses came at most at ``drain.quiet_fraction`` of
    the rate measured ``BASELINE_S`` before the announcement (or ``drain.quiet_per_s``, if more) and no TCP
    connection to them is open (``Quiet``). Upstreams that honour the community move traffic away before anything is
    withdrawn. Skipped when the PoP is not announced (nothing to move) or BIRD lacks the protocols."""
    try:
        protos = bird.protocols()
        if not cfg.drain.gshut_protocols or not any(protos.get(n, {}).get("state") == "up" for n in cfg.protocols):
            return
        missing = [n for n in cfg.drain.gshut_protocols if n not in protos]
        if missing:
            say(f"graceful shutdown skipped: BIRD has no protocol {missing}")
            return
        before = Quiet(cfg, [], 0, True, BASELINE_S)
        while counting and before.rate() is None and time.monotonic() - before.since < 5 * BASELINE_S:
            time.sleep(0.05)
        for name in cfg.drain.gshut_protocols:
            bird.set_protocol(name, True)
    except BirdError as exc:
        say(f"graceful shutdown skipped: BIRD: {exc}")
        return
    base = (before.rate() or 0.0) if counting else 0.0
    t0 = time.monotonic()
    say(f"graceful shutdown: announcing with 65535:0 ({', '.join(cfg.drain.gshut_protocols)}) at {base:.1f} "
        f"packets/s; waiting up to {cfg.drain.gshut_s:g} s for the traffic to move")
    quiet, seen = Quiet(cfg, addresses, max(cfg.drain.quiet_fraction * base, cfg.drain.quiet_per_s), counting), ""
    while time.monotonic() - t0 < cfg.drain.gshut_s:
        done, seen = quiet.check()
        if done:
            say(f"graceful shutdown: quiet after {time.monotonic() - t0:.2f} s ({seen}); withdrawing")
            return
        time.sleep(0.05)
    say(f"graceful shutdown: still busy after {cfg.drain.gshut_s:g} s ({seen}); withdrawing anyway")


def drain(cfg: Config, say: Any, graceful: bool = True) -> int:
    """--drain: graceful shutdown first (``graceful_shutdown``; skipped with ``graceful=False``, --no-graceful: a plain
    withdrawal), then the file makes the agent keep the PoP withdrawn; BIRD is told directly too (works without the
    agent). Safe to stop = every anycast and graceful-shutdown protocol down, every BGP session exports 0 routes, and
    since the withdrawal the traffic has stopped (``Quiet``: no TCP connection to the service addresses open, at most
    ``drain.quiet_per_s`` packets/s reaching them over ``drain.quiet_s``)."""
    t0 = time.monotonic()
    bird = Bird(cfg.bird_socket, max(cfg.bird_timeout, 2.0))
    # HTTP and DNS usually share the anycast address: each address once
    addresses = list(dict.fromkeys(a for a in ((cfg.http.host if cfg.http else None),
                                                (cfg.dns.server if cfg.dns else None)) if a))
    counting = arrivals() is not None
    if not counting:
        say("no packet counter (nft: no ruleset, or no CAP_NET_ADMIN): quiet = no TCP connection open")
    try:
        if graceful:
            graceful_shutdown(cfg, bird, addresses, say, counting)
        elif cfg.drain.gshut_protocols:
            say("graceful shutdown skipped (--no-graceful): plain withdrawal")
    finally:
        os.makedirs(os.path.dirname(cfg.drain.file) or ".", exist_ok=True)
        with open(cfg.drain.file, "w", encoding="utf-8") as fh:
            fh.write(f"drained at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} by anycast-health --drain\n")
    t1 = time.monotonic()
    quiet: Quiet | None = None
    problem = ""
    try:
        while time.monotonic() - t1 < cfg.drain.timeout_s:
            if quiet is None:
                try:
                    protos = bird.protocols()
                    for name in (*cfg.protocols, *cfg.drain.gshut_protocols):
                        if protos.get(name, {}).get("state") == "up":
                            bird.set_protocol(name, False)
                    protos = bird.protocols()
                    missing = [n for n in cfg.protocols if n not in protos]
                    up = [n for n in (*cfg.protocols, *cfg.drain.gshut_protocols)
                          if protos.get(n, {}).get("state") == "up"]
                    exporting = {n: p["exported"] for n, p in protos.items() if p["proto"] == "BGP" and p["exported"]}
                    problem = (f"BIRD has no protocol {missing}" if missing else f"still exporting {exporting}"
                               if exporting else f"still up: {up}" if up else "")
                except BirdError as exc:
                    problem = f"BIRD: {exc}"
                if not problem:
                    quiet = Quiet(cfg, addresses, cfg.drain.quiet_per_s, counting)  # its window starts now
                    say(f"withdrawn: BIRD exports 0 routes on every session after {time.monotonic() - t0:.2f} s; "
                        f"waiting for the traffic to stop")
            if quiet is not None:
                done, problem = quiet.check()
                if done:
                    say(f"safe to stop: drained in {time.monotonic() - t0:.2f} s ({problem}; to "
                        f"{', '.join(addresses)}); undo with --undrain")
                    return 0
            time.sleep(0.05)
    finally:
        bird.close()
    say(f"not safe yet after {cfg.drain.timeout_s:g} s: {problem or 'not withdrawn'}; the drain file stays")
    return 1


def undrain(cfg: Config, say: Any, timeout: float = 30.0) -> int:
    """--undrain: remove the file; the agent announces again after ``rise`` good checks. Waits for BIRD to show it.
    A graceful-shutdown protocol left enabled by an interrupted drain is disabled first."""
    try:
        protos = parse_protocols(bird_command(cfg.bird_socket, "show protocols all"))
        for name in cfg.drain.gshut_protocols:
            if protos.get(name, {}).get("state") == "up":
                say(f"bird: {set_protocol(cfg.bird_socket, name, False)}")
    except BirdError as exc:
        say(f"BIRD: {exc}")
    try:
        os.unlink(cfg.drain.file)
    except FileNotFoundError:
        say(f"not drained ({cfg.drain.file} does not exist)")
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            protos = parse_protocols(bird_command(cfg.bird_socket, "show protocols all"))
            if all(protos.get(n, {}).get("state") == "up" for n in cfg.protocols):
                say(f"announced again after {time.monotonic() - t0:.2f} s")
                return 0
        except BirdError:
            pass
        time.sleep(0.05)
    say(f"undrained, but not announced after {timeout:g} s: is anycast-health running and are the checks passing?")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="anycast-health", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--config", default="/etc/anycast/health.json", help="health.json (default: %(default)s)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="run one round of checks, print the result, exit 0 if healthy")
    mode.add_argument("--drain", action="store_true", help="withdraw this PoP and wait until it is safe to stop services")
    mode.add_argument("--undrain", action="store_true", help="end a drain; the agent announces again when healthy")
    mode.add_argument("--check-config", action="store_true", help="validate the config and exit")
    parser.add_argument("--no-graceful", action="store_true",
                        help="with --drain: skip the graceful-shutdown phase (65535:0) and withdraw at once")
    args = parser.parse_args(argv)
    if args.no_graceful and not args.drain:
        parser.error("--no-graceful only goes with --drain")
    try:
        with open(args.config, encoding="utf-8") as fh:
            cfg = load_config(json.load(fh))
    except (OSError, ValueError) as exc:
        print(f"anycast-health: {args.config}: {exc}", file=sys.stderr)
        return 2

    def say(text: str) -> None:
        print(f"anycast-health[{cfg.pop}]: {text}", flush=True)

    if args.check_config:
        say("config OK")
        return 0
    if args.drain:
        return drain(cfg, say, graceful=not args.no_graceful)
    if args.undrain:
        return undrain(cfg, say)
    agent = Agent(cfg)
    if args.once:
        reasons = agent.probe()
        agent.say("healthy" if not reasons else "unhealthy: " + "; ".join(reasons))
        return 0 if not reasons else 1
    stop = threading.Event()

    def _stop(_sig: int, _frm: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        serve_status(agent)
    except OSError as exc:
        agent.say(f"status server on [{cfg.status_address}]:{cfg.status_port}: {exc.strerror or exc}; continuing without it")
    agent.run(stop)
    sd_notify("STOPPING=1")
    agent.say(f"stopping (pid {os.getpid()}); systemd's ExecStopPost withdraws the routes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
