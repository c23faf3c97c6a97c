"""Kill, restart and find the daemons of a lab PoP in either mode.

Process mode: the lab started each daemon itself (``state['pops'][code]['pids'|'commands']``). Machine mode: the
PoP's systemd runs them from their units, so the lab asks that systemd (``nsenter`` into the container, then
``systemctl``) and maps the unit's MainPID to the host's pid.
"""

from __future__ import annotations

import contextlib
import re
import signal
import time
from pathlib import Path
from typing import Any

from infra.contracts import HEALTH_UNIT
from lab.netns import LabError, namespace_pids
from lab.processes import signal_pids, start

UNITS = {"caddy": "caddy.service", "bird": "bird.service", "nsd": "nsd.service", "health": HEALTH_UNIT,
         "nftables": "nftables.service"}


def leader(pst: dict[str, Any]) -> int | None:
    """The container's PID 1 on the host, or None in process mode."""
    return int(pst["pids"]["leader"]) if "machine" in pst else None


def systemctl(pst: dict[str, Any], *args: str, check: bool = True, timeout: float = 30) -> str:
    from lab.machines import nsexec

    pid = leader(pst)
    if pid is None:
        raise LabError("systemctl: not a machine-mode PoP")
    res = nsexec(pid, ["systemctl", *args], timeout=timeout)
    if check and res.returncode != 0:
        raise LabError(f"systemctl {' '.join(args)} in {pst['namespace']}: exit {res.returncode}: "
                       f"{(res.stderr or res.stdout).strip()}")
    return res.stdout


def show(pst: dict[str, Any], name: str, *props: str) -> dict[str, str]:
    """``systemctl show -p …`` of the daemon's unit (machine mode): property -> value."""
    out = systemctl(pst, "show", "-p", ",".join(props), UNITS[name])
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def auto_restart(pst: dict[str, Any], name: str) -> bool:
    """Machine mode: whether the daemon's unit restarts it by itself after a crash (``Restart=`` other than no)."""
    return leader(pst) is not None and show(pst, name, "Restart").get("Restart", "no") != "no"


def restarts(pst: dict[str, Any], name: str) -> int:
    """How often systemd itself restarted the unit (NRestarts: ``Restart=`` only, not ``systemctl restart``)."""
    return int(show(pst, name, "NRestarts").get("NRestarts") or 0)


def systemd_restart(pst: dict[str, Any], name: str, before: int, after: float, timeout: float) -> float | None:
    """Wait until systemd itself has started ``name`` again (NRestarts above ``before``, unit active); the monotonic
    time it became active (its ActiveEnterTimestampMonotonic: the container's systemd and this process read the same
    CLOCK_MONOTONIC), or None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = show(pst, name, "NRestarts", "ActiveState", "ActiveEnterTimestampMonotonic")
        if int(p.get("NRestarts") or 0) > before and p.get("ActiveState") == "active":
            t = int(p.get("ActiveEnterTimestampMonotonic") or 0) / 1e6
            now = time.monotonic()
            return t if after <= t <= now else now
        time.sleep(0.05)
    return None


def host_pid(ns: str, inner: int) -> int | None:
    """The host pid of the process that is ``inner`` in the container's PID namespace."""
    for pid in namespace_pids(ns):
        with contextlib.suppress(OSError):
            m = re.search(r"^NSpid:\s+(.+)$", Path(f"/proc/{pid}/status").read_text(encoding="ascii"), re.M)
            if m and len(m.group(1).split()) > 1 and int(m.group(1).split()[-1]) == inner:
                return pid
    return None


def main_pid(pst: dict[str, Any], name: str) -> int:
    """The daemon's pid on the host (machine mode: its unit's MainPID); raises LabError if it is not running."""
    if leader(pst) is None:
        return int(pst["pids"][name])
    inner = int(systemctl(pst, "show", "-p", "MainPID", "--value", UNITS[name]).strip() or 0)
    pid = host_pid(pst["namespace"], inner) if inner else None
    if pid is None:
        raise LabError(f"{UNITS[name]} has no running main process in {pst['namespace']}")
    return pid


def kill(pst: dict[str, Any], name: str, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the daemon (machine mode: ``systemctl kill``, every process of its unit)."""
    if leader(pst) is None:
        signal_pids([int(pst["pids"][name])], sig)
    else:
        systemctl(pst, "kill", f"--signal={signal.Signals(sig).name}", UNITS[name])


def restart(pst: dict[str, Any], name: str, env: dict[str, str] | None = None, log: Path | None = None) -> int:
    """Start the daemon again; returns its new host pid (machine mode: ``systemctl restart`` of its unit)."""
    if leader(pst) is None:
        assert log is not None
        pid = start(pst["namespace"], pst["commands"][name], log, env=env)
        pst["pids"][name] = pid
        return pid
    systemctl(pst, "reset-failed", UNITS[name], check=False)
    systemctl(pst, "restart", UNITS[name])
    pid = main_pid(pst, name)
    pst["pids"][name] = pid
    return pid
