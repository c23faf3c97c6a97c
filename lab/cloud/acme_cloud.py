"""The lab's stand-ins for the cloud around ACME, run inside one client namespace (an Internet host):

  python -m lab.cloud.acme_cloud seed --endpoint https://ADDR --ca CA --spec SPEC.json
      create in the Route53/S3 stand-in (moto's server) what the Pulumi program creates in AWS: the parent zone with
      the _acme-challenge CNAMEs of parent-zone names, the challenge zone, the certificate bucket
  python -m lab.cloud.acme_cloud resolve --listen ADDR --endpoint https://ADDR --ca CA --forward ZONE=SERVER ...
      the lab's DNS resolver (Pebble's -dnsserver and the issuer's resolv.conf): names in a forwarded zone are asked
      from that server (the anycast NSD; the NSID of the answering PoP is logged), names in a Route53 zone are
      answered from the stand-in's record sets (what Route53's name servers would answer), and CNAMEs are followed
      across both, as a recursive resolver does. Every query is logged as one line.
"""

from __future__ import annotations

import argparse
import json
import socketserver
import sys
import threading
import time
from typing import Any

import boto3
import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

MAX_CHAIN = 8
RRsets = list[dns.rrset.RRset]


def _client(service: str, endpoint: str, ca: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, verify=ca, region_name="us-east-1",
                        aws_access_key_id="lab", aws_secret_access_key="lab")


def seed(endpoint: str, ca: str, spec: dict[str, Any]) -> None:
    r53 = _client("route53", endpoint, ca)
    zones: dict[str, str] = {}
    for zone in (spec["parent_zone"], spec["challenge_zone"]):
        res = r53.create_hosted_zone(Name=zone, CallerReference=f"lab-{zone}-{time.time()}")
        zones[zone] = res["HostedZone"]["Id"].split("/")[-1]
    changes = [{"Action": "UPSERT", "ResourceRecordSet": {"Name": owner, "Type": "CNAME", "TTL": 60,
                                                          "ResourceRecords": [{"Value": target}]}}
               for owner, target in sorted(spec["parent_cnames"].items())]
    if changes:
        r53.change_resource_record_sets(HostedZoneId=zones[spec["parent_zone"]], ChangeBatch={"Changes": changes})
    s3 = _client("s3", endpoint, ca)
    s3.create_bucket(Bucket=spec["bucket"])
    print(json.dumps({"zones": zones, "bucket": spec["bucket"]}, allow_nan=False))


