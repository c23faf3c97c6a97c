"""Convergence in the multi-AS topology (lab/plan/multias.py): what a client loses while the internet re-routes.

Four scenarios, each against the running lab with every eyeball client probing the anycast address (HTTP every
50 ms, DNS SOA with NSID every 100 ms, as lab/scenarios/faults.py counts loss):

* ``crash``: one PoP's BIRD SIGKILLed (its sessions reset at once, the upstream withdraws), then restarted;
* ``drain``: the same PoP drained by the agent (``anycast-health --drain``: RFC 8326 graceful shutdown first, 65535:0
  until traffic has moved, then the withdrawal), then undrained;
* ``drain-plain``: the same drain with the graceful-shutdown phase skipped (``--drain --no-graceful``): a plain
  withdrawal, what the graceful one is measured against;
* ``region``: every anycast PoP of one continent drained at once (the network withdrawn from a region), then undrained.

Per scenario: the time until every client is served again (from the event to the first answer after its last lost
probe), HTTP requests and DNS queries lost, and the BGP updates each transit received meanwhile (BIRD's import
updates + withdraws from ``show protocols all``): path hunting made visible. Before each scenario every PoP must have
been announced for the agent's ``damping.stable_s`` (else the fault counts as a flap and the hold-down delays the
return, correctly).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from lab.drivers.base import pop_driver
from lab.net.bgp import birdc
from lab.net.netns import LabError
from lab.net.probes import Prober
from lab.plan.multias import MULTI_AS, TRANSITS
from lab.plan.topology import LabPlan
from lab.state import LabState

SCENARIOS = ("crash", "drain", "drain-plain", "region")
DRAIN_FLAGS = {"drain": "--drain", "drain-plain": "--drain --no-graceful", "region": "--drain"}
HTTP_INTERVAL_S = 0.05
DNS_INTERVAL_S = 0.1
QUIET_S = 2.0  # no transit update for this long and every client answered for this long: converged
WINDOW_S = 30.0  # the most a scenario is watched
_UPDATES = re.compile(r"Import (updates|withdraws):\s+(\d+)")


@dataclass
class ConvergenceResult:
    scenario: str
    pops: list[str]
    ok: bool = False
    served_again_s: float | None = None  # event -> every client answered again (0: nobody lost anything)
    http: tuple[int, int] = (0, 0)  # (lost, sent)
    dns: tuple[int, int] = (0, 0)
    updates: dict[str, int] = field(default_factory=dict)  # transit -> updates + withdraws received
    before: dict[str, str | None] = field(default_factory=dict)  # client -> PoP serving it before
    after: dict[str, str | None] = field(default_factory=dict)  # ... and at the end of the window
    restored_s: float | None = None  # undo (restart / undrain) -> every client back on its PoP
    drain_s: float | None = None  # drains: event -> "safe to stop" (the slowest PoP's agent)
    gshut_s: float | None = None  # graceful drains: event -> "quiet after": the withdrawal starts
    moved_s: float | None = None  # event -> the last HTTP answer from a PoP in ``pops`` (traffic has moved)
    detail: str = ""

    @property
    def total_updates(self) -> int:
        return sum(self.updates.values())


def transit_updates(state: LabState) -> dict[str, int]:
    """Each transit's BGP updates and withdraws received so far, over all its sessions."""
    out: dict[str, int] = {}
    for name, t in state.get("transits", {}).items():
        text = birdc(str(t["bird_socket"]), "show protocols all")
        out[name] = sum(int(m.group(2)) for m in _UPDATES.finditer(text))
    return out


def _serving(probers: dict[str, Prober]) -> dict[str, str | None]:
    return {c: (p.samples[-1][1] if p.samples else None) for c, p in probers.items()}


def _wait(cond: Callable[[], bool], timeout: float, step: float = 0.1) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(step)
    return None


