"""Public DNS checks: is the parent zone delegated to the Route53 zone, and what does the parent say about the anycast
zone (its NS records and the nameservers' addresses)?

The parent's answer is read from one of its own authoritative servers (a non-recursive query), so a delegation that
exists but whose PoPs do not answer yet still shows. Resolver and port are options: the tests run a local DNS server on
127.0.0.1 and no query leaves the machine. Every query has a timeout; the resolver's lifetime bounds its retries.
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdatatype
import dns.resolver

from infra.model import Network
from infra.preflight.rows import Row, fail, passed, warn

SECTION = "dns"


@dataclass(frozen=True)
class DnsOptions:
    resolver: str | None = None  # an address; None = the system's resolvers (/etc/resolv.conf)
    port: int = 53  # of the resolver and of the parent's authoritative servers (another only for a local test server)
    timeout: float = 3.0


class _Failed(Exception):
    pass


def _resolver(opts: DnsOptions) -> dns.resolver.Resolver:
    if opts.resolver is None:
        res = dns.resolver.Resolver()
    else:
        res = dns.resolver.Resolver(configure=False)
        res.nameservers = [opts.resolver]
    res.port = opts.port
    res.timeout = res.lifetime = opts.timeout
    return res


def _names(res: dns.resolver.Resolver, name: str, rdtype: str) -> list[str]:
    try:
        answer = res.resolve(name, rdtype, raise_on_no_answer=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoNameservers):
        return []
    except dns.exception.Timeout:
        raise _Failed(f"no answer for {name} {rdtype} within {res.lifetime:g} s") from None
    if answer.rrset is None:
        return []
    return sorted(r.to_text().rstrip(".").lower() for r in answer.rrset)


def dns_rows(network: Network, opts: DnsOptions, route53_servers: list[str] | None) -> list[Row]:
    res = _resolver(opts)
    parent, zone = network.dns.parent_zone, network.dns.zone
    rows: list[Row] = []
    try:
        parent_ns = _names(res, parent, "NS")
    except _Failed as exc:
        return [fail(SECTION, "resolver", str(exc), "check --resolver, or the network path to DNS")]
    rows.append(_parent_row(network, parent_ns, route53_servers))
    if not parent_ns:
        return rows
    try:
        rows += _child_rows(network, res, opts, parent_ns, zone)
    except _Failed as exc:
        rows.append(fail(SECTION, f"delegation of {zone}", str(exc), "try again; check the parent's name servers"))
    return rows


def _parent_row(network: Network, parent_ns: list[str], route53: list[str] | None) -> Row:
    what, parent = f"delegation of {network.dns.parent_zone}", network.dns.parent_zone
    if not parent_ns:
        if network.dns.create_parent_zone:
            return warn(SECTION, what, f"{parent} has no NS in public DNS yet",
                        "after pulumi up, set Route53's name servers for it at your registrar")
        return fail(SECTION, what, f"{parent} has no NS in public DNS: nothing reaches Route53",
                    "set the Route53 zone's name servers at your registrar")
    if route53 is None:
        return passed(SECTION, what, f"NS {', '.join(parent_ns)} (not compared with Route53)")
    if sorted(route53) != parent_ns:
        return fail(SECTION, what, f"public DNS delegates {parent} to {', '.join(parent_ns)}, not to the Route53 zone's "
                    f"{', '.join(sorted(route53))}", "set the Route53 zone's name servers at your registrar")
    return passed(SECTION, what, f"delegated to the Route53 zone ({', '.join(parent_ns)})")


def _ask(opts: DnsOptions, servers: list[str], name: str, rdtype: str) -> dns.message.Message:
    """A non-recursive query to the first parent server that answers."""
    query = dns.message.make_query(name, rdtype)
    query.flags &= ~dns.flags.RD
    last = "no address for the parent's name servers"
    for server in servers:
        try:
            return dns.query.udp(query, server, timeout=opts.timeout, port=opts.port)
        except (dns.exception.Timeout, OSError) as exc:
            last = f"{server}: {'no answer within ' + format(opts.timeout, 'g') + ' s' if isinstance(exc, dns.exception.Timeout) else exc}"
    raise _Failed(f"no parent name server answered for {name} {rdtype} ({last})")


def _child_rows(network: Network, res: dns.resolver.Resolver, opts: DnsOptions, parent_ns: list[str], zone: str) -> list[Row]:
    what = f"delegation of {zone}"
    # Three addresses at most: a parent whose servers are all silent costs 3 timeouts per query, not one per address.
    servers = [a for ns in parent_ns[:3] for t in ("A", "AAAA") for a in _names(res, ns, t)][:3]
    reply = _ask(opts, servers, zone, "NS")
    ns: set[str] = set()
    for section in (reply.answer, reply.authority):
        for rrset in section:
            if rrset.rdtype == dns.rdatatype.NS and rrset.name == dns.name.from_text(zone):
                ns |= {r.to_text().rstrip(".").lower() for r in rrset}
    wanted = sorted(n.rstrip(".").lower() for n in network.dns.nameservers)
    if not ns:
        return [passed(SECTION, what, f"not delegated yet: pulumi up adds NS {', '.join(wanted)} to {network.dns.parent_zone}")]
    if sorted(ns) != wanted:
        return [fail(SECTION, what, f"the parent delegates it to {', '.join(sorted(ns))}; the stack says {', '.join(wanted)}",
                     "remove the NS record another tool made (pulumi up manages its own), or fix dns.nameservers")]
    glue = {r.name.to_text().rstrip(".").lower() for r in reply.additional if r.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)}
    missing = []
    for name in wanted:
        if name in glue:
            continue
        answer = _ask(opts, servers, name, "A" if network.service.ipv4 else "AAAA")
        if not any(r.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) for r in answer.answer):
            missing.append(name)
    if missing:
        return [warn(SECTION, what, f"NS as in the stack, but the parent has no address for {', '.join(missing)}",
                     "pulumi up creates the nameservers' records in the parent zone; run it, or check them")]
    return [passed(SECTION, what, f"NS {', '.join(wanted)}, with addresses at the parent")]
