"""The health agent (userdata/files/anycast-health.py) against fake HTTP, DNS and BIRD servers on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

AGENT = Path(__file__).resolve().parents[2] / "userdata" / "files" / "anycast-health.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("anycast_health_under_test", AGENT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


agent = _load()


class FakeHttp:
    """/healthz answers ``status`` (200 by default); stop() closes the port (connection refused)."""

    def __init__(self) -> None:
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(outer.status if self.path == "/healthz" else 404)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeDns:
    """Answers every query with one SOA-ish record (``mode`` ok), SERVFAIL (servfail), or not at all (silent)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.queries: list[bytes] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.running = True
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        self.sock.settimeout(0.1)
        while self.running:
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                continue
            self.queries.append(data)
            if self.mode == "silent":
                continue
            qid, _flags = struct.unpack("!HH", data[:4])
            rcode = 2 if self.mode == "servfail" else 0
            ancount = 0 if rcode else 1
            header = struct.pack("!HHHHHH", qid, 0x8400 | rcode, 1, ancount, 0, 0)
            answer = b"\xc0\x0c" + struct.pack("!HHIH", 6, 1, 60, 4) + b"\x00\x00\x00\x01" if ancount else b""
            self.sock.sendto(header + data[12:] + answer, addr)

    def stop(self) -> None:
        self.running = False
        self.sock.close()


class FakeBird:
    """A BIRD control socket: welcome line, then enable/disable replies like BIRD 2.0.12 (and syntax errors)."""

    def __init__(self, path: str, protocols: tuple[str, ...] = ("anycast4", "anycast6")) -> None:
        self.path = path
        self.enabled = dict.fromkeys(protocols, True)
        self.commands: list[str] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.running = True
        threading.Thread(target=self._loop, daemon=True).start()

    def _reply(self, line: str) -> bytes:
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("enable", "disable") and parts[1] in self.enabled:
            want = parts[0] == "enable"
            if self.enabled[parts[1]] == want:
                code, word = ("0010", "already enabled") if want else ("0008", "already disabled")
            else:
                code, word = ("0011", "enabled") if want else ("0009", "disabled")
            self.enabled[parts[1]] = want
            return f"{code}-{parts[1]}: {word}\n0000 \n".encode()
        return b"9001 syntax error, unexpected CF_SYM_UNDEFINED\n"

    def _loop(self) -> None:
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"0001 BIRD 2.0.12 ready.\n")
                buf = b""
                conn.settimeout(1)
                try:
                    while b"\n" not in buf:
                        chunk = conn.recv(1024)
                        if not chunk:
                            break
                        buf += chunk
                except OSError:
                    continue
                line = buf.decode().strip()
                if line:
                    self.commands.append(line)
                    conn.sendall(self._reply(line))

    def stop(self) -> None:
        self.running = False
        self.sock.close()


@pytest.fixture()
def env() -> Iterator[tuple[FakeHttp, FakeDns, FakeBird, dict[str, Any]]]:
    tmp = tempfile.mkdtemp(prefix="health-")
    http, dns, bird = FakeHttp(), FakeDns(), FakeBird(os.path.join(tmp, "bird.ctl"))
    cfg = {"pop": "ams", "interval_ms": 20, "rise": 3, "fall": 2,
           "http": {"host": "127.0.0.1", "port": http.port, "path": "/healthz", "timeout_ms": 200},
           "dns": {"server": "127.0.0.1", "port": dns.port, "qname": "cdn.example.com", "qtype": "SOA", "timeout_ms": 200},
           "bird": {"socket": bird.path, "protocols": ["anycast4", "anycast6"]}}
    yield http, dns, bird, cfg
    http.stop()
    dns.stop()
    bird.stop()


def _agent(cfg: dict[str, Any]) -> Any:
    import io

    return agent.Agent(agent.load_config(cfg), log=io.StringIO())


def _steps(a: Any, n: int) -> None:
    for _ in range(n):
        a.step()


def test_dns_query_is_a_standard_query() -> None:
    q = agent.dns_query("cdn.example.com", agent.QTYPES["SOA"], 0x1234)
    assert q[:12] == struct.pack("!HHHHHH", 0x1234, 0, 1, 0, 0, 0)
    assert q[12:] == b"\x03cdn\x07example\x03com\x00" + struct.pack("!HH", 6, 1)


def test_checks_pass_against_healthy_servers(env: Any) -> None:
    http, dns, _bird, cfg = env
    c = agent.load_config(cfg)
    assert agent.check_http(c.http) is None
    assert agent.check_dns(c.dns) is None
    http.status = 503
    assert agent.check_http(c.http) == "http status 503"
    dns.mode = "servfail"
    assert agent.check_dns(c.dns) == "dns rcode 2"
    dns.mode = "silent"
    assert "timed out" in (agent.check_dns(c.dns) or "")


