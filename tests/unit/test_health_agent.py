"""The health agent (userdata/files/anycast-health.py): config, checks, damping, status and BIRD failure modes against
fake HTTP, DNS and BIRD control sockets on 127.0.0.1. The agent against a real BIRD and Caddy:
tests/validators/test_health_agent_bird.py."""

from __future__ import annotations

import dataclasses
import http.client
import importlib.util
import io
import json
import os
import re
import shlex
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
from types import ModuleType, SimpleNamespace
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.zone
import pytest

AGENT = Path(__file__).resolve().parents[2] / "userdata" / "files" / "anycast-health.py"
SIGNED_ZONE = Path(__file__).resolve().parents[1] / "golden" / "dnssec" / "ams" / "cdn.example.com.zone"


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
    """A BIRD control socket that fails: ``mode`` "error" answers every command with a syntax error, "mute" never
    answers after the welcome line."""

    def __init__(self, path: str, mode: str) -> None:
        self.path, self.mode = path, mode
        self.commands: list[str] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.running = True
        threading.Thread(target=self._loop, daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.sendall(b"0001 BIRD 2.0.12 ready.\n")
            conn.settimeout(5)
            try:
                while self.running:
                    data = conn.recv(1024)
                    if not data:
                        return
                    self.commands.append(data.decode().strip())
                    if self.mode == "error":
                        conn.sendall(b"9001 syntax error, unexpected CF_SYM_UNDEFINED\n")
            except OSError:
                return

    def _loop(self) -> None:
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def stop(self) -> None:
        self.running = False
        self.sock.close()


@pytest.fixture()
def env() -> Iterator[tuple[FakeHttp, FakeDns, str, dict[str, Any]]]:
    tmp = tempfile.mkdtemp(prefix="health-")
    http, dns = FakeHttp(), FakeDns()
    cfg = {"pop": "ams", "interval_ms": 20, "rise": 3, "fall": 2,
           "http": {"host": "127.0.0.1", "port": http.port, "path": "/healthz", "timeout_ms": 200},
           "dns": {"server": "127.0.0.1", "port": dns.port, "qname": "cdn.example.com", "qtype": "SOA", "timeout_ms": 200},
           "bird": {"socket": os.path.join(tmp, "bird.ctl"), "protocols": ["anycast4", "anycast6"], "timeout_ms": 100},
           "status": {"address": "127.0.0.1", "port": 0}, "drain": {"file": os.path.join(tmp, "drain")}}
    yield http, dns, tmp, cfg
    http.stop()
    dns.stop()


def _agent(cfg: dict[str, Any]) -> Any:
    return agent.Agent(agent.load_config(cfg), log=io.StringIO())


def test_dns_query_is_a_standard_query() -> None:
    q = agent.dns_query("cdn.example.com", agent.QTYPES["SOA"], 0x1234)
    assert q[:12] == struct.pack("!HHHHHH", 0x1234, 0, 1, 0, 0, 1)
    question = b"\x03cdn\x07example\x03com\x00" + struct.pack("!HH", 6, 1)
    assert q[12:12 + len(question)] == question
    parsed = dns.message.from_wire(q)  # the OPT record: EDNS0, DO set (the RRSIG comes back with a signed zone)
    assert parsed.edns == 0 and parsed.ednsflags & dns.flags.DO and parsed.payload == 1232


def test_rrsig_expiration_from_a_signed_answer() -> None:
    """The agent's own parser reads the RRSIG expiration from NSD-style answers (built by dnspython from the signed
    golden zone, with name compression); unsigned or garbled answers give None, never an exception."""
    zone = dns.zone.from_text(SIGNED_ZONE.read_text(encoding="utf-8"), origin="cdn.example.com", relativize=False)
    name = dns.name.from_text("cdn.example.com")
    query = dns.message.make_query(name, "SOA", want_dnssec=True)
    answer = dns.message.make_response(query)
    answer.answer.append(zone.find_rrset(name, "SOA"))
    answer.answer.append(zone.find_rrset(name, "RRSIG", "SOA"))
    wire = answer.to_wire()
    expected = zone.find_rrset(name, "RRSIG", "SOA")[0].expiration
    assert agent.rrsig_expiration(wire) == expected == 1798844400  # 2027-01-01 23:00 UTC, as the golden zone says
    unsigned = dns.message.make_response(query)
    unsigned.answer.append(zone.find_rrset(name, "SOA"))
    assert agent.rrsig_expiration(unsigned.to_wire()) is None
    for cut in range(0, len(wire), 7):
        assert agent.rrsig_expiration(wire[:cut]) in (None, expected)


def test_checks_pass_against_healthy_servers(env: Any) -> None:
    http, dns, _tmp, cfg = env
    c = agent.load_config(cfg)
    assert agent.check_http(c.http) is None
    assert agent.check_dns(c.dns) is None
    http.status = 503
    assert agent.check_http(c.http) == "http status 503"
    dns.mode = "servfail"
    assert agent.check_dns(c.dns) == "dns rcode 2"
    dns.mode = "silent"
    assert "timed out" in (agent.check_dns(c.dns) or "")


def test_hysteresis_and_events() -> None:
    h = agent.Hysteresis(rise=3, fall=2)
    assert [h.feed(True) for _ in range(3)] == [False, False, True] and h.healthy is True
    assert h.feed(False) is False and h.healthy is True  # one bad round is not `fall`
    assert h.force_down() is True and h.healthy is False  # a closed connection + failed check: at once
    assert h.force_down() is False


def test_damping_doubles_the_hold_down_for_flaps_in_a_row() -> None:
    d = agent.Damper(agent.Damping(stable_s=10, min_hold_down_s=5, max_hold_down_s=120))
    d.announced(0.0)
    d.withdrawn(100.0)  # announced for 100 s: not a flap
    assert d.hold_down() == 0 and d.until() == 100.0
    t = 100.0
    waits = []
    for _ in range(7):  # a crash loop: announced, dead again 1 s later
        d.announced(t)
        t += 1
        d.withdrawn(t)
        waits.append(d.hold_down())
        t = d.until()
    assert waits == [5, 10, 20, 40, 80, 120, 120]
    d.announced(t)
    d.withdrawn(t + 11)  # stable for longer than stable_s: forgiven
    assert d.hold_down() == 0


def _crash_loop_peak(damping: Any, hours: float = 2.0) -> tuple[float, int]:
    """A service that dies 1 s after every announcement, for ``hours``: the highest figure of merit a RFC 2439
    transit (1000 per withdrawal, 15 min half-life, computed independently here) reaches, and the withdrawals."""
    d = agent.Damper(damping)
    t, merit, last, peak, n = 0.0, 0.0, 0.0, 0.0, 0
    while t < hours * 3600:
        d.announced(t)
        t += 1
        d.withdrawn(t)
        merit = merit * 0.5 ** ((t - last) / 900) + 1000
        last, peak, n = t, max(peak, merit), n + 1
        t = max(t, d.until())
    return peak, n


def test_the_figure_of_merit_keeps_a_crash_loop_below_rfc7196s_suppress_threshold() -> None:
    """The flap hold-down alone (5 .. 120 s) lets a crash loop reach a damping transit's suppress threshold (6000,
    RFC 7196) within minutes; with max_penalty 5000 the figure never passes 5000, and the PoP still announces."""
    peak, n = _crash_loop_peak(agent.Damping(max_penalty=0))
    assert peak > 6000 and n > 50
    peak, n = _crash_loop_peak(agent.Damping())
    assert 4000 < peak <= 5000 and n >= 10  # still tries again, about every 5 minutes
    d = agent.Damper(agent.Damping())
    d.withdrawn(0.0, flap=False)  # a drain counts upstream too, but is no flap
    assert d.flaps == 0 and d.penalty == 1000 and d.until() == 0.0


@pytest.mark.parametrize(("change", "message"), [
    ({"damping": {"max_penalty": 1500}}, "damping.max_penalty: 0 (off) or at least 2000 with a positive damping.half_life_s, got 1500 and 900"),
    ({"rise": "3"}, 'rise: expected an integer, got "3"'),
    ({"fall": True}, "fall: expected an integer, got true"),
    ({"intervall_ms": 200}, "intervall_ms: unknown key (known: bird, damping, dns, drain, fall, http, interval_ms, pop, rise, status)"),
    ({"http": {"host": "127.0.0.1", "timout_ms": 5}}, "http.timout_ms: unknown key (known: host, path, port, timeout_ms)"),
    ({"bird": {"socket": "s", "protocols": "anycast4"}}, 'bird.protocols: expected a list of strings, got "anycast4"'),
    ({"bird": {"protocols": ["anycast4"]}}, "bird.socket: is required"),
    ({"damping": {"stable_s": "10"}}, 'damping.stable_s: expected a number, got "10"'),
    ({"drain": {"ports": [80, "443"]}}, 'drain.ports: expected a list of integers, got [80, "443"]'),
    ({"interval_ms": 0}, "interval_ms: must be at least 1, got 0"),
    ({"dns": {"server": "::1", "qname": "x", "qtype": "MX"}}, "dns.qtype: 'MX' is not one of A, NS, SOA, TXT, AAAA"),
])
def test_config_errors_name_the_key(env: Any, change: dict[str, Any], message: str) -> None:
    _http, _dns, _tmp, cfg = env
    with pytest.raises(agent.ConfigProblem) as exc:
        agent.load_config({**cfg, **change})
    assert str(exc.value) == message


def test_bad_config_is_refused_at_start_with_one_line(env: Any) -> None:
    _http, _dns, tmp, cfg = env
    path = Path(tmp) / "health.json"
    path.write_text(json.dumps({**cfg, "rise": "3"}))
    res = subprocess.run([sys.executable, str(AGENT), "--config", str(path)], capture_output=True, text=True, timeout=10)
    assert res.returncode == 2
    assert res.stderr == f'anycast-health: {path}: rise: expected an integer, got "3"\n'
    assert res.stdout == ""


def test_rendered_health_json_is_accepted() -> None:
    from infra.model.stack import load_network
    from userdata.health_config import health_config

    net = load_network("dev")
    cfg = agent.load_config(json.loads(json.dumps(health_config(net, net.pop("ams")))))
    assert cfg.protocols == ("anycast4", "anycast6")
    assert cfg.http is not None and cfg.http.host == "192.0.2.1"
    assert cfg.dns is not None and cfg.dns.qtype == 6
    assert cfg.damping.min_hold_down_s == net.bgp.error_wait_min and cfg.status_port == 9325


@pytest.mark.parametrize("mode", ["missing", "error", "mute"])
def test_bird_missing_slow_or_erroring_keeps_the_pop_withdrawn_and_logs_once(env: Any, mode: str) -> None:
    _http, _dns, _tmp, cfg = env
    fake = None if mode == "missing" else FakeBird(cfg["bird"]["socket"], mode)
    try:
        a = _agent(cfg)
        for _ in range(6):
            a.cycle()
        assert a.wanted is True  # the checks pass...
        status = a.status()
        assert status["state"] == "unknown" and status["bird"]["reachable"] is False  # ...but nothing is confirmed
        assert status["exported"] == {"anycast": False, "routes": 0}
        log = a.log.getvalue()
        problems = [line for line in log.splitlines() if "announces nothing while BIRD" in line]
        assert len(problems) == 1, log  # once per state change, not once per round
        want = {"missing": "No such file", "error": "unexpected reply", "mute": "timed out"}[mode]
        if mode == "error":
            assert "9001 syntax error" in problems[0]
        else:
            assert want in problems[0], problems
    finally:
        if fake:
            fake.stop()


def test_status_and_metrics_are_served(env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _http, _dns, _tmp, cfg = env

    def no_dns(*_: Any) -> str:  # the status server must not wait for DNS (found by the machine-mode lab)
        raise AssertionError("serve_status asked DNS for a name (socket.getfqdn)")

    monkeypatch.setattr(socket, "getfqdn", no_dns)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        cfg["status"]["port"] = free.getsockname()[1]
    a = _agent(cfg)
    a.cycle()
    server = agent.serve_status(a)
    assert server is not None
    port = server.server_address[1]
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/status")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Content-Type") == "application/json"
        status = json.loads(resp.read())
        assert status["schema"] == 1 and status["pop"] == "ams"
        assert set(status) >= {"state", "reason", "healthy", "announce", "drain", "checks", "bird", "exported", "agent"}
        assert status["checks"]["http"]["ok"] is True and status["checks"]["dns"]["ok"] is True
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        text = resp.read().decode()
        assert resp.getheader("Content-Type", "").startswith("text/plain; version=0.0.4")
        samples = {line.split(" ")[0]: line.split(" ")[1] for line in text.splitlines() if not line.startswith("#")}
        assert samples['anycast_health_check_up{check="http"}'] == "1"
        assert samples["anycast_health_bird_up"] == "0"
        assert samples["anycast_health_drained"] == "0"
        assert 'anycast_health_info{pop="ams",schema="1"}' in samples
        for line in text.splitlines():  # every sample has a HELP and TYPE before it
            if not line.startswith("#"):
                assert f"# TYPE {line.split('{')[0].split(' ')[0]} " in text
        conn.request("GET", "/nope")
        assert conn.getresponse().status == 404
    finally:
        server.shutdown()
        server.server_close()


def test_watchdog_and_ready_over_notify_socket(env: Any) -> None:
    """The program sends READY=1 and WATCHDOG=1 to $NOTIFY_SOCKET like sd_notify(3), honouring WATCHDOG_PID."""
    _http, _dns, tmp, cfg = env
    path = Path(tmp) / "health.json"
    path.write_text(json.dumps(cfg))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(os.path.join(tmp, "notify"))
    sock.settimeout(5)
    envv = {**os.environ, "NOTIFY_SOCKET": os.path.join(tmp, "notify"), "WATCHDOG_USEC": "2000000"}
    proc = subprocess.Popen([sys.executable, str(AGENT), "--config", str(path)], env=envv, stderr=subprocess.PIPE, text=True)
    try:
        got = [sock.recv(4096).decode() for _ in range(4)]
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=5)
        sock.close()
    assert got[0].startswith("READY=1\nSTATUS=")
    assert "WATCHDOG=1" in got[1:]
    assert "watchdog 2.0 s" in err


