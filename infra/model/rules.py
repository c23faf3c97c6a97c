"""Which ASNs, prefixes and communities may be announced: the rules the model and the policy pack share."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from typing import Any

from infra.model.fields import community as parse_community
from infra.model.fields import shown
from infra.model.vultr import VULTR_FIXED_COMMUNITIES, VULTR_PEER_COMMUNITY_FAMILIES

# ASNs nobody may originate: RFC 7607 (0), RFC 6793 (AS_TRANS), RFC 7300 (last of each range).
RESERVED_ASNS = {0: "AS0 is reserved (RFC 7607)", 23456: "AS23456 is AS_TRANS (RFC 6793)",
                 65535: "AS65535 is reserved (RFC 7300)", 4294967295: "AS4294967295 is reserved (RFC 7300)"}
DOCUMENTATION_ASNS = (range(64496, 64512), range(65536, 65552))  # RFC 5398
PRIVATE_ASNS = (range(64512, 65535), range(4200000000, 4294967295))  # RFC 6996

BOGONS_V4 = [IPv4Network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4")]
DOCUMENTATION_V4 = [IPv4Network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
GLOBAL_UNICAST_V6 = IPv6Network("2000::/3")
BOGONS_V6 = [IPv6Network(n) for n in ("2001::/32", "2001:10::/28", "2002::/16")]  # Teredo, ORCHID, 6to4
DOCUMENTATION_V6 = [IPv6Network(n) for n in ("2001:db8::/32", "3fff::/20")]  # RFC 3849, RFC 9637

def is_documentation_asn(asn: int) -> bool:
    return any(asn in r for r in DOCUMENTATION_ASNS)


def is_private_asn(asn: int) -> bool:
    return any(asn in r for r in PRIVATE_ASNS)


def asn_problem(asn: int, source: str) -> str | None:
    """Why ``asn`` cannot originate routes with this ASN source, or None (shared with the policy pack)."""
    if asn in RESERVED_ASNS:
        return RESERVED_ASNS[asn]
    if not 1 <= asn <= 4294967294:
        return f"{shown(asn)} is not a 32-bit ASN (1-4294967294)"
    if source == "vultr-assigned" and not is_private_asn(asn):
        return (f"AS{asn} is not private; with asnSource 'vultr-assigned' use the private ASN Vultr gave you "
                "(64512-65534 or 4200000000-4294967294)")
    if source == "own" and is_private_asn(asn):
        return (f"AS{asn} is a private ASN; set asnSource: vultr-assigned if Vultr assigned it, "
                "or use your own public ASN")
    return None


def peer_asn_problem(asn: int) -> str | None:
    """Why ``asn`` cannot be a BGP neighbour's AS, or None (private ASNs are fine for a provider's router)."""
    if asn in RESERVED_ASNS:
        return RESERVED_ASNS[asn]
    if not 1 <= asn <= 4294967294:
        return f"{shown(asn)} is not a 32-bit ASN (1-4294967294)"
    return None


def prefix_length_problem(net: IPv4Network | IPv6Network) -> str | None:
    """Why ``net`` is too long to be accepted on the Internet, or None."""
    limit = 24 if isinstance(net, IPv4Network) else 48
    if net.prefixlen > limit:
        return f"{net} is longer than /{limit}; the Internet drops IPv{net.version} prefixes longer than /{limit}"
    return None


def bogon_problem(net: IPv4Network | IPv6Network) -> str | None:
    """Why ``net`` lies in space nobody may announce, or None (documentation space is allowed for examples)."""
    if isinstance(net, IPv6Network) and not net.subnet_of(GLOBAL_UNICAST_V6):
        return f"{net} is outside global unicast space {GLOBAL_UNICAST_V6}"
    bogons: list[Any] = BOGONS_V4 if isinstance(net, IPv4Network) else BOGONS_V6
    for bogon in bogons:
        if net.overlaps(bogon):
            return f"{net} overlaps bogon space {bogon}"
    return None


def prefix_problem(net: IPv4Network | IPv6Network) -> str | None:
    """Why ``net`` cannot be announced to the Internet, or None (shared with the policy pack)."""
    return prefix_length_problem(net) or bogon_problem(net)


def is_documentation_prefix(net: IPv4Network | IPv6Network) -> bool:
    docs: list[Any] = DOCUMENTATION_V4 if isinstance(net, IPv4Network) else DOCUMENTATION_V6
    return any(net.subnet_of(d) for d in docs)


def community_problem(community: str, vultr: bool) -> str | None:
    """Why ``community`` cannot be attached: malformed, or (on Vultr) not one of Vultr's action communities."""
    try:
        parse_community(community)
    except ValueError as exc:
        return str(exc)
    if not vultr:
        return None
    high, low = (int(part) for part in community.split(":"))
    if community in VULTR_FIXED_COMMUNITIES or high in VULTR_PEER_COMMUNITY_FAMILIES:
        if community == "20473:666":
            return "'20473:666' blackholes the prefix at Vultr; an anycast PoP must not announce it"
        if high in VULTR_PEER_COMMUNITY_FAMILIES and low == 0:
            return f"'{community}' needs a peer ASN after the colon"
        return None
    return (f"'{community}' is not a Vultr action community (20473:6000, 20473:6001-6003, 20473:6601, "
            "20473:64609, 64600/64601/64602/64603/64609/64699:<peer-as>)")
