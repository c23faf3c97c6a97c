"""Route53 geolocation, without Pulumi: which record sets the network needs, and which one answers a client.

Two pure functions shared by the Pulumi program (``infra/components/geodns.py``), the policy pack, the tests and the lab:

* :func:`geo_record_sets` turns the model plus each unicast PoP's addresses into the geolocation record sets that
  Route53 must hold: for every nameserver name and HTTP name, a default (``country="*"``) record with the anycast
  service address, and one record per area (``pop.geodns``) of every unicast PoP with that PoP's unicast address
  and a health check on it. The address values are whatever the caller passes (plain strings in the lab, Pulumi
  Outputs in the program), so both build from the same function.
* :func:`resolve` answers "what does a client in BR get?" with Route53's rules (awsdocs/amazon-route53-docs
  ``doc_source/routing-policy.md``, ``resource-record-sets-values-geo.md``, ``health-checks-how-route-53-chooses-records.md``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from infra.model import Network
from infra.model.regions import CONTINENTS, continent_of

A = TypeVar("A")

DEFAULT_AREA = "*"  # Route53's default location: CountryCode="*"


@dataclass(frozen=True)
class GeoRecordSet(Generic[A]):
    """One Route53 geolocation record set.

    Attributes:
        name: the DNS name (a nameserver or HTTP name in the parent zone).
        type: ``A`` or ``AAAA``.
        set_identifier: unique within the (name, type) group.
        continent / country / subdivision: the location; ``country == "*"`` is the default record. Exactly one of
            continent and country is set (subdivision only with country US).
        values: the record's addresses (str, or a Pulumi Output inside the program).
        pop: the unicast PoP the record points at, None for the anycast default.
        health_check: the key of the health check guarding the record, ``"<pop>-v4"``/``"<pop>-v6"``, or None.
    """

    name: str
    type: str
    set_identifier: str
    values: tuple[A, ...]
    continent: str | None = None
    country: str | None = None
    subdivision: str | None = None
    pop: str | None = None
    health_check: str | None = None

    @property
    def is_default(self) -> bool:
        return self.country == DEFAULT_AREA

    @property
    def area(self) -> str:
        """The location as one string: ``*``, ``SA``, ``BR`` or ``US-WA``."""
        if self.subdivision:
            return f"{self.country}-{self.subdivision}"
        return self.continent or self.country or ""


def health_check_key(pop: str, family: str) -> str:
    """The health-check key of a PoP's unicast address: ``sao-v4`` / ``sao-v6``."""
    return f"{pop}-{family}"


def _area_fields(area: str) -> dict[str, str | None]:
    if area in CONTINENTS:
        return {"continent": area}
    return {"country": area}


def geo_record_sets(network: Network, unicast: Mapping[str, tuple[A | None, A | None]]) -> list[GeoRecordSet[A | str]]:
    """The geolocation record sets for every nameserver and HTTP name, in A (if the network has IPv4) and AAAA.

    Args:
        network: the validated model.
        unicast: PoP code -> (IPv4, IPv6) unicast address of every unicast PoP; a missing family (None) leaves that
            PoP out of that record type, so its areas fall through to the anycast default.

    Raises:
        KeyError: a unicast PoP of the model has no entry in ``unicast``.
    """
    families: list[tuple[str, str, int]] = []
    if network.service.ipv4 is not None:
        families.append(("A", "v4", 0))
    families.append(("AAAA", "v6", 1))
    anycast = {"A": str(network.service.ipv4), "AAAA": str(network.service.ipv6)}
    out: list[GeoRecordSet[A | str]] = []
    for name in [*network.dns.nameservers, *network.dns.http_names]:
        for rtype, family, index in families:
            out.append(GeoRecordSet(name=name, type=rtype, set_identifier="default", values=(anycast[rtype],),
                                    country=DEFAULT_AREA))
            for pop in network.unicast_pops:
                address = unicast[pop.code][index]
                if address is None:
                    continue
                for area in pop.geodns:
                    out.append(GeoRecordSet(
                        name=name, type=rtype, set_identifier=f"{pop.code}-{area.lower()}", values=(address,),
                        pop=pop.code, health_check=health_check_key(pop.code, family), **_area_fields(area)))
    return out


def _candidates(country: str | None, subdivision: str | None) -> list[tuple[str, str | None, str | None]]:
    """Locations from smallest to largest as (kind, country, subdivision-or-continent)."""
    out: list[tuple[str, str | None, str | None]] = []
    if country:
        country = country.upper()
        if subdivision:
            out.append(("subdivision", country, subdivision.upper()))
        out.append(("country", country, None))
        if continent := continent_of(country):
            out.append(("continent", None, continent))
    out.append(("default", DEFAULT_AREA, None))
    return out


def _matches(rs: GeoRecordSet[A], kind: str, country: str | None, extra: str | None) -> bool:
    if kind == "subdivision":
        return rs.country == country and rs.subdivision == extra
    if kind == "country":
        return rs.country == country and not rs.subdivision
    if kind == "continent":
        return rs.continent == extra
    return rs.is_default


def resolve(record_sets: Iterable[GeoRecordSet[A]], client_country: str | None,
            unhealthy: Iterable[str] = frozenset(), subdivision: str | None = None) -> GeoRecordSet[A] | None:
    """The record set Route53 answers with for a client, or None ("no answer": no record and no default).

    Rules (awsdocs/amazon-route53-docs ``routing-policy.md``, ``health-checks-how-route-53-chooses-records.md``):
    the smallest matching area wins (US state > country > continent > default); a
    record whose health check is unhealthy is skipped for the next larger area; records without a health check are
    always healthy; if every record of the group is unhealthy, all are treated as healthy.

    Args:
        record_sets: the records of one (name, type) group; records of several groups raise ValueError.
        client_country: ISO country of the resolver/client; None or "" for an address Route53 cannot place.
        unhealthy: health-check keys (``sao-v4``), PoP codes (``sao``) or set identifiers that fail their check.
        subdivision: the US state of the client, if any.
    """
    group = list(record_sets)
    if len({(r.name, r.type) for r in group}) > 1:
        raise ValueError("resolve() takes the record sets of one (name, type); got " +
                         ", ".join(sorted({f"{r.name}/{r.type}" for r in group})))
    bad = set(unhealthy)

    def healthy(rs: GeoRecordSet[A]) -> bool:
        if rs.health_check is None:
            return True
        return not ({rs.health_check, rs.pop, rs.set_identifier} & bad)

    all_down = bool(group) and all(not healthy(r) for r in group)
    for kind, country, extra in _candidates(client_country, subdivision):
        for rs in group:
            if _matches(rs, kind, country, extra) and (all_down or healthy(rs)):
                return rs
    return None
