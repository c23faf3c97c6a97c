"""``anycast preflight``'s DNS checks against a local DNS server on 127.0.0.1 (resolver and parent in one): the parent
zone's delegation against Route53's name servers, the anycast zone's NS and glue at the parent; no public resolver."""

from __future__ import annotations

import time

import pytest

from infra.model import Network
from infra.model.stack import load_network
from infra.preflight.dns import DnsOptions, dns_rows
from infra.preflight.rows import Row, Status
from tests.dns_fake_server import FakeDns

ROUTE53 = ["ns-2048.awsdns-64.com", "ns-2049.awsdns-65.net"]  # moto's delegation set, as Route53 names its servers


@pytest.fixture(scope="module")
def dev() -> Network:
    return load_network("dev")


def records(**extra: list[str]) -> dict[tuple[str, str], list[str]]:
    base = {("example.com", "NS"): [n + "." for n in ROUTE53], ("ns-2048.awsdns-64.com", "A"): ["127.0.0.1"],
            ("ns-2049.awsdns-65.net", "A"): ["127.0.0.1"]}
    base.update({(k.split("__")[0].replace("_", "."), k.split("__")[1]): v for k, v in extra.items()})
    return base


def run(net: Network, fake: FakeDns, route53: list[str] | None = ROUTE53) -> dict[str, Row]:
    rows = dns_rows(net, DnsOptions("127.0.0.1", fake.port, timeout=0.5), route53)
    return {r.check: r for r in rows}


def test_before_the_first_deploy(dev: Network) -> None:
    with FakeDns(records()) as fake:
        rows = run(dev, fake)
    assert rows["delegation of example.com"].status is Status.PASS
    child = rows["delegation of cdn.example.com"]
    assert child.status is Status.PASS and child.detail.startswith("not delegated yet")
    assert ("cdn.example.com", "NS", False) in fake.queries  # asked the parent, not recursively


def test_a_delegation_with_glue_passes(dev: Network) -> None:
    recs = records(cdn_example_com__NS=["ns1.example.com.", "ns2.example.com."], ns1_example_com__A=["192.0.2.1"],
                   ns2_example_com__A=["192.0.2.1"])
    with FakeDns(recs, referrals={"cdn.example.com"}) as fake:
        child = run(dev, fake)["delegation of cdn.example.com"]
    assert child.status is Status.PASS and child.detail == "NS ns1.example.com, ns2.example.com, with addresses at the parent"


def test_a_delegation_elsewhere_fails(dev: Network) -> None:
    with FakeDns(records(cdn_example_com__NS=["ns.other.net."]), referrals={"cdn.example.com"}) as fake:
        child = run(dev, fake)["delegation of cdn.example.com"]
    assert child.status is Status.FAIL and "delegates it to ns.other.net" in child.detail


def test_missing_addresses_at_the_parent_warn(dev: Network) -> None:
    with FakeDns(records(cdn_example_com__NS=["ns1.example.com.", "ns2.example.com."]), referrals={"cdn.example.com"}) as fake:
        child = run(dev, fake)["delegation of cdn.example.com"]
    assert child.status is Status.WARN and "no address for ns1.example.com, ns2.example.com" in child.detail


def test_parent_not_delegated_to_route53_fails(dev: Network) -> None:
    with FakeDns(records()) as fake:
        row = run(dev, fake, route53=["ns-1.awsdns-01.org", "ns-2.awsdns-02.co.uk"])["delegation of example.com"]
    assert row.status is Status.FAIL and "registrar" in row.fix
    with FakeDns({}) as fake:
        row = run(dev, fake)["delegation of example.com"]
    assert row.status is Status.FAIL and "has no NS in public DNS" in row.detail


def test_a_silent_resolver_ends_in_bounded_time(dev: Network) -> None:
    with FakeDns(records(), silent=True) as fake:
        start = time.monotonic()
        rows = run(dev, fake)
    assert time.monotonic() - start < 2
    assert rows["resolver"].status is Status.FAIL and "no answer for example.com NS within 0.5 s" in rows["resolver"].detail
