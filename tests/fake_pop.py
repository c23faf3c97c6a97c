"""A PoP impersonated on 127.0.0.1 for the readiness gate's tests: Caddy's ``X-PoP`` answer and the health agent's
status document on one HTTP port, NSD's SOA answer with an NSID on a UDP port. Tests change ``state`` while it runs."""

from __future__ import annotations

import json
import socket
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def status_document(pop: str, *, checks_ok: bool = True, sessions: dict[str, str | None] | None = None,
                    exported: bool = True, drained: bool = False) -> dict[str, Any]:
    """The fields of the health agent's status document (userdata/files/anycast-health.py, ``Agent._publish``,
    schema 1) that the gate reads, with the agent's own key names."""
    sessions = {"vultr4": "Established", "vultr6": "Established"} if sessions is None else sessions
    state = "announced" if exported else ("drained" if drained else "withdrawn")
    return {
        "schema": 1, "pop": pop, "state": state, "reason": "" if exported else "rise 1/3",
        "healthy": checks_ok,
        "checks": {"http": {"ok": checks_ok, "detail": None if checks_ok else "http ConnectionRefusedError"},
                   "dns": {"ok": True, "detail": None}},
        "bird": {"reachable": True, "error": None,
                 "sessions": {name: {"state": "up" if bgp == "Established" else "start", "bgp_state": bgp,
                                     "routes_exported": 2 if exported else 0, "routes_imported": 0}
                              for name, bgp in sessions.items()}},
        "exported": {"anycast": exported, "routes": 4 if exported else 0},
        "drain": {"drained": drained, "file": "/var/lib/anycast/drain"},
    }


@dataclass
class FakePopState:
    pop: str
    xpop: str | None = None  # None: the PoP code
    http_status: int = 200
    status: dict[str, Any] | None = None  # None: 404 on /status
    nsid: str | None = None  # None: the PoP code; "" : no answer at all
    requests: list[str] = field(default_factory=list)


class FakePop:
    """``with FakePop(state) as fake:`` serves HTTP on ``fake.http_port`` and DNS on ``fake.dns_port``."""

    def __init__(self, state: FakePopState) -> None:
        self.state = state
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.state.requests.append(self.path)
                if self.path == "/status":
                    if outer.state.status is None:
                        self.send_response(404)
                        self.end_headers()
                        return
                    body = json.dumps(outer.state.status).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                else:
                    body = b"Hello\n"
                    self.send_response(outer.state.http_status)
                    self.send_header("X-PoP", outer.state.xpop or outer.state.pop)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.dns.bind(("127.0.0.1", 0))
        self.dns.settimeout(0.1)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self.http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True),
                         threading.Thread(target=self._dns_loop, daemon=True)]

    @property
    def http_port(self) -> int:
        return int(self.http.server_address[1])

    @property
    def dns_port(self) -> int:
        return int(self.dns.getsockname()[1])

    def _dns_loop(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.dns.recvfrom(4096)
            except OSError:
                continue
            nsid = self.state.pop if self.state.nsid is None else self.state.nsid
            if nsid == "":
                continue
            qid = struct.unpack("!H", data[:2])[0]
            question_end = data.index(b"\x00", 12) + 5
            opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 4 + len(nsid)) + struct.pack("!HH", 3, len(nsid)) + nsid.encode()
            answer = struct.pack("!HHHHHH", qid, 0x8400, 1, 0, 0, 1) + data[12:question_end] + opt
            self.dns.sendto(answer, peer)

    def __enter__(self) -> FakePop:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self._stop.set()
        self.http.shutdown()
        self.http.server_close()
        for t in self._threads:
            t.join()
        self.dns.close()
