"""Machine mode: every PoP is a Debian 12 container booted by ``systemd-nspawn`` from its own rendered
``user-data.yaml`` (a cloud-init NoCloud seed, byte for byte), inside the PoP's lab network namespace.

Per container (name = the PoP's namespace name, e.g. ``acl-dev-p-ams``):

* root file system: an overlay of the cached image (:mod:`lab.drivers.image`) with an upper directory under
  ``.lab/<stack>/machines/<code>/`` (the image stays untouched; the page cache of the image is shared);
* the NoCloud seed ``/var/lib/cloud/seed/nocloud/{user-data,meta-data}``; ``user-data`` is the rendered file's bytes;
* outside the user data (the lab substitutions, listed in docs/lab.md): apt sources pointing at the lab's package
  mirror (:mod:`lab.cloud.mirror`), and ``anycast0`` created beforehand as a veth pair because this kernel has no ``dummy``
  link type (the rendered unit's ``-ip link add anycast0 type dummy`` then fails harmlessly, its ``-`` prefix
  ignores that, and the rest of the unit runs unchanged);
* its own cgroup directory under the ``name=systemd``, ``unified``, ``memory`` (and ``cpuacct``, for its CPU time)
  hierarchies, which the launching shell joins before exec'ing nspawn: without it every container's systemd shares
  one cgroup and their units collide;
* ``systemd-nspawn -D ROOT -M NAME -b --register=no --keep-unit --console=read-only
  --network-namespace-path=/run/netns/NS --capability=CAP_NET_ADMIN`` (no host systemd/machined here, hence the
  first two flags; BIRD needs CAP_NET_ADMIN for its sockets). ``read-only``: nspawn drains the console into
  ``console.log``; with ``passive`` nobody reads the console's pseudo-TTY, and once its buffer is full every write to
  /dev/console blocks (seen: PID 1 and cloud-init's keys-to-console stuck in ``file_tty_write``, boot never done). https://www.freedesktop.org/software/systemd/man/252/systemd-nspawn.html
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.net.netns import NETNS_DIR, LabError, namespace_pids, run

CGROUP_FS = Path("/sys/fs/cgroup")
HIERARCHIES = ("systemd", "unified", "memory", "cpuacct")  # cpuacct: CPU per PoP for make bench (where mounted)
NSENTER = ("nsenter", "-a", "-t")
# /proc/sys/net writable in the container, the rest of /proc/sys read-only: the container has its own network namespace
# (the PoP's), so its net.* settings are its own, as on a VM, and systemd-sysctl applies the rendered ones.
# https://www.freedesktop.org/software/systemd/man/252/systemd-nspawn.html (SYSTEMD_NSPAWN_API_VFS_WRITABLE)
NSPAWN_ENV = {"SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"}


@dataclass(frozen=True)
class MachineSpec:
    code: str
    name: str  # container name = the PoP's namespace name
    namespace: str
    user_data: bytes
    mirror_url: str  # http://<upstream address>:<port>/
    files: tuple[tuple[str, bytes], ...] = ()  # root-relative path, content: the lab's other substitutions (docs/lab.md)


def cgroup_dirs(name: str) -> list[Path]:
    """The container's cgroup directories, at the top of the ``name=systemd``, ``unified`` and ``memory``
    hierarchies: nspawn's --keep-unit takes the launching process's cgroup as the container's, and a fixed place
    lets any later ``lab down`` find them (whatever cgroup that process runs in)."""
    return [CGROUP_FS / h / name for h in HIERARCHIES if (CGROUP_FS / h).is_dir()]


def require_machines() -> None:
    """Raise LabError naming what machine mode lacks on this host."""
    missing = [t for t in ("systemd-nspawn", "nsenter", "debootstrap", "apt-ftparchive") if shutil.which(t) is None]
    if missing:
        raise LabError(f"machine mode needs {', '.join(missing)} (make debs installs systemd-container, debootstrap, "
                       "apt-utils)")
    if not (CGROUP_FS / "systemd").is_dir():
        raise LabError("machine mode is written for the hybrid cgroup layout (name=systemd, unified and memory "
                       "hierarchies under /sys/fs/cgroup); this host has none at /sys/fs/cgroup/systemd")
    if "overlay" not in Path("/proc/filesystems").read_text(encoding="ascii"):
        raise LabError("machine mode needs overlayfs (modprobe overlay)")


def meta_data(spec: MachineSpec, stack: str) -> str:
    return f"instance-id: anycast-lab-{stack}-{spec.code}\nlocal-hostname: {spec.name}\n"


def prepare(spec: MachineSpec, image: Path, mdir: Path, stack: str) -> Path:
    """Overlay root for ``spec`` under ``mdir`` with the seed and the lab's apt source; returns the merged root."""
    upper, work, root = mdir / "upper", mdir / "work", mdir / "root"
    for d in (upper, work, root):
        d.mkdir(parents=True, exist_ok=True)
    run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={image},upperdir={upper},workdir={work}", str(root)])
    seed = root / "var/lib/cloud/seed/nocloud"
    seed.mkdir(parents=True, exist_ok=True)
    (seed / "user-data").write_bytes(spec.user_data)
    (seed / "meta-data").write_text(meta_data(spec, stack), encoding="utf-8")
    (root / "etc/apt/sources.list").write_text(
        f"# anycast lab: the lab's package mirror (lab/cloud/mirror.py), not Debian's\n"
        f"deb [trusted=yes] {spec.mirror_url} ./\n", encoding="utf-8")
    for rel, content in spec.files:
        path = root / rel
        if path.is_symlink():  # e.g. a resolv.conf symlink: replace the link, never write through it to the image
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


