"""The catchment report: per probe which PoP answered and which one should have, per country and continent the
shares and medians, worst first. Pure: observations and probe locations in, a :class:`Report` out.

"Should have" = the nearest *announcing* (anycast) PoP by great-circle distance, since BGP has nothing better to go
on than geography in an ideal world; ``geodns_pop`` additionally names the unicast PoP Route53 sends the probe's area
to (``infra.derived.georules``), for areas where real users never use the anycast address. A probe counts as mis-routed when
another PoP answered and that PoP is more than ``tolerance_km`` farther than the expected one (two PoPs a few hundred
km apart are equally good; RTT decides those, not the map).
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from infra.catchment.atlas_schema import Probe as AtlasProbe
from infra.catchment.atlas_schema import ProbePage
from infra.catchment.results import Observation
from infra.derived.georules import continent_of, geo_record_sets, resolve
from infra.model import Network
from infra.model.regions import great_circle_km
from infra.untrusted.schema import validate

DEFAULT_TOLERANCE_KM = 500.0


@dataclass(frozen=True)
class ProbeInfo:
    """Where a probe is: Atlas probe metadata (``/api/v2/probes/<id>/``) or a lab client."""

    id: str
    country: str | None = None
    asn: int | None = None
    lat: float | None = None
    lon: float | None = None
    label: str | None = None  # lab: the client's city


def probes_from_atlas(data: Any, source: str = "probes") -> dict[str, ProbeInfo]:
    """Probe metadata from an Atlas probes document (``{"results": [...]}`` or a plain list of probe objects).

    Coordinates come from ``geometry.coordinates`` = [longitude, latitude] (GeoJSON order); a probe without a
    geometry keeps ``lat``/``lon`` None and the report says so. Raises UntrustedInput naming the JSON path of a field
    with the wrong type or range (a country that is not two letters, a latitude of 91, ...).
    """
    items = data.get("results", []) if isinstance(data, Mapping) else data
    if not isinstance(items, list):
        raise ValueError("probes: expected a list of RIPE Atlas probe objects or {\"results\": [...]}")
    for i, p in enumerate(items):
        if not isinstance(p, Mapping) or "id" not in p:
            raise ValueError(f"probes[{i}]: not a RIPE Atlas probe object (no id)")
    checked = (validate(ProbePage, data, source).results if isinstance(data, Mapping)
               else validate(list[AtlasProbe], items, source))
    out: dict[str, ProbeInfo] = {}
    for p in checked:
        lon, lat = p.geometry.coordinates if p.geometry is not None else (None, None)
        asn = p.asn_v4 or p.asn_v6
        out[str(p.id)] = ProbeInfo(id=str(p.id), country=p.country_code.upper() if p.country_code else None,
                                   asn=asn, lat=lat, lon=lon)
    return out


@dataclass
class ProbeRow:
    id: str
    af: int | None
    target: str | None
    country: str | None
    continent: str | None
    asn: int | None
    lat: float | None
    lon: float | None
    identity: str | None  # NSID or CHAOS TXT as received
    pop: str | None  # the PoP that answered (None: no answer, or not one of ours)
    rtt_ms: float | None
    expected_pop: str | None
    geodns_pop: str | None
    distance_km: float | None  # probe -> answering PoP
    expected_distance_km: float | None
    extra_km: float | None
    misrouted: bool | None  # None: cannot judge (no answer, unknown PoP or no coordinates)
    status: str  # ok | misrouted | no-answer | unknown-pop | no-location
    reason: str | None = None
    label: str | None = None


@dataclass
class AreaRow:
    area: str  # country code or continent code
    kind: str  # "country" | "continent"
    probes: int
    answered: int
    judged: int
    misrouted: int
    pop_share: dict[str, float]
    median_extra_km: float | None
    median_rtt_ms: float | None
    expected: str | None  # the PoP most probes of the area should reach

    @property
    def misrouted_share(self) -> float:
        return self.misrouted / self.judged if self.judged else 0.0


@dataclass
class Report:
    source: str
    network_asn: int
    tolerance_km: float
    probes: list[ProbeRow]
    countries: list[AreaRow]
    continents: list[AreaRow]
    skipped: list[dict[str, str]] = field(default_factory=list)
    pops: dict[str, dict[str, Any]] = field(default_factory=dict)
    advice: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source, "asn": self.network_asn, "tolerance_km": self.tolerance_km,
            "summary": self.summary(),
            "probes": [asdict(p) for p in self.probes],
            "countries": [{**asdict(a), "misrouted_share": round(a.misrouted_share, 3)} for a in self.countries],
            "continents": [{**asdict(a), "misrouted_share": round(a.misrouted_share, 3)} for a in self.continents],
            "skipped": self.skipped, "pops": self.pops, "advice": self.advice,
        }

    def summary(self) -> dict[str, int]:
        c = Counter(p.status for p in self.probes)
        return {"results": len(self.probes), "ok": c["ok"], "misrouted": c["misrouted"], "no_answer": c["no-answer"],
                "unknown_pop": c["unknown-pop"], "no_location": c["no-location"]}

    def worst(self, n: int = 10) -> list[ProbeRow]:
        rows = [p for p in self.probes if p.misrouted]
        return sorted(rows, key=lambda p: -(p.extra_km or 0))[:n]


def pop_of(identity: str, codes: Iterable[str]) -> str | None:
    """The PoP code an NSID/identity names: exactly one of our codes, as NSD sends it (``nsid: "ascii_<code>"`` and
    ``identity: "<code>"`` in userdata/templates/nsd.conf.j2); None for anything else. No prefix or first-label
    match: ``ams.other-operator.example`` is another operator's server, not our ``ams``."""
    return identity if identity in set(codes) else None