def _answered_for(p: Prober, seconds: float) -> bool:
    now = time.monotonic()
    recent = [pop for t, pop in p.samples if t >= now - seconds]
    return len(recent) >= 3 and all(pop is not None for pop in recent) and bool(p.samples) and \
        p.samples[0][0] <= now - seconds


def served_again(p: Prober, t0: float, t1: float) -> float | None:
    """Event -> the first answer after the last lost probe in [t0, t1]; 0 when none was lost; None if the last one
    was lost (not served again within the window)."""
    window = [(t, pop) for t, pop in p.samples if t0 <= t <= t1]
    lost = [t for t, pop in window if pop is None]
    if not lost:
        return 0.0
    after = [t for t, pop in window if t > lost[-1] and pop is not None]
    return after[0] - t0 if after else None


class Probes:
    """HTTP and DNS probers in every client namespace."""

    def __init__(self, plan: LabPlan) -> None:
        service = str(plan.network.service.ipv4 or plan.network.service.ipv6)
        self.http = {c.name: Prober(c.namespace, service, interval=HTTP_INTERVAL_S) for c in plan.clients}
        self.dns = {c.name: Prober(c.namespace, service, interval=DNS_INTERVAL_S, qname=plan.network.dns.zone)
                    for c in plan.clients}

    def __enter__(self) -> Probes:
        for p in [*self.http.values(), *self.dns.values()]:
            p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for p in [*self.http.values(), *self.dns.values()]:
            p.stop()

    def all_answered(self, seconds: float) -> bool:
        return all(_answered_for(p, seconds) for p in self.http.values())


def _stable(plan: LabPlan, state: LabState, codes: list[str], say: Callable[[str], None]) -> None:
    """Wait until every PoP in ``codes`` has been announced for damping.stable_s (agent /status, from a client)."""
    from lab.drivers.health import status

    client = plan.clients[0]
    for code in codes:
        pst = state["pops"][code]
        stable = float(pop_driver(pst).health_config()["damping"]["stable_s"])
        unicast = str(pst["unicast_ipv4"] or pst["unicast_ipv6"])
        last = "no status"
        deadline = time.monotonic() + 60
        while True:
            try:
                st = status(client.namespace, unicast)
                since = st["announce"]["announced_since"]
                last = f"{st['state']} ({st['reason']})"
                if st["state"] == "announced" and since is not None and st["time"] - since >= stable:
                    break
            except LabError as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise LabError(f"{code} is not stably announced after 60 s: {last}")
            time.sleep(0.5)
    say(f"{', '.join(codes)} announced for at least damping.stable_s")


_SAFE = re.compile(r"safe to stop: drained in ([0-9.]+) s")
_QUIET = re.compile(r"graceful shutdown: quiet after ([0-9.]+) s")


class _Event:
    """The scenario's event and its undo; a drain runs the agent's CLI on every PoP at once and keeps the output."""

    def __init__(self, state: LabState, scenario: str, codes: list[str]) -> None:
        self.scenario = scenario
        self.drivers = {c: pop_driver(state["pops"][c]) for c in codes}
        self.outputs: dict[str, tuple[int, str]] = {}
        self.threads: list[threading.Thread] = []

    def _cli(self, code: str, flag: str) -> None:
        self.outputs[code] = self.drivers[code].agent_cli(flag)

    def do(self) -> None:
        if self.scenario == "crash":
            next(iter(self.drivers.values())).crash("bird")
            return
        flag = DRAIN_FLAGS[self.scenario]
        self.threads = [threading.Thread(target=self._cli, args=(c, flag), daemon=True) for c in self.drivers]
        for t in self.threads:
            t.start()

    def finish(self, timeout: float = 90) -> None:
        """Wait for the drains to say "safe to stop" (or fail)."""
        for t in self.threads:
            t.join(timeout)

    def undo(self) -> None:
        if self.scenario == "crash":
            next(iter(self.drivers.values())).restart("bird")
            return
        threads = [threading.Thread(target=d.agent_cli, args=("--undrain",), daemon=True) for d in self.drivers.values()]
        for t in threads:
            t.start()

    def timings(self) -> tuple[float | None, float | None]:
        """(slowest "safe to stop", slowest end of the graceful-shutdown phase) over the drained PoPs."""
        safe = [float(m.group(1)) for _rc, out in self.outputs.values() if (m := _SAFE.search(out))]
        quiet = [float(m.group(1)) for _rc, out in self.outputs.values() if (m := _QUIET.search(out))]
        complete = len(safe) == len(self.drivers)
        return (max(safe) if complete else None), (max(quiet) if quiet else None)


