"""PoP components: Vultr instances (created here) and external boxes (rendered only).

Replacement behaviour (``willReplaceOnChanges`` in dirien/pulumi-vultr
``provider/cmd/pulumi-resource-vultr/schema.json``): ``userData``, ``hostname``, ``osId``, ``region`` and ``sshKeyIds`` force a
new Vultr instance. The user data carries every rendered config (BIRD, Caddy, NSD, nftables), so *any* change of the
network document that reaches a PoP's files replaces that PoP. We keep Pulumi's create-before-delete order
(``delete_before_replace=False``): Vultr labels and hostnames need not be unique, so the new instance can boot and
announce while the old one still serves; only then is the old one deleted. See docs/deploy.md for rolling a change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network

import ediri_vultr as vultr
import pulumi

from infra.components.gate import PopGate, RestartMark, gate_addresses
from infra.contracts import BIRD_EXPORTER_PORT, DNS_PORT, HEALTH_STATUS_PORT, HTTP_PORT, HTTPS_PORT
from infra.model import Network, Pop
from userdata.dnssec import ZoneSigning
from userdata.render import render_pop
from userdata.tls import TlsCredentials

# Ports every PoP serves to the world: DNS (tcp+udp) and HTTP(S). ICMP stays open for path-MTU discovery
# (essential on IPv6) and for diagnosing an anycast network with ping/traceroute.
PUBLIC_RULES: tuple[tuple[str, str | None], ...] = (
    ("udp", str(DNS_PORT)), ("tcp", str(DNS_PORT)), ("tcp", str(HTTP_PORT)), ("tcp", str(HTTPS_PORT)), ("icmp", None))
SSH_PORT = "22"
# Prometheus scrapes bird_exporter and the health agent (infra/contracts.py) from
# admin.monitoringCidrs; nftables on the PoP also limits them to the unicast address (a group rule has no destination).
METRICS_PORTS = f"{BIRD_EXPORTER_PORT}:{HEALTH_STATUS_PORT}"


def user_data_output(network: Network, pop: Pop, bgp_password: pulumi.Output[str],
                     tls_credentials: pulumi.Output[TlsCredentials] | None = None,
                     signing: ZoneSigning | None = None) -> pulumi.Output[str]:
    """The PoP's ``#cloud-config``, rendered inside ``apply`` on the secret password (and the certificate store's
    access key, with tls.enabled) and kept secret; ``signing`` signs the zone (dns.dnssec)."""
    if tls_credentials is None:
        return pulumi.Output.secret(bgp_password.apply(
            lambda password: render_pop(network, pop, password, signing=signing).user_data))
    return pulumi.Output.secret(pulumi.Output.all(bgp_password, tls_credentials).apply(
        lambda v: render_pop(network, pop, v[0], v[1], signing=signing).user_data))


@dataclass
class VultrAccessArgs:
    """Account-wide Vultr resources every PoP shares."""

    network: Network
    stack: str = "stack"


class VultrAccess(pulumi.ComponentResource):
    """SSH keys and the one firewall group shared by all Vultr PoPs.

    One group, not one per PoP: the rules do not depend on the PoP (admin networks, DNS, HTTP, ICMP are the same
    everywhere), so a shared group is 1 + rules resources instead of PoPs x (1 + rules), i.e. 11 instead of 200 for
    the prod stack, which matters with Vultr's API rate limit (``vultr:rateLimit``, 500 ms per call by default). Its
    rules are replaced in place without touching the instances.
    """

    ssh_key_ids: pulumi.Output[list[str]]
    firewall_group_id: pulumi.Output[str]

    def __init__(self, name: str, args: VultrAccessArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("anycast:index:VultrAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        keys = [vultr.SSHKey(f"{name}-ssh-{i}", name=f"anycast-{args.stack}-{i}", ssh_key=key, opts=child)
                for i, key in enumerate(args.network.admin.ssh_keys)]
        group = vultr.FirewallGroup(f"{name}-firewall", description=f"anycast {args.stack}: SSH from admins, DNS, HTTP",
                                    opts=child)
        rules: list[vultr.FirewallRule] = []
        group_opts = pulumi.ResourceOptions(parent=group)
        for cidr in args.network.admin.ssh_cidrs:
            ip_type = "v4" if isinstance(cidr, IPv4Network) else "v6"
            slug = str(cidr).replace(":", "-").replace("/", "-").replace(".", "-")
            rules.append(vultr.FirewallRule(
                f"{name}-ssh-{slug}", firewall_group_id=group.id, ip_type=ip_type,
                protocol="tcp", port=SSH_PORT, subnet=str(cidr.network_address), subnet_size=cidr.prefixlen,
                notes="SSH from admin network", opts=group_opts))
        for cidr in args.network.admin.monitoring_cidrs:
            ip_type = "v4" if isinstance(cidr, IPv4Network) else "v6"
            slug = str(cidr).replace(":", "-").replace("/", "-").replace(".", "-")
            rules.append(vultr.FirewallRule(
                f"{name}-metrics-{slug}", firewall_group_id=group.id, ip_type=ip_type,
                protocol="tcp", port=METRICS_PORTS, subnet=str(cidr.network_address), subnet_size=cidr.prefixlen,
                notes="Prometheus from monitoring network", opts=group_opts))
        for ip_type, any_net in (("v4", "0.0.0.0"), ("v6", "::")):
            for protocol, port in PUBLIC_RULES:
                rules.append(vultr.FirewallRule(
                    f"{name}-{protocol}{port or ''}-{ip_type}", firewall_group_id=group.id, ip_type=ip_type,
                    protocol=protocol, port=port, subnet=any_net, subnet_size=0, notes=f"{protocol} {port or ''}".strip(),
                    opts=group_opts))
        self.ssh_key_ids = pulumi.Output.all(*[k.id for k in keys]).apply(list)
        self.firewall_group_id = group.id
        self._name, self._group = name, group
        self.rule_count = len(rules)
        self.register_outputs({"sshKeyIds": self.ssh_key_ids, "firewallGroupId": self.firewall_group_id,
                               "ruleCount": self.rule_count})

    def add_status_rules(self, addresses: dict[str, tuple[pulumi.Input[str] | None, pulumi.Input[str] | None]]
                         ) -> list[vultr.FirewallRule]:
        """The status port from every PoP (tls.enabled: the reboot peer list opens it in nftables too): one rule per
        PoP, its IPv4 address (the one a PoP asks from: the peer list's URLs are IPv4 where there is one), else its
        IPv6 address. Created once the instances exist; a replaced PoP's rule is replaced with it."""
        opts = pulumi.ResourceOptions(parent=self._group)
        rules = []
        for code, (ipv4, ipv6) in addresses.items():
            ip_type, address, size = ("v4", ipv4, 32) if ipv4 is not None else ("v6", ipv6, 128)
            if address is None:
                continue
            rules.append(vultr.FirewallRule(
                f"{self._name}-status-{code}", firewall_group_id=self._group.id, ip_type=ip_type, protocol="tcp",
                port=str(HEALTH_STATUS_PORT), subnet=address, subnet_size=size,
                notes=f"reboot peer status from PoP {code}", opts=opts))
        return rules


@dataclass
class PopArgs:
    """What a PoP component needs: the model, the PoP, the secret BGP password and (Vultr) the shared access."""

    network: Network
    pop: Pop
    bgp_password: pulumi.Output[str]
    stack: str = "stack"
    ssh_key_ids: pulumi.Input[list[str]] = field(default_factory=list)
    firewall_group_id: pulumi.Input[str] | None = None
    tls_credentials: pulumi.Output[TlsCredentials] | None = None
    # Rollout: the readiness gates of the wave before (infra/derived/rollout.py); this PoP's instance waits for all of them.
    after: list[pulumi.Resource] = field(default_factory=list)
    signing: ZoneSigning | None = None  # dns.dnssec: the keys from the environment (userdata/dnssec.py)


def pop_tags(pop: Pop, stack: str) -> list[str]:
    return ["anycast", f"stack-{stack}", f"pop-{pop.code}", f"mode-{pop.mode}"]


class VultrPop(pulumi.ComponentResource):
    """One Vultr instance booting the PoP's rendered cloud-config (BIRD, Caddy, NSD, nftables, health agent), and its
    readiness gate (infra/components/gate.py): replaced with the instance, created only when the new PoP serves."""

    instance: vultr.Instance
    restart_mark: RestartMark
    gate: PopGate
    ipv4: pulumi.Output[str]
    ipv6: pulumi.Output[str]
    instance_id: pulumi.Output[str]

    def __init__(self, name: str, args: PopArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        pop = args.pop
        super().__init__("anycast:index:VultrPop", name, {"code": pop.code, "mode": pop.mode, "region": pop.region}, opts)
        assert pop.region is not None and pop.plan is not None  # the model fills both for Vultr PoPs
        user_data = user_data_output(args.network, pop, args.bgp_password, args.tls_credentials, args.signing)
        # Updated (and so timestamped) before the instance when a plan change is about to reboot it (gate.py).
        self.restart_mark = RestartMark(f"{name}-restart", pop, pulumi.ResourceOptions(parent=self, depends_on=list(args.after)))
        self.instance = vultr.Instance(
            f"{name}-instance",
            region=pop.region,
            plan=pop.plan,
            os_id=args.network.defaults.os_id,
            enable_ipv6=True,
            hostname=f"anycast-{pop.code}",
            label=f"anycast-{args.stack}-{pop.code}",
            tags=pop_tags(pop, args.stack),
            user_data=user_data,
            ssh_key_ids=args.ssh_key_ids,
            firewall_group_id=args.firewall_group_id,
            backups="disabled",
            activation_email=False,
            opts=pulumi.ResourceOptions(
                parent=self,
                # Create the new PoP before deleting the old one (the default, stated because it is the point):
                # anycast keeps serving from the old instance until the new one exists.
                delete_before_replace=False,
                # userData already forces replacement in the provider; say so for the reader of a preview.
                replace_on_changes=["userData"],
                additional_secret_outputs=["userData", "defaultPassword"],
                # Rollout waves: created (or resized) only after every PoP of the wave before passed its gate.
                depends_on=[*args.after, self.restart_mark],
            ),
        )
        self.ipv4 = self.instance.main_ip
        self.ipv6 = self.instance.v6_main_ip
        self.instance_id = self.instance.id
        self.gate = PopGate(f"{name}-gate", args.network, pop, self.instance.id, user_data,
                            gate_addresses(args.network, self.ipv4, self.ipv6), args.network.rollout.gate_timeout,
                            restart_at=self.restart_mark.at, opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({"instanceId": self.instance_id, "ipv4": self.ipv4, "ipv6": self.ipv6})


class ExternalPop(pulumi.ComponentResource):
    """A PoP at another provider: nothing is created, its cloud-config becomes a secret output to paste there."""

    user_data: pulumi.Output[str]
    ipv4: str | None
    ipv6: str | None

    def __init__(self, name: str, args: PopArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        pop = args.pop
        super().__init__("anycast:index:ExternalPop", name, {"code": pop.code, "mode": pop.mode}, opts)
        self.user_data = user_data_output(args.network, pop, args.bgp_password, args.tls_credentials, args.signing)
        unicast = pop.unicast
        self.ipv4 = str(unicast.ipv4) if unicast is not None and unicast.ipv4 is not None else None
        self.ipv6 = str(unicast.ipv6) if unicast is not None and unicast.ipv6 is not None else None
        self.register_outputs({"ipv4": self.ipv4, "ipv6": self.ipv6, "userData": self.user_data})
