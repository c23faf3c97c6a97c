"""The Pulumi program (__main__.py) under mocks, for the prod and dev stacks, each run in a fresh interpreter.

Checks every registered resource: counts, inputs, options, the GeoDNS record sets and health checks, the outputs,
that secrets stay secret, and that every input conforms to the provider schemas in tests/fixtures/provider-schemas.
"""

from __future__ import annotations

import json
from collections import Counter
from ipaddress import ip_address
from typing import Any

import pytest

from infra.derived.georules import GeoRecordSet, resolve
from infra.derived.outputs import OUTPUT_KEYS
from infra.model import Network
from tests.helpers.cloud_config import with_written
from tests.helpers.program import FIXTURES, mock_run, schema_problems, schemas
from tests.pulumi_mocks import TEST_BGP_PASSWORD, TEST_VULTR_API_KEY, ZONE_ID, run_in_subprocess, stack_output_json

INSTANCE = "vultr:index/instance:Instance"
RECORD = "aws:route53/record:Record"
CHECK = "aws:route53/healthCheck:HealthCheck"


@pytest.fixture(scope="module", params=["prod", "dev"])
def run(request: pytest.FixtureRequest) -> dict[str, Any]:
    return mock_run(request.param)


def of_type(run: dict[str, Any], typ: str) -> list[dict[str, Any]]:
    return [r for r in run["resources"] if r["type"] == typ]


def output(run: dict[str, Any], key: str) -> Any:
    return run["outputs"][key]["value"]


# --- counts and instances ------------------------------------------------------------------------------------------

def test_prod_counts(prod_network: Network) -> None:
    run = mock_run("prod")
    counts = Counter(r["type"] for r in run["resources"])
    assert counts[INSTANCE] == 18
    assert counts["anycast:index:VultrPop"] == 18
    assert counts["anycast:index:ExternalPop"] == 2
    assert counts["anycast:index:Network"] == 1
    assert counts["vultr:index/sSHKey:SSHKey"] == 1
    assert counts["vultr:index/firewallGroup:FirewallGroup"] == 1
    # SSH, metrics, public (v4 + v6), and (tls.enabled: the reboot peer list) the status port from each of the 20 PoPs
    assert counts["vultr:index/firewallRule:FirewallRule"] == 2 + 2 + 2 * 5 + 20
    assert counts["aws:s3/bucketObjectv2:BucketObjectv2"] == 1
    assert counts[CHECK] == 4  # sao and jnb, v4 and v6
    # delegation + 3 names x (A, AAAA) x (default, SA, AF) + TLS: the challenge zone's delegation and www's CNAME
    assert counts[RECORD] == 1 + 3 * 2 * 3 + 2
    # RIPE route + route6 (ripe.manage); a gate and a restart mark per Vultr PoP
    assert counts["pulumi-python:dynamic:Resource"] == 2 + 2 * 18
    labels = {r["inputs"]["label"] for r in of_type(run, INSTANCE)}
    assert not any("hkg" in label or "maa" in label for label in labels)


def test_dev_counts() -> None:
    run = mock_run("dev")
    counts = Counter(r["type"] for r in run["resources"])
    assert counts[INSTANCE] == 3
    assert counts[CHECK] == 2
    assert counts[RECORD] == 1 + 3 * 2 * 2 + 2
    assert counts["pulumi-python:dynamic:Resource"] == 2 * 3  # the readiness gates and restart marks; no RIPE objects


