"""``anycast lab rollout --restart-in-place``: every Vultr PoP restarts in place, wave by wave, as a resize reboots it.

A ``plan`` change (``pops[].plan``, ``defaults.plan``) is no replacement: Vultr reboots the instance, and the
provider's update returns when the API shows the new plan, not when the PoP serves (infra/components/gate.py). The
program re-arms that PoP's gate (``RestartMark`` -> ``restartAt``) and the next wave depends on the gate. Here the
same happens in the process-mode lab, in the namespace the PoP already has (same addresses, same files):

1. the restart is requested at wall-clock time ``at`` (the mark's update), and the gate is re-armed from it with the
   program's own function (:func:`infra.readiness.rearmed`, which ``PopGate.update`` calls) and polls at once with
   :func:`infra.readiness.wait_ready`, on the PoP's unicast address from inside its upstream's namespace. It must not
   pass on the old processes: an anycast PoP must show a health agent started after ``at``; a unicast PoP must have
   been seen down;
2. the PoP shuts down as systemd does at a reboot: the health agent first (its unit is ``After=`` BIRD, NSD and
   Caddy, so it stops first, and its ``ExecStopPost`` withdraws the anycast routes), then BIRD, NSD and Caddy with
   SIGTERM (Caddy finishes the requests it has). It stays down ``down_s`` seconds (a real reboot takes longer; this
   is long enough for every gate poll to see it), then boots: the IPv6 neighbour route when the stack asks for it,
   NSD, Caddy, BIRD, then the agent under the lab's stand-in for its unit, from the same command lines as at boot;
3. the next wave starts only when every gate of this one passed.

Clients probe the anycast address every 20 ms throughout (lab/scenarios/rollout.py ``Load``); the report gives what
they lost, how long each PoP was withdrawn at its upstream (GoBGP's Adj-RIB-In), when each gate passed and when
each wave started.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.contracts import DNSSEC_GATE_MARGIN_S
from infra.derived.rollout import rollout_waves
from infra.model import Network
from infra.readiness import GateTarget, NotReady, rearmed, wait_ready
from lab.drivers.base import pop_driver
from lab.drivers.health import AdjInStream
from lab.net.netns import LabError, nsrun, socket_in
from lab.net.processes import require_tools, stop, wait_for
from lab.plan.signing import state_network
from lab.plan.topology import LabPlan, PopPlan, build_plan, state_generations
from lab.scenarios.rollout import Load
from lab.state import LabState, PopState, load_state, save_state

DOWN_S = 3.0
SHUTDOWN_ORDER = ("health", "bird", "nsd", "caddy")  # the agent first: its unit is After= the other three
BOOT_ORDER = ("nsd", "caddy", "bird", "health")


@dataclass
class Restart:
    code: str
    pop: PopPlan
    pst: PopState
    at: float = 0.0  # wall clock: the restart was requested (the RestartMark's ``at``)
    t_request: float = 0.0  # the same instant, monotonic
    stopped_at: float | None = None  # every daemon gone
    booted_at: float | None = None  # every daemon started again
    ready_at: float | None = None  # the gate passed
    gate_s: float | None = None
    gate_log: list[str] = field(default_factory=list)
    error: str | None = None


def _gate_target(plan: LabPlan, pop: PopPlan) -> GateTarget:
    address = pop.unicast_ipv4 if plan.network.prefixes.ipv4 is not None else pop.unicast_ipv6
    return GateTarget(pop=pop.code, mode=pop.mode, addresses=(str(address),), zone=plan.network.dns.zone,
                      sessions=len(pop.sessions),
                      dnssec_margin=DNSSEC_GATE_MARGIN_S if plan.network.dns.dnssec is not None else None)


def shutdown(pst: PopState) -> None:
    """Every daemon of the PoP stopped in systemd's order, each with SIGTERM (SIGKILL after 10 s, as TimeoutStopSec)."""
    for name in SHUTDOWN_ORDER:
        if name in pst["pids"]:
            stop(int(pst["pids"][name]), timeout=10)


def boot(pst: PopState) -> None:
    """Start the PoP's daemons again from the command lines and files it booted with (as its units would)."""
    driver = pop_driver(pst)
    if "neighbor-route" in pst["commands"]:  # the oneshot unit before BIRD (bgp.ipv6NeighborRoute: auto)
        nsrun(driver.namespace, pst["commands"]["neighbor-route"], timeout=90)
    sock = Path(pst["bird_socket"])
    with contextlib.suppress(FileNotFoundError):
        sock.unlink()  # a socket left by the old BIRD would satisfy the wait below
    for name in BOOT_ORDER:
        if name not in pst["commands"]:
            continue
        if name == "health" and not wait_for(sock, 10):
            raise LabError(f"{pst['namespace']}: BIRD did not create its control socket after the restart")
        driver.restart(name)