def run_scenario(plan: LabPlan, state: LabState, scenario: str, codes: list[str],
                 say: Callable[[str], None] = lambda _s: None) -> ConvergenceResult:
    """One scenario against ``codes`` (one PoP for crash and drain, a region's PoPs for region); the lab is left as
    it was (restarted or undrained, every client back on its PoP)."""
    res = ConvergenceResult(scenario, codes)
    _stable(plan, state, [c for c, p in state["pops"].items() if p["mode"] == "anycast"], say)
    event = _Event(state, scenario, codes)
    with Probes(plan) as probes:
        if _wait(lambda: probes.all_answered(1.0), 15) is None:
            raise LabError(f"{scenario}: not every client is served before the scenario: {_serving(probes.http)}")
        res.before = _serving(probes.http)
        u0 = transit_updates(state)
        t0 = time.monotonic()
        event.do()
        say(f"{scenario} {', '.join(codes)}: event at 0 s; watching clients and transits")
        last_change, last_updates = time.monotonic(), u0
        while time.monotonic() - t0 < WINDOW_S:
            time.sleep(0.2)
            now_updates = transit_updates(state)
            if now_updates != last_updates:
                last_change, last_updates = time.monotonic(), now_updates
            drained = not any(t.is_alive() for t in event.threads)  # a drain's window ends after "safe to stop"
            if (drained and time.monotonic() - t0 > 3 and time.monotonic() - last_change >= QUIET_S
                    and probes.all_answered(QUIET_S)):
                break
        t1 = time.monotonic()
        event.finish()
        res.drain_s, res.gshut_s = event.timings()
        on_old = [t for p in probes.http.values() for t, pop in p.samples if t0 <= t <= t1 and pop in codes]
        res.moved_s = round(max(on_old) - t0, 3) if on_old else 0.0
        res.updates = {n: last_updates[n] - u0.get(n, 0) for n in last_updates}
        res.after = _serving(probes.http)
        times = [served_again(p, t0, t1) for p in probes.http.values()]
        res.served_again_s = None if any(t is None for t in times) else round(max(t for t in times if t is not None), 3)
        res.http = (sum(p.lost(t0, t1)[0] for p in probes.http.values()), sum(p.lost(t0, t1)[1] for p in probes.http.values()))
        res.dns = (sum(p.lost(t0, t1)[0] for p in probes.dns.values()), sum(p.lost(t0, t1)[1] for p in probes.dns.values()))
        moved_off = [c for c, pop in res.after.items() if pop in codes]
        failed = [f"{c}: {out[-300:]}" for c, (rc, out) in event.outputs.items() if rc != 0]
        res.ok = res.served_again_s is not None and not moved_off and not failed
        res.detail = (f"still on {', '.join(codes)}: {', '.join(moved_off)}" if moved_off else
                      f"drain failed: {'; '.join(failed)}" if failed else
                      "" if res.served_again_s is not None else f"not every client served within {WINDOW_S:.0f} s")
        say(f"{scenario}: served again after {res.served_again_s} s; lost {res.http[0]}/{res.http[1]} HTTP, "
            f"{res.dns[0]}/{res.dns[1]} DNS; transit updates {res.updates}"
            + f"; last answer from {', '.join(codes)} at {res.moved_s} s"
            + (f"; safe to stop after {res.drain_s} s" if res.drain_s is not None else "")
            + (f" (graceful-shutdown phase {res.gshut_s} s)" if res.gshut_s is not None else ""))
        tu = time.monotonic()
        event.undo()
        res.restored_s = _wait(lambda: _serving(probes.http) == res.before and probes.all_answered(1.0), 90, 0.2)
        if res.restored_s is not None:
            res.restored_s = round(time.monotonic() - tu, 2)
        say(f"{scenario}: undone; every client back on its PoP after {res.restored_s} s")
    return res


