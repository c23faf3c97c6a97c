"""The RouteObject dynamic provider (methods called directly, against the fake server) and the resource under mocks."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pulumi
import pytest
from pulumi.dynamic import ConfigureRequest
from pulumi.dynamic.config import Config
from pulumi.dynamic.dynamic import serialize_provider

from infra.components import ripe_routes as resource
from infra.components.ripe_routes import KIND, RouteObjectProvider, route_objects
from infra.model import Network
from infra.ripe.desired import RouteSpec, managed_remark
from infra.ripe.errors import CredentialError, RipeRefused
from infra.ripe.transport import RetryPolicy
from tests.ripe_fake_server import FakeRipe

SECRET = "s3cr3t-Test-Key"
KEY = f"TESTKEYID:{SECRET}"
V4 = "192.0.2.0/24AS64500"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRipe]:
    monkeypatch.setattr(resource, "PROVIDER_RUNTIME", resource.ProviderRuntime(
        RetryPolicy(attempts=2, backoff=0.01, budget=2.0, read_timeout=0.3), lambda _s: None))
    monkeypatch.setattr(resource, "_PROVIDER_CONFIG", {})
    monkeypatch.setenv("RIPE_API_KEY", KEY)
    with FakeRipe() as server:
        yield server


def props(fake: FakeRipe, **changes: Any) -> dict[str, Any]:
    base = {"kind": KIND, "objectKey": V4, "objectType": "route", "prefix": "192.0.2.0/24", "origin": "AS64500",
            "maintainer": "EXAMPLE-MNT", "descr": "Example anycast network", "stack": "prod", "database": "ripe",
            "baseUrl": fake.url, "managed": None}
    return {**base, **changes}


def test_create_read_update_delete(fake: FakeRipe) -> None:
    p = RouteObjectProvider()
    created = p.create(props(fake))
    assert created.id == V4 and created.outs is not None
    assert {k: created.outs[k] for k in ("kind", "objectKey", "objectType", "prefix", "origin", "managed")} == {
        "kind": KIND, "objectKey": V4, "objectType": "route", "prefix": "192.0.2.0/24", "origin": "AS64500",
        "managed": True}
    assert [w.method for w in fake.writes] == ["POST"]

    read = p.read(V4, created.outs)
    assert read.outs is not None
    assert read.id == V4 and read.outs["descr"] == "Example anycast network" and read.outs["managed"] is True

    updated = p.update(V4, props(fake), props(fake, descr="new text"))
    assert updated.outs is not None and updated.outs["descr"] == "new text"
    assert [w.method for w in fake.writes] == ["POST", "PUT"]
    p.update(V4, props(fake, descr="new text"), props(fake, descr="new text"))
    assert len(fake.writes) == 2  # nothing to change: no write

    p.delete(V4, props(fake))
    assert [w.method for w in fake.writes] == ["POST", "PUT", "DELETE"] and fake.get("ripe", "route", V4) is None
    assert p.read(V4, props(fake)).id == ""  # gone: dropped from the state on refresh
    p.delete(V4, props(fake))  # already gone: no error, no write
    assert len(fake.writes) == 3


def test_existing_managed_object_is_adopted_without_a_write(fake: FakeRipe) -> None:
    fake.put("ripe", [("route", "192.0.2.0/24"), ("descr", "Example anycast network"), ("origin", "AS64500"),
                      ("remarks", managed_remark("prod")), ("mnt-by", "EXAMPLE-MNT"), ("source", "RIPE")])
    outs = RouteObjectProvider().create(props(fake)).outs
    assert outs is not None and outs["managed"] is True and fake.writes == []


def test_foreign_object_is_never_changed_or_deleted(fake: FakeRipe) -> None:
    foreign = [("route", "192.0.2.0/24"), ("descr", "the lessor's"), ("origin", "AS64500"), ("mnt-by", "LESSOR-MNT"),
               ("source", "RIPE")]
    fake.put("ripe", foreign)
    before = fake.get("ripe", "route", V4)
    p = RouteObjectProvider()
    outs = p.create(props(fake)).outs
    assert outs is not None and outs["managed"] is False
    p.update(V4, props(fake), props(fake, descr="other"))
    p.delete(V4, props(fake))
    assert fake.writes == [] and fake.get("ripe", "route", V4) == before


def test_refusal_is_a_readable_error_without_the_key(fake: FakeRipe) -> None:
    fake.key_maintainers["TESTKEYID"] = set()
    with pytest.raises(RipeRefused) as info:
        RouteObjectProvider().create(props(fake))
    assert "not accepted for EXAMPLE-MNT" in str(info.value) and SECRET not in str(info.value)


def test_key_from_configure_when_the_environment_has_none(fake: FakeRipe, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RIPE_API_KEY")
    p = RouteObjectProvider()
    with pytest.raises(CredentialError):
        p.create(props(fake))
    p.configure(ConfigureRequest(Config({"anycast:ripeApiKey": KEY}, "anycast")))
    assert p.read(V4, props(fake)).id == ""  # refresh reads anonymously: no key needed
    assert p.create(props(fake)).outs is not None and len(fake.writes) == 1
    # The key sits in the provider process's module state, never in the pickled provider stored in the state.
    pickled = base64.b64decode(serialize_provider(p))
    assert SECRET.encode() not in pickled and b"TESTKEYID" not in pickled
    assert SECRET not in repr(vars(p))


def test_diff_replaces_on_key_changes_and_updates_in_place_otherwise(fake: FakeRipe) -> None:
    p = RouteObjectProvider()
    same = p.diff(V4, props(fake), props(fake))
    assert same.changes is False and same.replaces == []
    descr = p.diff(V4, props(fake), props(fake, descr="x"))
    assert descr.changes is True and descr.replaces == []
    moved = p.diff(V4, props(fake), props(fake, origin="AS64501", objectKey="192.0.2.0/24AS64501"))
    assert moved.changes is True and set(moved.replaces or []) == {"origin", "objectKey"}
    assert moved.delete_before_replace is False  # a new key: create the new object first, then delete the old


def test_check_rejects_inconsistent_inputs(fake: FakeRipe) -> None:
    p = RouteObjectProvider()
    assert p.check({}, props(fake)).failures == []
    bad = p.check({}, props(fake, objectKey="192.0.2.0/24AS1", database="prod"))
    assert [f.property for f in bad.failures] == ["objectKey", "database"]
    assert p.check({}, props(fake, prefix="192.0.2.1/24")).failures[0].property == "prefix"


# ---- the resource under Pulumi mocks --------------------------------------------------------------------------

class Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.created: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.created.append(args)
        return args.inputs.get("objectKey", args.name) + "_id", {**args.inputs, "managed": True}

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        return {}, None


@pytest.fixture
def mocks() -> Mocks:
    m = Mocks()
    pulumi.runtime.set_mocks(m, project="anycast", stack="prod", preview=False)
    return m


@pulumi.runtime.test
def test_route_objects_under_mocks(mocks: Mocks, prod_network: Network, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("RIPE_API_KEY", KEY)
    objs = route_objects(prod_network)
    assert len(objs) == 2

    def check(values: list[Any]) -> None:
        urn4, key4, type4, prefix4, origin4, kind4, urn6, key6, type6, prefix6 = values
        assert (key4, type4, prefix4, origin4, kind4) == (V4, "route", "192.0.2.0/24", "AS64500", KIND), urn4
        assert (key6, type6, prefix6) == ("2001:db8:1000::/48AS64500", "route6", "2001:db8:1000::/48"), urn6
        assert "pulumi-python:dynamic:Resource::ripe-route6-2001-db8-1000-48" in urn6
        assert {a.typ for a in mocks.created} == {"pulumi-python:dynamic:Resource"}
        for a in mocks.created:
            assert a.inputs["kind"] == KIND and a.inputs["stack"] == "prod" and a.inputs["maintainer"] == "EXAMPLE-MNT"
            assert a.inputs["objectKey"] in (V4, "2001:db8:1000::/48AS64500") and "object_key" not in a.inputs
            assert a.inputs["objectType"] in ("route", "route6") and a.inputs["origin"] == "AS64500"
            assert SECRET not in str(a.inputs) and "TESTKEYID" not in str(a.inputs)

    v4, v6 = objs
    return pulumi.Output.all(v4.urn, v4.object_key, v4.object_type, v4.prefix, v4.origin, v4.kind,
                             v6.urn, v6.object_key, v6.object_type, v6.prefix).apply(check)


@pulumi.runtime.test
def test_no_resources_when_ripe_is_not_managed(mocks: Mocks, dev_network: Network) -> None:
    assert route_objects(dev_network) == [] and mocks.created == []


def test_vultr_assigned_origin_in_specs(free_network: Network) -> None:
    spec = RouteSpec(free_network.prefixes.ipv6, free_network.roa_origin_asn, "EXAMPLE-MNT", "x", "free")
    assert spec.key == "2001:db8:2000::/48AS20473" and resource.resource_name(spec) == "ripe-route6-2001-db8-2000-48"
