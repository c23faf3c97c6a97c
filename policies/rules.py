"""Policy rules for the anycast program, importable and testable without the policy engine.

Each rule is a plain ``(args, report_violation)`` function; ``policies/__main__.py`` wraps them in a PolicyPack.
Network facts come from the ``anycast:index:Network`` component the program registers (``infra/derived/facts.py``): its
inputs carry asn, asnSource, originAsn, prefixes, service, the PoP roles and ripeManage. The checks reuse
``infra.model`` (asn_problem, the bogon lists, is_documentation_prefix) so the pack and the model agree.
Property names are the engine's camelCase (``enableIpv6``, ``userData``, ``geolocationRoutingPolicies``).
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyResource,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from infra.derived.facts import NETWORK_TYPE
from infra.derived.tls_iam import policy_problems
from infra.model import (
    asn_problem,
    bogon_problem,
    is_documentation_asn,
    is_documentation_prefix,
    prefix_length_problem,
)
from policies.bird import bird_conf_from_user_data, export_problems

INSTANCE_TYPE = "vultr:index/instance:Instance"
RECORD_TYPE = "aws:route53/record:Record"
ROUTE_OBJECT_KIND = "anycast:ripe:RouteObject"

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
# report_violation(message, urn=None): pulumi_policy's ReportViolation type makes urn positional; the engine's does not.
ReportViolation = Callable[..., None]


def _prefixes(props: Mapping[str, Any]) -> list[Net]:
    raw = props.get("prefixes") or {}
    return [ipaddress.ip_network(raw[k], strict=False) for k in ("ipv4", "ipv6") if raw.get(k)]


def _service(props: Mapping[str, Any]) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    raw = props.get("service") or {}
    return [ipaddress.ip_address(raw[k]) for k in ("ipv4", "ipv6") if raw.get(k)]

IAM_POLICY_TYPES = ("aws:iam/userPolicy:UserPolicy", "aws:iam/policy:Policy", "aws:iam/rolePolicy:RolePolicy",
                    "aws:iam/groupPolicy:GroupPolicy")


# --- resource rules on the anycast:index:Network component -------------------------------------------------------

def prefix_length(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != NETWORK_TYPE:
        return
    for net in _prefixes(args.props):
        if problem := prefix_length_problem(net):
            report(problem)


def service_in_prefixes(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != NETWORK_TYPE:
        return
    nets = _prefixes(args.props)
    for addr in _service(args.props):
        if not any(addr.version == n.version and addr in n for n in nets):
            report(f"service address {addr} is outside the announced prefixes ({', '.join(map(str, nets)) or 'none'})")


def no_bogons(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != NETWORK_TYPE:
        return
    for net in _prefixes(args.props):
        if problem := bogon_problem(net):
            report(problem)


def documentation_resources(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Advisory: documentation prefixes and ASNs are fine for examples and the lab, never on the Internet."""
    if args.resource_type != NETWORK_TYPE:
        return
    for net in _prefixes(args.props):
        if is_documentation_prefix(net):
            report(f"{net} is documentation space: example only, replace it with your own prefix before going live")
    asn = args.props.get("asn")
    if isinstance(asn, int | float) and float(asn).is_integer() and is_documentation_asn(int(asn)):
        report(f"AS{asn} is a documentation ASN (RFC 5398): example only, replace it with your own")


