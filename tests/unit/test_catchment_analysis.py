"""The catchment report: expected PoP, mis-routing, aggregates, skipped probes, the JSON contract and the map."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from infra.catchment.analysis import ProbeInfo, Report, analyse, pop_of, probes_from_atlas
from infra.catchment.output import write_outputs
from infra.catchment.results import parse_results
from infra.catchment.text import format_report
from infra.catchment.worldmap import project, project_inset
from infra.model import Network
from tests.atlas_data import fixture, world_probes, world_results


def _report(prod_network: Network, extra: list[dict[str, object]] | None = None) -> Report:
    obs = parse_results(world_results() + (extra or []))
    return analyse(prod_network, obs, probes_from_atlas(world_probes()), source="test")


def test_pop_of_matches_exactly_the_code_nsd_sends() -> None:
    assert pop_of("fra", ["fra", "ams"]) == "fra"
    # Another operator's servers named after the same city are not ours (issue: "ams.other-operator.example").
    assert pop_of("ams.other-operator.example", ["ams", "fra"]) is None
    assert pop_of("FRA.cdn.example.com.", ["fra"]) is None
    assert pop_of("FRA", ["fra"]) is None and pop_of("fra ", ["fra"]) is None
    assert pop_of("k3.ams-ix.k.ripe.net", ["ams", "fra"]) is None
    assert pop_of("frankfurt", ["fra"]) is None


def test_probe_metadata_from_atlas_format() -> None:
    probes = probes_from_atlas(world_probes())
    assert probes["1001"] == ProbeInfo(id="1001", country="DE", asn=64496, lat=52.52, lon=13.40)
    assert probes["1011"].lat is None and probes["1011"].country == "NL"


def test_expected_pop_misrouting_and_tolerance(prod_network: Network) -> None:
    rep = _report(prod_network)
    rows = {r.id: r for r in rep.probes}
    gb = rows["1004"]
    assert (gb.pop, gb.expected_pop, gb.status, gb.misrouted) == ("maa", "lhr", "misrouted", True)
    assert 8000 < (gb.extra_km or 0) < 8300  # Manchester: London ~260 km, Chennai ~8300 km
    assert rows["1010"].pop == "ams" and rows["1010"].expected_pop == "cdg" and rows["1010"].status == "ok"
    assert 0 < (rows["1010"].extra_km or 0) < 500
    # Brazil is served by Miami over anycast (expected: the nearest *announcing* PoP) and GeoDNS sends it to sao.
    assert (rows["1008"].expected_pop, rows["1008"].geodns_pop, rows["1008"].status) == ("mia", "sao", "ok")
    assert rows["1011"].status == "no-location" and rows["1011"].pop == "ams" and rows["1011"].misrouted is None
    assert rep.summary() == {"results": 11, "ok": 9, "misrouted": 1, "no_answer": 0, "unknown_pop": 0, "no_location": 1}


def test_areas_worst_first_and_pop_pull(prod_network: Network) -> None:
    rep = _report(prod_network)
    assert rep.countries[0].area == "GB" and rep.countries[0].misrouted == 1 and rep.countries[0].judged == 2
    assert rep.countries[0].pop_share == {"lhr": 0.5, "maa": 0.5}
    assert rep.continents[0].area == "EU"
    assert rep.pops["maa"]["misrouted_in"] == 1 and rep.pops["maa"]["pulled_countries"] == ["GB"]
    de = next(a for a in rep.countries if a.area == "DE")
    assert de.pop_share == {"fra": 1.0} and de.median_rtt_ms == 10.5


def test_real_results_from_other_operators_are_skipped_with_reasons(prod_network: Network) -> None:
    extra = [fixture("dns_nsid_kroot_msm1004048_fw4610.json"), fixture("dns_error_timeout_msm1666006_fw4610.json"),
             fixture("dns_tcp_resultset_with_timeout_msm2439409_fw4700.json")]
    rep = _report(prod_network, extra)
    reasons = {(s["id"], s["reason"]) for s in rep.skipped}
    assert ("14184", "unknown NSID 'k3.ams-ix.k.ripe.net': not a PoP of this network") in reasons
    assert ("2960", "timeout after 5000 ms") in reasons
    assert ("18394", "timeout after 5000 ms") in reasons
    assert ("1011", "probe has no coordinates: served PoP recorded, not judged") in reasons
    text = format_report(rep)
    assert "1 x unknown NSID 'k3.ams-ix.k.ripe.net': not a PoP of this network (probe 14184)" in text
    assert "2 x timeout after 5000 ms (probe 2960, 18394)" in text
    assert "maa: 1 of 1 served from GB" in text


def test_outputs_follow_the_contract_and_the_map_is_valid_svg(prod_network: Network, tmp_path: Path) -> None:
    rep = _report(prod_network, [fixture("dns_error_timeout_msm1666006_fw4610.json")])
    written = write_outputs(rep, tmp_path, "test")
    assert sorted(p.name for p in written) == ["catchment.json", "catchment.svg", "catchment.txt"]
    doc = json.loads((tmp_path / "catchment.json").read_text())
    for p in doc["probes"]:
        assert {"id", "country", "pop", "expected_pop", "rtt_ms"} <= set(p)
    assert {p["id"]: p["pop"] for p in doc["probes"]}["2960"] is None
    root = ET.parse(tmp_path / "catchment.svg").getroot()
    ns = "{http://www.w3.org/2000/svg}"
    red = [c for c in root.iter(f"{ns}circle") if c.get("stroke") == "#cc0000"]
    # the one mis-routed probe (Manchester), on the world map and in the Europe inset
    assert {(float(c.get("cx", 0)), float(c.get("cy", 0))) for c in red} == {project(53.48, -2.24), project_inset(53.48, -2.24)}
    assert len(root.findall(f"{ns}polygon")) >= 25  # the offline land outline
    assert len(list(root.iter(f"{ns}line"))) == 2
    assert b"http" not in (tmp_path / "catchment.svg").read_bytes().replace(b"http://www.w3.org/2000/svg", b"")
