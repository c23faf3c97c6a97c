"""The lab rollout's pure parts: generations in the lab plan (new namespace and unicast address beside the old),
the link of a second PoP on an existing upstream, which PoPs a change reaches, the broken-change fault (checked
with the real nsd-checkconf), and how the clients' load tells a loss at a route move from any other."""

from __future__ import annotations

import shutil
import subprocess
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

from bench.rollout import changed_network
from infra.model.stack import load_network
from lab.boot.up import pop_lab_files
from lab.net.probes import Prober
from lab.plan.topology import ODD_POOL_V4, ODD_POOL_V6, VULTR_POOL_V4, VULTR_POOL_V6, build_plan, pop_dir_name, state_generations
from lab.scenarios.rollout import FAULTS, Load, _link_lines, changed_pops
from userdata.render import render_pop

PASSWORD = "lab-password"


def test_odd_generations_boot_beside_the_even_ones() -> None:
    network = load_network("prod")
    even = build_plan("prod", network)
    odd = build_plan("prod", network, generations={"ams": 1, "hkg": 1, "fra": 2})
    a0, a1 = even.pop("ams"), odd.pop("ams")
    assert (a0.namespace, a0.uplink, a0.generation) == ("acl-prod-p-ams", "pop", 0)
    assert (a1.namespace, a1.uplink, a1.generation) == ("acl-prod-q-ams", "poq", 1)
    assert a1.upstream_namespace == a0.upstream_namespace and a1.backbone_v4 == a0.backbone_v4
    assert ip_address(str(a0.unicast_ipv4)) in VULTR_POOL_V4 and ip_address(str(a1.unicast_ipv4)) in ODD_POOL_V4
    assert ip_address(str(a0.unicast_ipv6)) in VULTR_POOL_V6 and ip_address(str(a1.unicast_ipv6)) in ODD_POOL_V6
    offset4 = int(ip_address(str(a0.unicast_ipv4))) - int(VULTR_POOL_V4.network_address)
    assert int(ip_address(str(a1.unicast_ipv4))) - int(ODD_POOL_V4.network_address) == offset4  # the same slot
    assert odd.pop("fra") == even.pop("fra").__class__(**{**even.pop("fra").__dict__, "generation": 2})
    assert odd.pop("hkg") == even.pop("hkg"), "external PoPs are not replaced by a rollout"
    others = [p for p in odd.pops if p.code not in ("ams", "fra")]
    assert others == [p for p in even.pops if p.code not in ("ams", "fra")]
    used = {s.link for p in odd.pops for s in p.sessions}
    assert len(used) == sum(len(p.sessions) for p in odd.pops), "no link used twice"
    assert state_generations({"pops": {"ams": {"generation": 3}, "fra": {}}}) == {"ams": 3, "fra": 0}
    assert [pop_dir_name("ams", g) for g in range(3)] == ["ams", "ams.odd", "ams"]


def test_second_link_on_an_existing_upstream() -> None:
    network = load_network("dev")
    pop = build_plan("dev", network, generations={"ams": 1}).pop("ams")
    inside, upstream = _link_lines(pop, network)
    s4, s6 = pop.session(4), pop.session(6)
    assert s4 is not None and s6 is not None
    assert inside == ["link set lo up", "link set eth0 up", f"addr add {network.service.ipv4}/32 dev lo",
                      f"addr add {network.service.ipv6}/128 dev lo",
                      f"addr add {s4.pop_address}/30 dev eth0", f"route add default via {s4.link_gateway} dev eth0 onlink",
                      f"addr add {s6.pop_address}/64 dev eth0 nodad", f"route add default via {s6.link_gateway} dev eth0 onlink"]
    assert upstream == ["link set poq up", f"addr add {s4.link_gateway}/30 dev poq", f"addr add {s6.link_gateway}/64 dev poq nodad"]
    assert not any("169.254.169.254" in line for line in upstream), "the upstream already owns the neighbour address"