def test_watchdog_pid_for_another_process_means_no_pings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert agent.watchdog_interval() == 2.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert agent.watchdog_interval() is None


def test_parse_protocols_reads_states_and_route_counts() -> None:
    reply = ("2002-Name       Proto      Table      State  Since         Info\n"
             "1002-anycast4   Static     master4    down   08:14:25.496  \n"
             "1002-upstream4  BGP        ---        up     08:14:24.489  Established   \n"
             "1006-  Description:    Vultr AS64515 (IPv4)\n"
             "   BGP state:          Established\n"
             "   Channel ipv4\n"
             "     Routes:         0 imported, 2 exported, 0 preferred\n"
             "0000 \n")
    p = agent.parse_protocols(reply)
    assert p["anycast4"]["state"] == "down" and p["anycast4"]["proto"] == "Static"
    assert p["upstream4"]["bgp_state"] == "Established" and p["upstream4"]["exported"] == 2


@pytest.mark.parametrize("graceful", [True, False], ids=["graceful", "no-graceful"])
def test_drain_runs_the_graceful_phase_unless_told_not_to(env: Any, monkeypatch: pytest.MonkeyPatch,
                                                          graceful: bool) -> None:
    """``--drain --no-graceful`` (the plain withdrawal docs/convergence.md measures against) skips the 65535:0 phase
    and still writes the drain file; a BIRD that answers nothing useful makes the drain fail after its timeout."""
    _http, _dns, _tmp, cfg = env
    cfg["drain"].update({"timeout_s": 0.3, "gshut_protocols": ["gshut4"]})
    c = agent.load_config(cfg)
    bird = FakeBird(c.bird_socket, "error")
    called: list[bool] = []
    monkeypatch.setattr(agent, "graceful_shutdown", lambda *_a: called.append(True))
    said: list[str] = []
    try:
        rc = agent.drain(c, said.append, graceful=graceful)
    finally:
        bird.stop()
    assert rc == 1 and os.path.exists(c.drain.file)
    assert called == ([True] if graceful else [])
    assert any("--no-graceful" in s for s in said) != graceful, said


