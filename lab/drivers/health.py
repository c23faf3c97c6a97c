"""The health agent in the process-mode lab: its systemd unit's semantics (lab/net/supervise.py), its status endpoint,
drain/undrain, and a stream of the upstream's Adj-RIB-In events for millisecond withdrawal timing."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.contracts import BIRD_SOCKET
from infra.contracts import HEALTH_STATUS_PORT as STATUS_PORT
from infra.model import Network
from lab.net.netns import LabError
from lab.net.processes import HEALTH_AGENT, ROOT, alive, python3
from userdata.render import HOST_PATHS, health_unit

SUPERVISOR = ROOT / "lab" / "net" / "supervise.py"


@dataclass(frozen=True)
class UnitSemantics:
    """What the lab emulates from the rendered anycast-health.service."""

    watchdog_sec: float
    restart_sec: float
    stop_post: tuple[str, ...]  # command lines, with the lab's BIRD socket
    exec_start: str


def unit_semantics(network: Network, bird_socket: str) -> UnitSemantics:
    """Parse the rendered unit (the very text a PoP gets) for WatchdogSec, RestartSec and ExecStopPost.

    Raises:
        LabError: a setting the lab relies on is missing (the unit changed; update the lab).
    """
    values: dict[str, list[str]] = {}
    for line in health_unit(network).splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            values.setdefault(key, []).append(value)
    for key in ("WatchdogSec", "RestartSec", "ExecStopPost", "ExecStart"):
        if key not in values:
            raise LabError(f"anycast-health.service has no {key}= (renderer changed? update lab/drivers/health.py)")
    if values.get("WatchdogSignal") != ["SIGKILL"] or values.get("Type") != ["notify"]:
        raise LabError("anycast-health.service: the lab emulates Type=notify with WatchdogSignal=SIGKILL only")
    stop_post = tuple(v.lstrip("-").replace(BIRD_SOCKET, bird_socket) for v in values["ExecStopPost"])
    return UnitSemantics(float(values["WatchdogSec"][0]), float(values["RestartSec"][0]), stop_post,
                         values["ExecStart"][0])


def supervised_command(network: Network, pop_dir: Path) -> list[str]:
    """The lab's command line for the agent: lab/net/supervise.py applying the unit's semantics around the same
    ExecStart (with the lab's config path)."""
    u = unit_semantics(network, str(pop_dir / "bird.ctl"))
    argv = shlex.split(u.exec_start)
    if argv[-2:] != ["--config", HOST_PATHS["health.json"]]:
        raise LabError(f"anycast-health.service ExecStart changed: {u.exec_start}")
    cmd = [python3(), str(SUPERVISOR), "--watchdog-sec", f"{u.watchdog_sec:g}", "--restart-sec", f"{u.restart_sec:g}",
           "--pidfile", str(pop_dir / "health.pid"), "--notify-socket", str(pop_dir / "health.notify")]
    for line in u.stop_post:
        cmd += ["--stop-post", line]
    return [*cmd, "--", python3(), str(HEALTH_AGENT), "--config", str(pop_dir / "health.json")]


def agent_pid(pop_dir: Path, timeout: float = 5.0) -> int:
    """The running agent's pid (the supervisor writes it); waits for a restarted agent."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, ValueError):
            pid = int((pop_dir / "health.pid").read_text().strip())
            if alive(pid):
                return pid
        if time.monotonic() > deadline:
            raise LabError(f"no running health agent in {pop_dir}")
        time.sleep(0.02)


def status(ns: str, address: str, timeout: float = 2.0) -> dict[str, Any]:
    """GET /status of the agent at ``address`` from inside namespace ``ns`` (a client: admin's point of view)."""
    host = f"[{address}]" if ":" in address else address
    out = subprocess.run(["ip", "netns", "exec", ns, "curl", "-s", "-m", str(timeout), f"http://{host}:{STATUS_PORT}/status"],
                         capture_output=True, text=True, timeout=timeout + 5, check=False)
    try:
        return dict(json.loads(out.stdout))
    except json.JSONDecodeError as exc:
        raise LabError(f"status of {address} from {ns}: {out.stderr.strip() or out.stdout[:120] or 'no answer'}") from exc


def metrics(ns: str, address: str, timeout: float = 2.0) -> str:
    host = f"[{address}]" if ":" in address else address
    out = subprocess.run(["ip", "netns", "exec", ns, "curl", "-s", "-m", str(timeout), f"http://{host}:{STATUS_PORT}/metrics"],
                         capture_output=True, text=True, timeout=timeout + 5, check=False)
    return out.stdout


def agent_cli(ns: str, pop_dir: Path, flag: str, timeout: float = 90.0) -> tuple[int, str]:
    """``anycast-health --drain`` / ``--undrain`` (``flag``: options separated by spaces, ``--drain --no-graceful``) run
    on the PoP (inside its namespace) with the PoP's config."""
    res = subprocess.run(["ip", "netns", "exec", ns, python3(), str(HEALTH_AGENT), "--config", str(pop_dir / "health.json"),
                          *flag.split()], capture_output=True, text=True, timeout=timeout, check=False)
    return res.returncode, (res.stdout + res.stderr).strip()


@dataclass
class AdjInStream:
    """``gobgp monitor adj-in -j`` in an upstream namespace: (monotonic time, prefix, withdrawn) for every update, as
    it arrives (GoBGP's own timestamps have one-second resolution)."""

    ns: str
    events: list[tuple[float, str, bool]] = field(default_factory=list)
    _proc: subprocess.Popen[str] | None = None
    _thread: threading.Thread | None = None

    def start(self) -> AdjInStream:
        self._proc = subprocess.Popen(["ip", "netns", "exec", self.ns, "gobgp", "monitor", "adj-in", "-j"],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                      start_new_session=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        time.sleep(0.3)  # the gRPC stream is set up
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            t = time.monotonic()
            with contextlib.suppress(json.JSONDecodeError, TypeError, KeyError):
                for path in json.loads(line):
                    self.events.append((t, path["nlri"]["prefix"], bool(path.get("withdrawal"))))

    def first(self, prefix: str, withdrawn: bool, after: float) -> float | None:
        return next((t for t, p, w in list(self.events) if p == prefix and w == withdrawn and t >= after), None)

    def wait(self, prefix: str, withdrawn: bool, after: float, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (t := self.first(prefix, withdrawn, after)) is not None:
                return t
            time.sleep(0.005)
        return None

    def stop(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGTERM)
            self._proc.wait(timeout=5)
