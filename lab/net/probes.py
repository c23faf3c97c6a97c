"""What a client sees: DNS (``dig +nsid``) and HTTP (``curl``, ``X-PoP``) from inside its namespace, and a fast
in-process HTTP prober (sockets opened inside the namespace) for failover timing."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from infra.readiness import dns_nsid  # one DNS/NSID client, shared with the readiness gate
from lab.net.netns import LabError, nsrun, socket_in

_NSID_RE = re.compile(r'NSID: .*\("([^"]*)"\)')


@dataclass(frozen=True)
class DnsResult:
    server: str
    nsid: str | None
    answers: tuple[str, ...]
    error: str | None = None


def dig(ns: str, server: str, qname: str, rtype: str) -> DnsResult:
    """``dig +nsid +norec`` from namespace ``ns``: the NSID (PoP code) and the answer addresses."""
    cmd = ["dig", "+nsid", "+norec", "+time=1", "+tries=2", f"@{server}", qname, rtype]
    try:
        out = nsrun(ns, cmd, check=False, timeout=10)
    except LabError as exc:
        return DnsResult(server, None, (), str(exc))
    m = _NSID_RE.search(out)
    answers: list[str] = []
    in_answer = False
    for line in out.splitlines():
        if line.startswith(";; ANSWER SECTION"):
            in_answer = True
            continue
        if in_answer:
            if not line.strip() or line.startswith(";"):
                break
            parts = line.split()
            if len(parts) >= 5 and parts[3] == rtype:
                answers.append(parts[4])
    error = None if "status: NOERROR" in out else (out.strip().splitlines()[-1] if out.strip() else "no output")
    return DnsResult(server, m.group(1) if m else None, tuple(answers), error)


def curl_pop(ns: str, address: str, path: str = "/") -> tuple[str | None, str | None]:
    """``curl`` from namespace ``ns`` to ``http://address/``: (X-PoP header, error)."""
    host = f"[{address}]" if ":" in address else address
    try:
        out = nsrun(ns, ["curl", "-s", "-m", "3", "-o", "/dev/null", "-D", "-", f"http://{host}{path}"], check=False, timeout=10)
    except LabError as exc:
        return None, str(exc)
    for line in out.splitlines():
        if line.lower().startswith("x-pop:"):
            return line.split(":", 1)[1].strip(), None
    return None, "no X-PoP header" if out else "no answer"


def read_head(sock: socket.socket) -> bytes:
    """What the server sent up to the end of the response header (or until it closed)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def http_pop(ns: str, address: str, timeout: float = 0.2) -> str | None:
    """One GET from inside ``ns`` (no subprocess): the X-PoP header, or None on any failure."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket_in(ns, family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((address, 80))
        sock.sendall(b"GET / HTTP/1.0\r\nHost: lab\r\nUser-Agent: anycast-lab\r\n\r\n")
        data = read_head(sock)
    except OSError:
        return None
    finally:
        sock.close()
    for line in data.decode(errors="replace").split("\r\n"):
        if line.lower().startswith("x-pop:"):
            return line.split(":", 1)[1].strip()
    return None


def dns_pop(ns: str, server: str, qname: str, timeout: float = 0.2) -> str | None:
    """One SOA query with NSID from inside ``ns`` (no subprocess): the NSID (PoP code), or None on failure."""
    return dns_nsid(server, 53, qname, timeout, connect=lambda family, kind: socket_in(ns, family, kind))


@dataclass
class Prober:
    """Background probes every ``interval`` s; ``samples`` holds (monotonic time, PoP or None).

    ``qname`` None: HTTP GETs (the PoP from X-PoP); else DNS SOA queries for ``qname`` (the PoP from the NSID).
    """

    ns: str
    address: str
    interval: float = 0.02
    qname: str | None = None
    samples: list[tuple[float, str | None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Prober:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            t = time.monotonic()
            pop = http_pop(self.ns, self.address) if self.qname is None else dns_pop(self.ns, self.address, self.qname)
            self.samples.append((t, pop))
            rest = self.interval - (time.monotonic() - t)
            if rest > 0:
                self._stop.wait(rest)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def first_after(self, t0: float, pop: str) -> float | None:
        """The time of the first sample after ``t0`` answered by ``pop``."""
        return next((t for t, p in self.samples if t >= t0 and p == pop), None)

    def lost(self, t0: float, t1: float) -> tuple[int, int]:
        """(failed probes, probes) between t0 and t1."""
        window = [p for t, p in self.samples if t0 <= t <= t1]
        return sum(1 for p in window if p is None), len(window)

    def losses(self, t0: float, t1: float) -> tuple[list[tuple[float, str, str]], int]:
        """The failed probes between t0 and t1 sorted as :func:`losses_at_moves` does."""
        at_moves, _ = losses_at_moves(self.samples)
        everywhere = sum(1 for t, p in self.samples if t0 <= t <= t1 and p is None)
        moved = [m for m in at_moves if t0 <= m[0] <= t1]
        return moved, everywhere - len(moved)


def losses_at_moves(samples: Sequence[tuple[float, str | None]]) -> tuple[list[tuple[float, str, str]], int]:
    """One client's failed probes, in two kinds: those alone between an answer from one PoP and the next answer, from
    another, as (time, PoP before, PoP after): the client's route moved while that probe's TCP connection was open,
    and the new PoP, which has no such connection, reset it; no drain can save those, and a client that probes one
    request at a time loses at most one per move. And how many others: two in a row, or none at a move (a blackhole,
    a PoP that stopped answering)."""
    seq = sorted(samples, key=lambda x: x[0])
    moves: list[tuple[float, str, str]] = []
    other = 0
    for i, (t, pop) in enumerate(seq):
        if pop is not None:
            continue
        before = seq[i - 1][1] if i > 0 else None
        after = seq[i + 1][1] if i + 1 < len(seq) else None
        if before is not None and after is not None and before != after:
            moves.append((t, before, after))
        else:
            other += 1
    return moves, other


def tcp_answer(ns: str, addr: str, port: int, timeout: float = 1.0, source: str | None = None) -> str:
    """A TCP connect from namespace ``ns`` (from ``source`` if given): 'open' (connected; 'ssh' if an SSH banner
    came), 'refused', or 'no answer' (dropped)."""
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    sock = socket_in(ns, fam, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        if source:
            sock.bind((source, 0))
        sock.connect((addr, port))
        with contextlib.suppress(OSError):
            if sock.recv(16).startswith(b"SSH-"):
                return "ssh"
        return "open"
    except ConnectionRefusedError:
        return "refused"
    except (TimeoutError, OSError):
        return "no answer"
    finally:
        sock.close()