def test_instances(run: dict[str, Any], request: pytest.FixtureRequest) -> None:
    from infra.model.stack import load_network

    network = load_network(run["stack"])
    firewall = of_type(run, "vultr:index/firewallGroup:FirewallGroup")[0]
    for inst in of_type(run, INSTANCE):
        i = inst["inputs"]
        code = inst["name"].removesuffix("-instance")
        pop = network.pop(code)
        assert i["region"] == pop.region and i["plan"] == pop.plan == "vc2-1c-1gb"
        assert i["osId"] == network.defaults.os_id == 2136
        assert i["enableIpv6"] is True
        assert i["hostname"] == f"anycast-{code}" and i["label"] == f"anycast-{run['stack']}-{code}"
        assert set(i["tags"]) == {"anycast", f"stack-{run['stack']}", f"pop-{code}", f"mode-{pop.mode}"}
        assert i["userData"].startswith("#cloud-config\n")
        assert f"password \"{TEST_BGP_PASSWORD}\"" in with_written(i["userData"])
        assert "userData" in inst["secretInputs"], "user data carries the BGP password and must stay secret"
        assert i["sshKeyIds"] == ["vultr-ssh-0-id"]
        assert i["firewallGroupId"] == "vultr-firewall-id" and firewall["name"] == "vultr-firewall"
        assert inst["deleteBeforeReplace"] is False, "create the new PoP before deleting the old one"
        assert "userData" in inst["replaceOnChanges"]
        assert inst["parent"].endswith(f"anycast:index:VultrPop::{code}")


def test_firewall_rules() -> None:
    rules = {(r["inputs"]["ipType"], r["inputs"]["protocol"], r["inputs"].get("port"), r["inputs"]["subnet"],
              r["inputs"]["subnetSize"]) for r in of_type(mock_run("prod"), "vultr:index/firewallRule:FirewallRule")}
    assert ("v4", "tcp", "22", "198.51.100.0", 24) in rules
    assert ("v6", "tcp", "22", "2001:db8:ffff::", 48) in rules
    for ip_type, anywhere in (("v4", "0.0.0.0"), ("v6", "::")):
        for proto, port in (("udp", "53"), ("tcp", "53"), ("tcp", "80"), ("tcp", "443")):
            assert (ip_type, proto, port, anywhere, 0) in rules
    assert not any(r[2] == "22" and r[4] == 0 for r in rules), "SSH only from admin networks"
    # bird_exporter (9324) and the health agent's metrics (9325) from the monitoring networks only.
    assert ("v4", "tcp", "9324:9325", "203.0.113.64", 28) in rules
    assert ("v6", "tcp", "9324:9325", "2001:db8:fffe::", 64) in rules
    assert not any(r[2] == "9324:9325" and r[4] == 0 for r in rules)


# --- GeoDNS ---------------------------------------------------------------------------------------------------------

def test_delegation_and_zone_lookup(run: dict[str, Any]) -> None:
    delegation = [r for r in of_type(run, RECORD) if r["inputs"]["type"] == "NS" and r["name"].startswith("geodns-")]
    assert len(delegation) == 1
    d = delegation[0]["inputs"]
    assert d["name"] == "cdn.example.com" and d["zoneId"] == ZONE_ID
    assert d["records"] == ["ns1.example.com.", "ns2.example.com."]
    # The parent zone is looked up, not created (createParentZone is false); the one created zone is TLS's challenge zone.
    assert [z["inputs"]["name"] for z in of_type(run, "aws:route53/zone:Zone")] == ["acme.example.com"]


def _record_sets(run: dict[str, Any]) -> dict[tuple[str, str], list[GeoRecordSet[str]]]:
    checks = {r["name"].removeprefix("geodns-hc-"): f"hc-{r['name']}" for r in of_type(run, CHECK)}  # the mock id
    by_id = {v: k for k, v in checks.items()}
    groups: dict[tuple[str, str], list[GeoRecordSet[str]]] = {}
    for r in of_type(run, RECORD):
        i = r["inputs"]
        if i["type"] == "NS" or not r["name"].startswith("geodns-"):  # the delegation; tls-* (tests/unit/test_tls.py)
            continue
        (geo,) = i["geolocationRoutingPolicies"]
        key = by_id.get(i.get("healthCheckId", ""))
        groups.setdefault((i["name"], i["type"]), []).append(GeoRecordSet(
            name=i["name"], type=i["type"], set_identifier=i["setIdentifier"], values=tuple(i["records"]),
            continent=geo.get("continent"), country=geo.get("country"), subdivision=geo.get("subdivision"),
            pop=key.split("-")[0] if key else None, health_check=key))
    return groups