def test_no_graceful_only_goes_with_drain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        agent.main(["--config", str(tmp_path / "health.json"), "--undrain", "--no-graceful"])
    assert exc.value.code == 2 and "--no-graceful only goes with --drain" in capsys.readouterr().err


# --- drain: quiet by counting packets (fake nft counter, fake /proc/net, fake clock) -----------------------------------

class FakePop:
    """A PoP as the drain sees it, on a fake clock: ``traffic(t)`` is the packets/s reaching the service addresses
    from outside at t (the ruleset's counter: ``agent.arrivals``; the agent's own checks come over lo and are not in
    it), ``counter=False`` a PoP whose counter cannot be read. ``open_until``: an ESTABLISHED client connection to
    port 443 until then (``agent.service_connections``)."""

    def __init__(self, tmp: Path, traffic: Any, open_until: float = -1.0, counter: bool = True) -> None:
        self.dir, self.traffic, self.open_until, self.counter = tmp, traffic, open_until, counter
        self.t = 1000.0
        self.t0 = self.t
        self.packets = 0.0  # integrated traffic
        self.reads = 0  # nft runs

    def monotonic(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        steps = max(1, round(s / 0.01))
        for _ in range(steps):
            self.packets += self.traffic(self.t - self.t0) * s / steps
            self.t += s / steps

    def arrivals(self) -> int | None:
        self.reads += 1
        return int(self.packets) if self.counter else None

    def connections(self, addresses: list[str], ports: tuple[int, ...]) -> dict[tuple[str, str], str]:
        if self.t - self.t0 < self.open_until and 443 in ports:  # 192.0.2.1:443 <- 198.51.100.7:50000, ESTABLISHED
            return {(f"{agent._hexaddr(addresses[0])}:01BB", f"{agent._hexaddr('198.51.100.7')}:C350"): "01"}
        return {}


class UpBird:
    """The BIRD the graceful phase talks to: the anycast protocols up, the graceful-shutdown twins there."""

    def __init__(self) -> None:
        self.enabled: list[str] = []
        self.at: list[float] = []  # when, on the agent's clock

    def protocols(self) -> dict[str, dict[str, Any]]:
        return {n: {"state": "up"} for n in ("anycast4", "anycast6")} | {"gshut4": {"state": "down"}}

    def set_protocol(self, name: str, on: bool) -> str:
        self.enabled.append(name)
        self.at.append(agent.time.monotonic())
        return "ok"


def _fake_pop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, traffic: Any, open_until: float = -1.0,
              counter: bool = True) -> FakePop:
    """The agent module reads the FakePop's counter and connections and runs on its clock (time itself is untouched)."""
    pop = FakePop(tmp_path, traffic, open_until, counter)
    monkeypatch.setattr(agent, "service_connections", pop.connections)
    monkeypatch.setattr(agent, "arrivals", pop.arrivals)
    monkeypatch.setattr(agent, "time", SimpleNamespace(monotonic=pop.monotonic, sleep=pop.sleep,
                                                       strftime=time.strftime, gmtime=time.gmtime))
    return pop


