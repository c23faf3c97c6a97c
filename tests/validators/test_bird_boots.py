"""A real BIRD started from a rendered bird.conf, in a throwaway network namespace, comes up and answers birdc."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.model import Network
from tests.conftest import TEST_PASSWORD
from userdata.render import render_pop

NETNS_OK = os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("bird") is not None
pytestmark = pytest.mark.skipif(not NETNS_OK, reason="needs root, iproute2 and bird2 to create a network namespace")


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"acu-bird-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _birdc(netns: str, sock: Path, *cmd: str) -> str:
    r = subprocess.run(["ip", "netns", "exec", netns, "birdc", "-s", str(sock), *cmd],
                       capture_output=True, text=True, timeout=10, check=False)
    return r.stdout


def test_rendered_bird_comes_up(netns: str, tmp_path: Path, prod_network: Network) -> None:
    conf = tmp_path / "bird.conf"
    conf.write_text(render_pop(prod_network, prod_network.pop("ams"), TEST_PASSWORD).files["bird.conf"])
    sock = tmp_path / "bird.ctl"
    proc = subprocess.Popen(["ip", "netns", "exec", netns, "bird", "-f", "-c", str(conf), "-s", str(sock)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        out = ""
        while time.monotonic() < deadline and "anycast6" not in out:
            time.sleep(0.1)
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            if sock.exists():
                out = _birdc(netns, sock, "show", "protocols")
        lines = {line.split()[0]: line.split() for line in out.splitlines() if line and line.split()[0] in
                 {"anycast4", "anycast6", "upstream4", "upstream6", "device1"}}
        # Fail-closed: the anycast protocols start disabled; only the health agent enables them.
        assert lines["anycast4"][1:4] == ["Static", "master4", "down"]
        assert lines["anycast6"][1:4] == ["Static", "master6", "down"]
        assert "192.0.2.0/24" not in _birdc(netns, sock, "show", "route", "protocol", "anycast4")
        assert "enabled" in _birdc(netns, sock, "enable", "anycast4")
        # No Vultr router in this namespace: the sessions exist and try to connect.
        assert lines["upstream4"][1] == "BGP" and lines["upstream6"][1] == "BGP"
        routes = _birdc(netns, sock, "show", "route", "protocol", "anycast4")
        assert "192.0.2.0/24" in routes and "192.0.2.1/32" in routes
        # The health agent's lever: disabling the static protocol withdraws the routes.
        assert "disabled" in _birdc(netns, sock, "disable", "anycast4")
        assert "192.0.2.0/24" not in _birdc(netns, sock, "show", "route", "protocol", "anycast4")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
