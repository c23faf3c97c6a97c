"""Timing of the Pulumi program under mocks: prod (20 PoPs) and a generated 200-PoP stack.

Each run is a fresh interpreter (tests/pulumi_mocks.py): "program" is the time from running __main__.py to every
output resolved (mock engine, no network, no CLI); "process" adds interpreter start and SDK imports.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from infra.model.regions import vultr_regions
from infra.model.stack import NETWORK_KEY, read_stack_config
from tests.pulumi_mocks import run_in_subprocess


def generated_network(pops: int = 200) -> dict[str, Any]:
    """The prod document with ``pops`` PoPs: Vultr anycast PoPs over every region, plus prod's unicast/external PoPs."""
    doc = copy.deepcopy(read_stack_config("prod")[NETWORK_KEY])
    keep = [p for p in doc["pops"] if p.get("mode") == "unicast" or p.get("provider") == "external"]
    regions = list(vultr_regions())
    generated = [{"code": f"{regions[i % len(regions)]}{i // len(regions)}", "region": regions[i % len(regions)]}
                 for i in range(pops - len(keep))]
    doc["pops"] = generated + keep
    return doc


def _timed(stack: str, network: dict[str, Any] | None = None) -> tuple[float, float, int]:
    start = time.perf_counter()
    result = run_in_subprocess(stack, network=network, timeout=900)
    return float(result["seconds"]), time.perf_counter() - start, len(result["resources"])


def run() -> list[tuple[str, float, str]]:
    """(name, seconds, note) rows for `make bench`."""
    rows: list[tuple[str, float, str]] = []
    for label, stack, network in (("prod", "prod", None), ("200 PoPs", "bench200", generated_network(200))):
        program, process, resources = _timed(stack, network)
        rows.append((f"pulumi program under mocks, {label}", program,
                     f"{resources} resources registered, all outputs resolved"))
        rows.append((f"pulumi program under mocks, {label}, whole process", process,
                     "fresh interpreter: imports of pulumi, ediri_vultr, pulumi_aws included"))
    return rows


if __name__ == "__main__":
    for name, seconds, note in run():
        print(f"{name:60s} {seconds:8.2f} s  {note}")
