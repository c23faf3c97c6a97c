"""Pulumi.yaml and every Pulumi.<stack>.yaml pass the checks the Pulumi CLI makes before it runs the program.

The rules come from pulumi/pulumi (tests/pulumi_cli_rules.py cites the Go files); the project schema is
tests/fixtures/pulumi/project-subset.schema.json, and with ``PULUMI_PROJECT_SCHEMA=<path to upstream project.json>``
(CI downloads it at the pinned commit and checks its sha256) every schema case also runs against Pulumi's own file.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.model import stack_yaml
from tests.pulumi_cli_rules import (
    OBJECT_TYPE_SINCE,
    PROJECT_JSON_SHA256,
    PULUMI_TAG,
    Project,
    PulumiRuleError,
    load_project,
    load_stack,
    program_config,
    schema_without_object_type,
    validate_stack_and_apply_project_config,
)

ROOT = Path(__file__).resolve().parent.parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "pulumi"
STACKS = sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml"))
# What docs/deploy.md tells the user to set with `pulumi config set --secret` before the first preview.
REQUIRED_SECRETS = ["anycast:bgpPassword"]


def _schemas() -> Iterator[tuple[str, dict[str, Any]]]:
    yield "subset", json.loads((FIXTURES / "project-subset.schema.json").read_text(encoding="utf-8"))
    upstream = os.environ.get("PULUMI_PROJECT_SCHEMA")
    if upstream:
        data = Path(upstream).read_bytes()
        assert hashlib.sha256(data).hexdigest() == PROJECT_JSON_SHA256, f"{upstream} is not project.json of {PULUMI_TAG}"
        yield "upstream", json.loads(data)


SCHEMAS = dict(_schemas())


def project_doc() -> dict[str, Any]:
    return dict(stack_yaml.load(ROOT / "Pulumi.yaml"))  # Pulumi.yaml too is read with Go's yaml.v3


def stack_doc(stack: str) -> dict[str, Any]:
    return dict(stack_yaml.load(ROOT / f"Pulumi.{stack}.yaml"))


def with_secrets(doc: dict[str, Any]) -> dict[str, Any]:
    """The stack file after `pulumi config set --secret KEY` for every required secret ({secure: X} stands for X's ciphertext)."""
    out = copy.deepcopy(doc)
    for key in REQUIRED_SECRETS:
        out["config"][key] = {"secure": f"plaintext-of-{key}"}
    return out


def apply(project_raw: Any, stack: str, stack_raw: Any, schema: dict[str, Any] | None = None) -> dict[tuple[str, str], Any]:
    project = load_project(project_raw, schema or SCHEMAS["subset"])
    return validate_stack_and_apply_project_config(stack, project, load_stack(stack_raw, project))


@pytest.fixture(params=sorted(SCHEMAS))
def schema(request: pytest.FixtureRequest) -> dict[str, Any]:
    return SCHEMAS[request.param]


def test_the_stacks_are_the_shipped_ones() -> None:
    assert STACKS == ["dev", "free", "prod"]


def test_pulumi_yaml_loads_with_the_project_schema_of_every_supported_cli(schema: dict[str, Any]) -> None:
    project = load_project(project_doc(), schema)
    assert project.name == "anycast"
    # Also with the schema CLIs had before `object` became a config type: this project needs no newer CLI for it.
    load_project(project_doc(), schema_without_object_type(schema))


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_loads_once_its_secrets_are_set(stack: str) -> None:
    with pytest.raises(PulumiRuleError) as exc:
        apply(project_doc(), stack, stack_doc(stack))
    assert str(exc.value) == f"Stack '{stack}' is missing configuration value '{REQUIRED_SECRETS[0]}'"
    merged = apply(project_doc(), stack, with_secrets(stack_doc(stack)))
    config = program_config(merged)
    # Optional keys get their defaults from Pulumi.yaml: the program reads "" as "no RIPE key" and {} as "no prices".
    assert config["anycast:ripeApiKey"] == ""
    assert json.loads(config["anycast:externalPopCosts"]) == (stack_doc(stack)["config"].get("anycast:externalPopCosts") or {})
    assert json.loads(config["anycast:network"]) == stack_doc(stack)["config"]["anycast:network"]


def test_the_docs_tell_users_to_set_each_required_secret() -> None:
    deploy = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    project = load_project(project_doc(), SCHEMAS["subset"])
    required = sorted(k for k, ct in project.config.items() if ct.default is None and ct.value is None)
    assert required == sorted(["anycast:network", *REQUIRED_SECRETS])
    for key in REQUIRED_SECRETS:
        assert project.config[key].secret and project.config[key].type == "string"
        assert f"pulumi config set --secret {key}" in deploy


def test_the_program_runs_with_the_config_the_cli_hands_it(tmp_path: Path) -> None:
    """`__main__.py` under mocks with exactly what the CLI passes after applying Pulumi.yaml's defaults."""
    config = program_config(apply(project_doc(), "dev", with_secrets(stack_doc("dev"))))
    config["vultr:apiKey"] = "MOCK-VULTR-API-KEY-0000"
    script = ("import json, sys; from tests.pulumi_mocks import run_program; "
              "r = run_program('dev', json.load(sys.stdin)); print(json.dumps(r['outputs']['cost'], default=str))")
    proc = subprocess.run([sys.executable, "-c", script], input=json.dumps(config), capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cost = json.loads(proc.stdout.strip().splitlines()[-1])["value"]
    assert cost["totalUsdPerMonth"] > 0 and set(cost["perPop"]) == {"ams", "ewr", "sao"}


# --- the project file as it was before the fix (tests/fixtures/pulumi/Pulumi.yaml.refused) is refused -----------------


def old_project() -> Any:
    return stack_yaml.load(FIXTURES / "Pulumi.yaml.refused")


@pytest.mark.parametrize("stack", STACKS)
def test_the_old_project_file_is_refused_for_every_stack(stack: str) -> None:
    with pytest.raises(PulumiRuleError) as exc:
        apply(old_project(), stack, with_secrets(stack_doc(stack)))
    missing = ["anycast:ripeApiKey"] + ([] if "anycast:externalPopCosts" in stack_doc(stack)["config"] else ["anycast:externalPopCosts"])
    if len(missing) == 1:
        assert str(exc.value) == f"Stack '{stack}' is missing configuration value 'anycast:ripeApiKey'"
    else:
        assert str(exc.value) == f"Stack '{stack}' is missing configuration values 'anycast:externalPopCosts' and 'anycast:ripeApiKey'"


def test_the_old_project_file_fails_the_schema_of_clis_before_object_types(schema: dict[str, Any]) -> None:
    with pytest.raises(PulumiRuleError, match=r"#/config/anycast:(network|externalPopCosts)"):
        load_project(old_project(), schema_without_object_type(schema))
    load_project(old_project(), schema)  # from OBJECT_TYPE_SINCE on, `type: object` itself is accepted
    assert OBJECT_TYPE_SINCE == "v3.186.0"


# --- generated refusals: every declaration and every stack value, mutated ----------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _declaration_mutations(key: str) -> Iterator[tuple[str, Mutation, str]]:
    """(id, mutation of Pulumi.yaml, the refusal it must cause) for one declared key."""

    def set_attr(attr: str, value: Any) -> Mutation:
        return lambda doc: doc["config"][key].__setitem__(attr, value)

    yield f"{key}-type-float", set_attr("type", "float"), "#/config/" + key
    yield f"{key}-type-list", set_attr("type", ["string"]), "#/config/" + key
    yield f"{key}-unknown-attribute", set_attr("defualt", 1), "#/config/" + key
    yield f"{key}-secret-not-bool", set_attr("secret", "yes"), "#/config/" + key
    yield f"{key}-description-not-string", set_attr("description", 42), "#/config/" + key
    yield f"{key}-array-without-items", lambda d: d["config"][key].update(type="array", default=None), "does not specify the underlying type"
    yield f"{key}-default-and-value", lambda d: d["config"][key].update(default="a", value="b"), "cannot have both a 'default' and 'value'"
    yield f"{key}-integer-default-text", lambda d: d["config"][key].update(type="integer", default="ten"), "is not of the expected type 'integer'"
    yield f"{key}-boolean-default-number", lambda d: d["config"][key].update(type="boolean", default=3), "is not of the expected type 'boolean'"
    yield f"{key}-string-default-map", lambda d: d["config"][key].update(type="string", default={"a": 1}), "is not of the expected type 'string'"
    yield f"{key}-null", lambda d: d["config"].__setitem__(key, None), "#/config/" + key
    yield f"{key}-float-shorthand", lambda d: d["config"].__setitem__(key, 1.5), "#/config/" + key
    other = key.replace("anycast:", "aws:")
    yield f"{other}-typed", lambda d: d["config"].__setitem__(other, {"type": "string", "value": "x"}), "should not define a type"
    yield f"{other}-default", lambda d: d["config"].__setitem__(other, {"default": "x"}), "should not define a default value"
    yield f"{other}-no-value", lambda d: d["config"].__setitem__(other, {"description": "x"}), "must provide an attribute 'value'"


def _project_mutations() -> Iterator[tuple[str, Mutation, str]]:
    yield "no-name", lambda d: d.pop("name"), "project is missing a 'name' attribute"
    yield "empty-name", lambda d: d.__setitem__("name", ""), "non-empty string 'name'"
    yield "name-not-string", lambda d: d.__setitem__("name", 7), "non-empty string 'name'"
    yield "runtime-extra-key", lambda d: d["runtime"].__setitem__("version", "3.11"), "#/runtime"
    yield "runtime-empty-name", lambda d: d.__setitem__("runtime", ""), "#/runtime"
    yield "options-not-map", lambda d: d["runtime"].__setitem__("options", ["pip"]), "#/runtime"
    yield "config-dir-and-stackConfigDir", lambda d: d.update(config="stacks", stackConfigDir="other"), "Should not use both"
    for key in project_doc()["config"]:
        yield from _declaration_mutations(key)


PROJECT_MUTATIONS = list(_project_mutations())


@pytest.mark.parametrize(("case", "mutate", "refusal"), PROJECT_MUTATIONS, ids=[m[0] for m in PROJECT_MUTATIONS])
def test_mutated_project_files_are_refused(case: str, mutate: Mutation, refusal: str, schema: dict[str, Any]) -> None:
    doc = copy.deepcopy(project_doc())
    mutate(doc)
    with pytest.raises(PulumiRuleError) as exc:
        apply(doc, "dev", with_secrets(stack_doc("dev")), schema)
    assert refusal in str(exc.value), f"{case}: {exc.value}"


def test_mutation_cases_cover_every_declared_key() -> None:
    keys = project_doc()["config"]
    assert len(PROJECT_MUTATIONS) == 7 + 15 * len(keys) and len(keys) == 4


def _put(key: str, value: Any) -> Mutation:
    return lambda doc: doc["config"].__setitem__(key, value)


def _drop(key: str) -> Mutation:
    return lambda doc: doc["config"].pop(key)


def _stack_mutations(project: Project) -> Iterator[tuple[str, Mutation, str]]:
    for key, ct in sorted(project.config.items()):
        if ct.default is None:
            yield f"{key}-removed", _drop(key), f"missing configuration value '{key}'"
        if ct.secret and ct.type is not None:
            yield f"{key}-in-plain-text", _put(key, "hunter2"), "must be encrypted as it's secret"
        if ct.type == "string":
            yield f"{key}-object", _put(key, {"secure": None, "a": 1}), "must be encrypted" if ct.secret else "must be of type 'string'"
            yield f"{key}-secret-object", _put(key, {"a": {"secure": "x"}}), "must be of type 'string'"
    yield "three-colons", _put("anycast:a:b", "x"), "could not parse anycast:a:b as a configuration key"


@pytest.mark.parametrize("stack", STACKS)
def test_mutated_stack_files_are_refused(stack: str) -> None:
    project = load_project(project_doc(), SCHEMAS["subset"])
    cases = list(_stack_mutations(project))
    assert len(cases) >= 5
    for case, mutate, refusal in cases:
        doc = with_secrets(stack_doc(stack))
        mutate(doc)
        with pytest.raises(PulumiRuleError) as exc:
            apply(project_doc(), stack, doc)
        assert refusal in str(exc.value), f"{stack} {case}: {exc.value}"


def test_rules_accept_what_the_cli_accepts() -> None:
    """The edges that must pass, so that the refusals above are not a blanket 'no'."""
    doc = copy.deepcopy(project_doc())
    doc["config"].update({"anycast:port": {"type": "integer", "default": 8080}, "anycast:flag": {"type": "boolean", "default": False},
                          "anycast:names": {"type": "array", "items": {"type": "string"}, "default": ["a"]},
                          "anycast:short": 5, "aws:region": "us-east-1", "vultr:rateLimit": {"value": 700}})
    stack = with_secrets(stack_doc("dev"))
    stack["config"].update({"anycast:port": "9090", "anycast:flag": "true", "anycast:names": ["x", "y"], "short2": "bare names get the project"})
    config = program_config(apply(doc, "dev", stack))
    assert config["anycast:port"] == "9090" and config["anycast:short"] == "5" and config["aws:region"] == "us-east-1"
    assert config["anycast:short2"] == "bare names get the project" and config["vultr:rateLimit"] == "700"
    for key, value in (("anycast:port", "80.5"), ("anycast:flag", "yes"), ("anycast:names", [1])):
        bad = copy.deepcopy(stack)
        bad["config"][key] = value
        with pytest.raises(PulumiRuleError, match=re.escape(f"configuration key '{key}' must be of type")):
            apply(doc, "dev", bad)