def _restart_one(plan: LabPlan, r: Restart, down_s: float, timeout: float, interval: float,
                 say: Callable[[str], None]) -> None:
    previous_mark = os.stat(Path(r.pst["dir"]) / "bird.conf").st_mtime  # when the PoP's files were written (its boot)
    r.at, r.t_request = time.time(), time.monotonic()
    target = rearmed(_gate_target(plan, r.pop), previous_mark, r.at)
    assert target is not None  # the mark moved
    result: list[Any] = []

    def gate() -> None:
        try:
            result.append(wait_ready(target, timeout=timeout, interval=interval,
                                     connect=lambda fam, kind: socket_in(r.pop.upstream_namespace, fam, kind),
                                     say=lambda line: say(f"gate {line}")))
        except NotReady as exc:
            result.append(exc)

    poller = threading.Thread(target=gate, daemon=True)
    poller.start()
    try:
        shutdown(r.pst)
        r.stopped_at = time.monotonic()
        time.sleep(down_s)
        boot(r.pst)
        r.booted_at = time.monotonic()
    except (LabError, OSError) as exc:
        r.error = f"{r.code}: restart failed: {type(exc).__name__}: {exc}"
    poller.join(timeout + 30)
    got = result[0] if result else NotReady(r.code, timeout, ["the gate did not return"])
    if isinstance(got, NotReady):
        r.error = r.error or str(got)
        return
    r.ready_at, r.gate_s, r.gate_log = time.monotonic(), got.seconds, got.log


def _withdrawn(stream: AdjInStream, prefix: str, after: float) -> tuple[float | None, float | None]:
    """(withdrawn, announced again) monotonic times of ``prefix`` at the upstream after ``after``."""
    gone = stream.first(prefix, True, after)
    back = None if gone is None else stream.first(prefix, False, gone)
    return gone, back


def restart_in_place(stack: str, network: Network, *, gate_timeout: float | None = None, interval: float = 0.5,
                     down_s: float = DOWN_S,
                     say: Callable[[str], None] = lambda _s: None) -> dict[str, Any]:
    """Restart every Vultr PoP of the running lab ``stack`` in place, wave by wave, each gated; return the report."""
    require_tools()
    state: LabState = load_state(stack)
    if state.get("mode") == "machines":
        raise LabError("anycast lab rollout runs in the process-mode lab (anycast lab up without --machines)")
    network = state_network(network, state)  # a signed lab: the gates check the served signatures too
    plan = build_plan(stack, network, only=list(state["pops"]), generations=state_generations(state))
    waves = rollout_waves(network, only=set(state["pops"]))
    timeout = float(gate_timeout if gate_timeout is not None else network.rollout.gate_timeout)
    prefix = str(network.prefixes.ipv4 or network.prefixes.ipv6)
    report: dict[str, Any] = {"stack": stack, "mode": "restart-in-place", "waves": waves, "gate_timeout_s": timeout,
                              "down_s": down_s, "passed_waves": 0, "restarted": [], "wave_times": [], "failed": {},
                              "ok": True}
    if not waves:
        say("nothing to restart: the lab runs no Vultr PoP")
        return report
    say("restart in place, waves: " + " | ".join(",".join(w) for w in waves) + f"; gate timeout {timeout:.0f} s")
    anycast = str(network.service.ipv4 or network.service.ipv6)
    streams = {c: AdjInStream(state["pops"][c]["upstream"]["namespace"]).start()
               for w in waves for c in w if state["pops"][c]["mode"] == "anycast"}
    load = Load({n: c["namespace"] for n, c in state["clients"].items()}, anycast, network.dns.zone).start()
    t0 = time.monotonic()
    try:
        for k, wave in enumerate(waves):
            tw = time.monotonic()
            say(f"wave {k + 1}/{len(waves)}: restarting {', '.join(wave)} in place")
            restarts = [Restart(c, plan.pop(c), state["pops"][c]) for c in wave]
            with ThreadPoolExecutor(max_workers=min(8, len(restarts))) as pool:
                list(pool.map(lambda r: _restart_one(plan, r, down_s, timeout, interval, say), restarts))
            for r in restarts:
                gone, back = _withdrawn(streams[r.code], prefix, r.t_request) if r.code in streams else (None, None)
                rel = {name: None if t is None else round(t - t0, 3) for name, t in (
                    ("requested_s", r.t_request), ("stopped_s", r.stopped_at), ("booted_s", r.booted_at),
                    ("ready_s", r.ready_at), ("withdrawn_s", gone), ("announced_s", back))}
                report["restarted"].append({
                    "pop": r.code, "mode": r.pop.mode, "wave": k + 1, **rel, "gate_s": r.gate_s, "gate_log": r.gate_log,
                    "withdrawn_for_s": None if gone is None or back is None else round(back - gone, 3),
                    "error": r.error})
            ready = [r.ready_at for r in restarts if r.ready_at is not None]
            report["wave_times"].append({"wave": k + 1, "started_s": round(tw - t0, 3),
                                         "ready_s": round(max(ready) - t0, 3) if len(ready) == len(restarts) else None})
            failed = [r for r in restarts if r.error]
            if failed:
                report["ok"] = False
                report["stopped_at_wave"] = k + 1
                report["failed"] = {r.code: r.error for r in failed}
                say(f"wave {k + 1} failed: " + "; ".join(str(r.error) for r in failed))
                break
            report["passed_waves"] = k + 1
            say(f"wave {k + 1}: every PoP restarted and ready again ("
                + ", ".join(f"{r.code} gate {r.gate_s:.1f} s" for r in restarts) + ")")
    finally:
        load.stop()
        for s in streams.values():
            s.stop()
    # The lab state keeps the new pids (the driver recorded them): later checks and `lab down` find the daemons.
    save_state(stack, state)
    return load.finish(report, t0, "restart in place", Path(state["dir"]) / "restart.json", say)
