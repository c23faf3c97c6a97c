"""The Pulumi CLI's rules for ``Pulumi.yaml`` and ``Pulumi.<stack>.yaml``, reimplemented so tests can apply them offline.

There is no Pulumi CLI on the machines that run the tests, yet a project file the CLI refuses runs nothing. This module
restates, step by step and with the CLI's own messages, what ``pulumi preview``/``up`` do with the two files before the
program starts. Source: pulumi/pulumi at tag v3.259.0 (commit 0ac56e876614aedf12771d73ef7e80959b8a6fd4), Apache-2.0:

* ``sdk/go/common/workspace/loaders.go``: ``LoadProjectBytes`` (``ValidateProject`` -> ``RewriteConfigPathIntoStackConfigDir``
  -> ``RewriteShorthandConfigValues`` -> ``Project.Validate``), ``LoadProjectStackBytes`` (``stackConfigNamespacedWithProject``).
* ``sdk/go/common/workspace/project.go``: ``ValidateProject`` (name check, then the JSON schema ``project.json``),
  ``RewriteShorthandConfigValues``, ``ValidateConfigValue``, ``InferFullTypeName``, ``configKeyIsNamespacedByProject``,
  ``Project.Validate``.
* ``sdk/go/common/resource/config/key.go`` ``ParseKey``; ``config/object.go`` ``unmarshalObject``, ``MarshalString``,
  ``isSecureValue`` (how a stack value becomes text, secure and/or object).
* ``pkg/workspace/config.go``: ``mergeConfig`` (what ``ValidateStackConfigAndApplyProjectConfig`` runs, called by
  ``pkg/cmd/pulumi/operations/preview.go`` and ``up.go``), ``validateStackConfigValues``, ``validateStackConfigValue``,
  ``createConfigValue``, ``missingStackConfigurationKeysError``.

Not modelled: ESC environments merged into the stack config, property paths in key names (``ns:a.b``), real encryption
(``{secure: X}`` stands for a ciphertext whose plaintext is X). The files are read as Go's yaml.v3 reads them by
``infra/model/stack_yaml.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema

PULUMI_TAG = "v3.259.0"
PULUMI_COMMIT = "0ac56e876614aedf12771d73ef7e80959b8a6fd4"
# sha256 of sdk/go/common/workspace/project.json at PULUMI_COMMIT (13,319 bytes).
PROJECT_JSON_SHA256 = "55b50752803a9b595675fa3119e710f91e907821deef1674e9e25e7b5ebc5daf"
PROJECT_JSON_URL = f"https://raw.githubusercontent.com/pulumi/pulumi/{PULUMI_COMMIT}/sdk/go/common/workspace/project.json"
# `object` joined simpleConfigType in pulumi/pulumi#20129 (commit 9e79658edb, first released in v3.186.0).
OBJECT_TYPE_SINCE = "v3.186.0"


class PulumiRuleError(Exception):
    """The CLI refuses the files; the message is the CLI's own text."""


# --- Pulumi.yaml -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigType:
    """``ProjectConfigType``: ``None`` stands for Go's nil (absent or ``null`` in YAML)."""

    type: str | None = None
    items: Mapping[str, Any] | None = None
    default: Any = None
    value: Any = None
    secret: bool = False
    description: str = ""


@dataclass(frozen=True)
class Project:
    name: str
    config: Mapping[str, ConfigType]


def _is_primitive(value: Any) -> bool:  # isPrimitiveValue: string, int, bool
    return isinstance(value, str | bool | int)


def _namespaced_by_project(project: str, key: str) -> bool:  # configKeyIsNamespacedByProject
    return ":" not in key or key.startswith(project + ":")


