"""A PoP whose service crash-loops, seen by a transit running route flap damping with RFC 7196's parameters (FRR,
``bgp dampening 15 750 6000 60``: half-life 15 min, reuse 750, suppress 6000, max-suppress 60 min; FRR adds 1000 per
withdrawal). Without the agent's damping the transit suppresses the prefix within seconds; with it the figure of merit
stays at or below the agent's ``damping.max_penalty`` (5000) and nothing is suppressed.

The PoP is the rendered maa bird.conf driven by the real agent; the service is ``python3 -m http.server`` killed
1.5 s after each start. The agent's flap hold-downs are shortened (1..4 s) so the figure of merit, not the doubling,
binds within the test; the transit's parameters are RFC 7196's, unchanged.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.model.stack import load_network
from tests.conftest import TEST_PASSWORD
from tests.helpers.bgp_topology import Topology, until
from userdata.render import render_pop

AGENT = Path(__file__).resolve().parents[2] / "userdata" / "files" / "anycast-health.py"
FRR = Path("/usr/lib/frr")
OK = os.geteuid() == 0 and shutil.which("bird") is not None and (FRR / "bgpd").exists() and shutil.which("vtysh")
pytestmark = [pytest.mark.skipif(not OK, reason="needs root, bird2 and frr (bgpd, zebra, vtysh)"), pytest.mark.slow]
LOOP_S = 30
FRR_CONF = """frr defaults traditional
hostname damping-transit
log file {d}/frr.log informational
router bgp 64502
 bgp router-id 10.8.1.1
 no bgp ebgp-requires-policy
 no bgp network import-check
 timers bgp 3 9
 neighbor 10.8.1.2 remote-as 64500
 neighbor 10.8.1.2 timers connect 1
 neighbor 10.8.1.2 advertisement-interval 0
 address-family ipv4 unicast
  bgp dampening 15 750 6000 60
 exit-address-family
"""
# The service: up 1.5 s, dead 0.5 s, forever (the agent sees each death through its held connection).
CRASH_LOOP = "while :; do timeout 1.5 python3 -m http.server -b 127.0.0.1 8080 -d {d}/www; sleep 0.5; done"


@pytest.fixture
def topo(tmp_path: Path) -> Iterator[Topology]:
    t = Topology("dm", tmp_path)
    try:
        yield t
    finally:
        t.close()


@pytest.fixture
def frr_dir() -> Iterator[Path]:
    """FRR's state directory: readable by user frr (pytest's tmp_path is root's only)."""
    d = Path(tempfile.mkdtemp(prefix="acu-dm-frr-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def frr(t: Topology, d: Path) -> Path:
    """zebra and bgpd in namespace t, their own config, sockets and logs in ``d`` (the daemons drop to user frr)."""
    (d / "frr.conf").write_text(FRR_CONF.format(d=d))
    vty = d / "vty"
    vty.mkdir()
    for path in (d, vty):
        shutil.chown(path, "frr", "frr")
    common = ["-z", str(d / "zserv.api"), "--vty_socket", str(vty), "-P", "0"]
    (d / "zebra.conf").write_text("hostname damping-transit\n")
    t.spawn("t", str(FRR / "zebra"), *common, "-i", str(d / "zebra.pid"), "-f", str(d / "zebra.conf"), log="zebra.out")
    assert until(lambda: (d / "zserv.api").exists(), 10), t.log("zebra.out")
    t.spawn("t", str(FRR / "bgpd"), *common, "-i", str(d / "bgpd.pid"), "-f", str(d / "frr.conf"), log="bgpd.out")
    assert until(lambda: (vty / "bgpd.vty").exists(), 10), t.log("bgpd.out")
    return vty


def vtysh(t: Topology, vty: Path, command: str) -> str:
    return t.run("t", "vtysh", "--vty_socket", str(vty), "-c", command, timeout=10).stdout


def crash_loop(topo: Topology, d: Path, fd: Path, agent_damping: bool) -> tuple[int, bool, str]:
    """(highest figure of merit seen at the transit, whether it suppressed the prefix, the flap statistics)."""
    topo.add("t")
    topo.add("p")
    topo.link("t", "10.8.1.1", "p", "10.8.1.2")
    (d / "www").mkdir()
    (d / "www" / "healthz").write_text("ok\n")
    vty = frr(topo, fd)
    network = load_network("prod")
    conf = render_pop(network, network.pop("maa"), TEST_PASSWORD).files["bird.conf"]
    sock = topo.bird("p", conf.replace("neighbor 203.0.113.1 as 64502;", "neighbor 10.8.1.1 as 64502;"))
    damping = ({"stable_s": 10, "min_hold_down_s": 1, "max_hold_down_s": 4} if agent_damping else
               {"stable_s": 10, "min_hold_down_s": 0, "max_hold_down_s": 0, "max_penalty": 0})
    (d / "health.json").write_text(json.dumps({
        "pop": "maa", "interval_ms": 100, "rise": 2, "fall": 2,
        "http": {"host": "127.0.0.1", "port": 8080, "timeout_ms": 300},
        "bird": {"socket": str(sock), "protocols": ["anycast4"], "timeout_ms": 500},
        "damping": damping, "status": {"port": 0}, "drain": {"file": str(d / "drain")}}))
    assert until(lambda: "Established" in topo.birdc(sock, "show protocols upstream4"), 30), \
        vtysh(topo, vty, "show bgp ipv4 unicast summary")
    topo.spawn("p", "sh", "-c", CRASH_LOOP.format(d=d), log="service.log")
    topo.spawn("p", sys.executable, str(AGENT), "--config", str(d / "health.json"), log="agent.log")
    peak, suppressed = 0, False
    t0 = time.monotonic()
    while time.monotonic() - t0 < LOOP_S:
        out = vtysh(topo, vty, "show bgp ipv4 unicast 192.0.2.0/24")
        peak = max([peak, *(int(p) for p in re.findall(r"penalty (\d+)", out))])
        suppressed = suppressed or "suppressed" in out
        time.sleep(0.5)
    stats = vtysh(topo, vty, "show bgp ipv4 unicast dampening flap-statistics")
    return peak, suppressed, stats + "\n" + (d / "agent.log").read_text(errors="replace")


@pytest.mark.parametrize("agent_damping", [False, True], ids=["without-agent-damping", "with-agent-damping"])
def test_crash_loop_at_a_damping_transit(topo: Topology, tmp_path: Path, frr_dir: Path, agent_damping: bool) -> None:
    peak, suppressed, log = crash_loop(topo, tmp_path, frr_dir, agent_damping)
    withdrawals = log.count("withdrawing:")
    print(f"FIGURE damping agent_damping={agent_damping} withdrawals={withdrawals} peak_penalty={peak} "
          f"suppressed={suppressed} in {LOOP_S} s")
    assert withdrawals >= 5, log[-3000:]
    if agent_damping:
        assert not suppressed and 0 < peak <= 5000, (peak, log[-3000:])
        assert "figure of merit" in log
    else:
        assert suppressed and peak > 6000, (peak, log[-3000:])
