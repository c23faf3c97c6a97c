"""A real Prometheus watching the lab, with the config ``anycast monitoring targets`` generates.

* a monitoring namespace ``acl-<stack>-mon`` on the backbone bridge (100.64.3.1, fd00:ac1::3:1) with static routes
  to every PoP link through that PoP's upstream: Prometheus reaches each PoP's unicast address as it would over
  the Internet;
* in every PoP namespace (process mode) Debian's ``prometheus-bird-exporter`` with the arguments of the rendered
  systemd drop-in (``-bird.v2 -format.new``), the socket path swapped for the PoP's lab socket; in machine mode the
  PoP's own cloud-init installed and started it;
* a blackbox exporter in one client namespace listening on the client's backbone address (the prober's vantage
  point is a user's);
* ``prometheus`` (Debian) in the monitoring namespace on 127.0.0.1:9090 with ``DIR/prometheus.yml`` and
  ``DIR/alerts.yml`` from ``infra.monitoring.targets.write_targets``: the lab passes its blackbox address, a 1 s scrape and
  evaluation interval and ``for: 0s`` (production: 15 s and 1-3 min), nothing else differs.

The check stops these processes when it ends (their pids are kept in the lab state under ``monitoring``, so a check
that died half-way is cleaned up by the next one or by ``anycast lab down``); the namespace stays until ``lab down``.
Prometheus's data and log stay in ``.lab/<stack>/prometheus/``.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from infra.contracts import BIRD_SOCKET, BLACKBOX_EXPORTER_PORT
from infra.monitoring.targets import write_targets
from lab.net.netns import LabError, http_get, ip_batch, list_namespaces, run
from lab.net.processes import alive, start, stop
from lab.plan.topology import BACKBONE_V4, BACKBONE_V6, ClientPlan, LabPlan, namespace_prefix
from lab.state import LabState
from userdata.render import BIRD_EXPORTER_DROPIN_TEXT

PROMETHEUS = "prometheus"
BIRD_EXPORTER = "prometheus-bird-exporter"
BLACKBOX = "prometheus-blackbox-exporter"
PROMETHEUS_LISTEN = ("127.0.0.1", 9090)
BLACKBOX_PORT = BLACKBOX_EXPORTER_PORT
MON_V4 = BACKBONE_V4.network_address + 768 + 1
MON_V6 = BACKBONE_V6.network_address + 0x30001
LAB_INTERVAL = "1s"
LAB_HOLD = "0s"


def monitor_namespace(stack: str) -> str:
    return f"{namespace_prefix(stack)}mon"


def bird_exporter_command(socket_path: str) -> list[str]:
    """The rendered drop-in's ExecStart with the lab's BIRD socket: the flags a PoP runs, checked by the real binary."""
    line = next(x for x in BIRD_EXPORTER_DROPIN_TEXT.splitlines() if x.startswith("ExecStart=/"))
    argv = line.removeprefix("ExecStart=").split()
    if BIRD_SOCKET not in argv:
        raise LabError(f"the rendered bird_exporter drop-in does not name {BIRD_SOCKET}: {line}")
    return [BIRD_EXPORTER if a == "/usr/bin/prometheus-bird-exporter" else socket_path if a == BIRD_SOCKET else a
            for a in argv]


def namespace_lines(plan: LabPlan) -> tuple[list[str], list[str], list[str]]:
    """(root, backbone, monitoring namespace) ``ip -batch`` lines: a veth into the bridge, addresses, and a route to
    every PoP link via its upstream's backbone address (pure, unit-tested)."""
    mon, bb = monitor_namespace(plan.stack), plan.backbone_namespace
    root = [f"link add name eth0 netns {mon} type veth peer name mon0 netns {bb}"]
    backbone = ["link set mon0 master br0", "link set mon0 up"]
    inside = ["link set lo up", "link set eth0 up", f"addr add {MON_V4}/{BACKBONE_V4.prefixlen} dev eth0",
              f"addr add {MON_V6}/{BACKBONE_V6.prefixlen} dev eth0 nodad"]
    for p in plan.pops:
        for s in p.sessions:
            via = p.backbone_v4 if s.version == 4 else p.backbone_v6
            inside.append(f"route replace {s.link} via {via} dev eth0")
    return root, backbone, inside


