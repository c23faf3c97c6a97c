"""bgp.ipv6NeighborRoute: auto, end to end on one host: in a throwaway network namespace whose only IPv6 default
route is an RA-style one via a link-local gateway, the rendered script routes Vultr's neighbour as a /128 through
it, and a real BIRD started from the rendered bird.conf learns that route into its table ``neighbor6``."""

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
SCRIPT = Path(__file__).resolve().parent.parent.parent / "userdata" / "files" / "anycast-neighbor-route.sh"


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"acu-nbr-{os.getpid()}"  # not acl-*: no lab namespace is touched
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        # A veth pair, not a dummy link: the lab's kernels lack the dummy module.
        for cmd in (["link", "set", "lo", "up"], ["link", "add", "eth0", "type", "veth", "peer", "name", "gw0"],
                    ["link", "set", "gw0", "up"], ["link", "set", "eth0", "up"],
                    ["-6", "route", "add", "default", "via", "fe80::fc00:4ff:fe5d:f2b6", "dev", "eth0", "proto", "ra"]):
            subprocess.run(["ip", "-n", name, *cmd], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_the_neighbour_route_reaches_the_kernel_and_bird(netns: str, tmp_path: Path, prod_network: Network) -> None:
    assert prod_network.bgp.ipv6_neighbor_route == "auto"
    done = subprocess.run(["ip", "netns", "exec", netns, "/bin/sh", str(SCRIPT), "2001:19f0:ffff::1"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    kernel = subprocess.run(["ip", "-n", netns, "-6", "route", "show", "2001:19f0:ffff::1/128"],
                            capture_output=True, text=True, check=True).stdout
    assert "via fe80::fc00:4ff:fe5d:f2b6 dev eth0 proto static" in kernel
    conf = tmp_path / "bird.conf"
    conf.write_text(render_pop(prod_network, prod_network.pop("ams"), TEST_PASSWORD).files["bird.conf"])
    sock = tmp_path / "bird.ctl"
    proc = subprocess.Popen(["ip", "netns", "exec", netns, "bird", "-f", "-c", str(conf), "-s", str(sock)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, deadline = "", time.monotonic() + 15
        while time.monotonic() < deadline and "2001:19f0:ffff::1/128" not in out:
            time.sleep(0.2)
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            if sock.exists():
                out = subprocess.run(["ip", "netns", "exec", netns, "birdc", "-s", str(sock), "show", "route", "table", "neighbor6"],
                                     capture_output=True, text=True, timeout=10, check=False).stdout
        assert "2001:19f0:ffff::1/128" in out and "fe80::fc00:4ff:fe5d:f2b6" in out and "eth0" in out, out
        master = subprocess.run(["ip", "netns", "exec", netns, "birdc", "-s", str(sock), "show", "route", "table", "master6"],
                                capture_output=True, text=True, timeout=10, check=False).stdout
        assert "2001:19f0:ffff::1" not in master  # its own table: never near the export filters
    finally:
        proc.terminate()
        proc.wait(timeout=10)
