"""Hand-built arguments for the policy pack's rules (pulumi_policy's own types), and the violations a rule reports."""

from __future__ import annotations

from typing import Any

from pulumi_policy import PolicyCustomTimeouts, PolicyResource, PolicyResourceOptions, ResourceValidationArgs

OPTS = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def urn(typ: str, name: str) -> str:
    return f"urn:pulumi:prod::anycast::{typ}::{name}"


def resource_args(typ: str, props: dict[str, Any], name: str = "r") -> ResourceValidationArgs:
    return ResourceValidationArgs(typ, props, urn(typ, name), name, OPTS, None)


def resource(typ: str, props: dict[str, Any], name: str = "r") -> PolicyResource:
    return PolicyResource(typ, props, urn(typ, name), name, OPTS, None, None, [], {})


def violations(fn: Any, args: Any) -> list[str]:
    found: list[str] = []
    fn(args, lambda message, urn=None: found.append(message))
    return found
