"""Which ASNs, prefixes and communities may be announced: the rules the model and the policy pack share."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from typing import Any

from infra.model.fields import community as parse_community
from infra.model.fields import shown
from infra.model.vultr import NO_EXPORT_OUTSIDE_VULTR, VULTR_ASN, VULTR_FIXED_COMMUNITIES, VULTR_PEER_COMMUNITY_FAMILIES

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


# The widest prefix one anycast network may announce. IPv4: a /16 (65,536 addresses) is already more than any
# anycast service needs; a /8 or /6 is a typo or someone else's space. IPv6: /29 is the largest allocation the RIPE NCC
# makes without further justification (ripe-738, section 5.1.2), so a wider prefix cannot be one operator's own.
SHORTEST_PREFIX = {4: 16, 6: 29}


def prefix_length_problem(net: IPv4Network | IPv6Network) -> str | None:
    """Why ``net`` is too long to be accepted on the Internet, or too wide to be one network's, or None."""
    limit = 24 if isinstance(net, IPv4Network) else 48
    if net.prefixlen > limit:
        return f"{net} is longer than /{limit}; the Internet drops IPv{net.version} prefixes longer than /{limit}"
    if net.prefixlen < (shortest := SHORTEST_PREFIX[net.version]):
        return (f"{net} is shorter than /{shortest}: an anycast prefix that wide covers other networks' addresses "
                f"(a typo for /{limit}?)")
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


# RFC 1997's reserved range 65535:0-65535, which IANA keeps for well-known communities
# (https://www.iana.org/assignments/bgp-well-known-communities): routers everywhere act on them.
WELL_KNOWN_HIGH = 65535
WELL_KNOWN_COMMUNITIES = {0: "GRACEFUL_SHUTDOWN", 1: "ACCEPT_OWN", 666: "BLACKHOLE", 65281: "NO_EXPORT",
                          65282: "NO_ADVERTISE", 65283: "NO_EXPORT_SUBCONFED", 65284: "NOPEER"}


def community_problem(community: str, vultr: bool) -> str | None:
    """Why ``community`` cannot be attached: malformed, or (on Vultr) not one of Vultr's action communities."""
    try:
        parse_community(community)
    except ValueError as exc:
        return str(exc)
    high, low = (int(part) for part in community.split(":"))
    if high == WELL_KNOWN_HIGH:
        name = WELL_KNOWN_COMMUNITIES.get(low)
        return (f"'{community}' is {f'the well-known community {name}' if name else 'in the well-known range 65535:*'} "
                "(IANA): every router acts on it, not one provider; remove it")
    if not vultr:
        return None
    if community in VULTR_FIXED_COMMUNITIES or high in VULTR_PEER_COMMUNITY_FAMILIES:
        if community == "20473:666":
            return "'20473:666' blackholes the prefix at Vultr; an anycast PoP must not announce it"
        if high in VULTR_PEER_COMMUNITY_FAMILIES and low == 0:
            return f"'{community}' needs a peer ASN after the colon"
        return None
    return (f"'{community}' is not a Vultr action community (20473:6000, 20473:6001-6003, 20473:6601, "
            "20473:64609, 64600/64601/64602/64603/64609/64699:<peer-as>)")


def announce_problem(communities: list[str], only_to: list[int], own_asn: int, vultr: bool) -> tuple[str, str] | None:
    """The first (field, message) of a PoP's announcement whose communities repeat or cancel each other, or None.

    Vultr acts on each community on its own, so a contradiction does not fail at Vultr: it announces nowhere
    (``onlyTo: [174]`` with ``64600:174``) or prepends by whichever wins. ``onlyTo`` adds 20473:6000 and 64699:<asn>.
    """
    seen: dict[str, int] = {}
    for k, community in enumerate(communities):
        if community in seen:
            return f"announce.communities[{k}]", f"'{community}' is already announce.communities[{seen[community]}]"
        seen[community] = k
    peers: dict[int, int] = {}
    for j, asn in enumerate(only_to):
        if asn in peers:
            return f"announce.onlyTo[{j}]", f"{asn} is already announce.onlyTo[{peers[asn]}]"
        if asn == own_asn:
            return f"announce.onlyTo[{j}]", f"AS{asn} is the network's own ASN (asn); onlyTo names Vultr's peers"
        peers[asn] = j
    if not vultr:
        return None
    parsed = [(k, *(int(part) for part in c.split(":"))) for k, c in enumerate(communities)]
    only = {low: k for k, high, low in parsed if high == 64699}
    prepend_all = [k for k, high, low in parsed if high == VULTR_ASN and low in (6001, 6002, 6003)]
    prepend_to: dict[int, int] = {}
    for k, high, low in parsed:
        name = f"announce.communities[{k}]"
        if high == 64600 and low in peers:
            return name, (f"'{communities[k]}' (do not announce to AS{low}) contradicts announce.onlyTo[{peers[low]}] "
                          "(announce only to it): the prefix would be announced nowhere")
        if high == 64600 and low in only:
            return name, (f"'{communities[k]}' (do not announce to AS{low}) contradicts announce.communities[{only[low]}] "
                          f"'{communities[only[low]]}' (announce only to it): the prefix would be announced nowhere")
        if high == 64699 and low in peers:
            return name, f"'{communities[k]}' repeats announce.onlyTo[{peers[low]}], which adds it"
        if communities[k] == NO_EXPORT_OUTSIDE_VULTR and peers:
            return name, f"'{communities[k]}' repeats announce.onlyTo, which adds it"
        if communities[k] == NO_EXPORT_OUTSIDE_VULTR and not only:
            return name, (f"'{communities[k]}' alone keeps the prefix inside Vultr, announced to no one else; "
                          "add announce.onlyTo with the peers it should reach")
        if high == 64699 and NO_EXPORT_OUTSIDE_VULTR not in seen:
            return name, f"'{communities[k]}' works only with '{NO_EXPORT_OUTSIDE_VULTR}'; or use announce.onlyTo: [{low}]"
        if k in prepend_all and k != prepend_all[0]:
            return name, (f"'{communities[k]}' contradicts announce.communities[{prepend_all[0]}] "
                          f"'{communities[prepend_all[0]]}': one prepend count to all")
        if high in (64601, 64602, 64603):
            if low in prepend_to:
                first = prepend_to[low]
                return name, (f"'{communities[k]}' contradicts announce.communities[{first}] '{communities[first]}': "
                              f"one prepend count to AS{low}")
            prepend_to[low] = k
    return None
