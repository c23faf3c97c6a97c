"""The policy pack: `pulumi preview --policy-pack policies` runs this (it starts a gRPC server and blocks)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # works without `pip install -e .` too

from pulumi_policy import EnforcementLevel, PolicyPack

from policies.rules import policies

PolicyPack(
    name="anycast-network",
    description="Prefixes, ASN, BGP export, GeoDNS and RIPE route objects of the anycast network.",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=policies(),
)
