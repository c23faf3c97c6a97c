"""Can the machine that runs ``pulumi up`` reach the readiness gates?

Each gate polls a new PoP's health agent on tcp/9325 (``/status``), which nftables and the Vultr firewall open to
``admin.monitoringCidrs`` only; a deploying machine outside them waits ``rollout.gateTimeout`` at the canary and
fails. Once PoPs exist (``--outputs``: ``pulumi stack output --json``), this asks each Vultr PoP's status port exactly
as a gate does (infra/readiness.py ``http_get``). Before the first deploy there is no PoP to try, so it checks the
machine's public address against those networks instead. That address is an input (``--from``), never looked up on
the Internet. Without either, a GitHub-hosted runner (``RUNNER_ENVIRONMENT=github-hosted``, set by GitHub Actions)
fails: its address changes and it has no IPv6; the documented way is a self-hosted runner inside
``admin.monitoringCidrs`` (docs/deploy.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from infra.contracts import HEALTH_STATUS_PORT as STATUS_PORT
from infra.contracts import STATUS_PATH
from infra.model import Network
from infra.preflight.rows import Row, fail, passed, skip, warn
from infra.preflight.text import clean
from infra.readiness import http_get

SECTION = "gates"
WHAT = "gate reachability"


def gate_rows(network: Network, stack: str, sources: list[IPv4Address | IPv6Address], env: Mapping[str, str],
              outputs: dict[str, Any] | None = None, timeout: float = 3.0, status_port: int = STATUS_PORT) -> list[Row]:
    """``outputs``: the stack outputs (infra.monitoring.targets.load_outputs) when PoPs exist; ``status_port`` only for tests."""
    if not any(p.is_vultr for p in network.pops):
        return [skip(SECTION, WHAT, "no Vultr PoP, so no readiness gate")]
    family = 4 if network.prefixes.ipv4 is not None else 6  # infra/components/gate.py gate_addresses
    rows = [] if outputs is None else [_probe(outputs, family, timeout, status_port)]
    return rows + _address_rows(network, stack, sources, env, family)


def _probe(outputs: dict[str, Any], family: int, timeout: float, port: int) -> Row:
    what = f"status port of the PoPs (tcp/{port})"
    targets = {code: pop.get("ipv4" if family == 4 else "ipv6") for code, pop in sorted(outputs["pops"].items())
               if pop.get("provider") == "vultr"}
    targets = {code: addr for code, addr in targets.items() if isinstance(addr, str)}
    if not targets:
        return skip(SECTION, what, "the stack outputs list no Vultr PoP with an address yet")

    def ask(address: str) -> str | None:
        try:
            http_get(address, port, STATUS_PATH, timeout)
            return None
        except (OSError, ValueError) as exc:
            return clean(str(exc) or type(exc).__name__, 60)

    with ThreadPoolExecutor(max_workers=min(8, len(targets))) as pool:
        problems = dict(zip(targets, pool.map(ask, targets.values()), strict=True))
    failed = {code: why for code, why in problems.items() if why is not None}
    if not failed:
        return passed(SECTION, what, f"all {len(targets)} Vultr PoPs answer from here")
    shown = "; ".join(f"{code} ({targets[code]}: {why})" for code, why in list(failed.items())[:4])
    return fail(SECTION, what, f"{len(failed)} of {len(targets)} do not answer from here: {shown}",
                "run pulumi up from inside admin.monitoringCidrs (a self-hosted runner in CI), or add this machine's "
                "network there and pulumi up once from inside")


def _address_rows(network: Network, stack: str, sources: list[IPv4Address | IPv6Address], env: Mapping[str, str],
                  family: int) -> list[Row]:
    cidrs = [c for c in network.admin.monitoring_cidrs if c.version == family]
    if not cidrs:
        return [fail(SECTION, WHAT, f"admin.monitoringCidrs has no IPv{family} network: no machine can reach the gates' "
                     f"status port (tcp/{STATUS_PORT})", f"add the deploying machine's IPv{family} network to admin.monitoringCidrs "
                     f"in Pulumi.{stack}.yaml")]
    shown = ", ".join(str(c) for c in cidrs)
    if sources:
        usable = [a for a in sources if a.version == family]
        if not usable:
            return [fail(SECTION, WHAT, f"the gates poll the PoPs' IPv{family} addresses; --from gave no IPv{family} "
                         "address", f"run pulumi up from a machine with public IPv{family} inside {shown}")]
        outside = [a for a in usable if not any(a in c for c in cidrs)]
        if outside:
            return [fail(SECTION, WHAT, f"{', '.join(map(str, outside))} is outside admin.monitoringCidrs ({shown}): "
                         "every gate would time out at the canary", f"add {outside[0]}/{outside[0].max_prefixlen} (or its "
                         "network) to admin.monitoringCidrs, or run pulumi up from inside one")]
        return [passed(SECTION, WHAT, f"{', '.join(map(str, usable))} is inside admin.monitoringCidrs")]
    if env.get("GITHUB_ACTIONS") == "true" and env.get("RUNNER_ENVIRONMENT") == "github-hosted":
        return [fail(SECTION, WHAT, "a GitHub-hosted runner: its address is not in admin.monitoringCidrs (it changes, "
                     "and there is no IPv6)", "run the deploy job on a self-hosted runner inside admin.monitoringCidrs "
                     "(docs/deploy.md)")]
    where = "this self-hosted runner" if env.get("GITHUB_ACTIONS") == "true" else "this machine"
    return [warn(SECTION, WHAT, f"not checked: the public address of {where} is not known (it is not looked up)",
                 f"anycast preflight --stack {stack} --from <its public IPv{family} address>")]
