"""Generate docs/config.md, the field reference of ``anycast:network``, from the model's own descriptions.

Run ``python -m infra.docs`` (``make docs``); a test fails when the committed file is out of date.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from infra import safe_write
from infra.model import Network
from infra.model.regions import vultr_regions

DOC = Path(__file__).resolve().parent.parent / "docs" / "config.md"


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation) if a is not type(None))
    if origin is typing.Literal:
        return " / ".join(f"`{a}`" for a in typing.get_args(annotation))
    if origin is list:
        return f"list of {_type_name(typing.get_args(annotation)[0])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
        return "`[]`" if value == [] else "its fields' defaults"
    if info.default is PydanticUndefined or info.default is None:
        return "none"
    return f"`{str(info.default).lower() if isinstance(info.default, bool) else info.default}`"


def _nested(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
        for inner in typing.get_args(candidate):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return None


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, info in model.model_fields.items():
        key = prefix + (info.alias or name)
        rows.append(f"| `{key}` | {_type_name(info.annotation)} | {_default(info)} | {info.description or ''} |")
        nested = _nested(info.annotation)
        if nested is not None:
            rows += _rows(nested, key + ("[]." if typing.get_origin(info.annotation) is list else "."))
    return rows


def render() -> str:
    regions = ", ".join(f"`{r.id}` {r.city}" for r in vultr_regions().values())
    return "\n".join([
        "# `anycast:network`: every field",
        "",
        "Generated from `infra/model/` by `make docs`; do not edit by hand. Keys are camelCase as written in",
        "`Pulumi.<stack>.yaml`. A bad value fails before anything is created, with one line naming the field, e.g.",
        "`pops[3].region: 'amss' is not a Vultr region (...)`. Check a stack with `anycast render --stack NAME --out DIR`.",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
        *_rows(Network, ""),
        "",
        "## Rules across fields",
        "",
        "- `prefixes.ipv4` is /24 or shorter, `prefixes.ipv6` /48 or shorter; neither overlaps bogon space; documentation",
        "  space (192.0.2.0/24, 2001:db8::/32, ...) is accepted for examples and the lab.",
        "- `service.*` lies inside the matching prefix; `prefixes.ipv4` and `service.ipv4` go together (omit both for an",
        "  IPv6-only network).",
        "- `asn`: not 0, 23456, 65535 or 4294967295. With `asnSource: own` it is public (or documentation); with",
        "  `asnSource: vultr-assigned` it is the private ASN Vultr assigned, Vultr originates the prefixes as AS20473",
        "  (so the ROA names AS20473), prepending does nothing, and external PoPs are not possible.",
        "- PoP codes are unique; a Vultr PoP names a Vultr region; an external PoP gives city, country, continent,",
        "  latitude, longitude, `neighbor` and `unicast` addresses (outside the anycast prefixes).",
        "- A unicast PoP has GeoDNS areas; an anycast PoP has none; there are at least two anycast PoPs.",
        "- On Vultr PoPs `announce.communities` holds only Vultr action communities: 20473:6000, 20473:6001-6003,",
        "  20473:6601, 20473:64609 and 64600/64601/64602/64603/64609/64699:<peer-as>; never the blackhole 20473:666.",
        "- `bgp.keepaliveTime` is at most `bgp.holdTime` / 3.",
        "- `dns.zone` is a child of `dns.parentZone`; nameserver and HTTP names are in the parent zone, outside the",
        "  delegated zone (Route53 cannot answer GeoDNS for names below its own delegation).",
        "",
        "## How the stack file is read",
        "",
        "The Pulumi CLI (Go) reads `Pulumi.<stack>.yaml` with gopkg.in/yaml.v3, whose rules differ from YAML 1.1;",
        "`anycast`, the lab and the tests read it with the same rules (`infra/model/stack_yaml.py`, which cites the Go source):",
        "",
        "- only `true`/`false` (also `True`, `TRUE`, ...) are booleans: `yes`, `no`, `on`, `off`, `NO` are strings;",
        "- no sexagesimal numbers: `ttl: 1:30` is the string `1:30` (and so refused as a TTL), not 90;",
        "- `0777` is octal (511), as are `0o17`; `0x1F`, `0b101`, `1_000` are integers; `1.0` and `08` reach the",
        "  program as the integers 1 and 8 (Pulumi hands object config to the program as JSON);",
        "- `~`, `null` or nothing is null; a key without a `project:` prefix (`network:`) is this project's",
        "  (`anycast:network`);",
        "- refused, with one line naming the file, line and key: a duplicate key (Go refuses it: PyYAML kept the last,",
        "  so a second `pops:` silently dropped PoPs), an unquoted date or time (Pulumi would pass",
        "  `2001-12-14 00:00:00 +0000 UTC`), `.nan`/`.inf`, a key that is not a string, explicit tags (`!!int`),",
        "  more than one document, nesting deeper than 64, aliases expanding past 100,000 values (an alias bomb), a file",
        "  over 128 KiB. Quote a value to keep it a string.",
        "",
        "```console",
        "$ anycast render --stack ttl --out /tmp/x  # dns: {ttl: 1:30}",
        "error: Pulumi.ttl.yaml: dns.ttl: '1:30' is not a whole number",
        "$ anycast render --stack dup --out /tmp/x  # a second pops: list below the first",
        "error: Pulumi.dup.yaml: line 29: config.anycast:network: key 'pops' is already defined at line 25; Pulumi "
        "refuses a file with duplicate keys (PyYAML used to keep the last)",
        "```",
        "",
        "`anycast` looks for `Pulumi.yaml` in the current folder and above it, as Pulumi does; without one it says so",
        "rather than read another project's stacks.",
        "",
        "## Vultr regions",
        "",
        regions,
        "",
    ])


def main() -> None:
    safe_write.write_file(DOC, render())  # never through a link planted at docs/ or the file
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
