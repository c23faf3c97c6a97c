"""The ``anycast:index:Network`` component: the network's facts registered where the policy pack can read them.

Policies see every resource's inputs, component resources included, but not the program's config; see
``infra/derived/facts.py`` for what the inputs hold.
"""

from __future__ import annotations

import pulumi

from infra.derived.facts import NETWORK_TYPE, network_facts
from infra.model import Network


class NetworkFacts(pulumi.ComponentResource):
    """Parent of every PoP and of the GeoDNS component; its inputs are :func:`network_facts`."""

    def __init__(self, name: str, network: Network, opts: pulumi.ResourceOptions | None = None) -> None:
        self.facts = network_facts(network)
        super().__init__(NETWORK_TYPE, name, dict(self.facts), opts)
        self.register_outputs(dict(self.facts))