def precreate_anycast0(ns: str) -> None:
    """``anycast0`` as a veth pair (no dummy links in this kernel), DAD off as on a dummy (NOARP) link."""
    run(["ip", "-n", ns, "-batch", "-"], input_text="link add anycast0 type veth peer name anycast0p\n"
                                                    "link set anycast0p up\n")
    run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.anycast0.accept_dad=0"])


def launch(spec: MachineSpec, root: Path, log: Path) -> int:
    """Start nspawn for ``spec`` from its own cgroup directories; return the pid of the shell that runs it (again
    after a reboot)."""
    dirs = cgroup_dirs(spec.name)
    for d in dirs:
        d.mkdir(exist_ok=True)
    join = "; ".join(f"echo $$ > {d}/cgroup.procs" for d in dirs)
    cmd = ["systemd-nspawn", "-q", "-D", str(root), "-M", spec.name, "-b", "--register=no", "--keep-unit",
           "--console=read-only", f"--network-namespace-path={NETNS_DIR / spec.namespace}",
           "--capability=CAP_NET_ADMIN", "--resolv-conf=off", "--timezone=off", "--link-journal=no"]
    # A `systemctl reboot` inside makes nspawn exit with 133 (systemd-nspawn(1), "EXIT STATUS"): start it again, as
    # systemd-nspawn@.service does (RestartForceExitStatus=133), so a PoP that reboots comes back like a VM.
    loop = 'while :; do "$@"; rc=$?; [ "$rc" -eq 133 ] || exit "$rc"; done'
    with open(log, "ab") as fh:
        proc = subprocess.Popen(["/bin/sh", "-c", f"{join}; {loop}", "sh", *cmd], stdout=fh,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, **NSPAWN_ENV})
    return proc.pid


def leader(ns: str) -> int | None:
    """The container's PID 1 (systemd) as seen from the host: the process of ``ns`` whose last NSpid is 1."""
    for pid in namespace_pids(ns):
        try:
            status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
        except OSError:
            continue
        m = re.search(r"^NSpid:\s+(.+)$", status, re.M)
        if m and len(m.group(1).split()) > 1 and m.group(1).split()[-1] == "1":
            return pid
    return None


