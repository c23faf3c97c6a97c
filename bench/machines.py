"""Machine-mode figures for `make bench`: the image build (cold into a scratch cache, then warm), prod booted as
Debian 12 containers to BGP convergence, and memory per PoP container (measured, not asserted).

Replaces a running prod lab; tears it down. Needs root, systemd-nspawn and debootstrap; without them it returns one
row saying why.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from infra.model.stack import load_network
from lab.boot.machines import PARALLEL
from lab.boot.up import down, up
from lab.drivers.image import ensure_image
from lab.drivers.machines import cloud_init_stages, cpu_seconds, memory_bytes, memory_rss_bytes, require_machines
from lab.net.netns import LabError
from lab.net.processes import require_tools

STACK = "prod"
MIB = 2**20


def run() -> list[tuple[str, float, str]]:
    try:
        require_tools()
        require_machines()
    except LabError as exc:
        return [("machines: skipped", 0.0, str(exc))]
    rows: list[tuple[str, float, str]] = []
    scratch = Path(tempfile.mkdtemp(prefix="anycast-lab-bench-", dir="/var/tmp"))
    try:
        t0 = time.monotonic()
        ensure_image(lambda _: None, cache=scratch)
        rows.append(("machines: image build, cold (debootstrap)", time.monotonic() - t0, "s (once per image inputs)"))
        t0 = time.monotonic()
        ensure_image(lambda _: None, cache=scratch)
        rows.append(("machines: image build, warm (cached)", time.monotonic() - t0, "s"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    network = load_network(STACK)
    try:
        t0 = time.monotonic()
        state = up(STACK, network, timeout=180, machines=True, quiet=True)
        ready = time.monotonic() - t0
        pops = state["pops"]
        names = [p["machine"]["name"] for p in pops.values()]
        usage = [memory_bytes(n) or 0 for n in names]
        rss = [memory_rss_bytes(n) or 0 for n in names]
        cpu = [c for c in (cpu_seconds(n) for n in names) if c is not None]
        per = [p["machine"]["boot_seconds"] for p in pops.values()]
        stages = [cloud_init_stages(p["pids"]["leader"]) for p in pops.values()]
    finally:
        down(STACK)
    cores = os.cpu_count() or 1
    rows += [
        ("machines: prod up to converged", state["boot_seconds"],
         f"s ({len(pops)} PoP containers, {PARALLEL} booting at once, cloud-init + packages each; image and mirror "
         "cached; every BGP session up, every client on its nearest PoP)"),
        ("machines: prod up, ready (+ HTTPS issued and fetched)", ready, "s (what `lab up` takes)"),
        ("machines: one PoP, container start -> cloud-init done", statistics.median(per),
         f"s median (max {max(per):.1f}; several boot at once on {cores} cores)"),
    ]
    for stage in ("init-local", "init", "modules-config", "modules-final"):
        times = [s[stage] for s in stages if stage in s]
        if times:
            rows.append((f"machines: one PoP, cloud-init stage {stage}", statistics.median(times),
                         f"s median (max {max(times):.1f})"
                         + ("; packages from the lab mirror, then runcmd" if stage == "modules-final" else "")))
    if cpu:
        rows += [
            ("machines: CPU per PoP boot (cpuacct)", statistics.median(cpu),
             f"s median (max {max(cpu):.1f}; systemd, cloud-init, apt/dpkg and the packages' scripts)"),
            ("machines: prod CPU floor (sum of PoP CPU / cores)", sum(cpu) / cores,
             f"s ({len(cpu)} PoPs on {cores} cores: no boot order beats this)"),
        ]
    rows += [
        ("machines: memory per PoP (cgroup usage)", statistics.median(usage) / MIB,
         f"MiB median (max {max(usage) / MIB:.0f}; includes page cache the container brought in)"),
        ("machines: memory per PoP (anonymous, rss)", statistics.median(rss) / MIB,
         f"MiB median (max {max(rss) / MIB:.0f}; the image's page cache is shared through the overlay)"),
    ]
    return rows
