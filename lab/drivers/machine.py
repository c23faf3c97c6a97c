"""The machine-mode PoP driver: the PoP is a Debian 12 container whose systemd runs the daemons from their units, so
the lab asks that systemd (``nsenter`` into the container, then ``systemctl``) and maps a unit's MainPID to the host's
pid."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from infra.contracts import HEALTH_AGENT, HEALTH_CONFIG_FILE, HEALTH_UNIT
from lab.drivers.base import PopDriver
from lab.drivers.machines import nsexec
from lab.net.netns import LabError, namespace_pids
from lab.state import PopState

UNITS = {"caddy": "caddy.service", "bird": "bird.service", "nsd": "nsd.service", "health": HEALTH_UNIT,
         "nftables": "nftables.service"}
AGENT_CLI = HEALTH_AGENT  # where the user data installs the agent (write_files, 0755)


def seconds(value: str) -> float:
    """systemd's time span text ('2s', '100ms', '1min 30s', 'infinity', '0') in seconds (0 if none)."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1, "min": 60, "h": 3600}
    return sum(float(num) * units[unit] for num, unit in re.findall(r"([\d.]+)\s*(us|ms|min|s|h)", value))


def host_pid(ns: str, inner: int) -> int | None:
    """The host pid of the process that is ``inner`` in the container's PID namespace."""
    for pid in namespace_pids(ns):
        with contextlib.suppress(OSError):
            m = re.search(r"^NSpid:\s+(.+)$", Path(f"/proc/{pid}/status").read_text(encoding="ascii"), re.M)
            if m and len(m.group(1).split()) > 1 and int(m.group(1).split()[-1]) == inner:
                return pid
    return None


class MachinePop(PopDriver):
    systemd = True

    def __init__(self, pst: PopState) -> None:
        super().__init__(pst)
        self.leader = int(pst["pids"]["leader"])  # the container's PID 1 on the host

    def systemctl(self, *args: str, check: bool = True, timeout: float = 30) -> str:
        res = nsexec(self.leader, ["systemctl", *args], timeout=timeout)
        if check and res.returncode != 0:
            raise LabError(f"systemctl {' '.join(args)} in {self.namespace}: exit {res.returncode}: "
                           f"{(res.stderr or res.stdout).strip()}")
        return res.stdout

    def show(self, name: str, *props: str) -> dict[str, str]:
        out = self.systemctl("show", "-p", ",".join(props), UNITS[name])
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def auto_restart(self, name: str) -> bool:
        return self.show(name, "Restart").get("Restart", "no") != "no"

    def restarts(self, name: str) -> int:
        return int(self.show(name, "NRestarts").get("NRestarts") or 0)

    def systemd_restart(self, name: str, before: int, after: float, timeout: float) -> float | None:
        """NRestarts above ``before`` and the unit active; the time is its ActiveEnterTimestampMonotonic (the
        container's systemd and this process read the same CLOCK_MONOTONIC)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = self.show(name, "NRestarts", "ActiveState", "ActiveEnterTimestampMonotonic")
            if int(p.get("NRestarts") or 0) > before and p.get("ActiveState") == "active":
                t = int(p.get("ActiveEnterTimestampMonotonic") or 0) / 1e6
                now = time.monotonic()
                return t if after <= t <= now else now
            time.sleep(0.05)
        return None

    def main_pid(self, name: str) -> int:
        inner = int(self.systemctl("show", "-p", "MainPID", "--value", UNITS[name]).strip() or 0)
        pid = host_pid(self.namespace, inner) if inner else None
        if pid is None:
            raise LabError(f"{UNITS[name]} has no running main process in {self.namespace}")
        return pid

    def agent_pid(self, timeout: float = 5.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(LabError):
                return self.main_pid("health")
            if time.monotonic() > deadline:
                raise LabError(f"no running anycast-health.service at {self.namespace}")
            time.sleep(0.05)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        # SIGHUP is a reload: to the main PID only, as the units' ExecReload= (kill -HUP $MAINPID). NSD's main PID
        # is xfrd, which has the server reload; a SIGHUP to every process would have both start one.
        whom = ["--kill-whom=main"] if sig == signal.SIGHUP else []
        self.systemctl("kill", *whom, f"--signal={signal.Signals(sig).name}", UNITS[name])

    def crash(self, name: str) -> None:
        # SIGKILL to every process of the unit; systemd then applies the unit's Restart=
        self.kill(name)

    def stop(self, name: str) -> None:
        # systemctl stop: a killed unit with Restart= (Caddy: the user data's drop-in) would come back by itself
        self.systemctl("stop", UNITS[name])

    def restart(self, name: str) -> int:
        # as an operator would: systemctl restart
        self.systemctl("reset-failed", UNITS[name], check=False)
        self.systemctl("restart", UNITS[name])
        pid = self.main_pid(name)
        self.pst["pids"][name] = pid
        return pid

    def exec(self, cmd: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return nsexec(self.leader, cmd, timeout=timeout)

    def agent_cli(self, flag: str, timeout: float = 90.0) -> tuple[int, str]:
        try:
            res = nsexec(self.leader, [AGENT_CLI, *flag.split()], timeout=timeout)
        except LabError as exc:
            return 1, str(exc)
        return res.returncode, (res.stdout + res.stderr).strip()

    def health_config(self) -> dict[str, Any]:
        # the health.json the user data wrote inside the container
        return dict(json.loads(Path(f"/proc/{self.leader}/root{HEALTH_CONFIG_FILE}").read_text()))
