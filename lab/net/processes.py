"""Daemons inside namespaces: start them in the foreground (no systemd), remember their pids, signal them."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from lab.net.netns import LabError

ROOT = Path(__file__).resolve().parents[2]
HEALTH_AGENT = ROOT / "userdata" / "files" / "anycast-health.py"
LOCAL_ADDRESSES = ROOT / "userdata" / "files" / "anycast-local-addresses.sh"
NEIGHBOR_ROUTE = ROOT / "userdata" / "files" / "anycast-neighbor-route.sh"


def python3() -> str:
    """The interpreter the agent runs with: the system python3 as on a PoP (stdlib only), else ours."""
    return "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


def start(ns: str, cmd: Sequence[str], log: Path, env: dict[str, str] | None = None) -> int:
    """Start ``cmd`` inside ``ns`` (``ip netns exec`` execs it, so the pid is the daemon's), output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    full_env.update(env or {})
    with open(log, "ab") as fh:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, env=full_env, close_fds=True)
    return proc.pid


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(") ", 1)[1][:1] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def signal_pids(pids: Sequence[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def stop(pid: int, timeout: float = 2.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; reap if it is our child."""
    signal_pids([pid], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.02)
    if alive(pid):
        signal_pids([pid], signal.SIGKILL)
        time.sleep(0.05)
    _reap(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def require_tools() -> None:
    """Raise LabError naming every missing daemon or tool."""
    missing = [t for t in ("ip", "bird", "birdc", "nsd", "caddy", "gobgpd", "gobgp", "dig", "curl", "nft") if shutil.which(t) is None]
    if missing:
        raise LabError(f"missing tools: {', '.join(missing)} (make debs installs them)")
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces)")


def wait_for(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.02)
    return False
