"""Just enough BIRD 2 config reading for the policy pack: the named prefix sets and what each BGP protocol exports.

The renderer puts every prefix a PoP may announce into ``define ANYCAST_V4 = [...]`` / ``ANYCAST_V6`` and the
upstream protocols export through a filter that matches ``net ~ ANYCAST_V4``. This module extracts those parts
from the ``bird.conf`` inside a cloud-config; it is not a BIRD parser (``bird -p`` is, and the golden tests use it).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any

import yaml

_DEFINE_RE = re.compile(r"\bdefine\s+(\w+)\s*=\s*\[(.*?)\]\s*;", re.S)
_BLOCK_RE = re.compile(r"\b(protocol\s+bgp|filter)\s+(\w+)\s*\{")
_EXPORT_RE = re.compile(r"\bexport\s+(all|none|filter\s+(\w+)|where\s+([^;]+))\s*;")
_SET_REF_RE = re.compile(r"\bnet\s*~\s*(\w+)")


def bird_conf_from_user_data(user_data: str) -> str | None:
    """The content of ``.../bird.conf`` in a cloud-config's ``write_files`` (plain or base64), or None."""
    try:
        doc = yaml.safe_load(user_data)
    except yaml.YAMLError:
        return None
    if not isinstance(doc, dict):
        return None
    for entry in doc.get("write_files") or []:
        if isinstance(entry, dict) and str(entry.get("path", "")).endswith("/bird.conf"):
            content = str(entry.get("content", ""))
            if str(entry.get("encoding", "")).lower() in ("b64", "base64"):
                content = base64.b64decode(content).decode("utf-8")
            return content
    return None


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"#[^\n]*", "", text)


def _blocks(text: str) -> dict[tuple[str, str], str]:
    """``{("protocol bgp"|"filter", name): body}`` with braces matched."""
    out: dict[tuple[str, str], str] = {}
    for m in _BLOCK_RE.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        kind = "protocol bgp" if m[1].startswith("protocol") else "filter"
        out[(kind, m[2])] = text[m.end():i - 1]
    return out


@dataclass(frozen=True)
class BgpExport:
    protocol: str
    statement: str  # "all", "none", "filter NAME", "where ..."
    sets: tuple[str, ...]  # prefix sets the export matches on
    accepts: bool = True  # False for a filter with no 'accept' (a unicast PoP's reject-all)


def prefix_sets(conf: str) -> dict[str, list[IPv4Network | IPv6Network]]:
    """Named prefix sets (``define NAME = [ a/b, c/d ];``); entries with BIRD range suffixes ({a,b}, +, -) are kept
    as their base prefix."""
    out: dict[str, list[IPv4Network | IPv6Network]] = {}
    for name, body in _DEFINE_RE.findall(_strip_comments(conf)):
        nets: list[IPv4Network | IPv6Network] = []
        for item in re.sub(r"\{[^}]*\}", "", body).split(","):
            base = re.sub(r"[+\-]$", "", item.strip())
            if base:
                nets.append(ip_network(base, strict=False))
        out[name] = nets
    return out


def bgp_exports(conf: str) -> list[BgpExport]:
    """Every export statement of every ``protocol bgp`` block, with the prefix sets its filter matches on."""
    text = _strip_comments(conf)
    blocks = _blocks(text)
    out: list[BgpExport] = []
    for (kind, name), body in sorted(blocks.items()):
        if kind != "protocol bgp":
            continue
        for m in _EXPORT_RE.finditer(body):
            accepts = True
            if m[2]:
                filter_body = blocks.get(("filter", m[2]), "")
                sets = tuple(_SET_REF_RE.findall(filter_body))
                accepts = ("filter", m[2]) not in blocks or re.search(r"\baccept\b", filter_body) is not None
            elif m[3]:
                sets = tuple(_SET_REF_RE.findall(m[3]))
            else:
                sets = ()
            out.append(BgpExport(name, " ".join(m[1].split()), sets, accepts))
    return out


def export_problems(conf: str, allowed: list[Any]) -> list[str]:
    """Why this bird.conf could export more than ``allowed`` (the network's prefixes); empty if it cannot.

    A BGP protocol must export ``none`` or through a filter/``where`` that matches ``net ~ SET`` where every prefix of
    SET lies inside an allowed prefix (the prefixes themselves or the service host routes).
    """
    sets = prefix_sets(conf)
    problems: list[str] = []
    for exp in bgp_exports(conf):
        if exp.statement == "none" or not exp.accepts:
            continue
        if exp.statement == "all":
            problems.append(f"protocol {exp.protocol}: 'export all' announces whatever BIRD has")
            continue
        if not exp.sets:
            problems.append(f"protocol {exp.protocol}: export {exp.statement} does not match on a prefix set (net ~ SET)")
            continue
        for set_name in exp.sets:
            if set_name not in sets:
                problems.append(f"protocol {exp.protocol}: prefix set {set_name} is not defined")
                continue
            for net in sets[set_name]:
                if not any(net.version == a.version and net.subnet_of(a) for a in allowed):
                    problems.append(f"protocol {exp.protocol}: {set_name} holds {net}, which is not the network's "
                                    f"({', '.join(str(a) for a in allowed)})")
    return problems
