"""The lab's router-advertisement topology for bgp.ipv6NeighborRoute: auto, and the in-place restart gate's re-arming,
without root: which static routes a PoP gets, the upstream's radv config (parsed by ``bird -p`` when BIRD is
installed), and :func:`infra.readiness.rearmed` as ``PopGate.update`` and ``anycast lab rollout --restart-in-place``
use it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from infra.model.stack import load_network
from infra.readiness import GateTarget, rearmed
from lab.boot.up import _links, ra_neighbor, radv_conf
from lab.plan.topology import build_plan


def test_auto_stack_pops_have_no_static_ipv6_default_route() -> None:
    plan = build_plan("free", load_network("free"))
    _, per = _links(plan)
    for p in plan.pops:
        assert str(ra_neighbor(plan.network, p.code)) == "2001:19f0:ffff::1"
        lines = per[p.namespace]
        assert not [line for line in lines if line.startswith("route add default")], lines
        assert f"addr add {p.session(6).pop_address}/64 dev eth0 nodad" in lines  # type: ignore[union-attr]


def test_none_stack_keeps_the_static_default_routes() -> None:
    plan = build_plan("dev", load_network("dev"))
    _, per = _links(plan)
    for p in plan.pops:
        assert ra_neighbor(plan.network, p.code) is None
        defaults = [line for line in per[p.namespace] if line.startswith("route add default")]
        assert defaults == [f"route add default via {s.link_gateway} dev eth0 onlink" for s in p.sessions]


def test_radv_conf_advertises_the_router_only(tmp_path: Path) -> None:
    plan = build_plan("free", load_network("free"))
    text = radv_conf(plan.pops[0], tmp_path)
    assert 'interface "pop", "poq"' in text and "prefix ::/0 { skip yes; };" in text
    if shutil.which("bird") is None:
        pytest.skip("bird is not installed (make debs)")
    conf = tmp_path / "radv.conf"
    conf.write_text(text, encoding="utf-8")
    res = subprocess.run(["bird", "-p", "-c", str(conf)], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr


def test_rearmed_only_when_the_restart_mark_moved() -> None:
    t = GateTarget("ams", "anycast", ("192.0.2.1",), "z")
    assert rearmed(t, None, 1000.0) is None  # a first mark: nothing restarted
    assert rearmed(t, 1000.0, 1000.0) is None  # unchanged
    assert rearmed(t, 1000.0, None) is None
    again = rearmed(t, 1000.0, 2000.5)
    assert again is not None and again.restarted_after == 2000.5 and again.pop == "ams"
