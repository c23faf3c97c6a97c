"""The Pulumi program under mocks (one fresh interpreter per stack, cached for the whole session: several test
modules read the same run) and the provider-schema conformance of a resource's inputs."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from tests.pulumi_mocks import run_in_subprocess

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
RECORD = "aws:route53/record:Record"


@cache
def mock_run(stack: str) -> dict[str, Any]:
    return run_in_subprocess(stack)


@cache
def schemas() -> dict[str, Any]:
    vultr = json.loads((FIXTURES / "provider-schemas/vultr-schema-subset.json").read_text(encoding="utf-8"))
    aws = json.loads((FIXTURES / "provider-schemas/aws-route53-sdk-derived-subset.json").read_text(encoding="utf-8"))
    tls = json.loads((FIXTURES / "provider-schemas/aws-tls-sdk-derived-subset.json").read_text(encoding="utf-8"))
    return {"resources": {**vultr["resources"], **aws["resources"], **tls["resources"]},
            "types": {**vultr["types"], **aws["types"], **tls["types"]}}


_PY_TYPES = {"_builtins.str": "string", "_builtins.int": "integer", "_builtins.bool": "boolean",
             "_builtins.float": "number"}


def _schema_type(spec: dict[str, Any]) -> str | None:
    """Normalise a property spec of either fixture to string/integer/boolean/number/array/object/ref."""
    if "type" in spec:
        return str(spec["type"])
    if "$ref" in spec:
        return "ref"
    py = spec.get("python_type", "")
    if "Sequence[" in py:
        return "array"
    if "Mapping[" in py:
        return "object"
    for token, name in _PY_TYPES.items():
        if token in py:
            return name
    return None


def _type_ok(value: Any, expected: str | None) -> bool:
    if expected is None or value is None:
        return True
    return {
        # Pulumi's wire format (protobuf Struct) carries every number as a double, so 60 arrives as 60.0.
        "string": isinstance(value, str),
        "integer": isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer(),
        "boolean": isinstance(value, bool), "number": isinstance(value, int | float) and not isinstance(value, bool),
        "array": isinstance(value, list), "object": isinstance(value, dict), "ref": isinstance(value, dict),
    }[expected]


def schema_problems(typ: str, inputs: dict[str, Any]) -> list[str]:
    resource = schemas()["resources"][typ]
    props = resource["inputProperties"]
    problems = [f"unknown input {k}" for k in inputs if k not in props and not k.startswith("__")]
    problems += [f"missing required input {k}" for k in resource.get("requiredInputs", []) if k not in inputs]
    for key, value in inputs.items():
        spec = props.get(key)
        if spec is None:
            continue
        expected = _schema_type(spec)
        if not _type_ok(value, expected):
            problems.append(f"{key}={value!r} is not {expected}")
        item_spec = spec.get("items")
        if expected == "array" and isinstance(item_spec, dict) and "type" in item_spec:
            problems += [f"{key}[] {v!r} is not {item_spec['type']}" for v in value if not _type_ok(v, item_spec["type"])]
        if key == "geolocationRoutingPolicies":
            nested = schemas()["types"]["aws:route53/RecordGeolocationRoutingPolicy:RecordGeolocationRoutingPolicy"]
            for policy in value:
                problems += [f"{key}[].{k} unknown" for k in policy if k not in nested["properties"]]
                if sum(k in policy for k in ("continent", "country")) != 1:
                    problems.append(f"{key}[] needs exactly one of continent/country: {policy}")
        if key == "type" and typ == RECORD:
            enum = schemas()["types"]["aws:route53/RecordType:RecordType"]["enum"]
            if value not in enum:
                problems.append(f"type {value} not in {enum}")
    return problems
