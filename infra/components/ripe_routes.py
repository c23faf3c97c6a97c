"""``RouteObject``: a Pulumi dynamic resource for one route/route6 object, through the same client as the CLI.

Credentials never enter the resource: the methods read ``RIPE_API_KEY`` from the environment of the provider process,
or the ``anycast:ripeApiKey`` secret that the engine passes to ``configure``, kept in a module global of that process
(not on the provider object, which is pickled into the state). Inputs and outputs are the object's public fields.

Safety: an object that exists without this stack's managed remark is adopted read-only (``managed: false``): it is
never updated and never deleted, and ``delete`` only removes objects that carry this stack's remark.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import ip_network
from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    ConfigureRequest,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)

from infra.model import Network
from infra.ripe.client import RipeDbClient
from infra.ripe.credentials import RIPE_API_KEY_CONFIG, ApiKey, ripe_api_key
from infra.ripe.desired import RouteSpec, managing_stack, route_specs
from infra.ripe.errors import CredentialError, RipeProtocolError, RipeRefused
from infra.ripe.rpsl import RpslObject
from infra.ripe.transport import RetryPolicy

KIND = "anycast:ripe:RouteObject"
# Changing any of these changes the object's key (or where it lives): a new object, then the old one deleted.
REPLACE_ON = ("objectKey", "objectType", "prefix", "origin", "database")
UPDATE_ON = ("descr", "maintainer", "stack", "baseUrl")
# Filled by configure() inside the provider process only; never part of the pickled provider.
_PROVIDER_CONFIG: dict[str, str] = {}


@dataclass
class ProviderRuntime:
    """Retry policy and sleep for the provider's client; tests make them short."""

    policy: RetryPolicy | None = None
    sleep: Any = None


PROVIDER_RUNTIME = ProviderRuntime()


def _spec(props: dict[str, Any]) -> RouteSpec:
    return RouteSpec(ip_network(props["prefix"]), int(str(props["origin"]).upper().removeprefix("AS")),
                     props["maintainer"], props["descr"], props["stack"])


def _client(props: dict[str, Any], need_key: bool = True) -> RipeDbClient:
    """A client for ``props``; ``need_key=False`` (refresh) reads anonymously when no key is configured."""
    try:
        key: ApiKey | None = ripe_api_key(config_value=_PROVIDER_CONFIG.get(RIPE_API_KEY_CONFIG))
    except CredentialError:
        if need_key:
            raise
        key = None
    return RipeDbClient(props["database"], key, props.get("baseUrl") or None, PROVIDER_RUNTIME.policy,
                        PROVIDER_RUNTIME.sleep, props["maintainer"])


def _outs(props: dict[str, Any], managed: bool) -> dict[str, Any]:
    return {**{k: v for k, v in props.items() if not k.startswith("__")}, "managed": managed}