def test_geo_records_and_health_checks(run: dict[str, Any]) -> None:
    from infra.model.stack import load_network

    network = load_network(run["stack"])
    pops = output(run, "pops")
    checks = {r["name"]: r["inputs"] for r in of_type(run, CHECK)}
    for pop in network.unicast_pops:
        for fam, key in (("v4", "ipv4"), ("v6", "ipv6")):
            c = checks[f"geodns-hc-{pop.code}-{fam}"]
            assert c == {**c, "type": "HTTP", "ipAddress": pops[pop.code][key], "port": 80, "resourcePath": "/healthz"}
    groups = _record_sets(run)
    assert set(groups) == {(n, t) for n in ("ns1.example.com", "ns2.example.com", "www.example.com") for t in ("A", "AAAA")}
    for r in of_type(run, RECORD):
        if r["inputs"]["type"] != "NS" and r["name"].startswith("geodns-"):
            assert r["inputs"]["ttl"] == network.dns.ttl == 60 and r["inputs"]["zoneId"] == ZONE_ID
    for (_name, rtype), group in groups.items():
        assert len({g.set_identifier for g in group}) == len(group)
        fam = "ipv4" if rtype == "A" else "ipv6"
        service = str(getattr(network.service, fam))
        assert resolve(group, "DE").values == (service,)  # type: ignore[union-attr]
        assert resolve(group, "BR").values == (pops["sao"][fam],)  # type: ignore[union-attr]
        assert resolve(group, "BR", {"sao"}).values == (service,), "a failed unicast PoP falls back to anycast"  # type: ignore[union-attr]
        if run["stack"] == "prod":
            assert resolve(group, "ZA").values == (pops["jnb"][fam],)  # type: ignore[union-attr]
            assert resolve(group, "TR").values == (service,)  # type: ignore[union-attr]


# --- outputs --------------------------------------------------------------------------------------------------------

def test_outputs(run: dict[str, Any]) -> None:
    assert set(run["outputs"]) == {*OUTPUT_KEYS, "externalCloudConfig"}
    for key in OUTPUT_KEYS:
        assert run["outputs"][key]["secret"] is False, key
    assert run["outputs"]["externalCloudConfig"]["secret"] is True
    net = output(run, "network")
    assert net["asn"] == 64500 and net["prefixes"] == {"ipv4": "192.0.2.0/24", "ipv6": "2001:db8:1000::/48"}
    assert net["service"] == {"ipv4": "192.0.2.1", "ipv6": "2001:db8:1000::1"}
    for code, pop in output(run, "pops").items():
        assert set(pop) >= {"provider", "region", "city", "country", "continent", "mode", "ipv4", "ipv6", "instanceId"}
        if pop["provider"] == "vultr":
            assert ip_address(pop["ipv4"]).version == 4 and ip_address(pop["ipv6"]).version == 6
            assert pop["instanceId"].endswith(pop["region"])
        else:
            assert pop["instanceId"] is None and pop["region"] is None, code
    probes = output(run, "probes")
    assert {p["pop"] for p in probes["http"] if p["pop"]} == set(output(run, "pops"))
    assert all(p["expectXPop"] == [p["pop"]] for p in probes["http"] if p["pop"])
    assert {p["pop"] for p in probes["dns"] if p["pop"]} == {c for c, p in output(run, "pops").items() if p["mode"] == "unicast"}


def test_prod_outputs_cost_and_external_pops(prod_network: Network) -> None:
    run = mock_run("prod")
    cost = output(run, "cost")
    assert cost["perPop"]["ams"]["usdPerMonth"] == 5.0
    assert cost["perPop"]["hkg"]["source"] == "plans.json external_default"
    assert cost["totalUsdPerMonth"] == 18 * 5.0 + 2 * 50.0 == 190.0  # the guide's "about $190 a month"
    pops = output(run, "pops")
    assert pops["hkg"]["ipv4"] == "198.51.100.10" and pops["maa"]["ipv6"] == "2001:db8:ffff:2::10"
    external = output(run, "externalCloudConfig")
    assert set(external) == {"hkg", "maa"}
    assert all(v.startswith("#cloud-config\n") for v in external.values())
    assert "neighbor 198.51.100.1 as 64501" in with_written(external["hkg"])


