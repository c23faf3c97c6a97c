"""Estimated monthly cost of a network, from the plan price table in ``infra/data/plans.json``.

Assumptions (also in docs/monitoring.md): Vultr PoPs cost their plan's list price (BGP, one IPv4 and IPv6 are
included); external PoPs cost what ``anycast:externalPopCosts`` says for their code, else ``external_default``;
Route53 (hosted zone, queries, health checks) and traffic are not counted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

from infra.model import ConfigError, Network
from infra.model.fields import shown


@lru_cache(maxsize=1)
def price_table() -> dict[str, Any]:
    return dict(json.loads(resources.files("infra").joinpath("data/plans.json").read_text(encoding="utf-8")))


class UnknownPlanError(KeyError):
    """A Vultr plan that the price table does not list."""


def check_external_costs(network: Network, costs: Any) -> dict[str, float]:
    """``anycast:externalPopCosts`` as {external PoP code: USD per month}; ConfigError names the entry at fault."""
    key = "anycast:externalPopCosts"
    if costs is None:
        return {}
    if not isinstance(costs, Mapping):
        raise ConfigError([f"{key}: must be a mapping of external PoP code to monthly USD, like {{hkg: 40}}"])
    external = [p.code for p in network.pops if not p.is_vultr]
    out: dict[str, float] = {}
    for code, usd in costs.items():
        if code not in external:
            raise ConfigError([f"{key}.{shown(code)}: not an external PoP of this network "
                               f"(external PoPs: {', '.join(external) or 'none'})"])
        if isinstance(usd, bool) or not isinstance(usd, (int, float)) or not 0 <= usd < 1e6 or usd != usd:
            raise ConfigError([f"{key}.{code}: {shown(usd)} is not a monthly price in USD (a number like 40)"])
        out[code] = float(usd)
    return out


def estimate(network: Network, external_costs: Mapping[str, float] | None = None) -> dict[str, Any]:
    """``{"currency", "perPop": {code: {"provider", "plan", "usdPerMonth", "source"}}, "totalUsdPerMonth"}``.

    Raises:
        UnknownPlanError: a Vultr PoP uses a plan missing from ``infra/data/plans.json`` (add its price there).
    """
    table = price_table()
    external_costs = check_external_costs(network, external_costs)
    per_pop: dict[str, dict[str, Any]] = {}
    for pop in network.pops:
        if pop.is_vultr:
            if pop.plan not in table["vultr"]:
                raise UnknownPlanError(f"pops.{pop.code}: plan '{pop.plan}' has no price in infra/data/plans.json")
            usd, source, plan = float(table["vultr"][pop.plan]), "plans.json", pop.plan
        elif pop.code in external_costs:
            usd, source, plan = float(external_costs[pop.code]), "anycast:externalPopCosts", None
        else:
            usd, source, plan = float(table["external_default"]), "plans.json external_default", None
        per_pop[pop.code] = {"provider": pop.provider, "plan": plan, "usdPerMonth": usd, "source": source}
    total = round(sum(p["usdPerMonth"] for p in per_pop.values()), 2)
    from infra.derived.rollout import overlap_estimate  # here, not at the top: infra.derived.rollout reads this module's price table

    return {"currency": table["currency"], "perPop": per_pop, "totalUsdPerMonth": total,
            "notCounted": ["Route53 hosted zone, queries and health checks", "traffic above the plans' allowance"],
            "rollout": overlap_estimate(network)}  # old and new PoPs side by side during a gated rollout