def schema_without_object_type(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The same schema as CLIs before ``OBJECT_TYPE_SINCE`` had it: ``object`` not a simple config type."""
    copy = json.loads(json.dumps(schema))
    for name, definition in copy["$defs"].items():
        if "enum" in definition and "object" in definition["enum"] and name in ("simpleType", "simpleConfigType"):
            definition["enum"].remove("object")
    return copy


def validate_project_document(raw: Any, schema: Mapping[str, Any]) -> None:
    """``ValidateProject``: the name first, then the JSON schema (Draft 2020-12, as the Go compiler reads it)."""
    if not isinstance(raw, dict):
        raise PulumiRuleError(f"expected project to be an object, was '{type(raw).__name__}'")
    for key in raw:
        if not isinstance(key, str):
            raise PulumiRuleError(f"expected only string keys, got '{key}'")
    if "name" not in raw:
        raise PulumiRuleError("project is missing a 'name' attribute")
    if not isinstance(raw["name"], str) or raw["name"] == "":
        raise PulumiRuleError("project is missing a non-empty string 'name' attribute")
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(raw), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"#/{'/'.join(str(p) for p in e.absolute_path)}: {e.message[:160]}" for e in errors]
        raise PulumiRuleError("could not validate 'Pulumi.yaml': " + "; ".join(lines))


def infer_full_type_name(type_name: str, items: Mapping[str, Any] | None) -> str:
    if items is not None:
        return f"array<{infer_full_type_name(items.get('type', ''), items.get('items'))}>"
    return type_name


_ATOI = re.compile(r"[+-]?[0-9]+")


def validate_config_value(type_name: str, items: Mapping[str, Any] | None, value: Any) -> bool:
    """``ValidateConfigValue``: Go's type switch on a YAML- or JSON-decoded value."""
    if type_name == "string":
        return isinstance(value, str)
    if type_name == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return True
        if isinstance(value, float) and value == int(value):
            return True
        if isinstance(value, str):  # strconv.Atoi: decimal, optional sign, 64-bit range
            return bool(_ATOI.fullmatch(value)) and -(2**63) <= int(value) < 2**63
        return False
    if type_name == "boolean":
        return value in ("true", "false") if isinstance(value, str) else isinstance(value, bool)
    if type_name == "object":
        return isinstance(value, dict)
    if not isinstance(value, list) or items is None:
        return False
    return all(validate_config_value(items.get("type", ""), items.get("items"), item) for item in value)


def load_project(raw: Any, schema: Mapping[str, Any]) -> Project:
    """``LoadProjectBytes``: validate, rewrite shorthand config, decode the declarations, ``Project.Validate``."""
    validate_project_document(raw, schema)
    doc = dict(raw)
    config = doc.get("config")
    if isinstance(config, str):  # RewriteConfigPathIntoStackConfigDir
        if "stackConfigDir" in doc:
            raise PulumiRuleError("Should not use both config and stackConfigDir to define the stack directory. "
                                  "Use only stackConfigDir instead.")
        doc["stackConfigDir"], config = config, None
    name = doc["name"]
    declarations: dict[str, ConfigType] = {}
    for key, entry in (config or {}).items():
        if _is_primitive(entry) or isinstance(entry, list):  # RewriteShorthandConfigValues
            entry = {"default": entry} if _namespaced_by_project(name, key) else {"value": entry}
        if not isinstance(entry, dict):
            raise PulumiRuleError(f"cannot unmarshal {type(entry).__name__} into the declaration of '{key}'")
        declarations[key] = ConfigType(type=entry.get("type"), items=entry.get("items"), default=entry.get("default"),
                                       value=entry.get("value"), secret=bool(entry.get("secret", False)),
                                       description=entry.get("description") or "")
    project = Project(name=name, config=declarations)
    _project_validate(project)
    return project


def _project_validate(project: Project) -> None:
    """``Project.Validate`` (Go iterates a map; sorted here so the first error is stable)."""
    for key in sorted(project.config):
        ct = project.config[key]
        if ct.default is not None and ct.value is not None:
            raise PulumiRuleError(f"project config '{key}' cannot have both a 'default' and 'value' attribute")
        if _namespaced_by_project(project.name, key):
            if ct.type == "array" and ct.items is None:
                raise PulumiRuleError(f"The configuration key '{key}' declares an array "
                                      "but does not specify the underlying type via the 'items' attribute")
            if ct.type is not None and ct.default is not None and not validate_config_value(ct.type, ct.items, ct.default):
                raise PulumiRuleError(f"The default value specified for configuration key '{key}' is not of the expected "
                                      f"type '{infer_full_type_name(ct.type, ct.items)}'")
        else:
            if ct.type is not None:
                raise PulumiRuleError(f"Configuration key '{key}' is not namespaced by the project and should not define a type")
            if ct.default is not None:
                raise PulumiRuleError(f"Configuration key '{key}' is not namespaced by the project and should not define a "
                                      "default value. Did you mean to use the 'value' attribute instead of 'default'?")
            if ct.value is None:
                raise PulumiRuleError(f"Configuration key '{key}' is namespaced and must provide an attribute 'value'")


# --- Pulumi.<stack>.yaml -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackValue:
    """``config.Value``: the raw YAML value, whether it is (or holds) a secret, whether it is an object (JSON)."""

    raw: Any
    secure: bool
    object: bool

    def text(self, decrypt: Callable[[str], str]) -> str:
        """``Value.Value(dec)``: plaintext, objects as JSON with their secrets decrypted."""
        if self.object:
            return json.dumps(_decrypted(self.raw, decrypt), separators=(",", ":"), sort_keys=True)
        if _secure_leaf(self.raw) is not None:
            return decrypt(_secure_leaf(self.raw) or "")
        return _scalar_text(self.raw)


def _secure_leaf(value: Any) -> str | None:  # isSecureValue
    if isinstance(value, dict) and len(value) == 1 and isinstance(value.get("secure"), str):
        return str(value["secure"])
    return None


def _contains_secure(value: Any) -> bool:
    if _secure_leaf(value) is not None:
        return True
    if isinstance(value, dict):
        return any(_contains_secure(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_secure(v) for v in value)
    return False


def _decrypted(value: Any, decrypt: Callable[[str], str]) -> Any:
    if (ciphertext := _secure_leaf(value)) is not None:
        return decrypt(ciphertext)
    if isinstance(value, dict):
        return {str(k): _decrypted(v, decrypt) for k, v in value.items()}
    if isinstance(value, list):
        return [_decrypted(v, decrypt) for v in value]
    return value


def _scalar_text(value: Any) -> str:
    if value is None:  # loaders.go checkForEmptyConfig: a key without a value reads as ""
        return ""
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return str(value)


def stack_value(raw: Any) -> StackValue:
    """``unmarshalObject`` + ``MarshalString``: scalars are text, ``{secure: x}`` a secret, maps and lists objects."""
    if _secure_leaf(raw) is not None:
        return StackValue(raw, secure=True, object=False)
    if isinstance(raw, dict | list):
        return StackValue(raw, secure=_contains_secure(raw), object=True)
    return StackValue(raw, secure=False, object=False)


def parse_config_key(project: str, key: str) -> tuple[str, str]:
    """``parseConfigKey``/``config.ParseKey``: ``ns:name`` or the old ``ns:config:name``; bare names get the project."""
    if ":" not in key:
        return project, key
    parts = key.split(":")
    if len(parts) == 2:
        return parts[0], parts[1]
    if len(parts) == 3 and parts[1] == "config" and parts[0] and parts[2]:
        return parts[0], parts[2]
    raise PulumiRuleError(f"could not parse {key} as a configuration key "
                          "(configuration keys should be of the form `<namespace>:<name>`)")


def load_stack(raw: Any, project: Project) -> dict[tuple[str, str], StackValue]:
    """``LoadProjectStackBytes``: the ``config:`` map with every key namespaced, values decoded."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise PulumiRuleError(f"expected project to be an object, was '{type(raw).__name__}'")
    config = raw.get("config") or {}
    if not isinstance(config, dict):
        raise PulumiRuleError("cannot unmarshal the stack's config: not a mapping")
    out: dict[tuple[str, str], StackValue] = {}
    for key, value in config.items():
        if not isinstance(key, str):
            raise PulumiRuleError(f"expected only string keys, got '{key}'")
        out[parse_config_key(project.name, key)] = stack_value(value)
    return out


def _missing_error(stack: str, keys: list[str]) -> PulumiRuleError:  # missingStackConfigurationKeysError
    keys = sorted(keys)
    if len(keys) == 1:
        return PulumiRuleError(f"Stack '{stack}' is missing configuration value '{keys[0]}'")
    listed = ", ".join(f"'{k}'" for k in keys[:-2])
    listed = (listed + ", " if listed else "") + f"'{keys[-2]}' and '{keys[-1]}'"
    return PulumiRuleError(f"Stack '{stack}' is missing configuration values {listed}")


def _create_config_value(value: Any) -> StackValue:  # createConfigValue
    if _is_primitive(value):
        return StackValue(("true" if value else "false") if isinstance(value, bool) else str(value), secure=False, object=False)
    return StackValue(value, secure=False, object=True)


def validate_stack_and_apply_project_config(
    stack: str, project: Project, stack_config: Mapping[tuple[str, str], StackValue],
    decrypt: Callable[[str], str] = lambda ciphertext: ciphertext,
) -> dict[tuple[str, str], StackValue]:
    """``ValidateStackConfigAndApplyProjectConfig`` (``mergeConfig`` with validate=true); returns the merged config."""
    merged = dict(stack_config)
    missing: list[str] = []
    for key in sorted(project.config):
        ct = project.config[key]
        full = parse_config_key(project.name, key)
        found = full in merged
        has_default, has_value = ct.default is not None, ct.value is not None
        if not found and not has_value and not has_default and full[0] == project.name:
            missing.append(key)
            continue
        if not found and (has_value or has_default):
            merged[full] = _create_config_value(ct.default if has_default else ct.value)
    if missing:
        raise _missing_error(stack, missing)
    for key in sorted(project.config):  # validateStackConfigValues
        ct = project.config[key]
        if ct.type is None:
            continue
        value = merged.get(parse_config_key(project.name, key), StackValue("", secure=False, object=False))
        if ct.secret and not value.secure:
            raise PulumiRuleError(f"Stack '{stack}' with configuration key '{key}' must be encrypted as it's secret")
        text = value.text(decrypt)
        content: Any = json.loads(text) if value.object else text
        if not validate_config_value(ct.type, ct.items, content):
            raise PulumiRuleError(f"Stack '{stack}' with configuration key '{key}' must be of type "
                                  f"'{infer_full_type_name(ct.type, ct.items)}'")
    return merged


def program_config(merged: Mapping[tuple[str, str], StackValue], decrypt: Callable[[str], str] = lambda c: c) -> dict[str, str]:
    """What the language host hands the program (``pulumi.runtime.set_all_config`` input): ``ns:name`` -> text."""
    return {f"{ns}:{name}": value.text(decrypt) for (ns, name), value in merged.items()}
