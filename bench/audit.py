"""Lynis figures for `make bench` (docs/security.md, "Lynis"): the hardening index of a booted dev PoP (the machine
lab's audit row) and of the plain Debian 12 image the PoPs boot from, before any user data (Lynis run in the image
under ``systemd-nspawn --volatile=overlay``, not booted: nothing of the image changes).

Replaces a running dev lab; tears it down. Needs root, systemd-nspawn, debootstrap and Debian's lynis; without them
it returns one row saying why.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from infra.model.stack import load_network
from lab.boot.up import down, up
from lab.checks.audit import LYNIS_FILES, LYNIS_GOAL, lynis, parse_lynis_report
from lab.drivers.image import ensure_image
from lab.drivers.machines import require_machines
from lab.net.netns import LabError
from lab.net.processes import require_tools

STACK = "dev"
CGROUP = "anycast-bench-lynis"


def plain_image_index(image: Path) -> tuple[int, int]:
    """(index, tests) of Lynis in the image, read-only below a throw-away overlay, no network."""
    with tempfile.TemporaryDirectory(prefix="anycast-lynis-") as tmp:
        work = Path(tmp)
        for name, src in LYNIS_FILES.items():
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, work / name)
        dirs = [d for d in (Path("/sys/fs/cgroup") / h / CGROUP for h in ("systemd", "unified", "memory"))
                if d.parent.is_dir()]
        for d in dirs:
            d.mkdir(exist_ok=True)
        join = "; ".join(f"echo $$ > {d}/cgroup.procs" for d in dirs)
        cmd = ["systemd-nspawn", "-q", "-D", str(image), "--volatile=overlay", "--register=no", "--keep-unit",
               "--private-network", "--resolv-conf=off", "--timezone=off", "--link-journal=no",
               f"--bind={work}:/run/lynis", "--chdir=/run/lynis", "/bin/sh", "-c",
               "./lynis audit system --quick --no-colors --profile default.prf --logfile /run/lynis/lynis.log "
               "--report-file /run/lynis/report.dat </dev/null >/dev/null 2>&1"]
        try:
            subprocess.run(["/bin/sh", "-c", f"{join}; exec \"$@\"", "sh", *cmd], capture_output=True, timeout=600,
                           check=False)
        finally:
            for d in dirs:
                for sub in sorted(d.rglob("*"), reverse=True):
                    if sub.is_dir():
                        sub.rmdir()
                d.rmdir()
        report = work / "report.dat"
        index, tests, _ = parse_lynis_report(report.read_text(encoding="utf-8") if report.exists() else "")
    if index is None:
        raise LabError("lynis in the plain image wrote no hardening index")
    return index, tests


def run() -> list[tuple[str, float, str]]:
    try:
        require_tools()
        require_machines()
    except LabError as exc:
        return [("audit: skipped", 0.0, str(exc))]
    image = ensure_image(lambda _: None)
    index, tests = plain_image_index(image)
    rows = [("lynis: plain Debian 12 image (not booted)", float(index),
             f"hardening index 0-100 ({tests} tests; goal for a PoP {LYNIS_GOAL})")]
    try:
        state = up(STACK, load_network(STACK), timeout=180, machines=True, quiet=True)
        code = next(iter(state["pops"]))
        got = lynis(int(state["pops"][code]["pids"]["leader"]))
    finally:
        down(STACK)
    rows.append((f"lynis: booted dev PoP ({code})", float(got.index),
                 f"hardening index 0-100 ({got.tests} tests, {len(got.findings)} findings, "
                 f"{len(got.unexplained)} unexplained; goal {LYNIS_GOAL})"))
    return rows


if __name__ == "__main__":
    for name, value, unit in run():
        print(f"{name:<45}  {value:5.1f}  {unit}")