class Resolver:
    """Answers one query by following the name through the forwarded zones and the Route53 stand-in."""

    def __init__(self, endpoint: str, ca: str, forwards: dict[str, str], self_address: str) -> None:
        self.r53 = _client("route53", endpoint, ca)
        self.forwards = {dns.name.from_text(z): s for z, s in forwards.items()}
        self.self_address = self_address
        self.lock = threading.Lock()

    def _moto_zones(self) -> dict[dns.name.Name, str]:
        with self.lock:
            zones = self.r53.list_hosted_zones()["HostedZones"]
        return {dns.name.from_text(z["Name"]): z["Id"].split("/")[-1] for z in zones}

    def _records(self, zone_id: str) -> list[dict[str, Any]]:
        with self.lock:
            pages = self.r53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id)
            return [rs for page in pages for rs in page["ResourceRecordSets"]]

    def _zone_for(self, name: dns.name.Name) -> tuple[dns.name.Name, str, str] | None:
        """(zone, kind, target): kind 'forward' (target = server) or 'route53' (target = zone id); longest match."""
        best: tuple[dns.name.Name, str, str] | None = None
        candidates = [(z, "forward", s) for z, s in self.forwards.items()]
        candidates += [(z, "route53", i) for z, i in self._moto_zones().items()]
        for zone, kind, target in candidates:
            if name.is_subdomain(zone) and (best is None or len(zone) > len(best[0])):
                best = (zone, kind, target)
        return best

    def resolve(self, qname: dns.name.Name, qtype: dns.rdatatype.RdataType) -> tuple[dns.rcode.Rcode, RRsets, RRsets, list[str]]:
        """(rcode, answer, authority, trace) for ``qname``/``qtype``, following CNAMEs."""
        answer: list[dns.rrset.RRset] = []
        authority: list[dns.rrset.RRset] = []
        trace: list[str] = []
        name = qname
        for _ in range(MAX_CHAIN):
            found = self._zone_for(name)
            if found is None:
                return (dns.rcode.REFUSED if not answer else dns.rcode.NOERROR), answer, authority, trace
            zone, kind, target = found
            if kind == "forward":
                rcode, got, auth, where = self._forward(name, qtype, target)
                trace.append(f"{name} via NSD {target} ({where})")
            else:
                rcode, got, auth = self._route53(zone, target, name, qtype)
                trace.append(f"{name} via Route53 zone {zone}")
            answer += got
            authority = auth
            cname = next((rs for rs in got if rs.rdtype == dns.rdatatype.CNAME and rs.name == name), None)
            if rcode != dns.rcode.NOERROR or qtype == dns.rdatatype.CNAME or cname is None:
                return rcode, answer, authority, trace
            if any(rs.rdtype == qtype for rs in got):
                return rcode, answer, authority, trace
            name = cname[0].target
        return dns.rcode.SERVFAIL, answer, authority, trace

    def _forward(self, name: dns.name.Name, qtype: dns.rdatatype.RdataType, server: str) -> tuple[dns.rcode.Rcode, RRsets, RRsets, str]:
        query = dns.message.make_query(name, qtype, use_edns=0, options=[dns.edns.GenericOption(dns.edns.NSID, b"")])
        query.flags &= ~dns.flags.RD
        try:
            resp = dns.query.udp(query, server, timeout=2)
        except (OSError, dns.exception.Timeout) as exc:
            return dns.rcode.SERVFAIL, [], [], f"no answer: {exc}"
        nsid = next((bytes(getattr(o, "nsid", b"")).decode(errors="replace") for o in resp.options
                     if o.otype == dns.edns.NSID), "?")
        return resp.rcode(), list(resp.answer), list(resp.authority), f"NSID {nsid}"

    def _route53(self, zone: dns.name.Name, zone_id: str, name: dns.name.Name,
                 qtype: dns.rdatatype.RdataType) -> tuple[dns.rcode.Rcode, RRsets, RRsets]:
        records = self._records(zone_id)
        sets: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
        for rs in records:
            rtype = dns.rdatatype.from_text(rs["Type"])
            values = [r["Value"] for r in rs.get("ResourceRecords", [])]
            if rtype in (dns.rdatatype.NS, dns.rdatatype.SOA):
                continue  # Route53's own name servers do not exist in the lab: this resolver is the zone's server
            if rtype == dns.rdatatype.CNAME:  # Route53 values are absolute names, with or without the final dot
                values = [v if v.endswith(".") else v + "." for v in values]
            if values:
                sets[(dns.name.from_text(rs["Name"]), rtype)] = dns.rrset.from_text(
                    rs["Name"], int(rs.get("TTL", 60)), "IN", rs["Type"], *values)
        ns_name = dns.name.from_text(f"ns.{zone}")
        sets[(zone, dns.rdatatype.NS)] = dns.rrset.from_text(zone, 60, "IN", "NS", str(ns_name))
        sets[(zone, dns.rdatatype.SOA)] = dns.rrset.from_text(
            zone, 60, "IN", "SOA", f"{ns_name} hostmaster.{zone} 1 7200 900 1209600 60")
        sets[(ns_name, dns.rdatatype.A)] = dns.rrset.from_text(ns_name, 60, "IN", "A", self.self_address)
        soa = [sets[(zone, dns.rdatatype.SOA)]] if (zone, dns.rdatatype.SOA) in sets else []
        if (name, qtype) in sets:
            return dns.rcode.NOERROR, [sets[(name, qtype)]], []
        if (name, dns.rdatatype.CNAME) in sets:
            return dns.rcode.NOERROR, [sets[(name, dns.rdatatype.CNAME)]], []
        if any(owner == name for owner, _ in sets):
            return dns.rcode.NOERROR, [], soa
        return dns.rcode.NXDOMAIN, [], soa


def serve(resolver: Resolver, address: str) -> None:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data, sock = self.request
            try:
                query = dns.message.from_wire(data)
            except dns.exception.DNSException:
                return
            q = query.question[0]
            resp = dns.message.make_response(query)
            resp.flags |= dns.flags.RA
            try:
                rcode, answer, authority, trace = resolver.resolve(q.name, q.rdtype)
            except Exception as exc:  # a stand-in must answer; the log says why it failed
                rcode, answer, authority, trace = dns.rcode.SERVFAIL, [], [], [f"error {type(exc).__name__}: {exc}"]
            resp.set_rcode(rcode)
            resp.answer = answer
            resp.authority = authority
            sock.sendto(resp.to_wire(), self.client_address)
            shown = "; ".join(rs.to_text().replace("\n", " | ") for rs in answer) or "-"
            print(f"{time.time():.3f} {self.client_address[0]} {q.name} {dns.rdatatype.to_text(q.rdtype)} "
                  f"{dns.rcode.to_text(rcode)} [{' -> '.join(trace)}] {shown}", flush=True)

    server = socketserver.ThreadingUDPServer((address, 53), Handler)
    server.daemon_threads = True
    print(f"lab resolver on {address}:53", flush=True)
    server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.cloud.acme_cloud")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("seed")
    s.add_argument("--endpoint", required=True)
    s.add_argument("--ca", required=True)
    s.add_argument("--spec", required=True)
    r = sub.add_parser("resolve")
    r.add_argument("--listen", required=True)
    r.add_argument("--endpoint", required=True)
    r.add_argument("--ca", required=True)
    r.add_argument("--forward", action="append", default=[], help="ZONE=SERVER")
    args = parser.parse_args(argv)
    if args.cmd == "seed":
        with open(args.spec, encoding="utf-8") as fh:
            seed(args.endpoint, args.ca, json.load(fh))
        return 0
    forwards = dict(f.split("=", 1) for f in args.forward)
    serve(Resolver(args.endpoint, args.ca, forwards, args.listen), args.listen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
