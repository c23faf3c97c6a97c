"""``PopGate``: a Pulumi dynamic resource whose ``create`` blocks until a new PoP is really serving.

Why: Pulumi deletes replaced resources only at the end of the deployment (create-before-delete; pulumi/pulumi
``pkg/resource/deploy/step_generator.go``), and Vultr reports an instance created when it is ``active``, long before
cloud-init has BIRD, Caddy and NSD running. One gate per Vultr PoP, depending on its instance, turns "created" into
"serving"; the instances of the next rollout wave depend on the gates of this one (``__main__.py``), so a broken
change stops at the canary while every old PoP still serves. What "serving" means is :mod:`infra.readiness`
(pulumi-free, so ``anycast lab rollout`` runs the very same checks).

Replacement is deliberate: Python dynamic providers' default ``diff`` lets the engine choose an *update*, and the
default ``update`` does nothing (pulumi/pulumi ``sdk/python/lib/pulumi/dynamic/dynamic.py``), so a replaced PoP would
never be polled. :meth:`PopGateProvider.diff` returns ``replaces`` when the instance id or the user-data hash change
(during a preview the new instance id is unknown, which also differs); a changed timeout or poll interval is an
in-place ``update`` that polls nothing. ``delete`` does nothing: the old instance's own delete withdraws that PoP.

Restarts in place: a ``plan`` change (``pops[].plan``, ``defaults.plan``) is no replacement (no
``willReplaceOnChanges`` in the provider schema) but Vultr applies the resize by rebooting the instance, and the
provider's update returns once the API shows the new plan (``waitForPlanUpgrade`` in vultr/terraform-provider-vultr
``vultr/resource_vultr_instance.go``), not once the PoP serves. Of the other inputs the program sends, ``label``,
``tags``, ``firewallGroupId`` and ``backups`` change without a restart, and ``enableIpv6`` is always true. So each
PoP has a :class:`RestartMark` keyed on ``RESTART_INPUTS``: the instance depends on it, so when the plan changes the
mark's update runs first and records the wall-clock time (``at``), before the resize is requested. The gate takes
``at`` as its ``restartAt`` input; a changed ``restartAt`` is an update that polls again until the PoP has restarted
after that time and is ready (:mod:`infra.readiness`, ``restarted_after``). The instances of the next wave depend on
the gate, so they wait for it, exactly as for a replacement.

Secrets: the inputs are the PoP's public facts (code, unicast address, zone) and a SHA-256 of the user data, which is
derived from the BGP password and therefore kept secret (a secret input, and ``additional_secret_outputs``).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult

from infra.contracts import DNS_PORT, DNSSEC_GATE_MARGIN_S, HEALTH_STATUS_PORT, HTTP_PORT, STATUS_PATH
from infra.model import Network, Pop
from infra.readiness import DEFAULT_CONSECUTIVE, GateTarget, rearmed, wait_ready

KIND = "anycast:rollout:PopGate"
MARK_KIND = "anycast:rollout:RestartMark"
# Instance inputs the program sets that Vultr applies in place by rebooting the instance (see the docstring).
RESTART_INPUTS = ("plan",)
# A restart was requested (the mark moved): poll again on the same instance.
RESTART_ON = ("restartAt",)
# A new instance or new user data means a new PoP to wait for: replace the gate, i.e. poll again.
REPLACE_ON = ("pop", "instanceId", "userDataHash")
# Changing how long or how often to wait, or what the gate looks at, changes nothing that needs polling now.
UPDATE_ON = ("kind", "mode", "addresses", "zone", "sessions", "timeoutSeconds", "intervalSeconds", "statusPort", "statusPath",
             "dnssecMarginSeconds")
DEFAULT_INTERVAL_S = 5


def target_from(props: dict[str, Any]) -> GateTarget:
    return GateTarget(pop=str(props["pop"]), mode=str(props["mode"]), addresses=tuple(str(a) for a in props["addresses"]),
                      zone=str(props["zone"]), sessions=int(props["sessions"]),
                      http_port=int(props.get("httpPort") or HTTP_PORT), dns_port=int(props.get("dnsPort") or DNS_PORT),
                      status_port=int(props.get("statusPort") or HEALTH_STATUS_PORT),
                      status_path=str(props.get("statusPath") or STATUS_PATH),
                      dnssec_margin=None if props.get("dnssecMarginSeconds") is None else float(props["dnssecMarginSeconds"]))


class PopGateProvider(ResourceProvider):
    """Create = wait until ready (raises :class:`infra.readiness.NotReady` after the timeout); nothing else acts."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        for key in ("pop", "mode", "zone"):
            if not isinstance(news.get(key), str) or not news.get(key):
                failures.append(CheckFailure(key, "is required"))
        for key in ("timeoutSeconds", "intervalSeconds"):
            value = news.get(key)
            if not isinstance(value, int | float) or value <= 0:
                failures.append(CheckFailure(key, f"must be a positive number of seconds, got {value!r}"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [k for k in REPLACE_ON if olds.get(k) != news.get(k)]
        changed = replaces + [k for k in RESTART_ON + UPDATE_ON if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=replaces, stables=[], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        target = target_from(props)
        result = wait_ready(target, timeout=float(props["timeoutSeconds"]), interval=float(props["intervalSeconds"]),
                            consecutive=DEFAULT_CONSECUTIVE, say=lambda line: pulumi.log.info(f"gate {line}"))
        outs = {**_inputs(props), "readySeconds": round(result.seconds, 1), "polls": result.polls}
        return CreateResult(f"gate-{target.pop}-{props['instanceId']}", outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        target = rearmed(target_from(news), olds.get("restartAt"), news.get("restartAt"))
        if target is None:  # no polling: the same instance with the same user data, and nothing restarted it
            return UpdateResult({**_inputs(news), "readySeconds": olds.get("readySeconds"), "polls": olds.get("polls")})
        result = wait_ready(target, timeout=float(news["timeoutSeconds"]), interval=float(news["intervalSeconds"]),
                            consecutive=DEFAULT_CONSECUTIVE, say=lambda line: pulumi.log.info(f"gate {line}"))
        return UpdateResult({**_inputs(news), "readySeconds": round(result.seconds, 1), "polls": result.polls})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, props)  # a refresh never polls: the gate records a past fact

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


class RestartMarkProvider(ResourceProvider):
    """Records when a restart-triggering instance input last changed: ``at`` = wall-clock seconds of that update."""

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = ["pop"] if olds.get("pop") != news.get("pop") else []
        changed = replaces + [k for k in RESTART_INPUTS if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=replaces, stables=[], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(f"restart-{props['pop']}", {**_inputs(props), "at": round(time.time(), 3)})

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult({**_inputs(news), "at": round(time.time(), 3)})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, props)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


class RestartMark(Resource):
    """When this PoP's restart-triggering inputs (``RESTART_INPUTS``) last changed; the instance depends on it."""

    kind: pulumi.Output[str]
    at: pulumi.Output[float]

    def __init__(self, name: str, pop: Pop, opts: pulumi.ResourceOptions | None = None) -> None:
        props: dict[str, Any] = {"kind": MARK_KIND, "pop": pop.code, "plan": pop.plan, "at": None}
        super().__init__(RestartMarkProvider(), name, props, opts)


def _inputs(props: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if not k.startswith("__")}


def user_data_hash(user_data: pulumi.Output[str]) -> pulumi.Output[str]:
    """SHA-256 of the rendered user data, kept secret (it is derived from the BGP password)."""
    return pulumi.Output.secret(user_data.apply(lambda text: hashlib.sha256(text.encode()).hexdigest()))


def gate_addresses(network: Network, ipv4: pulumi.Input[str], ipv6: pulumi.Input[str]) -> pulumi.Input[list[str]]:
    """The address the gate probes: IPv4 when the network has IPv4 (CI runners often lack IPv6), else IPv6."""
    return pulumi.Output.from_input(ipv4 if network.prefixes.ipv4 is not None else ipv6).apply(lambda a: [a])


class PopGate(Resource):
    """One PoP's readiness gate; type token ``pulumi-python:dynamic:Resource``, identified by ``kind``."""

    kind: pulumi.Output[str]
    pop: pulumi.Output[str]
    addresses: pulumi.Output[list[str]]
    ready_seconds: pulumi.Output[float]
    polls: pulumi.Output[int]

    def __init__(self, name: str, network: Network, pop: Pop, instance_id: pulumi.Input[str],
                 user_data: pulumi.Output[str], addresses: pulumi.Input[list[str]], timeout_s: int,
                 interval_s: int = DEFAULT_INTERVAL_S, restart_at: pulumi.Input[float] | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props: dict[str, Any] = {
            "kind": KIND, "pop": pop.code, "mode": pop.mode, "instance_id": instance_id,
            "user_data_hash": user_data_hash(user_data), "addresses": addresses, "zone": network.dns.zone,
            "sessions": len(network.announced_prefixes), "timeout_seconds": timeout_s, "interval_seconds": interval_s,
            "status_port": HEALTH_STATUS_PORT, "status_path": STATUS_PATH, "restart_at": restart_at,
            "ready_seconds": None, "polls": None,
            # A signing stack: the PoP must serve signatures that outlive the alert's margin (infra/readiness.py).
            "dnssec_margin_seconds": DNSSEC_GATE_MARGIN_S if network.dns.dnssec is not None else None,
        }
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["userDataHash"]))
        super().__init__(PopGateProvider(), name, props, opts)

    def translate_input_property(self, prop: str) -> str:
        return _CAMEL.get(prop, prop)

    def translate_output_property(self, prop: str) -> str:
        return _SNAKE.get(prop, prop)


_CAMEL = {"instance_id": "instanceId", "user_data_hash": "userDataHash", "timeout_seconds": "timeoutSeconds",
          "interval_seconds": "intervalSeconds", "status_port": "statusPort", "status_path": "statusPath",
          "ready_seconds": "readySeconds", "restart_at": "restartAt", "dnssec_margin_seconds": "dnssecMarginSeconds"}
_SNAKE = {v: k for k, v in _CAMEL.items()}
