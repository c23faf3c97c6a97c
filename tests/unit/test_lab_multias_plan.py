"""The multi-AS topology's plan and configs (lab/plan/multias.py), no root: who peers with whom, Gao-Rexford
filters, and every BIRD config accepted by ``bird -p``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from infra.model.stack import load_network
from lab.boot.multias import EDGE_SCRIPT, configs, edge_toml
from lab.plan.multias import CUSTOMER, HONOUR_GSHUT, PEER, TRANSITS, fib_args, pop_providers, relay_specs, transit, transit_neighbors
from lab.plan.topology import LabPlan, build_plan


def _plan() -> LabPlan:
    return build_plan("dev", load_network("dev"), topology="multi-as")


def test_plan_has_transits_and_only_the_eyeball_clients() -> None:
    plan = _plan()
    assert plan.topology == "multi-as"
    assert [c.name for c in plan.clients] == ["us", "de", "jp"]
    assert {f"acl-dev-t-{t.name}" for t in TRANSITS} <= set(plan.namespaces)
    assert build_plan("dev", load_network("dev")).extra_namespaces == ()  # the default topology is unchanged


def test_every_upstream_is_multi_homed_and_transits_peer_in_a_triangle() -> None:
    plan = _plan()
    for p in plan.pops:
        a, b = pop_providers(plan, p)
        assert a != b
    for t in TRANSITS:
        peers = [n for n in transit_neighbors(plan, t) if n.relation == PEER]
        assert len(peers) == 2
        assert any(n.relation == CUSTOMER for n in transit_neighbors(plan, t))


def test_peers_get_customer_routes_only(tmp_path: Path) -> None:
    plan = _plan()
    text = configs(plan, tmp_path)[tmp_path / "transits" / "eu" / "bird.conf"]
    assert "filter to_peer { if (64496, 1, 1) ~ bgp_large_community then accept; reject; }" in text
    assert "import filter from_peer; export filter to_peer;" in text
    assert "import filter from_customer; export filter to_customer;" in text
    assert "bgp_local_pref = 200" in text and "bgp_local_pref = 100" in text


def test_upstream_keeps_its_pop_sessions_and_adds_two_transits() -> None:
    plan = _plan()
    toml = edge_toml(plan, plan.pop("ams"), "pw")
    assert toml.count("[[neighbors]]") == 2 + 4  # two PoP sessions (v4, v6), two transits x two families
    assert "100.64.2." not in toml, "no client peers with the upstream in this topology"


def test_bird_accepts_every_config(tmp_path: Path) -> None:
    for path, text in configs(_plan(), tmp_path).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        res = subprocess.run(["bird", "-p", "-c", str(path)], capture_output=True, text=True, check=False)
        assert res.returncode == 0, (path, res.stderr)


def test_edge_sessions_run_through_the_delaying_relay_and_others_do_not(tmp_path: Path) -> None:
    plan = _plan()
    text = configs(plan, tmp_path)[tmp_path / "transits" / "eu" / "bird.conf"]
    specs = relay_specs(plan, transit("eu"))
    edges = [n for n in transit_neighbors(plan, transit("eu")) if n.name.startswith("c_") and n.relay_port is not None]
    assert {n.name for n in edges} == {f"c_{p.code}" for p in plan.pops if transit("eu") in pop_providers(plan, p)}
    for n in edges:
        port = n.relay_port
        assert port is not None
        assert f"neighbor 127.0.0.1 port {port} as 64515; multihop 2;" in text
        assert f"127.0.0.1:{port}={n.v4}:179@{transit('eu').backbone_v4}" in specs
        assert f"[::1]:{port + 50}=[{n.v6}]:179@{transit('eu').backbone_v6}" in specs
    eyeballs = [n for n in transit_neighbors(plan, transit("eu")) if n.relay_port is None]
    assert eyeballs and all(f"neighbor {n.v4} as {n.asn};" in text for n in eyeballs)  # direct: only edges are delayed
    assert len(specs) == 2 * len(edges)
    toml = edge_toml(plan, plan.pop("ams"), "pw")
    assert toml.count("passive-mode = true") == 4, "the edge waits for its transits' relays"


def test_transits_and_eyeballs_honour_graceful_shutdown(tmp_path: Path) -> None:
    for path, text in configs(_plan(), tmp_path).items():
        assert HONOUR_GSHUT in text, path
    transit_text = configs(_plan(), tmp_path)[tmp_path / "transits" / "na" / "bird.conf"]
    # After the Gao-Rexford preference, so 65535:0 wins over "customer".
    assert transit_text.index("bgp_local_pref = 200;") < transit_text.index(HONOUR_GSHUT)


def test_the_edge_fib_follows_bgp_for_anycast_pops_only() -> None:
    plan = _plan()
    ams = plan.pop("ams")
    args = fib_args(plan, ams)
    assert args[:4] == ["ipv4", str(plan.network.prefixes.ipv4), str(ams.session(4).pop_address), "pop"]  # type: ignore[union-attr]
    assert len(args) == 8 and args[4] == "ipv6"
    assert fib_args(plan, plan.pop("sao")) == [], "a unicast PoP's upstream has no anycast route"


def test_the_relay_delays_each_way_and_the_fib_sync_refuses_bad_arguments() -> None:
    """lab/net/edge.py on the loopback (no namespace): an echo through the relay takes at least twice its delay."""
    echo = socket.socket()
    echo.bind(("127.0.0.1", 0))
    echo.listen(1)
    port = echo.getsockname()[1]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        listen = probe.getsockname()[1]
    relay = subprocess.Popen([sys.executable, str(EDGE_SCRIPT), "relay", "0.3", f"127.0.0.1:{listen}=127.0.0.1:{port}"])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client = socket.create_connection(("127.0.0.1", listen), timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, "relay never listened"
                time.sleep(0.05)
        server, _ = echo.accept()
        t0 = time.monotonic()
        client.sendall(b"update")
        server.settimeout(5)
        assert server.recv(16) == b"update"
        there = time.monotonic() - t0
        server.sendall(b"keepalive")
        client.settimeout(5)
        assert client.recv(16) == b"keepalive"
        total = time.monotonic() - t0
        assert there >= 0.3 and total >= 0.6, (there, total)  # lower bounds: the relay never delivers early
        during = len(os.listdir(f"/proc/{relay.pid}/fd"))
        client.close()
        server.close()
        # the session ended both ways: the relay closes its two sockets (a flapping session must not leak them)
        while len(os.listdir(f"/proc/{relay.pid}/fd")) > during - 2 and time.monotonic() - t0 < 10:
            time.sleep(0.05)
        assert len(os.listdir(f"/proc/{relay.pid}/fd")) == during - 2
    finally:
        relay.kill()
        relay.wait()
        echo.close()
    bad = subprocess.run([sys.executable, str(EDGE_SCRIPT), "fib", "ipv4", "192.0.2.0/24"], capture_output=True,
                         text=True, check=False)
    assert bad.returncode == 2 and "relay DELAY" in bad.stderr
