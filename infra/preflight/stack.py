"""Checks of the stack file itself that only matter against real accounts."""

from __future__ import annotations

from infra.model import Network, is_documentation_asn, is_documentation_prefix
from infra.preflight.rows import Row, passed, warn

SECTION = "stack"


def stack_rows(network: Network, stack: str) -> list[Row]:
    """Documentation numbers (RFC 5398 ASNs, RFC 5737/3849 prefixes) are fine for the lab and previews; deployed,
    nothing can route them (the policy pack only advises, so the shipped stacks preview in CI)."""
    found = [f"AS{network.asn}"] if is_documentation_asn(network.asn) else []
    found += [str(p) for p in network.announced_prefixes if is_documentation_prefix(p)]
    if found:
        return [warn(SECTION, "numbers", f"documentation numbers {', '.join(found)}: no real network routes them",
                     f"replace them with your ASN and prefixes in Pulumi.{stack}.yaml")]
    return [passed(SECTION, "numbers", f"AS{network.asn}, {', '.join(str(p) for p in network.announced_prefixes)}")]
