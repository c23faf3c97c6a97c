"""The anycast network: validate ``anycast:network`` once, build the components, export what monitoring needs."""

from __future__ import annotations

import json
import os

import pulumi

from infra.components.dnssec import ds_record
from infra.components.geodns import GeoDns, GeoDnsArgs
from infra.components.network import NetworkFacts
from infra.components.pop import ExternalPop, PopArgs, VultrAccess, VultrAccessArgs, VultrPop
from infra.components.ripe_routes import route_objects
from infra.components.tls import TlsArgs, TlsCertificate
from infra.derived.cost import estimate
from infra.derived.outputs import geodns_output, network_output, pops_output, probes_output
from infra.derived.rollout import rollout_waves
from infra.model import ConfigError, Pop, parse_network
from userdata.dnssec import signing_from_env
from userdata.render import check_password

config = pulumi.Config()
stack = pulumi.get_stack()
# Everything is checked before the first resource is registered: a bad value stops the run with one line per
# problem (RunError: no traceback) and nothing half-applied.
try:
    network = parse_network(config.require_object("network"), source=f"Pulumi.{stack}.yaml anycast:network")
    cost = estimate(network, config.get_object("externalPopCosts"))
    signing = signing_from_env(network, os.environ)  # dns.dnssec keys: a missing or wrong key stops here
except (ConfigError, json.JSONDecodeError, pulumi.ConfigTypeError) as exc:
    lines = exc.errors if isinstance(exc, ConfigError) else [f"anycast:externalPopCosts: must be a mapping like {{hkg: 40}} ({exc})"[:200]]
    raise pulumi.RunError("the stack configuration does not validate:\n  " + "\n  ".join(lines)) from None

bgp_password = config.require_secret("bgpPassword")
try:  # the plain value, read once to check it before any resource exists; it flows on only as the secret above
    check_password(pulumi.runtime.get_config(f"{config.name}:bgpPassword") or "", source="anycast:bgpPassword")
except ConfigError as exc:
    raise pulumi.RunError(str(exc)) from None

facts = NetworkFacts("network", network)
under_network = pulumi.ResourceOptions(parent=facts)
vultr_pops = [p for p in network.pops if p.is_vultr]
access = VultrAccess("vultr", VultrAccessArgs(network, stack), under_network) if vultr_pops else None
tls = TlsCertificate("tls", TlsArgs(network, stack), under_network) if network.tls.enabled else None

addresses: dict[str, tuple[pulumi.Input[str] | None, pulumi.Input[str] | None]] = {}
served: dict[str, tuple[pulumi.Input[str] | None, pulumi.Input[str] | None]] = {}  # resolved once the gate passed
instance_ids: dict[str, pulumi.Input[str]] = {}
external_cloud_config: dict[str, pulumi.Output[str]] = {}


def pop_args(pop: Pop) -> PopArgs:
    args = PopArgs(network, pop, bgp_password, stack, signing=signing)
    if tls is not None:  # the issuer PoP gets the issuer's access key, every other PoP the read-only one
        args.tls_credentials = tls.issuer_credentials if pop.code == network.tls_issuer else tls.reader_credentials
    return args


# Vultr PoPs wave by wave (rollout.waves, docs/deploy.md): each instance of a wave depends on the readiness gates of
# every PoP of the wave before, so a replacement that does not serve stops the update before the next wave starts.
gates_before: list[pulumi.Resource] = []
serving: list[pulumi.Resource] = []  # every gate and external PoP: the DS record comes after them, and goes first
for wave in rollout_waves(network):
    gates: list[pulumi.Resource] = []
    for code in wave:
        assert access is not None  # created whenever there is a Vultr PoP
        args = pop_args(network.pop(code))
        args.ssh_key_ids, args.firewall_group_id, args.after = access.ssh_key_ids, access.firewall_group_id, gates_before
        vp = VultrPop(code, args, under_network)
        addresses[code], instance_ids[code] = (vp.ipv4, vp.ipv6), vp.instance_id
        gate_id = vp.gate.id
        served[code] = (pulumi.Output.all(gate_id, vp.ipv4).apply(lambda x: x[1]),
                        pulumi.Output.all(gate_id, vp.ipv6).apply(lambda x: x[1]))
        gates.append(vp.gate)
        serving.append(vp.gate)
    gates_before = gates
for pop in network.pops:
    if not pop.is_vultr:
        ep = ExternalPop(pop.code, pop_args(pop), under_network)
        addresses[pop.code] = served[pop.code] = (ep.ipv4, ep.ipv6)
        external_cloud_config[pop.code] = ep.user_data
        serving.append(ep)
addresses = {p.code: addresses[p.code] for p in network.pops}  # document order for the outputs

# GeoDNS sends clients to a replaced unicast PoP only once its gate passed (until then: the old address).
geodns = GeoDns("geodns", GeoDnsArgs(network, {p.code: served[p.code] for p in network.unicast_pops}), under_network)
if tls is not None:
    tls.add_parent_records(geodns.zone_id)
    # The reboot peer list, once every PoP's address exists: the PoPs fetch it with the certificate and open their
    # status port to these addresses only (docs/security.md#security-updates-and-reboots).
    tls.add_reboot_peers(addresses)
    if access is not None:
        access.add_status_rules(addresses)

if signing is not None:
    ds_record("dnssec-ds", network, signing.keys, geodns.zone_id, serving, under_network)

if network.ripe.manage:
    route_objects(network, under_network)

pulumi.export("network", network_output(network))
pulumi.export("pops", pops_output(network, addresses, instance_ids))
pulumi.export("geodns", geodns_output(network, geodns.record_sets, geodns.zone_id))
pulumi.export("probes", probes_output(network, addresses))
pulumi.export("cost", cost)
pulumi.export("externalCloudConfig", pulumi.Output.secret(external_cloud_config))
