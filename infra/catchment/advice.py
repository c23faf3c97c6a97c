"""Tuning advice tied to the catchment evidence, as a unified diff of the stack file (never applied).

The guide's tools, in the order an operator should try them:

* a PoP that pulls traffic from far away (its mis-routed probes): make its announcement less attractive. With your
  own ASN, prepend once more (``announce.prepend``, up to 3); with a Vultr-assigned private ASN (which Vultr strips, so
  prepending does nothing) use Vultr's action community "prepend n x to all" (20473:6001-6003, Vultr's AS20473 BGP
  communities guide https://docs.vultr.com/products/network/bgp/asn-information/as20473-bgp-communities-customer-guide).
  A PoP already at the maximum gets the text advice to announce selectively (``announce.onlyTo`` / 64600:<peer-as>
  communities), which needs the peer ASN, so no diff.
* an area that anycast serves badly (its probes' median distance to the answering PoP above ``far_km``) while a
  unicast PoP of the network is much nearer and GeoDNS does not yet send the area there: add the country to that
  PoP's ``geodns`` list, like São Paulo's ``[SA]`` in the guide.

The diff is computed on the file's text (comments and layout kept) and the result is validated with the model before
it is offered; an edit that cannot be made safely becomes text advice without a diff.
"""

from __future__ import annotations

import difflib
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.catchment.analysis import Report
from infra.model import MAX_PREPEND, ConfigError, Network, parse_network, stack_yaml
from infra.model.fields import country_codes
from infra.model.regions import great_circle_km
from infra.model.stack import NETWORK_KEY

FAR_KM = 2500.0
NEARER_KM = 1500.0


@dataclass(frozen=True)
class Advice:
    kind: str  # "prepend" | "community" | "selective" | "geodns"
    pop: str
    text: str
    evidence: str
    edit: tuple[str, str, Any] | None = None  # (pop code, field, new value) for the diff

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "pop": self.pop, "text": self.text, "evidence": self.evidence,
                "edit": None if self.edit is None else {"pop": self.edit[0], "field": self.edit[1], "value": self.edit[2]}}


def _pull_advice(network: Network, report: Report) -> list[Advice]:
    out = []
    for code, info in report.pops.items():
        pulled = [r for r in report.probes if r.pop == code and r.misrouted]
        if not pulled:
            continue
        pop = network.pop(code)
        places = ", ".join(sorted({f"{r.country}" for r in pulled if r.country}))
        expected = ", ".join(sorted({r.expected_pop for r in pulled if r.expected_pop}))
        evidence = (f"{code} answered {len(pulled)} probe result(s) from {places} a median "
                    f"{info['median_extra_km']:.0f} km farther than their nearest PoP ({expected})")
        prepend = pop.announce.prepend
        if network.asn_source == "own" and prepend < MAX_PREPEND:
            out.append(Advice("prepend", code, f"{code}: prepend AS{network.asn} {prepend + 1}x (announce.prepend: "
                                               f"{prepend} -> {prepend + 1}) so that {places} prefer a nearer PoP",
                              evidence, (code, "prepend", prepend + 1)))
            continue
        current = [c for c in pop.announce.communities if re.fullmatch(r"20473:600[123]", c)]
        level = int(current[0][-1]) if current else 0
        if pop.is_vultr and level < MAX_PREPEND:
            new = [c for c in pop.announce.communities if c not in current] + [f"20473:600{level + 1}"]
            out.append(Advice("community", code, f"{code}: Vultr action community 20473:600{level + 1} (prepend "
                                                 f"{level + 1}x to all) so that {places} prefer a nearer PoP",
                              evidence, (code, "communities", new)))
            continue
        out.append(Advice("selective", code, f"{code}: already prepends the maximum; announce selectively "
                                             "(announce.onlyTo with the upstream that should carry it, or 64600:<peer-as> "
                                             "on Vultr) or make it a unicast PoP behind GeoDNS for its own area",
                          evidence))
    return out


def _geodns_advice(network: Network, report: Report, far_km: float) -> list[Advice]:
    by_country: dict[str, list[Any]] = defaultdict(list)
    for r in report.probes:
        if r.pop is not None and r.country and r.lat is not None and r.lon is not None and r.distance_km is not None:
            by_country[r.country].append(r)
    out = []
    for country, rows in sorted(by_country.items()):
        if country not in country_codes():
            continue  # a country value reaches the stack file's text: only an ISO 3166-1 alpha-2 code may
        if any(r.geodns_pop for r in rows):
            continue  # GeoDNS already sends this area to a unicast PoP
        served = statistics.median(r.distance_km for r in rows)
        if served <= far_km:
            continue
        best = None
        for pop in network.unicast_pops:
            if pop.latitude is None or pop.longitude is None:
                continue
            d = statistics.median(great_circle_km(r.lat, r.lon, pop.latitude, pop.longitude) for r in rows)
            if d < served - NEARER_KM and (best is None or d < best[0]):
                best = (d, pop)
        if best is None:
            continue
        d, pop = best
        evidence = (f"{len(rows)} result(s) from {country} are answered by anycast a median {served:.0f} km away; "
                    f"unicast {pop.code} is {d:.0f} km away")
        out.append(Advice("geodns", pop.code, f"GeoDNS: send {country} to unicast {pop.code} (geodns: "
                                              f"{pop.geodns} -> {[*pop.geodns, country]})",
                          evidence, (pop.code, "geodns", [*pop.geodns, country])))
    return out