def _geodns_map(network: Network) -> list[Any]:
    fake = {p.code: ("0.0.0.0", "::") for p in network.unicast_pops}
    sets = geo_record_sets(network, fake)
    name = network.dns.nameservers[0]
    rtype = "A" if network.service.ipv4 is not None else "AAAA"
    return [rs for rs in sets if rs.name == name and rs.type == rtype]


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def analyse(network: Network, observations: Iterable[Observation], probes: Mapping[str, ProbeInfo], source: str,
            tolerance_km: float = DEFAULT_TOLERANCE_KM, running: Iterable[str] | None = None) -> Report:
    """Join observations with probe locations and the model; ``running`` limits the expected PoPs to those that
    exist (a lab booted with ``--pops``)."""
    codes = [p.code for p in network.pops]
    up = set(running) if running is not None else set(codes)
    anycast = [p for p in network.anycast_pops if p.latitude is not None and p.longitude is not None and p.code in up]
    geo_group = _geodns_map(network)
    rows: list[ProbeRow] = []
    skipped: list[dict[str, str]] = []
    for ob in observations:
        info = probes.get(ob.probe_id) or ProbeInfo(id=ob.probe_id)
        continent = continent_of(info.country) if info.country else None
        row = ProbeRow(id=ob.probe_id, af=ob.af, target=ob.target, country=info.country, continent=continent,
                       asn=info.asn, lat=info.lat, lon=info.lon, identity=ob.identity, pop=None, rtt_ms=ob.rtt_ms,
                       expected_pop=None, geodns_pop=None, distance_km=None, expected_distance_km=None, extra_km=None,
                       misrouted=None, status="ok", label=info.label)
        if info.country:
            rs = resolve(geo_group, info.country)
            row.geodns_pop = rs.pop if rs is not None else None
        located = info.lat is not None and info.lon is not None
        if located:
            assert info.lat is not None and info.lon is not None
            dists = sorted((great_circle_km(info.lat, info.lon, p.latitude, p.longitude), p.code)  # type: ignore[arg-type]
                           for p in anycast)
            row.expected_distance_km, row.expected_pop = round(dists[0][0], 1), dists[0][1]
        if ob.error:
            row.status, row.reason = "no-answer", ob.error
        elif ob.identity is not None and (pop := pop_of(ob.identity, codes)) is not None:
            row.pop = pop
        else:
            row.status = "unknown-pop"
            row.reason = f"unknown {'NSID' if ob.source == 'nsid' else 'identity'} {ob.identity!r}: not a PoP of this network"
        if row.pop is not None and not located:
            row.status, row.reason = "no-location", "probe has no coordinates: served PoP recorded, not judged"
        if row.pop is not None and located and row.expected_distance_km is not None:
            served = network.pop(row.pop)
            assert info.lat is not None and info.lon is not None
            if served.latitude is not None and served.longitude is not None:
                row.distance_km = round(great_circle_km(info.lat, info.lon, served.latitude, served.longitude), 1)
                row.extra_km = round(max(0.0, row.distance_km - row.expected_distance_km), 1)
                row.misrouted = row.pop != row.expected_pop and row.extra_km > tolerance_km
                row.status = "misrouted" if row.misrouted else "ok"
        if row.reason:
            skipped.append({"id": row.id, "af": str(row.af), "status": row.status, "reason": row.reason})
        rows.append(row)
    return Report(source=source, network_asn=network.asn, tolerance_km=tolerance_km, probes=rows,
                  countries=_areas(rows, "country"), continents=_areas(rows, "continent"), skipped=skipped,
                  pops=_pop_summary(network, rows))


def _areas(rows: list[ProbeRow], kind: str) -> list[AreaRow]:
    groups: dict[str, list[ProbeRow]] = defaultdict(list)
    for r in rows:
        key = r.country if kind == "country" else r.continent
        groups[key or "??"].append(r)
    out = []
    for area, rs in groups.items():
        answered = [r for r in rs if r.pop is not None]
        judged = [r for r in answered if r.misrouted is not None]
        share = Counter(r.pop for r in answered)
        expected = Counter(r.expected_pop for r in rs if r.expected_pop).most_common(1)
        out.append(AreaRow(
            area=area, kind=kind, probes=len(rs), answered=len(answered), judged=len(judged),
            misrouted=sum(1 for r in judged if r.misrouted),
            pop_share={p: round(n / len(answered), 3) for p, n in share.most_common() if p},
            median_extra_km=_median([r.extra_km for r in judged if r.extra_km is not None]),
            median_rtt_ms=_median([r.rtt_ms for r in answered if r.rtt_ms is not None]),
            expected=expected[0][0] if expected else None))
    return sorted(out, key=lambda a: (-a.misrouted_share, -(a.median_extra_km or 0), -(a.median_rtt_ms or 0), a.area))


def _pop_summary(network: Network, rows: list[ProbeRow]) -> dict[str, dict[str, Any]]:
    """Per PoP: where it is, how many probes it served, how many of them from far away (its pull)."""
    out: dict[str, dict[str, Any]] = {}
    for p in network.pops:
        served = [r for r in rows if r.pop == p.code]
        pulled = [r for r in served if r.misrouted]
        out[p.code] = {
            "mode": p.mode, "provider": p.provider, "lat": p.latitude, "lon": p.longitude, "country": p.country,
            "continent": p.continent, "served": len(served), "misrouted_in": len(pulled),
            "pulled_countries": sorted({r.country for r in pulled if r.country}),
            "median_extra_km": _median([r.extra_km for r in pulled if r.extra_km is not None]),
        }
    return out
