"""The validating Unbound in every client namespace of a signed lab (lab/plan/signing.py): one per address family,
on the client's own loopback, started at ``anycast lab up`` and stopped with the namespaces."""

from __future__ import annotations

import subprocess
from pathlib import Path

from infra import safe_write
from lab.net.netns import LabError
from lab.net.processes import start
from lab.plan.signing import unbound_conf
from lab.plan.topology import LabPlan


def versions(plan: LabPlan) -> list[int]:
    """The families the lab's resolvers use: those the service has an address in."""
    net = plan.network
    return [v for v, a in ((4, net.service.ipv4), (6, net.service.ipv6)) if a is not None]


def start_resolvers(plan: LabPlan, base: Path, ds: str) -> dict[str, dict[str, int]]:
    """Client name -> {"4": pid, "6": pid}; LabError naming the file if Unbound refuses a config."""
    pids: dict[str, dict[str, int]] = {}
    for c in plan.clients:
        cdir = base / "clients" / c.name
        cdir.mkdir(parents=True, exist_ok=True)
        pids[c.name] = {}
        for v in versions(plan):
            conf = cdir / f"unbound{v}.conf"
            safe_write.write_file(conf, unbound_conf(plan, c, v, cdir, ds), 0o644)
            checked = subprocess.run(["unbound-checkconf", str(conf)], capture_output=True, text=True, check=False)
            if checked.returncode != 0:
                raise LabError(f"{conf}: unbound-checkconf: {(checked.stdout + checked.stderr).strip()[:300]}")
            pids[c.name][str(v)] = start(c.namespace, ["unbound", "-d", "-c", str(conf)], cdir / f"unbound{v}.out")
    return pids
