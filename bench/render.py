"""How long rendering takes: the whole prod stack, and a generated 200-PoP network."""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from infra.cli.render import write_rendered
from infra.model import parse_network
from infra.model.regions import vultr_regions
from infra.model.stack import NETWORK_KEY, load_network, read_stack_config
from userdata.render import render_network

PASSWORD = "bench-password"


def big_network_doc(count: int = 200) -> dict[str, Any]:
    """The prod document with ``count`` anycast PoPs spread over every Vultr region (codes r000, r001, ...)."""
    doc = copy.deepcopy(read_stack_config("prod")[NETWORK_KEY])
    regions = list(vultr_regions())
    doc["pops"] = [{"code": f"r{i:03d}", "region": regions[i % len(regions)]} for i in range(count)]
    return doc


def _median(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run() -> list[tuple[str, float, str]]:
    prod = load_network("prod")
    big = parse_network(big_network_doc())
    with tempfile.TemporaryDirectory() as tmp:
        render_to_disk = _median(lambda: write_rendered(prod, PASSWORD, Path(tmp)), 5)
    return [
        ("model: validate prod (20 PoPs)", _median(lambda: load_network("prod"), 20), "s, median of 20"),
        ("render: prod, 20 PoPs in memory", _median(lambda: render_network(prod, PASSWORD), 10), "s, median of 10"),
        ("render: prod to disk (anycast render)", render_to_disk, "s, median of 5"),
        ("render: generated 200 PoPs in memory", _median(lambda: render_network(big, PASSWORD), 3), "s, median of 3"),
    ]