def test_healthy_pop_is_announced_after_rise_rounds(env: Any) -> None:
    _http, _dns, bird, cfg = env
    a = _agent(cfg)
    _steps(a, 2)
    assert bird.commands == []  # undecided before `rise` good rounds
    a.step()
    assert bird.commands == ["enable anycast4", "enable anycast6"]
    assert all(bird.enabled.values())


def test_http_failure_withdraws_after_fall_rounds_and_recovers_after_rise(env: Any) -> None:
    http, _dns, bird, cfg = env
    a = _agent(cfg)
    _steps(a, 3)
    http.stop()  # Caddy dies: connection refused
    a.step()
    assert all(bird.enabled.values()), "one bad round must not withdraw (fall = 2)"
    a.step()
    assert not any(bird.enabled.values())
    assert bird.commands[-2:] == ["disable anycast4", "disable anycast6"]
    new = FakeHttp()  # Caddy back (new port: point the agent at it)
    cfg["http"]["port"] = new.port
    a.cfg = agent.load_config(cfg)
    _steps(a, 2)
    assert not any(bird.enabled.values()), "two good rounds are not enough (rise = 3)"
    a.step()
    assert all(bird.enabled.values())
    new.stop()


def test_dns_failure_withdraws(env: Any) -> None:
    _http, dns, bird, cfg = env
    a = _agent(cfg)
    _steps(a, 3)
    dns.mode = "servfail"
    _steps(a, 2)
    assert not any(bird.enabled.values())


def test_flapping_service_does_not_flap_routes(env: Any) -> None:
    http, _dns, bird, cfg = env
    a = _agent(cfg)
    _steps(a, 3)
    n = len(bird.commands)
    for i in range(10):  # fails every other round: never `fall` in a row
        http.status = 500 if i % 2 else 200
        a.step()
    assert len(bird.commands) == n
    assert all(bird.enabled.values())


def test_bird_reply_is_checked_not_trusted(env: Any) -> None:
    _http, _dns, bird, _cfg = env
    assert agent.set_protocol(bird.path, "anycast4", False) == "anycast4: disabled"
    assert agent.set_protocol(bird.path, "anycast4", False) == "anycast4: already disabled"
    with pytest.raises(agent.BirdError, match="unexpected reply"):
        agent.set_protocol(bird.path, "nosuch", False)


def test_bird_down_is_retried_every_round(env: Any) -> None:
    _http, _dns, bird, cfg = env
    cfg["bird"]["socket"] = bird.path + ".missing"
    a = _agent(cfg)
    _steps(a, 3)
    assert a.applied is None  # BIRD unreachable: not applied, will retry
    a.cfg = agent.load_config({**cfg, "bird": {"socket": bird.path, "protocols": ["anycast4", "anycast6"]}})
    a.step()
    assert a.applied is True
    assert bird.commands == ["enable anycast4", "enable anycast6"]


def test_external_change_is_corrected_by_resync(env: Any) -> None:
    _http, _dns, bird, cfg = env
    a = _agent({**cfg, "resync_s": 0.05})
    _steps(a, 3)
    bird.enabled["anycast4"] = False  # e.g. BIRD restarted with the protocol disabled
    time.sleep(0.06)
    a.step()
    assert bird.enabled["anycast4"] is True


def test_config_errors_name_the_field() -> None:
    with pytest.raises(agent.ConfigProblem, match=r"^bird: is required"):
        agent.load_config({"http": {"host": "127.0.0.1"}})
    with pytest.raises(agent.ConfigProblem, match=r"dns\.qtype"):
        agent.load_config({"dns": {"server": "::1", "qname": "x", "qtype": "MX"}, "bird": {"socket": "s", "protocols": ["a"]}})


def test_rendered_health_json_is_accepted() -> None:
    from infra.stack import load_network
    from userdata.health_config import health_config

    net = load_network("dev")
    cfg = agent.load_config(json.loads(json.dumps(health_config(net, net.pop("ams")))))
    assert cfg.protocols == ("anycast4", "anycast6")
    assert cfg.http.host == "192.0.2.1" and cfg.dns.qtype == 6


def test_the_file_runs_as_a_program(env: Any) -> None:
    """The same file the PoP runs: ``--once`` exits 0 when healthy, 1 when not; SIGTERM stops the loop."""
    http, _dns, bird, cfg = env
    path = Path(bird.path).with_name("health.json")
    path.write_text(json.dumps(cfg))
    res = subprocess.run([sys.executable, str(AGENT), "--config", str(path), "--once"], capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, res.stderr
    proc = subprocess.Popen([sys.executable, str(AGENT), "--config", str(path)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(bird.commands) < 2:
        time.sleep(0.02)
    http.stop()
    while time.monotonic() < deadline and any(bird.enabled.values()):
        time.sleep(0.02)
    proc.terminate()
    _out, err = proc.communicate(timeout=5)
    assert proc.returncode == 0
    assert not any(bird.enabled.values())
    assert "unhealthy: withdrawing" in err
