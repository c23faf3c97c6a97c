#!/usr/bin/env python3
"""anycast-health: withdraw this PoP's anycast routes when Caddy or NSD fail, re-announce when they recover.

Reads ``/etc/anycast/health.json`` (see ``userdata/health_config.py``). Every ``interval_ms`` it checks

* HTTP: ``GET <path>`` on the service address must answer 200 within ``timeout_ms``;
* DNS: a ``<qname> <qtype>`` query (built here with struct) to the service address must get a NOERROR answer with
  the same id and the QR bit set within ``timeout_ms``.

Hysteresis: ``fall`` failed rounds in a row mark the PoP down, ``rise`` good rounds in a row mark it up again. On
every change (and every ``resync_s`` seconds, so a restarted BIRD is corrected too) the agent sends
``disable <proto>`` / ``enable <proto>`` for each protocol in ``bird.protocols`` over BIRD's control socket and
checks the reply code (0008/0009 disabled, 0010/0011 enabled): birdc's exit code says nothing, so it is not used.

Standard library only: it runs as ``/usr/local/sbin/anycast-health`` on a PoP and unchanged in the lab.
Exit codes: 0 on SIGTERM/SIGINT, 2 for a bad configuration.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any

QTYPES = {"A": 1, "NS": 2, "SOA": 6, "TXT": 16, "AAAA": 28}
BIRD_OK_CODES = {"disable": ("0008", "0009"), "enable": ("0010", "0011")}


class ConfigProblem(ValueError):
    """health.json is missing a field or has a wrong value."""


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
class Config:
    pop: str
    interval: float
    rise: int
    fall: int
    http: HttpCheck | None
    dns: DnsCheck | None
    bird_socket: str
    protocols: tuple[str, ...]
    resync: float = 10.0


def load_config(data: dict[str, Any]) -> Config:
    """Validate the parsed health.json; raises ConfigProblem naming the field."""
    def need(obj: dict[str, Any], key: str, where: str) -> Any:
        if key not in obj:
            raise ConfigProblem(f"{where}{key}: is required")
        return obj[key]

    http = dns = None
    if "http" in data:
        h = data["http"]
        http = HttpCheck(str(need(h, "host", "http.")), int(h.get("port", 80)), str(h.get("path", "/healthz")),
                         int(h.get("timeout_ms", 300)) / 1000)
    if "dns" in data:
        d = data["dns"]
        qtype = str(d.get("qtype", "SOA")).upper()
        if qtype not in QTYPES:
            raise ConfigProblem(f"dns.qtype: '{qtype}' is not one of {', '.join(QTYPES)}")
        dns = DnsCheck(str(need(d, "server", "dns.")), int(d.get("port", 53)), str(need(d, "qname", "dns.")),
                       QTYPES[qtype], int(d.get("timeout_ms", 300)) / 1000)
    if http is None and dns is None:
        raise ConfigProblem("http, dns: at least one check is required")
    bird = need(data, "bird", "")
    protocols = tuple(str(p) for p in need(bird, "protocols", "bird."))
    if not protocols:
        raise ConfigProblem("bird.protocols: needs at least one protocol")
    cfg = Config(pop=str(data.get("pop", "?")), interval=int(data.get("interval_ms", 200)) / 1000,
                 rise=int(data.get("rise", 3)), fall=int(data.get("fall", 2)), http=http, dns=dns,
                 bird_socket=str(need(bird, "socket", "bird.")), protocols=protocols,
                 resync=float(data.get("resync_s", 10.0)))
    if cfg.rise < 1 or cfg.fall < 1 or cfg.interval <= 0:
        raise ConfigProblem("rise, fall, interval_ms: must be positive")
    return cfg


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
    """A standard query with RD clear (an authoritative server is asked)."""
    header = struct.pack("!HHHHHH", qid, 0x0000, 1, 0, 0, 0)
    labels = b"".join(bytes([len(p)]) + p.encode("ascii") for p in qname.rstrip(".").split(".") if p)
    return header + labels + b"\x00" + struct.pack("!HH", qtype, 1)


def check_dns(check: DnsCheck) -> str | None:
    """None if the server answers the query with NOERROR and at least one answer record, else the reason."""
    qid = random.randrange(0, 65536)
    sock = socket.socket(_family(check.server), socket.SOCK_DGRAM)
    sock.settimeout(check.timeout)
    deadline = time.monotonic() + check.timeout
    try:
        sock.sendto(dns_query(check.qname, check.qtype, qid), (check.server, check.port))
        while True:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            data, _ = sock.recvfrom(4096)
            if len(data) < 12:
                continue
            rid, flags, _qd, ancount, _ns, _ar = struct.unpack("!HHHHHH", data[:12])
            if rid != qid or not flags & 0x8000:
                continue  # not our answer
            rcode = flags & 0x000F
            if rcode != 0:
                return f"dns rcode {rcode}"
            return None if ancount > 0 else "dns empty answer"
    except OSError as exc:
        return f"dns {type(exc).__name__}: {exc}"
    finally:
        sock.close()


class BirdError(RuntimeError):
    """BIRD refused a command or the control socket failed."""


def bird_command(path: str, command: str, timeout: float = 2.0) -> str:
    """Send one command over BIRD's control socket and return the reply text (all lines, codes kept).

    The reply ends with a line whose 4-digit code is followed by a space (``0000 ``, ``0009 x: disabled``) or with
    an error code 8xxx/9xxx; continuation lines start with ``DDDD-`` or a space.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        buf = b""
        while b"\n" not in buf:  # the welcome line: 0001 BIRD x.y.z ready.
            chunk = sock.recv(4096)
            if not chunk:
                raise BirdError("control socket closed before the welcome line")
            buf += chunk
        sock.sendall(command.encode() + b"\n")
        buf = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise BirdError(f"control socket closed during '{command}'")
            buf += chunk
            lines = buf.decode(errors="replace").split("\n")
            for line in lines[:-1]:
                if len(line) >= 5 and line[:4].isdigit() and line[4] == " ":
                    return buf.decode(errors="replace")
    except OSError as exc:
        raise BirdError(f"{path}: {exc}") from exc
    finally:
        sock.close()


