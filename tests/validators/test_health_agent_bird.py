"""The health agent against a real BIRD (the rendered bird.conf) and a real Caddy, in a throwaway network namespace:
fail-closed start, withdrawal on a crash by the connection-close event, a restarted BIRD, drain and undrain."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from infra.model import Network
from tests.conftest import TEST_PASSWORD
from userdata.render import render_pop

AGENT = Path(__file__).resolve().parents[2] / "userdata" / "files" / "anycast-health.py"
OK = os.geteuid() == 0 and all(shutil.which(t) for t in ("ip", "bird", "caddy"))
pytestmark = pytest.mark.skipif(not OK, reason="needs root, iproute2, bird2 and caddy (network namespace)")
PORT = 8080


def _until(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


class Pop:
    """BIRD, Caddy and the agent in one namespace; BIRD's state is read over its control socket."""

    def __init__(self, ns: str, d: Path, network: Network) -> None:
        self.ns, self.d = ns, d
        conf = render_pop(network, network.pop("ams"), TEST_PASSWORD).files["bird.conf"]
        (d / "bird.conf").write_text(conf.replace("log syslog all;", f'log "{d}/bird.log" all;'))
        (d / "Caddyfile").write_text(f'{{\n\tadmin off\n}}\nhttp://127.0.0.1:{PORT} {{\n\trespond /healthz "ok" 200\n}}\n')
        self.cfg = {"pop": "ams", "interval_ms": 100, "rise": 2, "fall": 3,
                    "http": {"host": "127.0.0.1", "port": PORT, "timeout_ms": 200},
                    "bird": {"socket": str(d / "bird.ctl"), "protocols": ["anycast4", "anycast6"], "timeout_ms": 500},
                    "damping": {"stable_s": 0.2, "min_hold_down_s": 1, "max_hold_down_s": 4},
                    "status": {"port": 0}, "drain": {"file": str(d / "drain"), "quiet_s": 0.5, "timeout_s": 10}}
        (d / "health.json").write_text(json.dumps(self.cfg))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        cmd = {"bird": ["bird", "-f", "-c", str(self.d / "bird.conf"), "-s", str(self.d / "bird.ctl")],
               "caddy": ["caddy", "run", "--config", str(self.d / "Caddyfile"), "--adapter", "caddyfile"],
               "agent": [sys.executable, str(AGENT), "--config", str(self.d / "health.json")]}[name]
        log = open(self.d / f"{name}.log", "ab")  # noqa: SIM115 - owned by the process
        env = {**os.environ, "HOME": str(self.d), "XDG_CONFIG_HOME": str(self.d), "XDG_DATA_HOME": str(self.d)}
        self.procs[name] = subprocess.Popen(["ip", "netns", "exec", self.ns, *cmd], stdout=log, stderr=log, env=env)
        if name == "bird":
            assert _until(lambda: (self.d / "bird.ctl").exists() and self.protocols() != {}, 5), self.log("bird")
        if name == "caddy":
            assert _until(lambda: self.run("--once")[0] == 0, 10), self.log("caddy")

    def kill(self, name: str) -> None:
        p = self.procs.pop(name)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=5)
        if name == "bird":
            (self.d / "bird.ctl").unlink(missing_ok=True)

    def run(self, flag: str) -> tuple[int, str]:
        r = subprocess.run(["ip", "netns", "exec", self.ns, sys.executable, str(AGENT), "--config",
                            str(self.d / "health.json"), flag], capture_output=True, text=True, timeout=30, check=False)
        return r.returncode, r.stdout + r.stderr

    def protocols(self) -> dict[str, str]:
        r = subprocess.run(["birdc", "-s", str(self.d / "bird.ctl"), "show", "protocols"], capture_output=True,
                           text=True, timeout=5, check=False)
        return {ln.split()[0]: ln.split()[3] for ln in r.stdout.splitlines() if ln.startswith("anycast")}

    def announced(self) -> bool:
        return self.protocols() == {"anycast4": "up", "anycast6": "up"}

    def withdrawn(self) -> bool:
        return self.protocols() == {"anycast4": "down", "anycast6": "down"}

    def log(self, name: str) -> str:
        path = self.d / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for p in self.procs.values():
            p.kill()
            p.wait(timeout=5)


