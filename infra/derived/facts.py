"""The network's facts as the ``anycast:index:Network`` component carries them (``infra/components/network.py``).

Policies see every resource's inputs, component resources included, but not the program's config. So the program
registers one component whose inputs carry the ASN, its source, the prefixes, the service addresses and the PoP
roles; ``policies/rules.py`` reads them (camelCase, as the engine passes them) and checks them with the same
helpers as ``infra/model/``.
"""

from __future__ import annotations

from typing import Any

from infra.model import Network

NETWORK_TYPE = "anycast:index:Network"


def network_facts(network: Network) -> dict[str, Any]:
    """JSON-friendly facts about ``network`` (the component's inputs and the ``network`` stack output)."""
    return {
        "asn": network.asn,
        "asnSource": network.asn_source,
        "originAsn": network.roa_origin_asn,
        "prefixes": {"ipv4": _str(network.prefixes.ipv4), "ipv6": str(network.prefixes.ipv6)},
        "service": {"ipv4": _str(network.service.ipv4), "ipv6": str(network.service.ipv6)},
        "anycastPops": [p.code for p in network.anycast_pops],
        "unicastPops": [p.code for p in network.unicast_pops],
        "vultrPops": [p.code for p in network.pops if p.is_vultr],
        "externalPops": [p.code for p in network.pops if not p.is_vultr],
        "ripeManage": network.ripe.manage,
        "zone": network.dns.zone,
        "parentZone": network.dns.parent_zone,
    }


def _str(value: object | None) -> str | None:
    return None if value is None else str(value)
