"""The lab's plan and configs, without root: addressing, GeoDNS expectations, substitutions, generated configs."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra.model import VULTR_NEIGHBOR_V4, VULTR_NEIGHBOR_V6
from infra.model.stack import load_network
from lab.checks.core import expected_routes
from lab.checks.leak import leak_prefixes, leaker_conf
from lab.plan.configs import apply_substitutions, client_bird_conf, gobgpd_toml, lab_substitutions
from lab.plan.geodns import expected_pop, geo_answer
from lab.plan.topology import CLIENT_SITES, LabPlan, build_plan, local_pref
from userdata.render import render_pop, zone_file_name

ALLOWED = [ipaddress.ip_network(n) for n in (
    "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12",
    "169.254.0.0/16", "2001:db8::/32", "fd00::/8", "2001:19f0:ffff::1/128")]


@pytest.fixture(scope="module")
def prod_plan() -> LabPlan:
    return build_plan("prod", load_network("prod"))


def _addresses(plan: LabPlan) -> list[Any]:
    out: list[Any] = []
    for p in plan.pops:
        out += [p.backbone_v4, p.backbone_v6]
        for s in p.sessions:
            out += [s.pop_address, s.upstream_address, s.link_gateway]
    for c in plan.clients:
        out += [c.backbone_v4, c.backbone_v6]
    return out


def test_every_address_is_documentation_or_private(prod_plan: LabPlan) -> None:
    for addr in _addresses(prod_plan):
        assert any(addr in n for n in ALLOWED), addr


def test_addresses_are_unique_where_they_must_be(prod_plan: LabPlan) -> None:
    pops = [s.pop_address for p in prod_plan.pops for s in p.sessions]
    assert len(pops) == len(set(pops))
    bb = [a for p in prod_plan.pops for a in (p.backbone_v4, p.backbone_v6)] + \
         [a for c in prod_plan.clients for a in (c.backbone_v4, c.backbone_v6)]
    assert len(bb) == len(set(bb))
    links = [s.link for p in prod_plan.pops for s in p.sessions]
    assert not any(a.overlaps(b) for i, a in enumerate(links) for b in links[i + 1:] if a.version == b.version)


def test_vultr_pops_peer_with_the_vultr_neighbours_and_externals_with_theirs(prod_plan: LabPlan) -> None:
    ams, hkg, maa = prod_plan.pop("ams"), prod_plan.pop("hkg"), prod_plan.pop("maa")
    assert {s.upstream_address for s in ams.sessions} == {VULTR_NEIGHBOR_V4, VULTR_NEIGHBOR_V6}
    assert all(s.on_loopback and s.multihop == 2 for s in ams.sessions) and ams.password
    assert ams.upstream_asn == 64515
    assert hkg.upstream_asn == 64501 and not hkg.password
    s4 = hkg.session(4)
    assert s4 is not None
    assert str(s4.upstream_address) == "198.51.100.1" and hkg.unicast_ipv4 == "198.51.100.10"
    assert str(s4.link) == "198.51.100.0/28"
    assert maa.upstream_asn == 64502 and maa.unicast_ipv4 == "203.0.113.10"


def test_namespaces_share_the_prefix(prod_plan: LabPlan) -> None:
    assert all(ns.startswith("acl-prod-") for ns in prod_plan.namespaces)
    assert len(prod_plan.namespaces) == 1 + 2 * 20 + len(CLIENT_SITES)


@pytest.mark.parametrize(("client", "pop"), [
    ("br", "sao"), ("za", "jnb"), ("us", "ewr"), ("uswest", "sea"), ("de", "fra"), ("gb", "lhr"), ("in", "maa"),
    ("jp", "nrt"), ("sg", "sgp"), ("au", "syd"), ("hk", "hkg")])
def test_expected_pop_after_geodns(prod_plan: LabPlan, client: str, pop: str) -> None:
    assert expected_pop(prod_plan, prod_plan.client(client)) == pop


def test_geodns_answers_unicast_for_south_america_and_anycast_elsewhere(prod_plan: LabPlan) -> None:
    br = geo_answer(prod_plan, prod_plan.client("br"))
    assert br.pop == "sao" and br.address == prod_plan.pop("sao").unicast_ipv4
    assert geo_answer(prod_plan, prod_plan.client("de")).address == "192.0.2.1"
    assert geo_answer(prod_plan, prod_plan.client("br"), rtype="AAAA").address == prod_plan.pop("sao").unicast_ipv6


def test_dev_without_jnb_sends_africa_to_anycast() -> None:
    plan = build_plan("dev", load_network("dev"))
    assert expected_pop(plan, plan.client("za")) == "ams"
    assert expected_pop(plan, plan.client("br")) == "sao"


def test_pops_subset() -> None:
    plan = build_plan("prod", load_network("prod"), only=["ams", "fra", "sao"])
    assert [p.code for p in plan.pops] == ["ams", "fra", "sao"]
    with pytest.raises(KeyError):
        build_plan("prod", load_network("prod"), only=["nope"])


def test_local_pref_prefers_closer() -> None:
    assert local_pref(100) > local_pref(5000) > local_pref(19000) > 0


def test_expected_routes_follow_the_model() -> None:
    net = load_network("prod")
    maa = expected_routes(net, net.pop("maa"), 4)
    assert maa == {"192.0.2.0/24": ((64500, 64500, 64500), frozenset())}
    ams = expected_routes(net, net.pop("ams"), 6)
    assert ams["2001:db8:1000::1/128"] == ((64500,), frozenset({"20473:6000"}))
    assert expected_routes(net, net.pop("sao"), 4) == {}


@pytest.mark.parametrize("code", ["ams", "sao", "hkg"])
def test_substitutions_apply_to_the_rendered_files(code: str, tmp_path: Path) -> None:
    net = load_network("prod")
    files = render_pop(net, net.pop(code), "lab-password").files
    zone = zone_file_name(net)
    out = apply_substitutions(files, lab_substitutions(tmp_path, zone))
    assert f'log "{tmp_path}/bird.log" all;' in out["bird.conf"]
    assert 'username: ""' in out["nsd.conf"] and f'pidfile: "{tmp_path}/nsd.pid"' in out["nsd.conf"]
    if code == "sao":
        assert f"$INCLUDE {tmp_path}/zones/local-addresses.inc" in out[zone]
    else:
        assert str(tmp_path / "bird.ctl") in out["health.json"]
    changed = [k for k in files if files[k] != out[k]]
    assert set(changed) <= {"bird.conf", "nsd.conf", zone, "health.json"}


def test_a_renderer_change_breaks_the_lab_loudly(tmp_path: Path) -> None:
    net = load_network("dev")
    files = render_pop(net, net.pop("ams"), "lab-password").files
    files["nsd.conf"] = files["nsd.conf"].replace('username: ""', "username: bind")
    with pytest.raises(ValueError, match="renderer changed"):
        apply_substitutions(files, lab_substitutions(tmp_path, zone_file_name(net)))


def test_gobgpd_config_checks_md5_only_towards_vultr_pops(prod_plan: LabPlan) -> None:
    ams = gobgpd_toml(prod_plan, prod_plan.pop("ams"), "s3cret")
    assert ams.count('auth-password = "s3cret"') == 2
    assert 'local-address = "169.254.169.254"' in ams and 'local-address = "2001:19f0:ffff::1"' in ams
    assert "multihop-ttl = 2" in ams
    hkg = gobgpd_toml(prod_plan, prod_plan.pop("hkg"), "s3cret")
    assert "auth-password" not in hkg and "as = 64501" in hkg


@pytest.mark.skipif(shutil.which("bird") is None, reason="bird2 is not installed")
def test_client_and_leaker_bird_configs_parse(prod_plan: LabPlan, tmp_path: Path) -> None:
    for name, text in (("client.conf", client_bird_conf(prod_plan, prod_plan.client("de"), tmp_path)),
                       ("leaker.conf", leaker_conf(leak_prefixes(1000), 64515, tmp_path))):
        path = tmp_path / name
        path.write_text(text)
        res = subprocess.run(["bird", "-p", "-c", str(path)], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
    assert len(set(leak_prefixes(1000))) == 1000
    v6 = tmp_path / "leaker6.conf"
    v6.write_text(leaker_conf(leak_prefixes(1000, 6), 64515, tmp_path, 6))
    res = subprocess.run(["bird", "-p", "-c", str(v6)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert str(leak_prefixes(2, 6)[1]) == "fdff:0:1::/48"