@pytest.fixture
def pop(tmp_path: Path, dev_network: Network) -> Iterator[Pop]:
    ns = f"acu-health-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    p = Pop(ns, tmp_path, dev_network)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        yield p
    finally:
        p.stop()
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_agent_drives_a_real_bird(pop: Pop) -> None:
    pop.start("bird")
    assert pop.withdrawn(), "fail-closed: the rendered bird.conf starts the anycast protocols disabled"
    pop.start("caddy")
    pop.start("agent")
    assert _until(pop.announced, 5), pop.log("agent")

    # Caddy crashes: the held connection closes and the agent withdraws at once (no `fall` rounds).
    time.sleep(0.3)  # announced for longer than damping.stable_s: not a flap
    pop.kill("caddy")
    assert _until(pop.withdrawn, 2), pop.log("agent")
    assert "http connection closed and the check fails" in pop.log("agent")
    assert "withdrawing: unhealthy: http" in pop.log("agent")

    # BIRD restarts while Caddy is down: the new BIRD announces nothing, and the agent keeps it that way.
    pop.kill("bird")
    pop.start("bird")
    time.sleep(1.0)
    assert pop.withdrawn(), pop.log("agent")

    # Caddy back: announced after `rise` rounds; BIRD restarts again: the agent re-enables the new BIRD.
    pop.start("caddy")
    assert _until(pop.announced, 5), pop.log("agent")
    time.sleep(0.3)
    pop.kill("bird")
    pop.start("bird")
    assert pop.withdrawn() or pop.announced()
    assert _until(pop.announced, 3), pop.log("agent")
    log = pop.log("agent")
    assert log.count("bird: reachable again") == 2, log  # said once per BIRD outage, not every round

    # Drain: withdrawn, safe to stop; the agent keeps it withdrawn while healthy; undrain announces again.
    rc, out = pop.run("--drain")
    assert rc == 0 and "safe to stop" in out, out
    assert pop.withdrawn()
    time.sleep(0.5)
    assert pop.withdrawn(), pop.log("agent")
    rc, out = pop.run("--undrain")
    assert rc == 0 and "announced again" in out, out
    assert pop.announced()


def test_crash_loop_is_damped(pop: Pop) -> None:
    """Caddy crashing right after each announcement: the agent holds the PoP down 1, 2, 4 s (min_hold_down_s
    doubling), so BGP does not flap at the crash rate."""
    pop.start("bird")
    pop.start("caddy")
    pop.start("agent")
    announced_at: list[float] = []
    for _ in range(3):
        assert _until(pop.announced, 10), pop.log("agent")
        announced_at.append(time.monotonic())
        pop.kill("caddy")  # within stable_s of the announcement: a flap
        assert _until(pop.withdrawn, 2)
        pop.start("caddy")
    assert _until(pop.announced, 10)
    announced_at.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(announced_at)]
    assert gaps[1] >= 1.0 and gaps[2] >= 2.0, (gaps, pop.log("agent"))
    held = [line for line in pop.log("agent").splitlines() if "hold-down after" in line]
    assert [h.split("after ")[1].split(" flap")[0] for h in held] == ["1", "2", "3"], held


def test_reboot_coordinator_drains_through_the_real_agent_before_it_reboots(pop: Pop, tmp_path: Path) -> None:
    """userdata/files/anycast-reboot.py with the real agent's drain and a real BIRD: at the moment the reboot
    command runs BIRD has both anycast protocols down; a peer that is not announcing stops it before anything
    happens; the run at the next boot removes the drain it made and the agent announces again after its checks."""
    import http.server
    import threading

    peer_state = {"state": "withdrawn"}

    class Peer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(peer_state).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Peer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    script = AGENT.with_name("anycast-reboot.py")
    now = time.gmtime()
    rebooted = tmp_path / "rebooted"
    cfg = {"pop": "ams", "slot": {"start_minute": (now.tm_wday * 1440 + now.tm_hour * 60 + now.tm_min), "minutes": 5},
           "required_file": str(tmp_path / "reboot-required"), "marker": str(tmp_path / "reboot-drain"),
           "drain_file": str(tmp_path / "drain"),  # the agent's drain.file (health.json)
           "drain": ["ip", "netns", "exec", pop.ns, sys.executable, str(AGENT), "--config", str(tmp_path / "health.json"),
                     "--drain"],
           "reboot": ["sh", "-c", f'birdc -s {tmp_path / "bird.ctl"} show protocols > {rebooted}'],
           "peers": {"ewr": f"http://127.0.0.1:{server.server_port}/status"}, "peers_file": str(tmp_path / "peers.json"),
           "group": ["ewr"], "min_announcing": 1}
    (tmp_path / "reboot.json").write_text(json.dumps(cfg))

    def coordinator() -> str:
        r = subprocess.run([sys.executable, str(script), "--config", str(tmp_path / "reboot.json"), "--once"],
                           capture_output=True, text=True, timeout=60, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    try:
        pop.start("bird")
        pop.start("caddy")
        pop.start("agent")
        assert _until(pop.announced, 5), pop.log("agent")
        (tmp_path / "reboot-required").touch()
        out = coordinator()
        assert "skipping this slot" in out and "ewr (withdrawn)" in out, out
        assert pop.announced() and not rebooted.exists() and not (tmp_path / "drain").exists()

        peer_state["state"] = "announced"
        out = coordinator()
        assert "draining" in out and "rebooting" in out, out
        at_reboot = {ln.split()[0]: ln.split()[3] for ln in rebooted.read_text().splitlines() if ln.startswith("anycast")}
        assert at_reboot == {"anycast4": "down", "anycast6": "down"}, at_reboot
        assert (tmp_path / "drain").exists() and (tmp_path / "reboot-drain").exists()

        # The reboot: every process gone, /run emptied; BIRD starts with the anycast protocols disabled.
        pop.kill("agent")
        pop.kill("bird")
        (tmp_path / "reboot-required").unlink()
        pop.start("bird")
        out = coordinator()  # ordered before anycast-health.service at boot
        assert "removed the reboot's drain" in out and not (tmp_path / "drain").exists(), out
        pop.start("agent")
        assert pop.withdrawn()
        assert _until(pop.announced, 5), pop.log("agent")  # after `rise` good checks
    finally:
        server.shutdown()