def _flow(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def _pop_span(lines: list[str], code: str) -> tuple[int, int, bool] | None:
    """(first line, end line exclusive, flow style) of the PoP ``code`` in the stack file's text."""
    for i, line in enumerate(lines):
        if re.match(rf"^\s*- \{{\s*code:\s*{re.escape(code)}\s*[,}}]", line):
            return i, i + 1, True
        m = re.match(rf"^(\s*)- code:\s*{re.escape(code)}\s*(#.*)?$", line)
        if m:
            indent = len(m.group(1))
            end = i + 1
            while end < len(lines) and (not lines[end].strip() or lines[end].lstrip().startswith("#")
                                        or len(lines[end]) - len(lines[end].lstrip()) > indent + 1):
                if lines[end].strip().startswith("- ") and len(lines[end]) - len(lines[end].lstrip()) <= indent:
                    break
                end += 1
            while end > i + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
                end -= 1
            return i, end, False
    return None


def _edit_text(text: str, code: str, field: str, value: Any) -> str | None:
    lines = text.splitlines(keepends=True)
    span = _pop_span(lines, code)
    if span is None:
        return None
    start, end, flow = span
    if field in ("prepend", "communities"):
        key, sub = "announce", f"{field}: {_flow(value)}"
    else:
        key, sub = "geodns", None
    if flow:
        line = lines[start]
        if key == "geodns":
            new = re.sub(r"geodns:\s*\[[^\]]*\]", lambda _m: f"geodns: {_flow(value)}", line)
        elif re.search(rf"announce:\s*\{{[^}}]*\b{field}:", line):
            new = re.sub(rf"({field}:\s*)(\[[^\]]*\]|\d+)", lambda m: m.group(1) + _flow(value), line)
        elif "announce:" in line:
            new = re.sub(r"announce:\s*\{", lambda _m: f"announce: {{{sub}, ", line)
        else:
            new = re.sub(r"\}(\s*(#.*)?)$", lambda m: f", announce: {{{sub}}}}}{m.group(1)}", line.rstrip("\n")) + "\n"
        if new == line:
            return None
        lines[start] = new
        return "".join(lines)
    block = lines[start:end]
    indent = " " * (len(block[0]) - len(block[0].lstrip()) + 2)
    for j, line in enumerate(block):
        stripped = line.strip()
        if key == "geodns" and stripped.startswith("geodns:"):
            block[j] = f"{indent}geodns: {_flow(value)}\n"
            break
        if key == "announce" and stripped.startswith("announce:"):
            if "{" in stripped:
                if re.search(rf"\b{field}:", stripped):
                    block[j] = re.sub(rf"({field}:\s*)(\[[^\]]*\]|\d+)", lambda m: m.group(1) + _flow(value), line)
                else:
                    block[j] = line.replace("{", f"{{{sub}, ", 1)
            else:
                return None  # a block-style announce mapping: leave it to the operator
            break
    else:
        block.append(f"{indent}{key}: {{{sub}}}\n" if key == "announce" else f"{indent}geodns: {_flow(value)}\n")
    lines[start:end] = block
    return "".join(lines)


def _check(text: str, code: str, field: str, value: Any, source: str) -> bool:
    try:
        doc = stack_yaml.parse(text, source)  # the edited file as Pulumi will read it
        net = parse_network(doc["config"][NETWORK_KEY], source)
    except (KeyError, TypeError, ConfigError):
        return False
    pop = net.pop(code)
    got = pop.geodns if field == "geodns" else getattr(pop.announce, field)
    return bool(got == value)


def advise(network: Network, report: Report, stack_path: Path, far_km: float = FAR_KM) -> tuple[list[Advice], str | None]:
    """The advice for ``report`` and a unified diff of ``stack_path`` applying every edit that could be made safely."""
    items = _pull_advice(network, report) + _geodns_advice(network, report, far_km)
    if not items or not stack_path.is_file():
        return items, None
    original = stack_path.read_text(encoding="utf-8")
    text = original
    kept: list[Advice] = []
    for item in items:
        if item.edit is None:
            kept.append(item)
            continue
        code, field, value = item.edit
        edited = _edit_text(text, code, field, value)
        if edited is not None and _check(edited, code, field, value, stack_path.name):
            text = edited
            kept.append(item)
        else:
            kept.append(Advice(item.kind, item.pop, item.text + " (edit the stack file by hand: no safe text edit found)",
                               item.evidence))
    if text == original:
        return kept, None
    diff = difflib.unified_diff(original.splitlines(keepends=True), text.splitlines(keepends=True),
                                f"a/{stack_path.name}", f"b/{stack_path.name}")
    return kept, "".join(diff)
