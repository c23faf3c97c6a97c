"""The GeoDNS step of the lab: which address a client gets from Route53, by ``infra.derived.georules`` (the same rules
the Pulumi program's records follow), and which PoP the client should end up on."""

from __future__ import annotations

from dataclasses import dataclass

from infra.derived.georules import geo_record_sets, resolve
from lab.plan.topology import ClientPlan, LabPlan


@dataclass(frozen=True)
class GeoAnswer:
    """What Route53 answers a client for the first nameserver name (A, or AAAA for IPv6-only networks)."""

    name: str
    rtype: str
    address: str
    pop: str | None  # the unicast PoP the record points at; None for the anycast default
    set_identifier: str


def unicast_addresses(plan: LabPlan) -> dict[str, tuple[str | None, str | None]]:
    """PoP code -> (IPv4, IPv6) lab unicast addresses of the unicast PoPs in the lab."""
    out: dict[str, tuple[str | None, str | None]] = {}
    in_lab = {p.code for p in plan.pops}
    for pop in plan.network.unicast_pops:
        if pop.code in in_lab:
            p = plan.pop(pop.code)
            out[pop.code] = (p.unicast_ipv4, p.unicast_ipv6)
        else:  # not booted (--pops): leave it out so its areas fall back to anycast
            out[pop.code] = (None, None)
    return out


def geo_answer(plan: LabPlan, client: ClientPlan, unhealthy: frozenset[str] = frozenset(),
               rtype: str | None = None) -> GeoAnswer:
    """Route53's answer for the client's country for ``dns.nameservers[0]`` (and the same holds for httpNames).

    ``rtype`` defaults to A, or AAAA for an IPv6-only network.
    """
    sets = geo_record_sets(plan.network, unicast_addresses(plan))
    name = plan.network.dns.nameservers[0]
    rtype = rtype or ("A" if plan.network.service.ipv4 is not None else "AAAA")
    group = [rs for rs in sets if rs.name == name and rs.type == rtype]
    rs = resolve(group, client.site.country, unhealthy=unhealthy)
    if rs is None:
        raise LookupError(f"Route53 has no answer for {name}/{rtype} from {client.site.country}")
    return GeoAnswer(name=name, rtype=rtype, address=str(rs.values[0]), pop=rs.pop, set_identifier=rs.set_identifier)


def expected_pop(plan: LabPlan, client: ClientPlan, down: frozenset[str] = frozenset()) -> str:
    """The PoP that should serve ``client``: its GeoDNS unicast PoP, else the nearest anycast PoP not in ``down``."""
    answer = geo_answer(plan, client)
    if answer.pop is not None:
        return answer.pop
    nearest = plan.nearest_anycast(client, exclude=down)
    if nearest is None:
        raise LookupError("no anycast PoP left")
    return nearest
