"""Vultr's side of the network: its BGP peer, its own AS and its action communities (provider constants)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

# Vultr's side of every VPS BGP session: https://docs.vultr.com/high-availability-on-vultr-with-floating-ip-and-bgp
# (ASN 64515, 169.254.169.254, multihop 2); the IPv6 neighbour 2001:19f0:ffff::1 only from https://bgp.run/AS64515.
VULTR_PEER_ASN = 64515
VULTR_NEIGHBOR_V4 = IPv4Address("169.254.169.254")
VULTR_NEIGHBOR_V6 = IPv6Address("2001:19f0:ffff::1")
VULTR_MULTIHOP = 2
VULTR_ASN = 20473  # Vultr's public AS: origin of ROAs when the customer uses a Vultr-assigned private ASN
NO_EXPORT_OUTSIDE_VULTR = "20473:6000"

# Vultr action communities (https://docs.vultr.com/products/network/bgp/asn-information/as20473-bgp-communities-customer-guide):
# fixed ones, and the per-peer-AS families 646xx:<peer-as>.
VULTR_FIXED_COMMUNITIES = {
    "20473:6601": "do not announce to IX peers",
    "20473:6000": "do not export outside AS20473",
    "20473:6001": "prepend 1x to all",
    "20473:6002": "prepend 2x to all",
    "20473:6003": "prepend 3x to all",
    "20473:64609": "MED 0 to all",
    "20473:666": "blackhole",
}
VULTR_PEER_COMMUNITY_FAMILIES = {
    64600: "do not announce to <peer-as>",
    64601: "prepend 1x to <peer-as>",
    64602: "prepend 2x to <peer-as>",
    64603: "prepend 3x to <peer-as>",
    64609: "MED 0 to <peer-as>",
    64699: "announce only to <peer-as> (with 20473:6000)",
}
MAX_PREPEND = 3