def _pop_config(tmp_path: Path) -> Any:
    return agent.load_config({"pop": "ams", "interval_ms": 200, "http": {"host": "192.0.2.1"},
                              "dns": {"server": "192.0.2.1", "qname": "cdn.example.com"},
                              "bird": {"socket": str(tmp_path / "bird.ctl"), "protocols": ["anycast4", "anycast6"]},
                              "drain": {"file": str(tmp_path / "drain"), "gshut_protocols": ["gshut4"]}})


def _graceful(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, traffic: Any, open_until: float = -1.0,
              counter: bool = True) -> tuple[float, list[str], FakePop]:
    """Runs graceful_shutdown on a FakePop (quiet_s 2, gshut_s 30); how long after the announcement it ended, what
    it said."""
    pop = _fake_pop(tmp_path, monkeypatch, traffic, open_until, counter)
    cfg = _pop_config(tmp_path)
    said: list[str] = []
    bird = UpBird()
    agent.graceful_shutdown(cfg, bird, ["192.0.2.1"], said.append, counter)
    assert bird.enabled == ["gshut4"], said
    return pop.t - bird.at[0], said, pop


def _nft(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stdout: str, rc: int = 0) -> None:
    script = tmp_path / "nft"
    script.write_text(f"#!/bin/sh\n[ \"$*\" = '-j list counter inet anycast arrivals' ] || exit 9\n"
                      f"printf '%s' {shlex.quote(stdout)}\nexit {rc}\n")
    script.chmod(0o755)
    monkeypatch.setattr(agent, "NFT", str(script))


