"""RFC 8326 graceful shutdown, measured: the same planned drain (``anycast-health --drain`` against the rendered
bird.conf) by plain withdrawal, with 65535:0 honoured by the transits, and with only the prepend fallback.

Topology (namespaces, real BIRD everywhere)::

    client AS64601 -- t2 AS64602 -- popA (AS64500, 2 prepends)      preferred: shorter path
                  \\- t3 AS64603 -- popB (AS64500, 3 prepends)

The client-t2 BGP session runs through a relay that delays it 50 ms each way (the kernel here has no netem): t2's
updates reach the client as late as over a few busy routers. The client probes the anycast address over UDP every
5 ms. A plain withdrawal at popA leaves t2 without a route while the client still forwards to it for those 50 ms:
those datagrams are lost. With graceful shutdown the client moves to popB while popA still answers, then popA
withdraws.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.model.stack import load_network
from lab.net.bgp_topology import PROBER, RELAY, RESPONDER, Topology, transit_bird, until
from tests.conftest import TEST_PASSWORD
from userdata.render import arrivals_nft, render_pop

AGENT = Path(__file__).resolve().parents[2] / "userdata" / "files" / "anycast-health.py"
OK = os.geteuid() == 0 and all(shutil.which(t) for t in ("ip", "bird", "birdc", "tc", "nft"))
pytestmark = [pytest.mark.skipif(not OK, reason="needs root, iproute2 (tc) and bird2 (network namespaces)"),
              pytest.mark.slow]
ANYCAST, PORT, CLIENT = "192.0.2.1", 5300, "198.51.100.1"
DELAY_S, PROBE_S = 0.05, 0.005


def pop_bird(peer: str, peer_as: int, extra_prepend: bool) -> str:
    network = load_network("prod")  # maa: an external PoP with its own neighbour and 2 prepends
    conf = render_pop(network, network.pop("maa"), TEST_PASSWORD).files["bird.conf"]
    conf = conf.replace("neighbor 203.0.113.1 as 64502;", f"neighbor {peer} as {peer_as};\n  connect retry time 1;")
    if extra_prepend:
        conf = conf.replace("  bgp_path.prepend(OWN_ASN);\n  if proto = \"gshut4\"",
                            "  bgp_path.prepend(OWN_ASN);\n  bgp_path.prepend(OWN_ASN);\n  if proto = \"gshut4\"", 1)
    return conf


def build(t: Topology, honour: bool) -> dict[str, Path]:
    for node in ("c", "t2", "t3", "pa", "pb"):
        t.add(node)
    t.link("c", "10.9.1.1", "t2", "10.9.1.2")
    t.link("c", "10.9.2.1", "t3", "10.9.2.2")
    t.python("c", RELAY, "127.0.0.2", "1790", "10.9.1.2", str(DELAY_S), log="relay.log")
    t.link("t2", "10.9.3.1", "pa", "10.9.3.2")
    t.link("t3", "10.9.4.1", "pb", "10.9.4.2")
    t.ip("c", "addr", "add", f"{CLIENT}/32", "dev", "lo")
    for node, via in (("t2", "10.9.1.1"), ("t3", "10.9.2.1")):
        t.sysctl_forward(node)
        t.ip(node, "route", "add", f"{CLIENT}/32", "via", via)
    counter = t.d / "arrivals.nft"  # the PoP ruleset's packet counter alone, as the process-mode lab loads it
    counter.write_text(arrivals_nft(load_network("prod")))
    assert str(load_network("prod").service.ipv4) == ANYCAST
    for node, via in (("pa", "10.9.3.1"), ("pb", "10.9.4.1")):
        assert t.run(node, "nft", "-f", str(counter)).returncode == 0
        t.ip(node, "addr", "add", f"{ANYCAST}/32", "dev", "lo")
        t.ip(node, "route", "add", "default", "via", via)
        t.python(node, RESPONDER, ANYCAST, str(PORT), node, log=f"{node}.responder.log")
    t.sysctl_forward("c")
    socks = {
        "c": t.bird("c", transit_bird("10.9.1.1", 64601, [("t2", "127.0.0.2 port 1790", 64602, ""),
                                                          ("t3", "10.9.2.2", 64603, "")], honour_gshut=honour,
                                      session={"t2": "multihop 2; source address 127.0.0.1;"})),
        "t2": t.bird("t2", transit_bird("10.9.1.2", 64602, [("c", "10.9.1.1", 64601, ""), ("pa", "10.9.3.2", 64500, "")],
                                        honour_gshut=honour, session={"c": "passive on;"})),
        "t3": t.bird("t3", transit_bird("10.9.2.2", 64603, [("c", "10.9.2.1", 64601, ""), ("pb", "10.9.4.2", 64500, "")],
                                        honour_gshut=honour)),
        "pa": t.bird("pa", pop_bird("10.9.3.1", 64602, extra_prepend=False)),
        "pb": t.bird("pb", pop_bird("10.9.4.1", 64603, extra_prepend=True)),
    }
    for pop in ("pa", "pb"):
        assert "enabled" in t.birdc(socks[pop], "enable anycast4")
    assert until(lambda: "via 10.9.1.2" in t.run("c", "ip", "route", "get", ANYCAST).stdout, 30), \
        t.birdc(socks["c"], "show route all")
    assert until(lambda: "10.9.2.2" in t.birdc(socks["c"], "show route 192.0.2.0/24"), 10)  # popB's path known too
    return socks


def health_json(d: Path, sock: Path, gshut: bool) -> Path:
    cfg = {"pop": "pa", "bird": {"socket": str(sock), "protocols": ["anycast4"], "timeout_ms": 500},
           "dns": {"server": ANYCAST, "port": PORT, "qname": "cdn.example.com."}, "status": {"port": 0},
           "drain": {"file": str(d / "drain"), "quiet_s": 1, "timeout_s": 10, "ports": [PORT],
                     "gshut_protocols": ["gshut4"] if gshut else [], "gshut_s": 5}}
    path = d / "health.json"
    path.write_text(json.dumps(cfg))
    return path


def drain_under_load(t: Topology, d: Path, cfg: Path) -> tuple[int, int, str, str]:
    """Probe from the client while popA drains: (sent, answered, answers by PoP, drain output)."""
    stop = d / "stop"
    prober = t.python("c", PROBER, ANYCAST, str(PORT), str(PROBE_S), str(stop), log="prober.out")
    time.sleep(1.0)
    r = t.run("pa", sys.executable, str(AGENT), "--config", str(cfg), "--drain", timeout=30)
    time.sleep(1.0)
    stop.touch()
    prober.wait(timeout=10)
    sent, answered, *by = t.log("prober.out").split()
    assert r.returncode == 0, r.stdout + r.stderr
    return int(sent), int(answered), " ".join(by), r.stdout


@pytest.fixture
def topo(tmp_path: Path) -> Iterator[Topology]:
    t = Topology("gs", tmp_path)
    try:
        yield t
    finally:
        t.close()


@pytest.mark.parametrize("mode", ["withdraw", "gshut", "prepend"])
def test_drain_through_a_transit(topo: Topology, tmp_path: Path, mode: str) -> None:
    socks = build(topo, honour=(mode == "gshut"))
    sent, answered, by, out = drain_under_load(topo, tmp_path, health_json(tmp_path, socks["pa"], mode != "withdraw"))
    lost = sent - answered
    print(f"FIGURE gshut-drain mode={mode} sent={sent} lost={lost} answers: {by}")
    assert "pa=" in by and "pb=" in by, by  # the probes moved from popA to popB
    assert "via 10.9.2.2" in topo.run("c", "ip", "route", "get", ANYCAST).stdout
    if mode == "withdraw":
        assert "graceful shutdown" not in out
        assert lost > 0, (sent, answered)  # the window of the withdrawal's trip: why graceful shutdown exists
    else:
        assert "graceful shutdown: announcing with 65535:0" in out and "quiet after" in out, out
        # the counter saw the client's probes (one every 5 ms, from outside) before the announcement, none after
        before = re.search(r"announcing with 65535:0 \(gshut4\) at (\d+\.\d) packets/s", out)
        assert before and float(before[1]) > 50, out
        after = re.search(r"quiet after ([\d.]+) s \(([\d.]+) packets/s, at most ([\d.]+)\)", out)
        assert after and float(after[1]) >= 1.0 and float(after[2]) <= 0.1 * float(before[1]), out
        assert re.search(r"safe to stop: drained in [\d.]+ s \(0\.0 packets/s", out), out
        assert lost == 0, (sent, answered, out)
