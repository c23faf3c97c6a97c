"""The lab's step-8 option (a PoP's upstream is "too well connected"): the routing prediction, the client BIRD
configs it produces (validated by bird -p), and that without the option nothing changes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from infra.model import Network, parse_network
from infra.model.stack import NETWORK_KEY, read_stack_config
from lab.plan.configs import client_bird_conf
from lab.plan.topology import TRANSIT_ASN, build_plan, parse_well_connected


def _without_maa_prepend() -> Network:
    doc = read_stack_config("prod")[NETWORK_KEY]
    for pop in doc["pops"]:
        if pop["code"] == "maa":
            pop.pop("announce")
    return parse_network(doc)


def test_default_plan_is_unchanged(prod_network: Network) -> None:
    plain, off = build_plan("prod", prod_network), build_plan("prod", prod_network, well_connected=())
    for c in plain.clients:
        assert plain.routed_pop(c) == plain.nearest_anycast(c)
        conf = client_bird_conf(plain, c, Path("/run/x"))
        assert conf == client_bird_conf(off, c, Path("/run/x"))
        assert "med metric" not in conf and f"prepend({TRANSIT_ASN})" not in conf


def test_a_well_connected_upstream_pulls_europe_until_prepended(prod_network: Network) -> None:
    network = _without_maa_prepend()
    plan = build_plan("step8", network, well_connected=(parse_well_connected("maa:EU", network),))
    routed = {c.name: plan.routed_pop(c) for c in plan.clients}
    assert routed["de"] == "maa" and routed["gb"] == "maa"  # AS path 2 (64502 64500) beats 3 (64496 64515 64500)
    assert routed["us"] == "ewr" and routed["jp"] == "nrt"  # other continents keep the nearest PoP
    assert plan.as_path_length(plan.client("de"), "maa") == 2 and plan.as_path_length(plan.client("de"), "fra") == 3
    # prod prepends maa 2x: the same option pulls nobody there
    prod = build_plan("prod", prod_network, well_connected=(parse_well_connected("maa:EU", prod_network),))
    assert {c.name: prod.routed_pop(c) for c in prod.clients}["de"] == "fra"


def test_vultr_prepend_communities_count(free_network: Network) -> None:
    plan = build_plan("free", free_network, well_connected=(parse_well_connected("ewr:EU", free_network),))
    de = plan.client("de")
    assert plan.as_path_length(de, "ewr") == 2 and plan.as_path_length(de, "sgp") == 4  # sgp carries 20473:6001
    assert plan.routed_pop(de) == "ewr"


@pytest.mark.parametrize(("spec", "message"), [
    ("maa", "must be CODE:CONTINENTS"), ("xyz:EU", "'xyz' is not a PoP"), ("sao:NA", "sao is a unicast PoP"),
    ("maa:AN", "AN is not a continent with lab clients")])
def test_bad_option_values(prod_network: Network, spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_well_connected(spec, prod_network)


@pytest.mark.skipif(shutil.which("bird") is None, reason="bird2 is installed by make deps")
def test_client_configs_under_the_option_parse_with_bird(tmp_path: Path) -> None:
    network = _without_maa_prepend()
    plan = build_plan("step8", network, well_connected=(parse_well_connected("maa:EU", network),))
    conf = client_bird_conf(plan, plan.client("de"), tmp_path)
    assert "med metric yes;" in conf and f"bgp_path.prepend({TRANSIT_ASN});" in conf
    assert conf.count("bgp_local_pref = 100;") == conf.count("protocol bgp")
    path = tmp_path / "bird.conf"
    path.write_text(conf)
    proc = subprocess.run(["bird", "-p", "-c", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