def region_pops(plan: LabPlan, continent: str) -> list[str]:
    return [p.code for p in plan.pops if p.mode == "anycast" and plan.network.pop(p.code).continent == continent]


def pick_targets(plan: LabPlan, state: LabState, pop: str | None, region: str | None) -> tuple[str, str]:
    """(the PoP for crash and drain, the continent for region): as given, else the first anycast PoP and its
    continent. LabError naming the option when unusable."""
    anycast = [p.code for p in plan.pops if p.mode == "anycast"]
    if len(anycast) < 2:
        raise LabError("convergence: needs at least two anycast PoPs (one to withdraw, one to take over)")
    code = pop or anycast[0]
    if code not in anycast:
        raise LabError(f"--pop: '{code}' is not an anycast PoP of this lab ({', '.join(anycast)})")
    continent = (region or plan.network.pop(code).continent or "").upper()
    chosen = region_pops(plan, continent)
    if not chosen:
        raise LabError(f"--region: no anycast PoP of this lab is on {continent or '?'} "
                       f"({', '.join(sorted({str(plan.network.pop(c).continent) for c in anycast}))})")
    if len(chosen) == len(anycast):
        raise LabError(f"--region: {continent} holds every anycast PoP of this lab; nothing would be left to serve")
    return code, continent


def convergence(plan: LabPlan, state: LabState, scenarios: tuple[str, ...] = SCENARIOS, pop: str | None = None,
                region: str | None = None, say: Callable[[str], None] = lambda _s: None) -> dict[str, Any]:
    """Run ``scenarios`` in the running multi-AS lab; the report (JSON-safe)."""
    if state.get("topology") != MULTI_AS:
        raise LabError(f"convergence: the lab of {state['stack']} runs the default topology; boot it with "
                       f"`anycast lab up --stack {state['stack']} --topology multi-as`")
    code, continent = pick_targets(plan, state, pop, region)
    results = []
    for s in scenarios:
        codes = region_pops(plan, continent) if s == "region" else [code]
        results.append(run_scenario(plan, state, s, codes, say))
    return {"stack": state["stack"], "pop": code, "region": continent, "transits": [t.name for t in TRANSITS],
            "results": [{**asdict(r), "total_updates": r.total_updates} for r in results],
            "ok": all(r.ok for r in results)}


def format_table(report: dict[str, Any]) -> str:
    head = (f"{'scenario':<11} {'PoPs':<10} {'served again':>12} {'HTTP lost':>11} {'DNS lost':>10} "
            f"{'updates at transits':<28} {'drained':>8} restored")
    lines = [head, "-" * len(head)]
    for r in report["results"]:
        served = "never" if r["served_again_s"] is None else f"{r['served_again_s']:.2f} s"
        ups = ", ".join(f"{k} {v}" for k, v in sorted(r["updates"].items()))
        ups += f" (= {r['total_updates']})"
        restored = "never" if r["restored_s"] is None else f"{r['restored_s']:.1f} s"
        drained = "-" if r.get("drain_s") is None else f"{r['drain_s']:.1f} s"
        lines.append(f"{r['scenario']:<11} {','.join(r['pops']):<10} {served:>12} {r['http'][0]:>5}/{r['http'][1]:<5} "
                     f"{r['dns'][0]:>4}/{r['dns'][1]:<5} {ups:<28} {drained:>8} {restored}"
                     + (f"  FAIL: {r['detail']}" if not r["ok"] else ""))
    return "\n".join(lines)