def set_protocol(path: str, protocol: str, enabled: bool) -> str:
    """Enable or disable one protocol; return BIRD's reply; raise BirdError unless BIRD confirms it."""
    verb = "enable" if enabled else "disable"
    reply = bird_command(path, f"{verb} {protocol}")
    for line in reply.splitlines():
        if line[:4] in BIRD_OK_CODES[verb] and protocol in line:
            return line[5:].strip()
    raise BirdError(f"'{verb} {protocol}': unexpected reply {reply.strip()!r}")


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


@dataclass
class Agent:
    cfg: Config
    log: Any = field(default=sys.stderr)
    state: Hysteresis = field(init=False)
    applied: bool | None = field(default=None, init=False)
    last_apply: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self.state = Hysteresis(self.cfg.rise, self.cfg.fall)

    def say(self, text: str) -> None:
        print(f"anycast-health[{self.cfg.pop}]: {text}", file=self.log, flush=True)

    def probe(self) -> list[str]:
        """The failure reasons of this round (empty: healthy)."""
        reasons = []
        if self.cfg.http is not None and (r := check_http(self.cfg.http)):
            reasons.append(r)
        if self.cfg.dns is not None and (r := check_dns(self.cfg.dns)):
            reasons.append(r)
        return reasons

    def apply(self, healthy: bool) -> bool:
        """Drive every protocol to the wanted state; True if BIRD confirmed all of them."""
        ok = True
        for proto in self.cfg.protocols:
            try:
                reply = set_protocol(self.cfg.bird_socket, proto, healthy)
                if self.applied is not healthy:
                    self.say(f"bird: {reply}")
            except BirdError as exc:
                ok = False
                self.say(f"bird: {exc}")
        self.last_apply = time.monotonic()
        self.applied = healthy if ok else None
        return ok

    def step(self) -> None:
        reasons = self.probe()
        changed = self.state.feed(not reasons)
        if changed:
            self.say("healthy: announcing" if self.state.healthy else "unhealthy: withdrawing ("
                      + "; ".join(reasons) + ")")
        wanted = self.state.healthy
        if wanted is None:
            return
        if changed or self.applied is not wanted or time.monotonic() - self.last_apply >= self.cfg.resync:
            self.apply(wanted)

    def run(self, stop: list[bool]) -> None:
        self.say(f"checking every {int(self.cfg.interval * 1000)} ms, rise {self.cfg.rise}, fall {self.cfg.fall}, "
                 f"protocols {', '.join(self.cfg.protocols)}")
        next_at = time.monotonic()
        while not stop:
            self.step()
            next_at += self.cfg.interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="anycast-health", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="/etc/anycast/health.json", help="health.json (default: %(default)s)")
    parser.add_argument("--once", action="store_true", help="run one round, print the result, exit 0 if healthy")
    args = parser.parse_args(argv)
    try:
        with open(args.config, encoding="utf-8") as fh:
            cfg = load_config(json.load(fh))
    except (OSError, ValueError) as exc:
        print(f"anycast-health: {args.config}: {exc}", file=sys.stderr)
        return 2
    agent = Agent(cfg)
    if args.once:
        reasons = agent.probe()
        agent.say("healthy" if not reasons else "unhealthy: " + "; ".join(reasons))
        return 0 if not reasons else 1
    stop: list[bool] = []

    def _stop(_sig: int, _frm: object) -> None:
        stop.append(True)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    agent.run(stop)
    agent.say(f"stopping (pid {os.getpid()}); routes left as they are")
    return 0


if __name__ == "__main__":
    sys.exit(main())
