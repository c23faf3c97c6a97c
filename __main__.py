"""The anycast network: validate ``anycast:network`` once, build the components, export what monitoring needs."""

from __future__ import annotations

import pulumi

from infra.components.geodns import GeoDns, GeoDnsArgs
from infra.components.network import NetworkFacts
from infra.components.pop import ExternalPop, PopArgs, VultrAccess, VultrAccessArgs, VultrPop
from infra.components.ripe_routes import route_objects
from infra.cost import estimate
from infra.model import ConfigError, parse_network
from infra.outputs import geodns_output, network_output, pops_output, probes_output

config = pulumi.Config()
stack = pulumi.get_stack()
try:
    network = parse_network(config.require_object("network"), source=f"Pulumi.{stack}.yaml anycast:network")
except ConfigError as exc:
    raise pulumi.RunError("the network document does not validate:\n  " + "\n  ".join(exc.errors)) from None
bgp_password = config.require_secret("bgpPassword")

facts = NetworkFacts("network", network)
under_network = pulumi.ResourceOptions(parent=facts)
vultr_pops = [p for p in network.pops if p.is_vultr]
access = VultrAccess("vultr", VultrAccessArgs(network, stack), under_network) if vultr_pops else None

addresses: dict[str, tuple[pulumi.Input[str] | None, pulumi.Input[str] | None]] = {}
instance_ids: dict[str, pulumi.Input[str]] = {}
external_cloud_config: dict[str, pulumi.Output[str]] = {}
for pop in network.pops:
    args = PopArgs(network, pop, bgp_password, stack)
    if pop.is_vultr and access is not None:
        args.ssh_key_ids, args.firewall_group_id = access.ssh_key_ids, access.firewall_group_id
        vp = VultrPop(pop.code, args, under_network)
        addresses[pop.code], instance_ids[pop.code] = (vp.ipv4, vp.ipv6), vp.instance_id
    else:
        ep = ExternalPop(pop.code, args, under_network)
        addresses[pop.code] = (ep.ipv4, ep.ipv6)
        external_cloud_config[pop.code] = ep.user_data

geodns = GeoDns("geodns", GeoDnsArgs(network, {p.code: addresses[p.code] for p in network.unicast_pops}), under_network)

if network.ripe.manage:
    route_objects(network, under_network)

pulumi.export("network", network_output(network))
pulumi.export("pops", pops_output(network, addresses, instance_ids))
pulumi.export("geodns", geodns_output(network, geodns.record_sets, geodns.zone_id))
pulumi.export("probes", probes_output(network, addresses))
pulumi.export("cost", estimate(network, config.get_object("externalPopCosts")))
pulumi.export("externalCloudConfig", pulumi.Output.secret(external_cloud_config))
