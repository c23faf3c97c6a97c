"""The process-mode PoP driver: the lab started BIRD, NSD, Caddy and the health agent (under the lab's supervisor)
in the PoP's namespace itself, so it signals and restarts them itself (``pst['pids'|'commands']``)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from typing import Any

from lab.drivers.base import PopDriver
from lab.drivers.health import agent_cli, agent_pid
from lab.net.processes import alive, signal_pids, start


class ProcessPop(PopDriver):
    systemd = False

    def main_pid(self, name: str) -> int:
        return int(self.pst["pids"][name])

    def agent_pid(self, timeout: float = 5.0) -> int:
        return agent_pid(self.dir, timeout)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        signal_pids([int(self.pst["pids"][name])], sig)

    def crash(self, name: str) -> None:
        pid = self.pst["pids"][name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # the daemon leads its own session: NSD's children go too
        deadline = time.monotonic() + 2
        while alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.005)

    def stop(self, name: str) -> None:
        self.crash(name)

    def restart(self, name: str) -> int:
        env = {"HOME": str(self.dir), "XDG_CONFIG_HOME": str(self.dir / "xdg"), "XDG_DATA_HOME": str(self.dir / "xdg")}
        pid = start(self.namespace, self.pst["commands"][name], self.dir / f"{name}.log", env=env)
        self.pst["pids"][name] = pid
        return pid

    def exec(self, cmd: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.namespace, *cmd], capture_output=True, text=True,
                              timeout=timeout, check=False)

    def agent_cli(self, flag: str, timeout: float = 90.0) -> tuple[int, str]:
        return agent_cli(self.namespace, self.dir, flag, timeout)

    def health_config(self) -> dict[str, Any]:
        return dict(json.loads((self.dir / "health.json").read_text()))
