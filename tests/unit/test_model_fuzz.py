"""Generated hostile input for every field of the network document: each is refused with one short line naming it.

A base document that uses every field (dev stack, plus an external PoP, RIPE, BGP and defaults) is walked leaf by
leaf; each string, number, boolean, address and list gets injection payloads and edge values of its kind. Every
mutated document must fail validation with a ConfigError (never another exception, never accepted), one of whose
lines names the mutated field (or the field that contains it), and no line may repeat a huge input in full.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from typing import Any

import pytest

from infra.model import ConfigError, parse_network
from infra.model.stack import read_stack_config
from userdata.render import render_pop

Path = tuple[str | int, ...]

EXTERNAL: dict[str, Any] = {
    "code": "hkg", "provider": "external", "city": "Hong Kong", "country": "HK", "continent": "AS",
    "latitude": 22.3, "longitude": 114.2,
    "neighbor": {"asn": 64501, "ipv4": "198.51.100.1", "ipv6": "2001:db8:ffff:1::1", "multihop": 2},
    "unicast": {"ipv4": "198.51.100.10", "ipv6": "2001:db8:ffff:1::10"},
    "announce": {"prepend": 1, "communities": ["65000:100"]},
}


def base_document() -> dict[str, Any]:
    doc = copy.deepcopy(read_stack_config("dev")["anycast:network"])
    doc["asnSource"] = "own"
    doc["bgp"] = {"holdTime": 9, "keepaliveTime": 3, "gracefulRestart": False, "errorWaitMin": 5,
                  "errorWaitMax": 120, "passwordEnv": "ANYCAST_BGP_PASSWORD"}
    doc["dns"].update(createParentZone=False, ttl=60)
    doc["defaults"] = {"provider": "vultr", "plan": "vc2-1c-1gb", "osId": 2136}
    doc["ripe"] = {"manage": True, "maintainer": "EXAMPLE-MNT", "database": "test", "descr": "anycast network"}
    doc["pops"][0].update(plan="vc2-1c-2gb", city="Amsterdam", country="NL", continent="EU", latitude=52.4,
                          longitude=4.9, announce={"prepend": 2, "communities": ["20473:6601"], "onlyTo": [174]})
    doc["pops"].append(copy.deepcopy(EXTERNAL))
    return doc


def leaves(node: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, (*path, key))
    elif isinstance(node, list):
        yield path, node  # the list itself (wrong types, hostile members)
        for i, value in enumerate(node):
            yield from leaves(value, (*path, i))
    else:
        yield path, node


def dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + part
    return out


HUGE = "A" * 5000
INJECTIONS = [
    "", " ", "\n", "x\ny", "a\nprotocol static { route 0.0.0.0/0 blackhole; }", 'x"; export all; #', "x}", "{",
    "$(reboot)", "`id`", "x\x00", "x\r\ny", "x\u2028y", "x\ty", "'; DROP TABLE", "#cloud-config\nbootcmd: [reboot]",
    HUGE,
]
NOT_A_STRING = [5, True, 1.5, [], {}]
NOT_AN_INT = [True, False, "5", 1.5, [], {}, -1, 2**64, 10**5000]
NOT_A_FLOAT = [True, "5", math.nan, math.inf, -math.inf, 1e308, 1000.0, -1000, []]
NOT_A_BOOL = ["true", "yes", 1, 0, [], {}]
BAD_ADDRESSES = [3221225985, "0.0.0.0", "::", "127.0.0.1", "::1", "224.0.0.1", "ff02::1", "255.255.255.255",
                 "fe80::1", "fe80::1%eth0", "169.254.1.1", "10.0.0.1", "fd00::1"]


def string_mutations(value: str, path: Path) -> list[Any]:
    # The original value with a second line, a zone id or a trailing space is the classic smuggling vector.
    own = [value + "\n", value + "\nbootcmd: [reboot]", value + "\x00", " " + value]
    if path[-2:-1] != ("sshKeys",):  # a key's comment may end in a space or hold a %
        own += [value + "%eth0", value + " "]
    extra: list[Any] = []
    if "." in value and ":" not in value and "/" not in value and not value[0].isupper():
        extra = BAD_ADDRESSES if value[0].isdigit() else ["-bad.example.com", "a..b", "x_y.example.com"]
    if ":" in value and "/" not in value and value.count(":") > 1:
        extra = BAD_ADDRESSES
    if path[-2:] == ("neighbor", "ipv4"):  # link-local is how providers reach a multihop neighbour: allowed with it
        extra = [a for a in extra if a != "169.254.1.1"]
    return [*INJECTIONS, *own, *NOT_A_STRING, *extra]


def mutations(path: Path, value: Any) -> list[Any]:
    if isinstance(value, bool):
        return NOT_A_BOOL
    if isinstance(value, int):
        out = list(NOT_AN_INT)
        if path[-1] == "asn" or (len(path) > 1 and path[-2] == "onlyTo"):
            out += [0, 23456, 65535, 4294967295, 2**32]
        return out
    if isinstance(value, float):
        return NOT_A_FLOAT
    if isinstance(value, str):
        return string_mutations(value, path)
    if isinstance(value, list):
        return ["x", 5, {"a": 1}, [*value, "x\nprotocol"] if all(isinstance(v, str) for v in value) else [*value, True]]
    raise AssertionError(f"unexpected leaf {path}: {value!r}")


def replaced(doc: dict[str, Any], path: Path, new: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node: Any = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = new
    return out


def cases() -> list[tuple[str, Path, Any]]:
    out = []
    for path, value in leaves(base_document()):
        for n, bad in enumerate(mutations(path, value)):
            out.append((f"{dotted(path)}#{n}", path, bad))
    return out


CASES = cases()


def test_base_document_is_valid_and_uses_every_kind_of_field() -> None:
    network = parse_network(base_document())
    assert [p.code for p in network.pops] == ["ams", "ewr", "sao", "hkg"]
    for pop in network.pops:
        render_pop(network, pop, "lab-password")
    kinds = {type(v).__name__ for _, v in leaves(base_document())}
    assert kinds == {"str", "int", "float", "bool", "list"}
    assert len(CASES) > 1500


def _refused(doc: dict[str, Any]) -> list[str]:
    try:
        parse_network(doc)
    except ConfigError as exc:
        return exc.errors
    return []


@pytest.mark.parametrize("case", range(0, len(CASES), 1), ids=[c[0] for c in CASES])
def test_hostile_value_is_refused_naming_the_field(case: int) -> None:
    name, path, bad = CASES[case]
    errors = _refused(replaced(base_document(), path, bad))
    assert errors, f"accepted {name} = {bad!r:.80}"
    reported = [e.split(": ", 1)[0] for e in errors]
    # The line names the mutated field or one that contains it (a list, its PoP): never just "network".
    field = dotted(path)
    assert any((field.startswith(r) or r.startswith(field)) and r != "network" for r in reported), (name, errors)
    for line in errors:
        assert len(line) < 400, f"{name}: message too long ({len(line)} characters)"
        assert HUGE not in line


def test_unknown_keys_are_refused_everywhere() -> None:
    doc = base_document()
    mappings = [()] + [p[:-1] for p, _ in leaves(doc) if len(p) > 1 and not isinstance(p[-1], int)]
    for where in sorted(set(mappings), key=len):
        mutated = copy.deepcopy(doc)
        node: Any = mutated
        for part in where:
            node = node[part]
        node["x\nprotocol"] = 1
        errors = _refused(mutated)
        assert any("is not a known field" in e for e in errors), (where, errors)


def test_not_a_mapping_and_deep_nesting_are_one_line() -> None:
    nested: Any = "x"
    for _ in range(5000):
        nested = [nested]
    bad_documents: list[Any] = [[], "network", 5, None, {"pops": nested}, {"asn": 10**5000}]
    for bad in bad_documents:
        errors = _refused(bad)
        assert errors and all(len(e) < 400 for e in errors), errors