def test_no_secret_in_plain_outputs_or_plain_inputs(run: dict[str, Any]) -> None:
    for key, out in run["outputs"].items():
        if not out["secret"]:
            text = json.dumps(out["value"])
            assert TEST_BGP_PASSWORD not in text, key
            assert TEST_VULTR_API_KEY not in text, key
    for r in run["resources"]:
        for prop, value in r["inputs"].items():
            if TEST_BGP_PASSWORD in json.dumps(value):
                assert prop in r["secretInputs"], f"{r['name']}.{prop} holds the BGP password in plain text"
    assert TEST_BGP_PASSWORD not in json.dumps(stack_output_json(run["outputs"]))


def test_recorded_outputs_fixture_matches_the_program() -> None:
    """tests/fixtures/stack-outputs-prod.json is `pulumi stack output --json` of the mock run (rewrite it if this fails:
    python -c 'from tests.pulumi_mocks import record_outputs; record_outputs("prod")')."""
    recorded = json.loads((FIXTURES / "stack-outputs-prod.json").read_text(encoding="utf-8"))
    assert recorded == json.loads(json.dumps(stack_output_json(mock_run("prod")["outputs"])))
    assert recorded["externalCloudConfig"] == "[secret]"


# --- schema conformance ---------------------------------------------------------------------------------------------

def test_every_custom_resource_conforms_to_the_provider_schema(run: dict[str, Any]) -> None:
    checked = 0
    for r in run["resources"]:
        if not r["custom"] or r["type"].startswith("pulumi-python:dynamic"):
            continue
        assert r["type"] in schemas()["resources"], f"no schema for {r['type']} ({r['name']})"
        assert schema_problems(r["type"], r["inputs"]) == [], f"{r['type']} {r['name']}"
        checked += 1
    assert checked == sum(1 for r in run["resources"] if r["custom"] and "dynamic" not in r["type"])


def test_schema_check_catches_mistakes() -> None:
    assert "osId='2136' is not integer" in schema_problems(INSTANCE, {"plan": "p", "region": "ams", "osId": "2136"})
    assert "missing required input region" in schema_problems(INSTANCE, {"plan": "p"})
    assert "unknown input enableIPv6" in schema_problems(INSTANCE, {"plan": "p", "region": "r", "enableIPv6": True})
    bad_geo = {"name": "n", "type": "A", "zoneId": "z", "geolocationRoutingPolicies": [{"contnent": "EU"}]}
    assert any("contnent" in p for p in schema_problems(RECORD, bad_geo))


def test_config_error_is_reported_with_field_lines() -> None:
    doc = json.loads(json.dumps(__import__("infra.model.stack", fromlist=["x"]).read_stack_config("dev")["anycast:network"]))
    doc["prefixes"]["ipv4"] = "192.0.2.0/25"
    with pytest.raises(RuntimeError) as err:
        run_in_subprocess("dev", network=doc)
    assert "prefixes.ipv4" in str(err.value) and "longer than /24" in str(err.value)


def test_free_stack_is_ipv6_only_in_dns() -> None:
    run = mock_run("free")
    assert len(of_type(run, INSTANCE)) == 3
    types = {r["inputs"]["type"] for r in of_type(run, RECORD)}
    assert types == {"NS", "AAAA"}  # no IPv4 service address, so no A records
    assert not of_type(run, CHECK)  # no unicast PoPs
    assert output(run, "network")["originAsn"] == 20473  # Vultr re-originates the assigned private ASN
    ssh = [r["inputs"]["ipType"] for r in run["resources"]
           if r["type"] == "vultr:index/firewallRule:FirewallRule" and r["inputs"].get("port") == "22"]
    assert ssh == ["v6"]
    for r in run["resources"]:
        if r["custom"] and "dynamic" not in r["type"]:
            assert schema_problems(r["type"], r["inputs"]) == [], r["name"]
