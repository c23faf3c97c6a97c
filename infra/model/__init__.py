"""The anycast network model: one validated document, the single source of truth.

By concern: ``fields`` (strict scalar types), ``rules`` (which ASNs, prefixes and communities may be announced),
``vultr`` (the provider's constants), ``regions`` (Vultr's region catalogue), ``schema`` (the document and its
cross-field rules), ``errors`` (one line per problem), ``stack`` (reading ``Pulumi.<stack>.yaml``). The names below
are the model's public face: ``from infra.model import Network``.
"""

from infra.model.errors import ConfigError, format_errors
from infra.model.rules import (
    asn_problem,
    bogon_problem,
    community_problem,
    is_documentation_asn,
    is_documentation_prefix,
    is_private_asn,
    peer_asn_problem,
    prefix_length_problem,
    prefix_problem,
)
from infra.model.schema import Network, Pop, parse_network
from infra.model.vultr import (
    MAX_PREPEND,
    NO_EXPORT_OUTSIDE_VULTR,
    VULTR_ASN,
    VULTR_MULTIHOP,
    VULTR_NEIGHBOR_V4,
    VULTR_NEIGHBOR_V6,
    VULTR_PEER_ASN,
)

__all__ = [
    "MAX_PREPEND", "NO_EXPORT_OUTSIDE_VULTR", "VULTR_ASN", "VULTR_MULTIHOP", "VULTR_NEIGHBOR_V4", "VULTR_NEIGHBOR_V6",
    "VULTR_PEER_ASN", "ConfigError", "Network", "Pop", "asn_problem", "bogon_problem", "community_problem",
    "format_errors", "is_documentation_asn", "is_documentation_prefix", "is_private_asn", "parse_network",
    "peer_asn_problem", "prefix_length_problem", "prefix_problem",
]
