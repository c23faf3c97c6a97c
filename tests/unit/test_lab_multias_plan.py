"""The multi-AS topology's plan and configs (lab/plan/multias.py), no root: who peers with whom, Gao-Rexford
filters, and every BIRD config accepted by ``bird -p``."""

from __future__ import annotations

import subprocess
from pathlib import Path

from infra.model.stack import load_network
from lab.boot.multias import configs, edge_toml
from lab.plan.multias import CUSTOMER, PEER, TRANSITS, pop_providers, transit_neighbors
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