def api(ns: str, path: str, params: dict[str, str] | None = None) -> Any:
    """``data`` of a Prometheus HTTP API answer (LabError unless status success)."""
    query = f"?{urlencode(params)}" if params else ""
    status, body = http_get(ns, *PROMETHEUS_LISTEN, f"/api/v1/{path}{query}")
    try:
        doc = json.loads(body)
    except json.JSONDecodeError:
        raise LabError(f"Prometheus /api/v1/{path}: HTTP {status}, not JSON: {body[:120]}") from None
    if doc.get("status") != "success":
        raise LabError(f"Prometheus /api/v1/{path}: {doc.get('error', body[:120])}")
    return doc["data"]


@dataclass(frozen=True)
class Target:
    job: str
    pop: str
    url: str
    health: str
    error: str


def targets(ns: str) -> list[Target]:
    out = []
    for t in api(ns, "targets", {"state": "active"})["activeTargets"]:
        labels = t.get("labels", {})
        out.append(Target(labels.get("job", "?"), labels.get("pop", "-"), t.get("scrapeUrl", ""), t.get("health", ""),
                          t.get("lastError", "")))
    return out


def firing(ns: str, alertname: str, pop: str | None = None) -> list[dict[str, Any]]:
    """Alerts named ``alertname`` (for ``pop``) in state firing."""
    return [a for a in api(ns, "alerts")["alerts"]
            if a["labels"].get("alertname") == alertname and a.get("state") == "firing"
            and (pop is None or a["labels"].get("pop") == pop)]


def all_firing(ns: str) -> list[dict[str, Any]]:
    return [a for a in api(ns, "alerts")["alerts"] if a.get("state") == "firing"]