def wait_leader(ns: str, nspawn_pid: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = leader(ns)
        if pid is not None:
            return pid
        if not Path(f"/proc/{nspawn_pid}").exists():
            break
        time.sleep(0.05)
    raise LabError(f"{ns}: the container did not start (see its console.log)")


def nsexec(pid: int, cmd: Sequence[str], check: bool = False, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` inside the container whose PID 1 is ``pid`` (all its namespaces)."""
    try:
        return subprocess.run([*NSENTER, str(pid), *cmd], capture_output=True, text=True, timeout=timeout,
                              check=check)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(cmd)} in pid {pid}: timed out after {timeout} s") from exc
    except subprocess.CalledProcessError as exc:
        raise LabError(f"{' '.join(cmd)} in pid {pid}: exit {exc.returncode}: {exc.stderr.strip()}") from exc


@dataclass(frozen=True)
class CloudInit:
    status: str  # done, error, running, ...
    detail: str  # cloud-init's own errors, or the failing lines of cloud-init-output.log


APT_ERRORS = re.compile(r"^(E: .*|.*Unable to locate package.*)$", re.M)


def finished_without_errors(run_dir: Path) -> bool | None:
    """cloud-init's verdict from ``status.json`` and ``result.json`` in ``run_dir`` (``/run/cloud-init``), the files
    ``cloud-init status`` reads (cloudinit/cmd/status.py, get_status_details, 22.4): True when every stage finished
    without errors; False when there are errors; None while a stage still runs or the files are incomplete. Saves a
    Python start of cloud-init per PoP (about 0.35 s of CPU each, 7 s for prod on 2 cores).
    https://github.com/canonical/cloud-init/blob/22.4/cloudinit/cmd/status.py"""
    try:
        status = json.loads((run_dir / "status.json").read_text(encoding="utf-8")).get("v1", {})
        result = json.loads((run_dir / "result.json").read_text(encoding="utf-8")).get("v1", {})
    except (OSError, ValueError):
        return None
    if status.get("stage"):
        return None
    stages = [v for v in status.values() if isinstance(v, dict)]
    if any((v.get("start") or 0) and not (v.get("finished") or 0) for v in stages):
        return None
    errors = [e for v in stages for e in v.get("errors", [])] + list(result.get("errors", []))
    return not errors and bool(stages)


def wait_cloud_init(pid: int, timeout: float = 300) -> CloudInit:
    """Wait until cloud-init inside the container has finished (its ``result.json``); done without errors is read
    from its status files (:func:`finished_without_errors`); on an error or a timeout, the reason from ``cloud-init
    status --long`` and the failing lines of its output log."""
    deadline = time.monotonic() + timeout
    # cloud-init writes /run/cloud-init/result.json when its last stage ends: polling that file costs nothing,
    # while each `cloud-init status` is a Python start (about a second of CPU; 20 PoPs polling would starve the boot).
    result = Path(f"/proc/{pid}/root/run/cloud-init/result.json")
    while not result.exists() and time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return CloudInit("gone", f"the container (pid {pid}) exited during boot")
        time.sleep(0.25)
    # Done without errors is read from cloud-init's own files, as `cloud-init status` does; anything else asks it.
    while result.exists() and time.monotonic() < deadline:
        done = finished_without_errors(Path(f"/proc/{pid}/root/run/cloud-init"))
        if done:
            return CloudInit("done", "")
        if done is not None:
            break
        time.sleep(0.1)
    out = nsexec(pid, ["cloud-init", "status", "--long"]).stdout
    m = re.search(r"^status: (\S+)", out, re.M)
    status = m.group(1) if m else "unknown"
    if not result.exists():
        status = f"{status} after {timeout:.0f} s"
    detail = ""
    if status != "done":
        log = nsexec(pid, ["cat", "/var/log/cloud-init-output.log"]).stdout
        apt = APT_ERRORS.findall(log)
        errs = re.findall(r"^\s+- (.+)$", out.split("errors:", 1)[1], re.M) if "errors:" in out else []
        tail = " | ".join(log.strip().splitlines()[-3:])
        detail = "; ".join(dict.fromkeys(apt + errs)) or f"{out.strip()[-200:]}; cloud-init-output.log ends: {tail}"
    return CloudInit(status, detail)


def memory_bytes(name: str) -> int | None:
    """Memory charged to the container's memory cgroup (RSS + page cache it brought in)."""
    for d in cgroup_dirs(name):
        f = d / "memory.usage_in_bytes"
        if f.exists():
            return int(f.read_text(encoding="ascii"))
    return None


def cpu_seconds(name: str) -> float | None:
    """CPU time of every process the container ever ran (cgroup v1 ``cpuacct.usage``), None without cpuacct."""
    f = CGROUP_FS / "cpuacct" / name / "cpuacct.usage"
    return int(f.read_text(encoding="ascii")) / 1e9 if f.exists() else None


def cloud_init_stages(pid: int) -> dict[str, float]:
    """Seconds of each cloud-init stage (init-local, init, modules-config, modules-final) from its status.json."""
    try:
        v1 = json.loads(Path(f"/proc/{pid}/root/run/cloud-init/status.json").read_text(encoding="utf-8"))["v1"]
    except (OSError, ValueError, KeyError):
        return {}
    return {k: v["finished"] - v["start"] for k, v in v1.items()
            if isinstance(v, dict) and v.get("start") and v.get("finished")}


def memory_rss_bytes(name: str) -> int | None:
    """Anonymous memory (total_rss) of the container: what it costs beyond the shared image page cache."""
    for d in cgroup_dirs(name):
        f = d / "memory.stat"
        if f.exists():
            stat = dict(line.split() for line in f.read_text(encoding="ascii").splitlines())
            return int(stat.get("total_rss", 0))
    return None


def _cgroup_pids(d: Path) -> list[int]:
    pids: list[int] = []
    try:
        files = list(d.rglob("cgroup.procs"))
    except OSError:  # a container's systemd removed a unit's cgroup while we walked the tree: walk again
        return _cgroup_pids(d) if d.is_dir() else []
    for f in files:
        with contextlib.suppress(OSError):
            pids += [int(x) for x in f.read_text(encoding="ascii").split()]
    return pids


def _rmdir_tree(d: Path) -> None:
    if not d.is_dir():
        return
    for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        d.rmdir()


def lab_cgroups(prefix: str) -> list[Path]:
    """Every container cgroup directory named ``prefix*`` (left over or running)."""
    out: list[Path] = []
    for h in HIERARCHIES:
        parent = CGROUP_FS / h
        if parent.is_dir():
            out += [d for d in parent.iterdir() if d.is_dir() and d.name.startswith(prefix)]
    return out


def lab_mounts(under: Path) -> list[Path]:
    """Overlay mounts of the lab below ``under`` (from /proc/self/mountinfo), deepest first."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text(encoding="utf-8").splitlines():
        mnt = line.split()[4].replace("\\040", " ")
        if mnt.startswith(str(under) + "/"):
            out.append(Path(mnt))
    return sorted(out, key=lambda p: len(p.parts), reverse=True)


def stop_all(prefix: str, under: Path | None, grace: float = 10.0) -> int:
    """Power off every container whose cgroup is named ``prefix*`` (SIGRTMIN+4 to its systemd, as ``poweroff``),
    SIGKILL what is left after ``grace``, remove the cgroup directories and unmount the overlays below ``under``.
    Returns the number of containers found. Idempotent."""
    groups = lab_cgroups(prefix)
    names = sorted({g.name for g in groups})
    leaders: list[int] = []
    for g in groups:
        if g.parent == CGROUP_FS / "systemd":
            for pid in _cgroup_pids(g):
                with contextlib.suppress(OSError):
                    status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
                    m = re.search(r"^NSpid:\s+(.+)$", status, re.M)
                    if m and m.group(1).split()[-1] == "1" and len(m.group(1).split()) > 1:
                        leaders.append(pid)
    for pid in leaders:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGRTMIN + 4)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_cgroup_pids(g) for g in groups):
        time.sleep(0.1)
    for g in groups:
        for pid in _cgroup_pids(g):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_cgroup_pids(g) for g in groups):
        time.sleep(0.05)
    for g in groups:
        _rmdir_tree(g)
    if under is not None:
        for mnt in lab_mounts(under):
            run(["umount", str(mnt)], check=False)
            if mnt in lab_mounts(under):
                run(["umount", "-l", str(mnt)], check=False)
    return len(names)
