"""The PoP driver interface: how the lab acts on a PoP's daemons, whichever way the PoP runs.

Process mode (:mod:`lab.drivers.process`): the lab started each daemon itself (``state['pops'][code]['pids'|
'commands']``). Machine mode (:mod:`lab.drivers.machine`): the PoP is a container whose own systemd runs the daemons
from their units. Checks and scenarios get a driver from :func:`pop_driver` (or :func:`lab_driver` for the whole lab)
and call it; only the drivers know which mode runs. Daemon names: caddy, bird, nsd, health, nftables.
"""

from __future__ import annotations

import signal
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lab.state import LabState, PopState


class PopDriver(ABC):
    """One PoP of a running lab, from its entry in the lab state (``pst``, updated in place on restarts)."""

    # The PoP's own systemd runs its daemons: a unit's Restart= and WatchdogSec= act, journals hold the logs.
    systemd: bool = False

    def __init__(self, pst: PopState) -> None:
        self.pst = pst
        self.namespace = str(pst["namespace"])
        self.dir = Path(pst["dir"])

    @abstractmethod
    def main_pid(self, name: str) -> int:
        """The daemon's pid on the host; raises LabError if it is not running."""

    @abstractmethod
    def agent_pid(self, timeout: float = 5.0) -> int:
        """The running health agent's host pid, waiting up to ``timeout`` for a restarted one."""

    @abstractmethod
    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the daemon (machine mode: to every process of its unit)."""

    @abstractmethod
    def crash(self, name: str) -> None:
        """SIGKILL the daemon with everything it started (NSD's server children), as a crash would."""

    @abstractmethod
    def stop(self, name: str) -> None:
        """Take the daemon down so that it stays down until :meth:`restart` (machine mode: ``systemctl stop``)."""

    @abstractmethod
    def restart(self, name: str) -> int:
        """Start the daemon again as the PoP would; its new host pid (recorded in ``pst``)."""

    @abstractmethod
    def exec(self, cmd: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` on the PoP (its namespace; machine mode: inside the container)."""

    @abstractmethod
    def agent_cli(self, flag: str, timeout: float = 90.0) -> tuple[int, str]:
        """``anycast-health --drain``/``--undrain`` on the PoP, as an operator types it there (``flag`` may hold several
        options separated by spaces: ``--drain --no-graceful``): (exit code, output)."""

    @abstractmethod
    def health_config(self) -> dict[str, Any]:
        """The health agent's config (health.json) as the PoP reads it."""

    # What only a PoP's own systemd does; a process-mode PoP has no units, so nothing restarts by itself.
    def show(self, name: str, *props: str) -> dict[str, str]:
        """``systemctl show -p …`` of the daemon's unit: property -> value ({} without systemd)."""
        return {}

    def restarts(self, name: str) -> int:
        """How often systemd itself restarted the unit (NRestarts: Restart= only, not ``systemctl restart``)."""
        return 0

    def auto_restart(self, name: str) -> bool:
        """Whether the daemon's unit restarts it by itself after a crash (``Restart=`` other than no)."""
        return False

    def systemd_restart(self, name: str, before: int, after: float, timeout: float) -> float | None:
        """Wait until systemd itself has started ``name`` again; the monotonic time it became active, or None."""
        return None


class LabDriver:
    """The lab's PoPs as drivers, from the lab state."""

    def __init__(self, state: LabState) -> None:
        self.state = state
        self.systemd = state.get("mode") == "machines"

    def pop(self, code: str) -> PopDriver:
        return pop_driver(self.state["pops"][code])

    @property
    def daemon_logs_on_host(self) -> bool:
        """The PoPs' daemons log to files under .lab/<stack>/pops/ (else to the PoPs' journals)."""
        return not self.systemd


def pop_driver(pst: PopState) -> PopDriver:
    """The driver for the PoP whose lab state is ``pst``."""
    if "machine" in pst:
        from lab.drivers.machine import MachinePop

        return MachinePop(pst)
    from lab.drivers.process import ProcessPop

    return ProcessPop(pst)


def lab_driver(state: LabState) -> LabDriver:
    return LabDriver(state)