def _wait_http(ns: str, host: str, port: int, path: str, pid: int, what: str, log: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if http_get(ns, host, port, path, 1)[0] == 200:
                return
        except (OSError, LabError):
            pass
        if not alive(pid) or time.monotonic() > deadline:
            raise LabError(f"{what} did not become ready in {ns} (see {log})")
        time.sleep(0.1)


@dataclass
class Stack:
    """What :func:`start_stack` started: pids by role, the Prometheus namespace and config directory."""

    ns: str
    out_dir: Path
    blackbox: str
    pids: dict[str, int] = field(default_factory=dict)
    startup_s: float = 0.0


def stop_stack(state: LabState) -> None:
    """Stop the monitoring processes a previous check left running (pids from the lab state)."""
    for pid in state.get("monitoring", {}).get("pids", {}).values():
        if alive(pid):
            stop(pid)
    state.pop("monitoring", None)


def start_stack(plan: LabPlan, state: LabState, outputs: dict[str, Any], client: ClientPlan) -> Stack:
    """Namespace, exporters and Prometheus, with the generated config; records pids in ``state['monitoring']``."""
    missing = [t for t in (PROMETHEUS, BIRD_EXPORTER, BLACKBOX) if shutil.which(t) is None]
    if missing:
        raise LabError(f"not installed: {', '.join(missing)} (make debs installs them)")
    t0 = time.monotonic()
    stop_stack(state)
    base = Path(state["dir"])
    ns = monitor_namespace(plan.stack)
    if ns not in list_namespaces(ns):
        ip_batch([f"netns add {ns}"])
        root, backbone, inside = namespace_lines(plan)
        ip_batch(root)
        run(["ip", "-n", plan.backbone_namespace, "-batch", "-"], input_text="\n".join(backbone) + "\n")
        run(["ip", "-n", ns, "-batch", "-"], input_text="\n".join(inside) + "\n")
        if state.get("mode") == "machines":  # the PoPs' nftables admits only admin.monitoringCidrs to the exporters
            from lab.boot.machines import add_monitoring_source

            add_monitoring_source(plan, ns, str(MON_V4), str(MON_V6))
    blackbox = f"{client.backbone_v4}:{BLACKBOX_PORT}"
    out_dir = base / "prometheus"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    write_targets(outputs, out_dir, blackbox=blackbox, scrape_interval=LAB_INTERVAL, hold=LAB_HOLD,
                  ca_file=(state.get("tls") or {}).get("ca_file"))  # HTTPS probes trust the lab's Pebble root
    stack = Stack(ns, out_dir, blackbox)
    state["monitoring"] = {"namespace": ns, "dir": str(out_dir), "pids": stack.pids}
    try:
        if state.get("mode", "processes") == "processes":
            for code, pst in state["pops"].items():
                cmd = bird_exporter_command(pst["bird_socket"])
                stack.pids[f"bird_exporter_{code}"] = start(pst["namespace"], cmd, Path(pst["dir"]) / "bird_exporter.log")
        stack.pids["blackbox"] = start(client.namespace, [BLACKBOX, f"--config.file={out_dir / 'blackbox.yml'}",
                                                          f"--web.listen-address={blackbox}"], out_dir / "blackbox.log")
        stack.pids["prometheus"] = start(ns, [
            PROMETHEUS, f"--config.file={out_dir / 'prometheus.yml'}", f"--storage.tsdb.path={out_dir / 'data'}",
            f"--web.listen-address={PROMETHEUS_LISTEN[0]}:{PROMETHEUS_LISTEN[1]}"], out_dir / "prometheus.log")
        _wait_http(client.namespace, str(client.backbone_v4), BLACKBOX_PORT, "/-/healthy", stack.pids["blackbox"],
                   BLACKBOX, out_dir / "blackbox.log")
        _wait_http(ns, *PROMETHEUS_LISTEN, "/-/ready", stack.pids["prometheus"], PROMETHEUS, out_dir / "prometheus.log")
    except LabError:
        stop_stack(state)
        raise
    stack.startup_s = time.monotonic() - t0
    return stack


def wait_targets_up(ns: str, expected: int, timeout: float = 20) -> tuple[list[Target], float]:
    """Poll until ``expected`` targets are all up (or ``timeout``); return the last list and the seconds waited."""
    t0 = time.monotonic()
    got: list[Target] = []
    while time.monotonic() - t0 < timeout:
        got = targets(ns)
        if len(got) >= expected and all(t.health == "up" for t in got):
            break
        time.sleep(0.25)
    return got, time.monotonic() - t0


class AlertWatch:
    """Poll ``/api/v1/alerts`` every ``step`` s in a thread; record when ``alertname`` for ``pop`` fires and clears."""

    def __init__(self, ns: str, alertname: str, pop: str, step: float = 0.1) -> None:
        self.ns, self.alertname, self.pop, self.step = ns, alertname, pop, step
        self.fired_at: float | None = None
        self.cleared_at: float | None = None
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                now_firing = bool(firing(self.ns, self.alertname, self.pop))
            except (OSError, LabError):
                self.errors += 1
                now_firing = False if self.fired_at is None else self.cleared_at is None
            t = time.monotonic()
            if now_firing and self.fired_at is None:
                self.fired_at = t
            elif not now_firing and self.fired_at is not None and self.cleared_at is None:
                self.cleared_at = t
            self._stop.wait(self.step)

    def start(self) -> AlertWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def wait_cleared(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.cleared_at is None and time.monotonic() < deadline:
            time.sleep(self.step)


def summarize_targets(got: list[Target]) -> dict[str, tuple[int, int]]:
    """job -> (up, total)."""
    out: dict[str, tuple[int, int]] = {}
    for t in got:
        up, total = out.get(t.job, (0, 0))
        out[t.job] = (up + (t.health == "up"), total + 1)
    return out


def expected_target_count(files: dict[str, list[dict[str, Any]]]) -> int:
    """Targets Prometheus should list: every file_sd group's targets plus the blackbox exporter itself."""
    return sum(len(g["targets"]) for groups in files.values() for g in groups) + 1

