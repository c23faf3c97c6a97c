"""Rollout waves and the cost of the overlap between old and new PoPs (pure: the program and the lab use it).

``rollout.waves`` splits the Vultr PoPs, in document order, into waves: ``[1, 2, 5, "all"]`` is a canary of one,
then two, then five, then every PoP left. The instances of wave k+1 depend on the readiness gates of wave k
(``__main__.py``), so a wave starts only when every PoP of the wave before serves.

Overlap: Pulumi deletes replaced instances at the end of the update (create-before-delete), so every new instance
runs beside its old one from the start of its wave until the last wave passed. Vultr bills instances by the hour
, capped at the monthly price (vultr.com/pricing); the estimate uses the plan's monthly price / 730 hours.

Worst case: Pulumi's Python dynamic-provider server runs its calls on ``ThreadPoolExecutor(max_workers=4)``
(``pulumi/dynamic/__main__.py`` in the pulumi SDK, checked in 3.259.0), so at most four gates poll at once and a
wave of n PoPs whose gates all run into ``gateTimeout`` takes ceil(n / 4) timeouts. Typical waves are not slower:
the instances boot together, and a gate that waited in the queue finds its PoP ready at its first polls.
"""

from __future__ import annotations

import math
from typing import Any

from infra.derived.cost import price_table
from infra.model import Network

HOURS_PER_MONTH = 730
DYNAMIC_PROVIDER_WORKERS = 4  # gates polled at once (see the docstring)
TYPICAL_WAVE_MINUTES = 5.0  # boot + cloud-init + BGP + gate polls of a Debian 12 PoP: an estimate, see docs/deploy.md


def rollout_waves(network: Network, only: set[str] | None = None) -> list[list[str]]:
    """The Vultr PoP codes of each wave (PoPs outside ``only`` are skipped; empty waves dropped)."""
    codes = [p.code for p in network.pops if p.is_vultr and (only is None or p.code in only)]
    waves: list[list[str]] = []
    for size in network.rollout.waves:
        if not codes:
            break
        n = len(codes) if size == "all" else int(size)
        waves.append(codes[:n])
        codes = codes[n:]
    if codes:
        waves.append(codes)
    return waves


def overlap_estimate(network: Network, wave_minutes: float = TYPICAL_WAVE_MINUTES) -> dict[str, Any]:
    """What the old+new overlap of a rollout that replaces every Vultr PoP costs, typical and worst case."""
    waves = rollout_waves(network)
    table = price_table()["vultr"]
    hourly = {p.code: float(table[p.plan]) / HOURS_PER_MONTH for p in network.pops if p.is_vultr and p.plan in table}
    typical = [wave_minutes] * len(waves)
    worst = [worst_wave_minutes(len(wave), network.rollout.gate_timeout, wave_minutes) for wave in waves]

    def usd(minutes: list[float]) -> float:
        # A PoP of wave i (0-based) overlaps its old instance for the waves i..last.
        return round(sum(hourly.get(code, 0.0) * sum(minutes[i:]) / 60 for i, wave in enumerate(waves) for code in wave), 4)

    return {
        "waves": waves,
        "extraInstances": sum(len(w) for w in waves),
        "typicalMinutes": round(sum(typical), 1),
        "typicalExtraUsd": usd(typical),
        "worstCaseMinutes": round(sum(worst), 1),
        "worstCaseExtraUsd": usd(worst),
        "assumes": f"every Vultr PoP replaced; {wave_minutes:g} min per wave typical; worst: ceil(PoPs of the wave / "
                   f"{DYNAMIC_PROVIDER_WORKERS}) x gateTimeout ({network.rollout.gate_timeout} s) + {wave_minutes:g} min, "
                   f"{DYNAMIC_PROVIDER_WORKERS} gates polling at once; plan price / {HOURS_PER_MONTH} h",
    }


def worst_wave_minutes(pops: int, gate_timeout_s: int, wave_minutes: float = TYPICAL_WAVE_MINUTES) -> float:
    """A wave whose every gate times out: the gates queue for the dynamic provider's worker threads."""
    return math.ceil(pops / DYNAMIC_PROVIDER_WORKERS) * gate_timeout_s / 60 + wave_minutes
