"""Every policy of policies/rules.py with hand-built ResourceValidationArgs / StackValidationArgs: passing and failing
cases, and the whole pack over the resources of the prod mock run."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pulumi_policy import (
    EnforcementLevel,
    PolicyResource,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from infra.derived.facts import network_facts
from infra.model import Network
from policies import rules
from policies.bird import bgp_exports, bird_conf_from_user_data, export_problems, prefix_sets
from tests.conftest import TEST_PASSWORD
from tests.helpers.policy_args import resource, resource_args, violations
from tests.helpers.program import mock_run
from userdata.render import render_pop

PROD_FACTS: dict[str, Any] = {}


@pytest.fixture
def facts(prod_network: Network) -> dict[str, Any]:
    return copy.deepcopy(network_facts(prod_network))


def net_args(facts: dict[str, Any]) -> ResourceValidationArgs:
    return resource_args(rules.NETWORK_TYPE, facts, "network")


# --- network component rules ---------------------------------------------------------------------------------------

def test_prefix_length(facts: dict[str, Any]) -> None:
    assert violations(rules.prefix_length, net_args(facts)) == []
    facts["prefixes"] = {"ipv4": "192.0.2.0/25", "ipv6": "2001:db8:1000::/56"}
    found = violations(rules.prefix_length, net_args(facts))
    assert len(found) == 2 and "longer than /24" in found[0] and "longer than /48" in found[1]


def test_prefix_length_ignores_other_resources(facts: dict[str, Any]) -> None:
    facts["prefixes"] = {"ipv4": "192.0.2.0/25"}
    assert violations(rules.prefix_length, resource_args(rules.INSTANCE_TYPE, facts)) == []


def test_service_in_prefixes(facts: dict[str, Any]) -> None:
    assert violations(rules.service_in_prefixes, net_args(facts)) == []
    facts["service"] = {"ipv4": "198.51.100.1", "ipv6": "2001:db8:1000::1"}
    assert violations(rules.service_in_prefixes, net_args(facts)) == [
        "service address 198.51.100.1 is outside the announced prefixes (192.0.2.0/24, 2001:db8:1000::/48)"]


@pytest.mark.parametrize(("prefixes", "expected"), [
    ({"ipv4": "10.1.0.0/24", "ipv6": "2001:db8:1000::/48"}, ["10.1.0.0/24 overlaps bogon space 10.0.0.0/8"]),
    ({"ipv4": "192.168.0.0/16"}, ["192.168.0.0/16 overlaps bogon space 192.168.0.0/16"]),
    ({"ipv6": "fd00:1::/48"}, ["fd00:1::/48 is outside global unicast space 2000::/3"]),
    ({"ipv6": "2002:c000:200::/48"}, ["2002:c000:200::/48 overlaps bogon space 2002::/16"]),
])
def test_no_bogons(facts: dict[str, Any], prefixes: dict[str, str], expected: list[str]) -> None:
    assert violations(rules.no_bogons, net_args(facts)) == []
    facts["prefixes"] = prefixes
    assert violations(rules.no_bogons, net_args(facts)) == expected


def test_documentation_space_is_advisory_example_only(facts: dict[str, Any]) -> None:
    found = violations(rules.documentation_resources, net_args(facts))
    assert len(found) == 3 and all("example only" in m for m in found)
    facts.update(asn=213000, prefixes={"ipv4": "45.11.20.0/24", "ipv6": "2a0e:b100::/48"})
    assert violations(rules.documentation_resources, net_args(facts)) == []
    (level,) = [lvl for name, _, _, lvl in rules.RESOURCE_RULES if name == "documentation-resources-example-only"]
    assert level == EnforcementLevel.ADVISORY


@pytest.mark.parametrize(("asn", "source", "bad"), [
    (64500, "own", False), (213000, "own", False), (4200000001, "vultr-assigned", False), (65534, "vultr-assigned", False),
    (0, "own", True), (23456, "own", True), (65535, "own", True), (4294967295, "own", True),
    (64512, "own", True), (213000, "vultr-assigned", True), (2**32, "own", True), ("64500", "own", True),
    (64500.0, "own", False), (23456.0, "own", True),  # the engine passes numbers as doubles
])
def test_asn_valid(facts: dict[str, Any], asn: Any, source: str, bad: bool) -> None:
    facts.update(asn=asn, asnSource=source)
    assert bool(violations(rules.asn_valid, net_args(facts))) is bad


# --- Vultr instance rules ------------------------------------------------------------------------------------------

def test_instance_ipv6() -> None:
    ok = {"plan": "vc2-1c-1gb", "region": "ams", "enableIpv6": True}
    assert violations(rules.instance_ipv6, resource_args(rules.INSTANCE_TYPE, ok)) == []
    for props in ({**ok, "enableIpv6": False}, {"plan": "vc2-1c-1gb", "region": "ams"}):
        assert len(violations(rules.instance_ipv6, resource_args(rules.INSTANCE_TYPE, props))) == 1


def test_instance_cloud_config(prod_network: Network) -> None:
    user_data = render_pop(prod_network, prod_network.pop("ams"), TEST_PASSWORD).user_data
    assert violations(rules.instance_cloud_config, resource_args(rules.INSTANCE_TYPE, {"userData": user_data})) == []
    for bad in ("  #cloud-config\n", "#!/bin/sh\necho hi\n", "\n#cloud-config\n", None):
        found = violations(rules.instance_cloud_config, resource_args(rules.INSTANCE_TYPE, {"userData": bad}))
        assert len(found) == 1, bad


# --- stack rules ------------------------------------------------------------------------------------------------------

def geo(name: str, rtype: str, ident: str | None, **area: str) -> PolicyResource:
    props: dict[str, Any] = {"zoneId": "Z1", "name": name, "type": rtype, "records": ["192.0.2.1"],
                             "geolocationRoutingPolicies": [area]}
    if ident is not None:
        props["setIdentifier"] = ident
    return resource(rules.RECORD_TYPE, props, f"{name}-{rtype}-{ident}")


def test_geolocation_groups() -> None:
    good = [geo("ns1.example.com", "A", "default", country="*"), geo("ns1.example.com", "A", "sao-sa", continent="SA"),
            geo("ns1.example.com", "AAAA", "default", country="*"),
            resource(rules.RECORD_TYPE, {"zoneId": "Z1", "name": "cdn.example.com", "type": "NS", "records": ["ns1."]})]
    assert violations(rules.geolocation_groups, StackValidationArgs(good)) == []
    no_default = [geo("ns1.example.com", "A", "sao-sa", continent="SA")]
    assert violations(rules.geolocation_groups, StackValidationArgs(no_default)) == [
        "ns1.example.com A: no default record (country '*'): clients outside every area get no answer"]
    dupes = [geo("ns1.example.com", "A", "default", country="*"), geo("ns1.example.com", "A", "default", continent="SA")]
    assert violations(rules.geolocation_groups, StackValidationArgs(dupes)) == [
        "ns1.example.com A: setIdentifier used more than once: default"]
    missing = [geo("ns1.example.com", "A", None, country="*")]
    assert violations(rules.geolocation_groups, StackValidationArgs(missing)) == [
        "ns1.example.com A: a geolocation record needs a setIdentifier"]


def instance_with(conf: str) -> PolicyResource:
    import yaml

    user_data = "#cloud-config\n" + yaml.safe_dump({"write_files": [{"path": "/etc/bird/bird.conf", "content": conf}]})
    return resource(rules.INSTANCE_TYPE, {"enableIpv6": True, "userData": user_data}, "ams-instance")


def test_bgp_export_own_prefixes_on_rendered_configs(prod_network: Network, facts: dict[str, Any]) -> None:
    network = resource(rules.NETWORK_TYPE, facts, "network")
    instances = [resource(rules.INSTANCE_TYPE, {"userData": render_pop(prod_network, p, TEST_PASSWORD).user_data}, p.code)
                 for p in prod_network.pops if p.is_vultr]
    assert violations(rules.bgp_export_own_prefixes, StackValidationArgs([network, *instances])) == []


def test_bgp_export_rejects_leaks(prod_network: Network, facts: dict[str, Any]) -> None:
    network = resource(rules.NETWORK_TYPE, facts, "network")
    conf = bird_conf_from_user_data(render_pop(prod_network, prod_network.pop("ams"), TEST_PASSWORD).user_data)
    assert conf is not None
    leaky_set = conf.replace("define ANYCAST_V4 = [ 192.0.2.0/24", "define ANYCAST_V4 = [ 198.51.100.0/24, 192.0.2.0/24")
    export_all = conf.replace("export filter export_upstream6;", "export all;")
    no_set = conf.replace("if ! (net ~ ANYCAST_V4) then reject;", "")
    cases = {leaky_set: "ANYCAST_V4 holds 198.51.100.0/24", export_all: "upstream6 channel ipv6: 'export all'",
             no_set: "upstream4 channel ipv4: export filter export_upstream4 can accept a route that no prefix set limits"}
    for bad, expected in cases.items():
        assert bad != conf
        found = violations(rules.bgp_export_own_prefixes, StackValidationArgs([network, instance_with(bad)]))
        assert len(found) == 1 and expected in found[0], found
    assert violations(rules.bgp_export_own_prefixes, StackValidationArgs([network, instance_with(conf)])) == []
    shell = resource(rules.INSTANCE_TYPE, {"userData": "#!/bin/sh\n"}, "x")
    assert "carries no bird.conf" in violations(rules.bgp_export_own_prefixes, StackValidationArgs([network, shell]))[0]
    assert "exactly one anycast:index:Network" in violations(rules.bgp_export_own_prefixes, StackValidationArgs([shell]))[0]


def test_bird_reader() -> None:
    conf = """
    define ANYCAST_V4 = [ 192.0.2.0/24, 192.0.2.1/32 ];  # comment
    define ANYCAST_V6 = [ 2001:db8:1000::/48{48,64} ];
    filter f4 { if net ~ ANYCAST_V4 then accept; reject; }
    protocol bgp a { ipv4 { import none; export filter f4; }; }
    protocol bgp b { ipv6 { export where net ~ ANYCAST_V6; }; }
    protocol bgp c { ipv4 { export none; }; }
    """
    assert [str(n) for n in prefix_sets(conf)["ANYCAST_V6"]] == ["2001:db8:1000::/48"]
    assert [(e.protocol, e.statement, e.sets) for e in bgp_exports(conf)] == [
        ("a", "filter f4", ("ANYCAST_V4",)), ("b", "where net ~ ANYCAST_V6", ("ANYCAST_V6",)), ("c", "none", ())]
    import ipaddress

    allowed = [ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8:1000::/48")]
    assert export_problems(conf, allowed) == []
    assert export_problems(conf, allowed[:1]) == [
        "protocol b channel ipv6: ANYCAST_V6 holds 2001:db8:1000::/48, which is not the network's (192.0.2.0/24)"]


def route_object(prefix: str, origin: str) -> PolicyResource:
    kind = "route" if ":" not in prefix else "route6"
    return resource("pulumi-python:dynamic:Resource", {"kind": rules.ROUTE_OBJECT_KIND, "objectType": kind,
                                                        "prefix": prefix, "origin": origin}, f"ripe-{prefix}")


def test_route_objects_cover(facts: dict[str, Any]) -> None:
    network = resource(rules.NETWORK_TYPE, facts, "network")
    both = [route_object("192.0.2.0/24", "AS64500"), route_object("2001:db8:1000::/48", "AS64500")]
    assert violations(rules.route_objects_cover, StackValidationArgs([network, *both])) == []
    found = violations(rules.route_objects_cover, StackValidationArgs([network, both[0]]))
    assert len(found) == 1 and found[0].startswith("2001:db8:1000::/48 is announced from AS64500") and "route6" in found[0]
    wrong_origin = [route_object("192.0.2.0/24", "AS64501"), both[1]]
    assert len(violations(rules.route_objects_cover, StackValidationArgs([network, *wrong_origin]))) == 1
    as_doubles = resource(rules.NETWORK_TYPE, {**facts, "asn": 64500.0, "originAsn": 64500.0}, "network")
    assert violations(rules.route_objects_cover, StackValidationArgs([as_doubles, both[0]]))[0].startswith(
        "2001:db8:1000::/48 is announced from AS64500 ")
    off = resource(rules.NETWORK_TYPE, {**facts, "ripeManage": False}, "network")
    assert violations(rules.route_objects_cover, StackValidationArgs([off])) == []


def test_route_objects_use_the_roa_origin_for_a_vultr_assigned_asn(free_network: Network) -> None:
    facts = {**network_facts(free_network), "ripeManage": True}
    network = resource(rules.NETWORK_TYPE, facts, "network")
    assert violations(rules.route_objects_cover, StackValidationArgs([network, route_object("2001:db8:2000::/48", "AS20473")])) == []
    assert len(violations(rules.route_objects_cover, StackValidationArgs([network, route_object("2001:db8:2000::/48", "AS65534")]))) == 1


# --- the pack ---------------------------------------------------------------------------------------------------------

def test_pack_builds_kebab_case_policies_with_descriptions() -> None:
    policies = rules.policies()
    names = [p.name for p in policies]
    assert len(names) == len(set(names)) == len(rules.RESOURCE_RULES) + len(rules.STACK_RULES)
    assert all(n == n.lower() and " " not in n for n in names)
    assert all(p.description.endswith(".") for p in policies)
    assert sum(isinstance(p, StackValidationPolicy) for p in policies) == 3
    assert sum(isinstance(p, ResourceValidationPolicy) for p in policies) == 8


def test_pack_passes_the_prod_program() -> None:
    run = mock_run("prod")
    found: dict[str, list[str]] = {}
    stack_resources = [resource(r["type"], r["inputs"], r["name"]) for r in run["resources"]]
    for name, _, fn, _level in rules.RESOURCE_RULES:
        for r in run["resources"]:
            found.setdefault(name, []).extend(violations(fn, resource_args(r["type"], r["inputs"], r["name"])))
    for name, _, fn, _level in rules.STACK_RULES:
        found.setdefault(name, []).extend(violations(fn, StackValidationArgs(stack_resources)))
    assert {k: v for k, v in found.items() if v and k != "documentation-resources-example-only"} == {}
    assert len(found["documentation-resources-example-only"]) == 3  # the example stack uses documentation numbers
