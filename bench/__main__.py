"""`make bench`: run every benchmark module that is present, print one table of figures and write it to
docs/figures.md with the machine, the date and the commit, the one place README and docs point to for measured
figures (typed by hand they drift). ``BENCH=render,program`` runs only those modules (the file says which ran)."""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

MODULES = ("bench.render", "bench.program", "bench.lab", "bench.health", "bench.machines", "bench.rollout",
           "bench.hardening", "bench.audit", "bench.convergence", "bench.damping")
ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "docs" / "figures.md"


def _commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=12"],
                             capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return out or "unknown"


def _machine() -> str:
    cpu = ""
    with contextlib.suppress(OSError):
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    load = ", load average {:.2f} {:.2f} {:.2f} at the end".format(*os.getloadavg()) if hasattr(os, "getloadavg") else ""
    return (f"{platform.system()} {platform.release()}, {os.cpu_count()} cores{f' ({cpu})' if cpu else ''}, "
            f"Python {platform.python_version()}{load}")


def figures_markdown(rows: list[tuple[str, float, str]], modules: list[str], commit: str, machine: str, when: str) -> str:
    skipped = [m.split(".", 1)[1] for m in MODULES if m.split(".", 1)[1] not in modules]
    lines = [
        "# Measured figures",
        "",
        "Written by `make bench` (bench/__main__.py); do not edit by hand, run it again. README and docs point here",
        "instead of repeating numbers. Timing figures depend on the machine and on what else runs on it.",
        "",
        f"- date: {when}",
        f"- commit: {commit}",
        f"- machine: {machine}",
        f"- modules: {', '.join(modules)}",
        *([f"- not run this time (BENCH=..., or absent): {', '.join(skipped)}"] if skipped else []),
        "",
        "| figure | value | unit and context |",
        "| --- | ---: | --- |",
    ]
    lines += [f"| {name.replace('|', '/')} | {value:.3f} | {unit.replace('|', '/')} |" for name, value, unit in rows]
    return "\n".join(lines) + "\n"


def main() -> int:
    wanted = [f"bench.{m.strip()}" for m in os.environ.get("BENCH", "").split(",") if m.strip()]
    unknown = [m for m in wanted if m not in MODULES]
    if unknown:
        print(f"BENCH: unknown module(s) {', '.join(m.split('.', 1)[1] for m in unknown)}; known: {', '.join(m.split('.')[1] for m in MODULES)}",
              file=sys.stderr)
        return 2
    rows: list[tuple[str, float, str]] = []
    ran: list[str] = []
    for name in wanted or MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows += module.run()
        ran.append(name.split(".")[1])
    width = max(len(r[0]) for r in rows)
    for name, value, unit in rows:
        print(f"{name:<{width}}  {value:10.3f}  {unit}")
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    FIGURES.write_text(figures_markdown(rows, ran, _commit(), _machine(), when), encoding="utf-8")
    print(f"wrote {FIGURES.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
