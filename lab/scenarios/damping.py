"""A PoP whose service crash-loops, seen by a transit running route flap damping with RFC 7196's parameters (FRR,
``bgp dampening 15 750 6000 60``: half-life 15 min, reuse 750, suppress 6000, max-suppress 60 min; FRR adds 1000 per
withdrawal). Without the agent's damping the transit suppresses the prefix within seconds; with it the figure of merit
stays at or below the agent's ``damping.max_penalty`` (5000) and nothing is suppressed.

Two namespaces (lab/net/bgp_topology.py): ``t`` runs FRR's zebra and bgpd started by hand (own config and vty socket
directory, no systemd), ``p`` the rendered maa bird.conf driven by the real agent; the service is ``python3 -m
http.server`` killed 1.5 s after each start. The agent's flap hold-downs are shortened (1..4 s) so the figure of merit,
not the doubling, binds within the run; the transit's parameters are RFC 7196's, unchanged. Used by
tests/validators/test_damping_transit.py and by `make bench` (bench/damping.py). Needs root, bird2 and frr.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from infra.model.stack import load_network
from lab.net.bgp_topology import Topology, until
from userdata.render import render_pop

AGENT = Path(__file__).resolve().parents[2] / "userdata" / "files" / "anycast-health.py"
FRR = Path("/usr/lib/frr")
LOOP_S = 30
STAND_IN_PASSWORD = "lab-damping-stand-in"  # the maa session's TCP-MD5 password; FRR is configured without one
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


def missing() -> str | None:
    """Why the scenario cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if shutil.which("bird") is None or not (FRR / "bgpd").exists() or shutil.which("vtysh") is None:
        return "needs bird2 and frr (bgpd, zebra, vtysh)"
    return None


@dataclass
class CrashLoop:
    agent_damping: bool
    withdrawals: int  # the agent's withdrawals during the loop
    peak_penalty: int  # the highest figure of merit the transit showed
    suppressed: bool  # whether the transit suppressed the prefix
    seconds: int
    log: str  # FRR's flap statistics and the agent's log


def _frr(t: Topology, d: Path) -> Path:
    """zebra and bgpd in namespace t, their own config, sockets and logs in ``d`` (the daemons drop to user frr)."""
    (d / "frr.conf").write_text(FRR_CONF.format(d=d))
    vty = d / "vty"
    vty.mkdir()
    for path in (d, vty):
        shutil.chown(path, "frr", "frr")
    common = ["-z", str(d / "zserv.api"), "--vty_socket", str(vty), "-P", "0"]
    (d / "zebra.conf").write_text("hostname damping-transit\n")
    t.spawn("t", str(FRR / "zebra"), *common, "-i", str(d / "zebra.pid"), "-f", str(d / "zebra.conf"), log="zebra.out")
    if not until(lambda: (d / "zserv.api").exists(), 10):
        raise RuntimeError(f"zebra did not start: {t.log('zebra.out')}")
    t.spawn("t", str(FRR / "bgpd"), *common, "-i", str(d / "bgpd.pid"), "-f", str(d / "frr.conf"), log="bgpd.out")
    if not until(lambda: (vty / "bgpd.vty").exists(), 10):
        raise RuntimeError(f"bgpd did not start: {t.log('bgpd.out')}")
    return vty


def _vtysh(t: Topology, vty: Path, command: str) -> str:
    return t.run("t", "vtysh", "--vty_socket", str(vty), "-c", command, timeout=10).stdout


def crash_loop(topo: Topology, d: Path, fd: Path, agent_damping: bool, seconds: int = LOOP_S,
               password: str = STAND_IN_PASSWORD) -> CrashLoop:
    """The crash loop for ``seconds`` in ``topo`` (files in ``d``; FRR's state in ``fd``, readable by user frr)."""
    topo.add("t")
    topo.add("p")
    topo.link("t", "10.8.1.1", "p", "10.8.1.2")
    (d / "www").mkdir()
    (d / "www" / "healthz").write_text("ok\n")
    vty = _frr(topo, fd)
    network = load_network("prod")
    conf = render_pop(network, network.pop("maa"), password).files["bird.conf"]
    sock = topo.bird("p", conf.replace("neighbor 203.0.113.1 as 64502;", "neighbor 10.8.1.1 as 64502;"))
    damping = ({"stable_s": 10, "min_hold_down_s": 1, "max_hold_down_s": 4} if agent_damping else
               {"stable_s": 10, "min_hold_down_s": 0, "max_hold_down_s": 0, "max_penalty": 0})
    (d / "health.json").write_text(json.dumps({
        "pop": "maa", "interval_ms": 100, "rise": 2, "fall": 2,
        "http": {"host": "127.0.0.1", "port": 8080, "timeout_ms": 300},
        "bird": {"socket": str(sock), "protocols": ["anycast4"], "timeout_ms": 500},
        "damping": damping, "status": {"port": 0}, "drain": {"file": str(d / "drain")}}))
    if not until(lambda: "Established" in topo.birdc(sock, "show protocols upstream4"), 30):
        raise RuntimeError(f"no session to the transit: {_vtysh(topo, vty, 'show bgp ipv4 unicast summary')}")
    topo.spawn("p", "sh", "-c", CRASH_LOOP.format(d=d), log="service.log")
    topo.spawn("p", sys.executable, str(AGENT), "--config", str(d / "health.json"), log="agent.log")
    peak, suppressed = 0, False
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        out = _vtysh(topo, vty, "show bgp ipv4 unicast 192.0.2.0/24")
        peak = max([peak, *(int(p) for p in re.findall(r"penalty (\d+)", out))])
        suppressed = suppressed or "suppressed" in out
        time.sleep(0.5)
    stats = _vtysh(topo, vty, "show bgp ipv4 unicast dampening flap-statistics")
    agent_log = (d / "agent.log").read_text(errors="replace")
    return CrashLoop(agent_damping, agent_log.count("withdrawing:"), peak, suppressed, seconds, stats + "\n" + agent_log)


def run_crash_loop(agent_damping: bool, seconds: int = LOOP_S) -> CrashLoop:
    """``crash_loop`` in fresh namespaces and temporary directories, cleaned up afterwards."""
    d = Path(tempfile.mkdtemp(prefix="acu-dm-"))
    fd = Path(tempfile.mkdtemp(prefix="acu-dm-frr-"))
    fd.chmod(0o755)
    topo = Topology("dm", d)
    try:
        return crash_loop(topo, d, fd, agent_damping, seconds)
    finally:
        topo.close()
        shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(fd, ignore_errors=True)