NFT_JSON = ('{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}, {"counter": {"family": '
            '"inet", "name": "arrivals", "table": "anycast", "handle": 2, "packets": %s, "bytes": 5000}}]}')


@pytest.mark.parametrize(("stdout", "rc", "want"), [
    (NFT_JSON % "1234", 0, 1234),
    (NFT_JSON % "1234", 1, None),  # Error: Could not process rule: Operation not permitted (no CAP_NET_ADMIN)
    ("", 1, None),  # no such table: nftables.conf not loaded
    ("not json", 0, None),
    (NFT_JSON % '"12"', 0, None),
    (NFT_JSON % "true", 0, None),
    ('{"nftables": [{"counter": {"name": "other", "packets": 5}}]}', 0, None),
    ('{"nftables": "x"}', 0, None),
], ids=["counter", "denied", "no-table", "garbage", "string", "bool", "other-counter", "bad-shape"])
def test_arrivals_reads_the_rulesets_counter_or_says_it_cannot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               stdout: str, rc: int, want: int | None) -> None:
    _nft(tmp_path, monkeypatch, stdout, rc)
    assert agent.arrivals() == want
    monkeypatch.setattr(agent, "NFT", str(tmp_path / "missing"))
    assert agent.arrivals() is None


def test_the_agent_reads_the_counter_the_contract_names() -> None:
    from infra.contracts import ARRIVALS_COUNTER

    assert agent.ARRIVALS_COUNTER == ARRIVALS_COUNTER


