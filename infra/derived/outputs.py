"""Stack outputs for monitoring: stable keys, JSON-friendly values, no secrets.

Keys (camelCase, like the config): ``network``, ``pops``, ``geodns``, ``probes``, ``cost``; plus the secret
``externalCloudConfig`` (external PoPs' cloud-config to paste at their provider). ``infra/monitoring/targets.py`` reads the
output of ``pulumi stack output --json`` with these keys; change them only together with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infra.derived.facts import network_facts
from infra.derived.georules import GeoRecordSet
from infra.model import Network

OUTPUT_KEYS = ("network", "pops", "geodns", "probes", "cost")

# Addresses and ids are plain strings here, Pulumi Outputs in the program: these functions only place them.
Address = Any


def network_output(network: Network) -> dict[str, Any]:
    facts = network_facts(network)
    return {k: facts[k] for k in ("asn", "asnSource", "originAsn", "prefixes", "service", "anycastPops", "unicastPops",
                                  "zone", "parentZone")} | {"nameservers": list(network.dns.nameservers),
                                                            "httpNames": list(network.dns.http_names)}


def pops_output(network: Network, addresses: Mapping[str, tuple[Address, Address]],
                instance_ids: Mapping[str, Any]) -> dict[str, Any]:
    """code -> provider, region, city, country, continent, latitude, longitude, mode, ipv4, ipv6, instanceId (None for
    external PoPs). The coordinates place the PoP on the Grafana map (infra/monitoring/dashboard.py)."""
    out: dict[str, Any] = {}
    for pop in network.pops:
        ipv4, ipv6 = addresses[pop.code]
        out[pop.code] = {
            "provider": pop.provider, "region": pop.region, "city": pop.city, "country": pop.country,
            "continent": pop.continent, "latitude": pop.latitude, "longitude": pop.longitude, "mode": pop.mode,
            "plan": pop.plan if pop.is_vultr else None,
            "geodns": list(pop.geodns), "ipv4": ipv4, "ipv6": ipv6, "instanceId": instance_ids.get(pop.code),
        }
    return out


def record_set_output(rs: GeoRecordSet[Any]) -> dict[str, Any]:
    return {"name": rs.name, "type": rs.type, "setIdentifier": rs.set_identifier, "area": rs.area,
            "continent": rs.continent, "country": rs.country, "subdivision": rs.subdivision, "values": list(rs.values),
            "pop": rs.pop, "healthCheck": rs.health_check}


def geodns_output(network: Network, record_sets: list[GeoRecordSet[Any]], zone_id: Any) -> dict[str, Any]:
    names: dict[str, list[dict[str, Any]]] = {}
    for rs in record_sets:
        names.setdefault(rs.name, []).append(record_set_output(rs))
    return {"parentZone": network.dns.parent_zone, "zoneId": zone_id, "zone": network.dns.zone,
            "nameservers": list(network.dns.nameservers), "httpNames": list(network.dns.http_names),
            "ttl": network.dns.ttl, "names": names}


def probes_output(network: Network, addresses: Mapping[str, tuple[Address, Address]]) -> dict[str, Any]:
    """Probe targets with what each must answer.

    HTTP: every PoP's unicast addresses must answer ``X-PoP: <code>``; the anycast service addresses any anycast PoP.
    HTTPS (tls.enabled): the same targets on port 443, verified for ``serverName``.
    DNS: the anycast service addresses must answer for the zone with NSID = an anycast PoP's code; a unicast PoP's
    NSD listens on its own unicast addresses (anycast PoPs' NSD only on the service addresses), with NSID = its code.
    """
    anycast_codes = [p.code for p in network.anycast_pops]
    http: list[dict[str, Any]] = []
    dns: list[dict[str, Any]] = []
    for family, service in (("ipv4", network.service.ipv4), ("ipv6", network.service.ipv6)):
        if service is None:
            continue
        http.append({"name": f"anycast-{family}", "address": str(service), "family": family, "path": "/healthz",
                     "port": 80, "pop": None, "expectXPop": anycast_codes, "mode": "anycast"})
        dns.append({"name": f"anycast-{family}", "address": str(service), "family": family, "port": 53,
                    "queryName": network.dns.zone, "queryType": "SOA", "pop": None, "expectNsid": anycast_codes,
                    "mode": "anycast"})
    for pop in network.pops:
        for family, address in zip(("ipv4", "ipv6"), addresses[pop.code], strict=True):
            if address is None:
                continue
            http.append({"name": f"{pop.code}-{family}", "address": address, "family": family, "path": "/healthz",
                         "port": 80, "pop": pop.code, "expectXPop": [pop.code], "mode": pop.mode})
            if not pop.is_anycast:
                dns.append({"name": f"{pop.code}-{family}", "address": address, "family": family, "port": 53,
                            "queryName": network.dns.zone, "queryType": "SOA", "pop": pop.code,
                            "expectNsid": [pop.code], "mode": pop.mode})
    # HTTPS (tls.enabled): the same addresses on 443 with the name the certificate must carry as SNI; the blackbox
    # exporter verifies the chain and exports probe_ssl_earliest_cert_expiry for each (docs/tls.md).
    https: list[dict[str, Any]] = []
    if network.tls.enabled:
        server_name = (network.dns.http_names or network.tls_names)[0]
        https = [{**p, "port": 443, "serverName": server_name} for p in http]
    return {"http": http, "https": https, "dns": dns}