def asn_valid(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != NETWORK_TYPE:
        return
    asn, source = args.props.get("asn"), args.props.get("asnSource", "own")
    if isinstance(asn, float) and asn.is_integer():
        asn = int(asn)  # the engine's wire format carries every number as a double
    if not isinstance(asn, int) or isinstance(asn, bool):
        report(f"asn {asn!r} is not a number")
    elif problem := asn_problem(asn, str(source)):
        report(problem)


# --- resource rules on Vultr instances ------------------------------------------------------------------------------

def instance_ipv6(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == INSTANCE_TYPE and args.props.get("enableIpv6") is not True:
        report("enableIpv6 must be true: every PoP announces the IPv6 prefix and serves on the IPv6 service address")


def instance_cloud_config(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != INSTANCE_TYPE:
        return
    user_data = args.props.get("userData")
    if not isinstance(user_data, str) or not user_data.startswith("#cloud-config\n"):
        report("userData must be a cloud-config starting with '#cloud-config' on line 1 (cloud-init ignores it otherwise)")


# --- stack rules ------------------------------------------------------------------------------------------------------

def _network(resources: Iterable[PolicyResource], report: ReportViolation) -> Mapping[str, Any] | None:
    found = [r for r in resources if r.resource_type == NETWORK_TYPE]
    if len(found) != 1:
        report(f"the program must register exactly one {NETWORK_TYPE} component (found {len(found)}); "
               "the stack policies read the network's facts from it")
        return None
    return found[0].props


def geolocation_groups(args: StackValidationArgs, report: ReportViolation) -> None:
    groups: dict[tuple[str, str, str], list[PolicyResource]] = defaultdict(list)
    for r in args.resources:
        if r.resource_type == RECORD_TYPE and r.props.get("geolocationRoutingPolicies"):
            key = (str(r.props.get("zoneId", "")), str(r.props.get("name")), str(r.props.get("type")))
            groups[key].append(r)
    for (_, name, rtype), records in sorted(groups.items()):
        idents = [r.props.get("setIdentifier") for r in records]
        for r, ident in zip(records, idents, strict=True):
            if not ident:
                report(f"{name} {rtype}: a geolocation record needs a setIdentifier", r.urn)
        dupes = sorted({str(i) for i in idents if i and idents.count(i) > 1})
        if dupes:
            report(f"{name} {rtype}: setIdentifier used more than once: {', '.join(dupes)}")
        if not any(p.get("country") == "*" for r in records for p in r.props.get("geolocationRoutingPolicies") or []):
            report(f"{name} {rtype}: no default record (country '*'): clients outside every area get no answer")


def bgp_export_own_prefixes(args: StackValidationArgs, report: ReportViolation) -> None:
    network = _network(args.resources, report)
    if network is None:
        return
    allowed = _prefixes(network)
    for r in args.resources:
        if r.resource_type != INSTANCE_TYPE:
            continue
        user_data = r.props.get("userData")
        conf = bird_conf_from_user_data(user_data) if isinstance(user_data, str) else None
        if conf is None:
            report("userData carries no bird.conf in write_files; cannot check what this PoP exports", r.urn)
            continue
        for problem in export_problems(conf, allowed):
            report(problem, r.urn)


def _origin(value: Any) -> int | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    try:
        return int(str(value).upper().removeprefix("AS"))
    except ValueError:
        return None


def route_objects_cover(args: StackValidationArgs, report: ReportViolation) -> None:
    network = _network(args.resources, report)
    if network is None or not network.get("ripeManage") or not network.get("anycastPops"):
        return
    origin = _origin(network.get("originAsn", network.get("asn")))
    covered = {(ipaddress.ip_network(str(r.props["prefix"]), strict=False), _origin(r.props.get("origin")))
               for r in args.resources
               if r.props.get("kind") == ROUTE_OBJECT_KIND or r.props.get("objectType") in ("route", "route6")
               if r.props.get("prefix")}
    pops = ", ".join(network.get("anycastPops") or [])
    for net in _prefixes(network):
        if (net, origin) not in covered:
            kind = "route" if net.version == 4 else "route6"
            report(f"{net} is announced from AS{origin} by {pops} but no {kind} object resource covers it "
                   "(ripe.manage is true)")


def acme_identity_least_privilege(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """The program's IAM policies (the certificate issuer and readers, infra/derived/tls_iam.py) grant nothing beyond changing
    the ACME challenge TXT records and reading/writing the certificate object. A policy still unknown during a
    preview (it names the challenge zone's id) is checked at ``pulumi up``."""
    if args.resource_type not in IAM_POLICY_TYPES:
        return
    document = args.props.get("policy")
    if not isinstance(document, str):
        return
    for problem in policy_problems(document):
        report(f"{args.name}: {problem}")


Rule = Callable[[Any, ReportViolation], None]

RESOURCE_RULES: list[tuple[str, str, Rule, EnforcementLevel]] = [
    ("announced-prefix-length", "Announced IPv4 prefixes are /24 or shorter and IPv6 prefixes /48 or shorter.",
     prefix_length, EnforcementLevel.MANDATORY),
    ("service-addresses-in-prefixes", "The anycast service addresses lie inside the announced prefixes.",
     service_in_prefixes, EnforcementLevel.MANDATORY),
    ("no-bogon-prefixes", "Announced prefixes stay out of bogon space.", no_bogons, EnforcementLevel.MANDATORY),
    ("documentation-resources-example-only", "Documentation prefixes and ASNs are for examples only.",
     documentation_resources, EnforcementLevel.ADVISORY),
    ("asn-valid", "The origin ASN is valid; a private ASN only with Vultr's assigned-ASN mode.", asn_valid,
     EnforcementLevel.MANDATORY),
    ("vultr-instance-ipv6", "Every Vultr instance has IPv6 enabled.", instance_ipv6, EnforcementLevel.MANDATORY),
    ("vultr-instance-cloud-config", "Every Vultr instance boots a user data document starting with #cloud-config.",
     instance_cloud_config, EnforcementLevel.MANDATORY),
    ("acme-identity-txt-only", "IAM identities may change only the ACME challenge TXT records and the certificate object.",
     acme_identity_least_privilege, EnforcementLevel.MANDATORY),
]

STACK_RULES: list[tuple[str, str, Rule, EnforcementLevel]] = [
    ("geolocation-groups-complete", "Every geolocation group has a default record and unique set identifiers.",
     geolocation_groups, EnforcementLevel.MANDATORY),
    ("bgp-export-own-prefixes-only", "Each PoP's BIRD exports over BGP only the network's own prefixes.",
     bgp_export_own_prefixes, EnforcementLevel.MANDATORY),
    ("route-objects-cover-announcements", "With RIPE management on, a route object covers every anycast announcement.",
     route_objects_cover, EnforcementLevel.MANDATORY),
]


def policies() -> list[Policy]:
    """The pack's policies, built from the rule tables (``policies/__main__.py`` passes them to PolicyPack)."""
    out: list[Policy] = []
    for name, description, fn, level in RESOURCE_RULES:
        out.append(ResourceValidationPolicy(name=name, description=description, validate=fn, enforcement_level=level))
    for name, description, fn, level in STACK_RULES:
        out.append(StackValidationPolicy(name=name, description=description, validate=fn, enforcement_level=level))
    return out