def _running_lab(tmp_path: Path, stack: str) -> tuple[Any, dict[str, Any]]:
    """State and PoP directories as `anycast lab up` leaves them (files only; nothing runs)."""
    network = load_network(stack)
    plan = build_plan(stack, network)
    state: dict[str, Any] = {"pops": {}}
    for p in plan.pops:
        d = tmp_path / "pops" / p.code
        for name, text in pop_lab_files(network, p.code, PASSWORD, d).items():
            (d / name).parent.mkdir(parents=True, exist_ok=True)
            (d / name).write_text(text, encoding="utf-8")
        state["pops"][p.code] = {"dir": str(d)}
    return plan, state


def test_changed_pops_are_the_ones_whose_lab_files_differ(tmp_path: Path) -> None:
    plan, state = _running_lab(tmp_path, "dev")
    assert changed_pops(plan, state, PASSWORD, None) == {}
    zone = "zones/" + next(n for n in render_pop(plan.network, plan.network.pops[0], PASSWORD).files if n.endswith(".zone"))
    ttl = build_plan("dev", changed_network("dev"))
    assert changed_pops(ttl, state, PASSWORD, None) == {p.code: [zone] for p in plan.pops}
    assert changed_pops(plan, state, PASSWORD, FAULTS["nsd-config"]) == {p.code: ["nsd.conf"] for p in plan.pops}
    (Path(state["pops"]["ams"]["dir"]) / "bird.conf").write_text("edited by hand\n", encoding="utf-8")
    assert changed_pops(plan, state, PASSWORD, None) == {"ams": ["bird.conf"]}


@pytest.mark.skipif(shutil.which("nsd-checkconf") is None, reason="nsd-checkconf is installed by make debs")
def test_the_broken_change_really_breaks_nsd(tmp_path: Path) -> None:
    network = load_network("dev")
    files = render_pop(network, network.pop("ams"), PASSWORD).files
    for label, text, ok in (("good", files["nsd.conf"], True), ("broken", FAULTS["nsd-config"](files)["nsd.conf"], False)):
        path = tmp_path / f"{label}.conf"
        path.write_text(text, encoding="utf-8")
        res = subprocess.run(["nsd-checkconf", str(path)], capture_output=True, text=True, check=False)
        assert (res.returncode == 0) is ok, (label, res.stderr)


def test_load_tells_a_loss_at_a_route_move_from_a_blackhole() -> None:
    load = Load({}, "192.0.2.1", "example.com")
    load.samples = {
        # the route moved ewr -> ams while one request's connection was open: reset by ams, alone between them
        "uswest": [(10.00, "http", "ewr"), (10.05, "dns", "ewr"), (10.02, "http", None), (10.04, "http", "ams"),
                   (10.15, "dns", "ams")],
        # two in a row, or lost where the client stayed on the same PoP: a blackhole, not a move
        "br": [(10.00, "http", "ewr"), (10.02, "http", None), (10.04, "http", None), (10.06, "http", "ams"),
               (11.00, "dns", "ams"), (11.10, "dns", None), (11.20, "dns", "ams")],
        # lost as the first or the last sample: nothing tells what it was next to
        "de": [(10.00, "http", None), (10.02, "http", "ams")],
    }
    out = load.summary(t0=10.0)
    assert out["http"] == [4, 9] and out["dns"] == [1, 5]
    assert out["at_switch"] == [("uswest", "http", 0.02, "ewr", "ams")]
    assert out["elsewhere"] == 4
    assert out["lost_by_client"] == {"uswest": 1, "br": 3, "de": 1}
    assert [t for _c, _k, t in out["lost_at"]] == sorted(t for _c, _k, t in out["lost_at"])


def test_a_probers_losses_in_a_window_are_sorted_the_same_way() -> None:
    """The drain row's prober: a loss at the edge of the window still sees its neighbours outside it."""
    prober = Prober("ns", "192.0.2.1")
    prober.samples = [(1.00, "ams"), (1.02, None), (1.04, "ewr"), (1.06, "ewr"), (1.08, None), (1.10, None),
                      (1.12, "ewr"), (1.14, None), (1.16, "ams")]
    assert prober.losses(0.0, 2.0) == ([(1.02, "ams", "ewr"), (1.14, "ewr", "ams")], 2)
    assert prober.losses(1.01, 1.03) == ([(1.02, "ams", "ewr")], 0)  # its neighbours are outside the window
    assert prober.losses(1.05, 1.13) == ([], 2)
    assert prober.lost(0.0, 2.0) == (4, 9)