def test_graceful_phase_on_an_idle_pop_ends_after_quiet_s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing arrives (monitoring, SSH and the agent's own checks are not counted): quiet once quiet_s (2 s) of
    packets has been counted, not after gshut_s (30 s); the counter is read about every SAMPLE_S, not every loop."""
    took, said, pop = _graceful(tmp_path, monkeypatch, lambda t: 0.0)
    assert any("quiet after" in s and "0.0 packets/s" in s for s in said), said
    assert 2.0 <= took <= 2.5, said
    assert pop.reads <= (took + agent.BASELINE_S + 1) / agent.SAMPLE_S, pop.reads


def test_graceful_phase_waits_for_short_requests_to_move_away(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """200 packets/s of requests too short to show in /proc/net/tcp that take 5 s (longer than quiet_s) to move to
    other PoPs after the announcement: the phase ends only quiet_s after they stopped (sampling sockets ended it
    after quiet_s, with the traffic still there)."""
    took, said, pop = _graceful(tmp_path, monkeypatch, lambda t: 200.0 if t < 6.0 else 0.0)
    moved = 6.0 - (pop.t - pop.t0 - took)  # when the traffic stopped, counted from the announcement
    assert any("quiet after" in s for s in said), said
    assert moved + 1.5 < took <= moved + 2.5, (moved, said)
    assert "at 200.0 packets/s" in said[0], said


def test_graceful_phase_with_a_trickle_left_is_quiet_below_the_fraction(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """1000 packets/s before, 50/s after the move (5 %: a network that ignores 65535:0, say): below quiet_fraction
    (10 %) of the baseline that is moved enough; the rest moves at the withdrawal."""
    took, said, _pop = _graceful(tmp_path, monkeypatch, lambda t: 1000.0 if t < 2.0 else 50.0)
    assert any("quiet after" in s for s in said) and took < 5.0, said


def test_graceful_phase_under_load_that_does_not_move_gives_up_after_gshut_s(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Load that halves (most upstreams ignore 65535:0) is not quiet: the phase withdraws after gshut_s anyway."""
    took, said, _pop = _graceful(tmp_path, monkeypatch, lambda t: 200.0 if t < 3.0 else 100.0)
    assert any("still busy after 30 s" in s for s in said) and took >= 30.0, said


def test_graceful_phase_waits_for_an_open_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No packets but a long download still open to 443 until t = 8 s: busy until it closes."""
    took, said, pop = _graceful(tmp_path, monkeypatch, lambda t: 0.0, open_until=8.0)
    closed = 8.0 - (pop.t - pop.t0 - took)
    assert any("quiet after" in s for s in said) and closed <= took <= closed + 0.3, said


def test_a_counter_that_starts_again_from_zero_is_not_a_quiet_pop(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """nftables.conf loaded again mid-drain resets the counter: a fall is a new start, not a negative rate."""
    pop = _fake_pop(tmp_path, monkeypatch, lambda t: 100.0)
    quiet = agent.Quiet(_pop_config(tmp_path), [], 1.0, True)
    values: list[float | None] = []
    for step in range(40):
        if step == 15:
            pop.packets = 0.0
        values.append(quiet.rate())
        pop.sleep(0.2)
    seen = [v for v in values if v is not None]
    assert seen and min(seen) > 90, values
    assert values[16:25] == [None] * 9, values  # counting for quiet_s again after the reset


def test_graceful_phase_without_the_counter_samples_sockets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No counter (nftables.conf not loaded, no CAP_NET_ADMIN): the old measure, blind to the short requests that
    are still arriving: quiet after quiet_s. What the counter fixes, kept as the fallback."""
    took, said, _pop = _graceful(tmp_path, monkeypatch, lambda t: 200.0 if t < 6.0 else 0.0, counter=False)
    assert any("quiet after" in s and "no packet counter" in s for s in said) and 2.0 <= took <= 2.3, said


class WithdrawnBird:
    """What drain() sees of a BIRD that withdraws at once: every protocol down, the BGP session exporting nothing."""

    def __init__(self, *_args: Any) -> None:
        pass

    def protocols(self) -> dict[str, dict[str, Any]]:
        return {"anycast4": {"proto": "Static", "state": "down"}, "anycast6": {"proto": "Static", "state": "down"},
                "gshut4": {"proto": "Static", "state": "down"}, "upstream4": {"proto": "BGP", "exported": 0}}

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("straggle_s", "safe_after"), [(0.0, (2.0, 2.5)), (4.0, (5.5, 6.5))],
                         ids=["idle", "stragglers"])
