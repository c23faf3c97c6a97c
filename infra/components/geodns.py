"""The Route53 GeoDNS component (guide step 9): delegation, geolocation record sets and health checks.

The record sets come from :func:`infra.derived.georules.geo_record_sets`, the same pure function the lab and the tests use,
so what Route53 holds and what ``resolve()`` predicts cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.derived.georules import GeoRecordSet, geo_record_sets, health_check_key
from infra.model import Network

# The delegation NS record changes only when the nameserver names do: an hour keeps resolvers' caches useful while
# a mistake still heals the same day. (The geolocation records use network.dns.ttl, 60 s by default, as AWS advises
# for health-checked records.)
DELEGATION_TTL = 3600
HEALTH_PATH = "/healthz"
HEALTH_PORT = 80
HEALTH_FAILURE_THRESHOLD = 3
HEALTH_INTERVAL = 30  # seconds; 10 s checks cost more and the BGP withdrawal already reacts in about a second

Address = pulumi.Input[str]


@dataclass
class GeoDnsArgs:
    """The model and each unicast PoP's addresses: (IPv4, IPv6), Outputs for Vultr PoPs, strings for external ones."""

    network: Network
    unicast: Mapping[str, tuple[Address | None, Address | None]]


def _resource_key(rs: GeoRecordSet[Any]) -> str:
    return f"{rs.name}-{rs.type}-{rs.set_identifier}".replace(".", "-").lower()


class GeoDns(pulumi.ComponentResource):
    """Route53: the parent zone (looked up or created), the NS delegation of the NSD zone, health checks on the unicast
    PoPs' addresses and, for every nameserver and HTTP name, geolocation records in A (if IPv4) and AAAA."""

    zone_id: pulumi.Output[str]
    record_sets: list[GeoRecordSet[Any]]
    records: dict[str, aws.route53.Record]
    health_checks: dict[str, aws.route53.HealthCheck]

    def __init__(self, name: str, args: GeoDnsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        net = args.network
        super().__init__("anycast:index:GeoDns", name, {"zone": net.dns.zone, "parentZone": net.dns.parent_zone}, opts)
        child = pulumi.ResourceOptions(parent=self)
        if net.dns.create_parent_zone:
            zone = aws.route53.Zone(f"{name}-parent-zone", name=net.dns.parent_zone,
                                    comment=f"anycast: parent of {net.dns.zone}", opts=child)
            self.zone_id = zone.zone_id
        else:
            self.zone_id = aws.route53.get_zone_output(
                name=net.dns.parent_zone, private_zone=False, opts=pulumi.InvokeOutputOptions(parent=self)).zone_id

        self.delegation = aws.route53.Record(
            f"{name}-delegation", zone_id=self.zone_id, name=net.dns.zone, type="NS", ttl=DELEGATION_TTL,
            records=[f"{ns}." for ns in net.dns.nameservers], opts=child)

        self.health_checks = {}
        for code, (ipv4, ipv6) in sorted(args.unicast.items()):
            for family, address in (("v4", ipv4), ("v6", ipv6)):
                if address is None or (family == "v4" and net.service.ipv4 is None):
                    continue  # no A records on an IPv6-only network, so nothing for a v4 check to guard
                key = health_check_key(code, family)
                self.health_checks[key] = aws.route53.HealthCheck(
                    f"{name}-hc-{key}", type="HTTP", ip_address=address, port=HEALTH_PORT, resource_path=HEALTH_PATH,
                    failure_threshold=HEALTH_FAILURE_THRESHOLD, request_interval=HEALTH_INTERVAL,
                    tags={"Name": f"anycast {code} {family}", "anycast-pop": code}, opts=child)

        self.record_sets = geo_record_sets(net, dict(args.unicast))
        self.records = {}
        for rs in self.record_sets:
            geo = aws.route53.RecordGeolocationRoutingPolicyArgs(continent=rs.continent, country=rs.country,
                                                                 subdivision=rs.subdivision)
            check = self.health_checks[rs.health_check].id if rs.health_check else None
            self.records[_resource_key(rs)] = aws.route53.Record(
                f"{name}-{_resource_key(rs)}", zone_id=self.zone_id, name=rs.name, type=rs.type, ttl=net.dns.ttl,
                records=list(rs.values), set_identifier=rs.set_identifier, geolocation_routing_policies=[geo],
                health_check_id=check, opts=child)

        self.register_outputs({"zoneId": self.zone_id, "recordCount": len(self.records),
                               "healthChecks": {k: v.id for k, v in self.health_checks.items()}})