class RouteObjectProvider(ResourceProvider):
    """CRUD of one route(6) object; every method builds its own client (the provider runs in another process)."""

    def configure(self, req: ConfigureRequest) -> None:
        value = req.config.get(RIPE_API_KEY_CONFIG)
        if value:
            _PROVIDER_CONFIG[RIPE_API_KEY_CONFIG] = str(value)

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        try:
            spec = _spec(news)
            if news.get("objectKey") != spec.key or news.get("objectType") != spec.type:
                failures.append(CheckFailure("objectKey", f"must be {spec.key} ({spec.type}) for this prefix and origin"))
        except (KeyError, ValueError) as exc:
            failures.append(CheckFailure("prefix", f"prefix/origin/maintainer/descr/stack are required and valid: {exc}"))
        if news.get("database") not in ("ripe", "test"):
            failures.append(CheckFailure("database", "must be ripe or test"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [k for k in REPLACE_ON if olds.get(k) != news.get(k)]
        changed = replaces + [k for k in UPDATE_ON if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=replaces, stables=[], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        spec, client = _spec(props), _client(props)
        actual = client.lookup(spec.type, spec.key)
        if actual is None:
            try:
                client.create(spec.to_object(client.source))
            except (RipeRefused, RipeProtocolError) as exc:
                # 409: created meanwhile (or by an earlier attempt that timed out); unreadable answer: check.
                if isinstance(exc, RipeRefused) and exc.status != 409:
                    raise
                actual = client.lookup(spec.type, spec.key)
                if actual is None:
                    raise
                return CreateResult(spec.key, _outs(props, self._reconcile(client, spec, actual)))
            return CreateResult(spec.key, _outs(props, True))
        return CreateResult(spec.key, _outs(props, self._reconcile(client, spec, actual)))

    @staticmethod
    def _reconcile(client: RipeDbClient, spec: RouteSpec, actual: RpslObject) -> bool:
        """Bring an existing object we manage to the wanted state; True if we manage it, False if it is foreign."""
        if managing_stack(actual) != spec.stack:
            return False
        if spec.differences(actual, client.source):
            client.update(spec.merged(actual, client.source))
        return True

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        client = _client(props, need_key=False)
        actual = client.lookup(props["objectType"], id_)
        if actual is None:
            return ReadResult("", {})  # gone: the engine drops it from the state
        outs = _outs(props, managing_stack(actual) == props["stack"])
        outs["descr"] = (actual.values("descr") or [""])[0]
        outs["maintainer"] = (actual.values("mnt-by") or [""])[0]
        return ReadResult(id_, outs)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        spec, client = _spec(news), _client(news)
        actual = client.lookup(spec.type, spec.key)
        if actual is None:
            client.create(spec.to_object(client.source))
            return UpdateResult(_outs(news, True))
        return UpdateResult(_outs(news, self._reconcile(client, spec, actual)))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        client = _client(props)
        actual = client.lookup(props["objectType"], id_)
        if actual is None or managing_stack(actual) != props["stack"]:
            return  # gone already, or not ours: never delete what this stack did not create
        client.delete(props["objectType"], id_, reason=f"removed from anycast stack {props['stack']}")


class RouteObject(Resource):
    """One route/route6 object; type token ``pulumi-python:dynamic:Resource``, identified by ``kind``."""

    kind: pulumi.Output[str]
    object_key: pulumi.Output[str]
    object_type: pulumi.Output[str]
    prefix: pulumi.Output[str]
    origin: pulumi.Output[str]
    maintainer: pulumi.Output[str]
    descr: pulumi.Output[str]
    stack: pulumi.Output[str]
    database: pulumi.Output[str]
    managed: pulumi.Output[bool]

    def __init__(self, name: str, spec: RouteSpec, database: str, base_url: str | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props: dict[str, Any] = {
            "kind": KIND, "object_key": spec.key, "object_type": spec.type, "prefix": str(spec.prefix),
            "origin": f"AS{spec.origin}", "maintainer": spec.maintainer, "descr": spec.descr, "stack": spec.stack,
            "database": database, "base_url": base_url, "managed": None,
        }
        super().__init__(RouteObjectProvider(), name, props, opts)

    # Attributes are snake_case; the engine, the provider methods and the policy pack see camelCase (objectKey).
    def translate_input_property(self, prop: str) -> str:
        return _CAMEL.get(prop, prop)

    def translate_output_property(self, prop: str) -> str:
        return _SNAKE.get(prop, prop)


_CAMEL = {"object_key": "objectKey", "object_type": "objectType", "base_url": "baseUrl"}
_SNAKE = {v: k for k, v in _CAMEL.items()}


def resource_name(spec: RouteSpec) -> str:
    # "::" in an IPv6 prefix would break the URN, so only letters and digits survive.
    return f"ripe-{spec.type}-" + re.sub(r"[^0-9A-Za-z]+", "-", str(spec.prefix)).strip("-")


def route_objects(network: Network, opts: pulumi.ResourceOptions | None = None,
                  stack: str | None = None, base_url: str | None = None) -> list[RouteObject]:
    """One RouteObject per announced prefix when ``network.ripe.manage`` is true, else []."""
    if not network.ripe.manage:
        return []
    stack = stack or pulumi.get_stack()
    return [RouteObject(resource_name(spec), spec, network.ripe.database, base_url, opts)
            for spec in route_specs(network, stack)]