def test_final_drain_is_safe_only_once_packets_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       straggle_s: float, safe_after: tuple[float, float]) -> None:
    """After the withdrawal, requests (too short for /proc/net/tcp) that keep arriving for ``straggle_s`` (routers
    still hunting for a path) hold back "safe to stop" until quiet_s after they stopped; none: after quiet_s."""
    pop = _fake_pop(tmp_path, monkeypatch, lambda t: 200.0 if t < straggle_s else 0.0)
    monkeypatch.setattr(agent, "Bird", WithdrawnBird)
    said: list[str] = []
    assert agent.drain(_pop_config(tmp_path), said.append, graceful=False) == 0, said
    assert safe_after[0] <= pop.t - pop.t0 <= safe_after[1], said
    assert "safe to stop" in said[-1] and "packets/s" in said[-1] and os.path.exists(tmp_path / "drain"), said


def test_final_drain_under_steady_load_is_not_safe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Packets that keep arriving after the withdrawal (a route somewhere still points here): never safe; the drain
    gives up after timeout_s saying how many, and the drain file stays."""
    pop = _fake_pop(tmp_path, monkeypatch, lambda t: 50.0)
    monkeypatch.setattr(agent, "Bird", WithdrawnBird)
    said: list[str] = []
    cfg = dataclasses.replace(_pop_config(tmp_path), drain=dataclasses.replace(_pop_config(tmp_path).drain, timeout_s=8))
    assert agent.drain(cfg, said.append, graceful=False) == 1, said
    assert pop.t - pop.t0 >= 8 and re.search(r"not safe yet after 8 s: 5\d\.\d packets/s, at most 1\.0", said[-1]), said
    assert os.path.exists(tmp_path / "drain")
