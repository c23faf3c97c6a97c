"""Advice from the catchment: prepend / Vultr community for a PoP pulling far-away traffic, a GeoDNS override for an
area anycast serves badly, each as a diff of the stack file that validates (never applied)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from infra.catchment.advice import advise
from infra.catchment.analysis import Report, analyse, probes_from_atlas
from infra.catchment.results import parse_results
from infra.model import Network, parse_network
from infra.model.stack import NETWORK_KEY, load_network
from tests.atlas_data import dns_result, probe, world_probes, world_results
from tests.conftest import ROOT


def _report(network: Network, results: list[dict[str, Any]], probes: dict[str, Any]) -> Report:
    return analyse(network, parse_results(results), probes_from_atlas(probes), source="test")


def _apply(diff: str, stack: Path, tmp_path: Path) -> Network:
    """Apply the diff with ``git apply`` (outside any repository: a plain patch) to a copy, and validate the result."""
    copy = tmp_path / stack.name
    copy.write_text(stack.read_text())
    subprocess.run(["git", "apply", "-p1"], input=diff, text=True, check=True, cwd=tmp_path)
    return parse_network(yaml.safe_load(copy.read_text())["config"][NETWORK_KEY])


def test_prepend_for_a_block_style_external_pop(prod_network: Network, tmp_path: Path) -> None:
    stack = ROOT / "Pulumi.prod.yaml"
    before = stack.read_text()
    items, diff = advise(prod_network, _report(prod_network, world_results(), world_probes()), stack)
    assert stack.read_text() == before  # never applied
    (item,) = items
    assert item.kind == "prepend" and item.pop == "maa" and "from GB" in item.evidence
    assert diff is not None and "-        announce: {prepend: 2}\n+        announce: {prepend: 3}\n" in diff
    assert _apply(diff, stack, tmp_path).pop("maa").announce.prepend == 3


def test_prepend_added_to_a_flow_style_pop(dev_network: Network, tmp_path: Path) -> None:
    # ewr answers German probes: ewr gets its first prepend.
    results = [dns_result(1, "ewr"), dns_result(2, "ams")]
    probes = {"results": [probe(1, "DE", 52.5, 13.4), probe(2, "NL", 52.4, 4.9)]}
    stack = ROOT / "Pulumi.dev.yaml"
    items, diff = advise(dev_network, _report(dev_network, results, probes), stack)
    assert [i.kind for i in items] == ["prepend"]
    assert diff is not None and "+      - {code: ewr, region: ewr, announce: {prepend: 1}}" in diff
    assert _apply(diff, stack, tmp_path).pop("ewr").announce.prepend == 1


def test_vultr_assigned_asn_gets_a_community_instead(free_network: Network, tmp_path: Path) -> None:
    results = [dns_result(1, "sgp", af=6, dst="2001:db8::1")]
    probes = {"results": [probe(1, "DE", 52.5, 13.4)]}
    stack = ROOT / "Pulumi.free.yaml"
    (item,), diff = advise(free_network, _report(free_network, results, probes), stack)
    assert item.kind == "community" and "20473:6002" in item.text
    assert diff is not None and '+      - {code: sgp, region: sgp, announce: {communities: [20473:6002]}}' in diff
    assert _apply(diff, stack, tmp_path).pop("sgp").announce.communities == ["20473:6002"]


def test_geodns_override_for_an_area_served_from_far(tmp_path: Path) -> None:
    text = (ROOT / "Pulumi.dev.yaml").read_text().replace(
        "      - {code: sao, region: sao, mode: unicast, geodns: [SA]}",
        "      - {code: sao, region: sao, mode: unicast, geodns: [SA]}\n      - {code: jnb, region: jnb, mode: unicast, geodns: [ZA]}")
    stack = tmp_path / "Pulumi.geo.yaml"
    stack.write_text(text)
    network = load_network("geo", tmp_path)
    results = [dns_result(1, "ams"), dns_result(2, "ams"), dns_result(3, "ams")]
    probes = {"results": [probe(1, "KE", -1.29, 36.82), probe(2, "KE", 0.5, 35.3), probe(3, "ZA", -26.2, 28.0)]}
    items, diff = advise(network, _report(network, results, probes), stack)
    # ZA is already sent to jnb by GeoDNS; Kenya is not, and jnb is ~2,900 km nearer than Amsterdam's ~6,800 km.
    (item,) = items
    assert item.kind == "geodns" and item.pop == "jnb" and "KE" in item.text
    assert diff is not None and "+      - {code: jnb, region: jnb, mode: unicast, geodns: [ZA, KE]}" in diff
    out = tmp_path / "applied"
    out.mkdir()
    assert _apply(diff, stack, out).pop("jnb").geodns == ["ZA", "KE"]


def test_no_advice_when_everyone_lands_near(prod_network: Network) -> None:
    results = [r for r in world_results() if r["prb_id"] != 1004]
    items, diff = advise(prod_network, _report(prod_network, results, world_probes()), ROOT / "Pulumi.prod.yaml")
    assert items == [] and diff is None
