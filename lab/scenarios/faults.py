"""Every fault scenario of ``anycast lab check``: the failover measurements (Caddy killed, a PoP frozen) and the
health agent's fault rows (issue: a PoP never black-holes the anycast address).

Each fault runs against the running lab with one client probing the anycast address every 20 ms (HTTP, plus DNS
where NSD is the victim) and ``gobgp monitor adj-in`` streaming the PoP's upstream, so withdrawal times are measured
to the millisecond at the upstream, and requests lost are counted:

* a service crash (Caddy or NSD SIGKILLed; NSD's whole process group, as systemd would);
* the agent frozen (SIGSTOP) and then Caddy killed: the lab's supervisor (the unit's watchdog) must withdraw;
* BIRD restarted while Caddy is down: nothing may be announced at any moment;
* a drain: 0 requests lost while the client moves to the next PoP, then undrain.

Both lab modes run them. Process mode: the lab started the daemons and restarts what it killed; the agent runs under
``lab/net/supervise.py`` (the unit's semantics, emulated); /status is read from a client over the unicast address.
Machine mode: the PoP's own systemd runs everything (``lab/drivers/machine.py``: ``systemctl kill --signal=SIGKILL``
inside the container), so what comes back after a kill is what the package's unit says (``Restart=``), and the row
measures that: NSD (``Restart=always``), BIRD (``Restart=on-abort``) and Caddy (``Restart=on-failure``, the user data's
drop-in) are restarted by systemd, not by the lab (a row that needs Caddy to stay down stops it: ``systemctl stop``);
the watchdog is systemd's; drain and undrain are the shipped ``/usr/local/sbin/anycast-health`` run inside the
container, as an operator would on the PoP; /status is read inside the PoP's network namespace on 127.0.0.1 (the
PoP's nftables admits only ``admin.monitoringCidrs`` to port 9325 from outside, and the row checks that a client
gets no answer there).

Before each fault the PoP must have been announced for the agent's ``damping.stable_s``: otherwise the fault counts as
a flap and the agent's hold-down (correctly) delays the re-announcement.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.contracts import HEALTH_STATUS_PORT as STATUS_PORT
from lab.cloud.tls import https_prober
from lab.drivers.base import pop_driver
from lab.drivers.health import AdjInStream, metrics, status, unit_semantics
from lab.drivers.machine import AGENT_CLI, UNITS, seconds
from lab.net import bgp
from lab.net.netns import LabError, namespace_pids
from lab.net.probes import Prober, tcp_answer
from lab.net.processes import alive, signal_pids
from lab.plan.geodns import expected_pop
from lab.plan.topology import ClientPlan, LabPlan, PopPlan
from lab.state import LabState


@dataclass
class FaultResult:
    fault: str
    pop: str
    client: str
    next_pop: str
    ok: bool
    withdraw_s: float | None = None  # fault -> withdrawal received by the upstream
    switch_s: float | None = None  # fault -> first request answered by next_pop
    lost: int = 0  # HTTP requests lost (one every 20 ms) from the fault until the client is served again
    probes: int = 0
    dns_lost: int = 0
    dns_probes: int = 0
    recover_s: float | None = None
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


NA = "n/a"  # the failover rows' word for a time not measured (the fault rows say "never")


def _fmt(x: float | None, unit: str = "s", none: str = "never") -> str:
    if x is None:
        return none
    return f"{x * 1000:.0f} ms" if unit == "ms" else f"{x:.2f} s"


LOOPBACK = "127.0.0.1"  # the agent listens on [::]:9325 (dual stack); nftables accepts iif lo


class Fixture:
    """One anycast PoP under test, its upstream stream and the client's probes; the PoP's daemons are the lab's
    processes (process mode) or its systemd's units (machine mode)."""

    def __init__(self, plan: LabPlan, state: LabState, client: ClientPlan, pop_code: str, nxt: str) -> None:
        self.plan, self.state, self.client, self.code, self.nxt = plan, state, client, pop_code, nxt
        self.pop = plan.pop(pop_code)
        self.pst = state["pops"][pop_code]
        self.dir = Path(self.pst["dir"])
        self.driver = pop_driver(self.pst)
        self.machine = self.driver.systemd  # the PoP's own systemd runs its daemons (machine mode)
        self.prefix = str(plan.network.prefixes.ipv4 or plan.network.prefixes.ipv6)
        self.service = str(plan.network.service.ipv4 or plan.network.service.ipv6)
        self.unicast = str(self.pst["unicast_ipv4"] or self.pst["unicast_ipv6"])
        cfg = self.driver.health_config()
        self.stable_s = float(cfg["damping"]["stable_s"])
        self.rise_s = cfg["rise"] * cfg["interval_ms"] / 1000
        self.unit = unit_semantics(plan.network, str(self.dir / "bird.ctl"))
        if self.machine:  # the running unit's values, from its systemd
            props = self.show("health", "WatchdogUSec", "RestartUSec")
            self.unit = dataclasses.replace(self.unit, watchdog_sec=seconds(props["WatchdogUSec"]),
                                            restart_sec=seconds(props["RestartUSec"]))

    def show(self, name: str, *props: str) -> dict[str, str]:
        return self.driver.show(name, *props)

    def status(self) -> dict[str, Any]:
        if self.machine:  # on the PoP itself: the container shares the PoP's network namespace
            return status(self.pop.namespace, LOOPBACK)
        return status(self.client.namespace, self.unicast)

    def metrics(self) -> str:
        return metrics(self.pop.namespace, LOOPBACK) if self.machine else metrics(self.client.namespace, self.unicast)

    def agent_pid(self, timeout: float = 5.0) -> int:
        return self.driver.agent_pid(timeout)

    def agent_cli(self, flag: str, timeout: float = 90.0) -> tuple[int, str]:
        """``anycast-health --drain``/``--undrain`` on the PoP (machine mode: the installed command in the container,
        with its default config /etc/anycast/health.json, as an operator types it)."""
        return self.driver.agent_cli(flag, timeout)

    def wait_stable(self, timeout: float = 40.0) -> None:
        """Until the agent reports the PoP announced for at least damping.stable_s and the client is on it."""
        deadline = time.monotonic() + timeout
        last = "no status"
        while time.monotonic() < deadline:
            with contextlib.suppress(LabError):
                st = self.status()
                since = st["announce"]["announced_since"]
                last = f"state {st['state']} ({st['reason']})"
                if st["state"] == "announced" and since is not None and st["time"] - since >= self.stable_s:
                    return
            time.sleep(0.25)
        raise LabError(f"{self.code} is not stably announced after {timeout:.0f} s: {last}")

    def restart(self, name: str) -> None:
        self.driver.restart(name)

    def kill(self, name: str) -> None:
        self.driver.crash(name)

    def restarts(self, name: str) -> int:
        """How often systemd itself restarted the unit (NRestarts: Restart= only, not systemctl restart)."""
        return self.driver.restarts(name)

    def systemd_restart(self, name: str, before: int, after: float, timeout: float) -> float | None:
        """Wait for systemd's own restart of ``name`` (:meth:`PopDriver.systemd_restart`)."""
        return self.driver.systemd_restart(name, before, after, timeout)

    def session_established(self) -> bool:
        try:
            neigh = bgp.neighbors(self.pop.upstream_namespace)
        except (LabError, ValueError):
            return False
        return all((n := neigh.get(str(s.pop_address))) is not None and n.established for s in self.pop.sessions)

    def on_pop(self, prober: Prober) -> bool:
        return bool(prober.samples) and prober.samples[-1][1] == self.code

    @contextlib.contextmanager
    def watched(self, dns: bool = False, served: bool = True) -> Iterator[tuple[Prober, Prober, AdjInStream]]:
        """The client's HTTP probes (and DNS probes with ``dns``; else that prober never starts) and the upstream's
        adj-in stream, all stopped on exit; ``served``: first wait until the client is served by this PoP."""
        http = Prober(self.client.namespace, self.service).start()
        dns_probe = Prober(self.client.namespace, self.service, qname=self.plan.network.dns.zone)
        if dns:
            dns_probe.start()
        stream = AdjInStream(self.pop.upstream_namespace).start()
        try:
            if served and _wait(lambda: self.on_pop(http), 5) is None:
                raise LabError(f"{self.client.name} is not served by {self.code} before the test")
            yield http, dns_probe, stream
        finally:
            http.stop()
            dns_probe.stop()
            stream.stop()


def _wait(cond: Any, timeout: float, step: float = 0.01) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return time.monotonic()
        time.sleep(step)
    return None


def crash(fx: Fixture, service: str, target_s: float = 0.05) -> FaultResult:
    """SIGKILL ``service`` (caddy or nsd); withdrawal at the upstream, the client's switch, losses; then it comes
    back: process mode, the lab restarts it; machine mode, the unit's ``Restart=`` (systemd restarts it by itself, timed
    from its ActiveEnterTimestamp), or, for ``Restart=no``, the lab with ``systemctl restart`` as an operator would."""
    fx.wait_stable()
    policy = fx.show(service, "Restart", "RestartUSec")
    before = fx.restarts(service)
    by_systemd: float | None = None  # kill -> systemd's own restart active
    with fx.watched(dns=True) as (http, dns, stream):
        t0 = time.monotonic()
        fx.kill(service)
        t_w = stream.wait(fx.prefix, True, t0, 10)
        probe = http if service == "caddy" else dns
        t_s = _wait(lambda: probe.first_after(t0, fx.nxt) is not None, 10)
        t_s = probe.first_after(t0, fx.nxt) if t_s else None
        end = (t_s or time.monotonic()) + 0.1
        time.sleep(max(0.0, end - time.monotonic()))
        lost, probes = http.lost(t0, end)
        dns_lost, dns_probes = dns.lost(t0, end)
        t1 = time.monotonic()
        if policy.get("Restart", "no") != "no":  # {} in process mode: the lab restarts it
            t_u = fx.systemd_restart(service, before, t0, seconds(policy.get("RestartUSec", "")) + 10)
            if t_u is not None:
                t1, by_systemd = t_u, t_u - t0
        if by_systemd is None:
            t1 = time.monotonic()
            fx.restart(service)
        t_a = stream.wait(fx.prefix, False, t1, 30)
        t_r = _wait(lambda: fx.on_pop(http) and fx.on_pop(dns), 10) if t_a else None
    w = None if t_w is None else t_w - t0
    s = None if t_s is None else t_s - t0
    r = None if t_r is None else t_r - t1
    what = "Caddy" if service == "caddy" else "NSD"
    unit = UNITS[service]
    if not fx.machine:
        how = f"{what} restarted by the lab, re-announced and serving"
    elif by_systemd is not None:
        how = (f"systemd restarted {unit} by itself (Restart={policy.get('Restart')}, RestartSec="
               f"{policy.get('RestartUSec')}) {_fmt(by_systemd)} after the kill; re-announced and serving")
    else:
        how = f"{unit} has Restart={policy.get('Restart')}: restarted with systemctl restart; re-announced and serving"
    # The failover verdict (failover_problems): HTTP and DNS both probed and both moved to the next PoP, withdrawn within
    # 1 s, back after the restart. Losses are counted only up to 0.1 s after the switch here, so none "after" it.
    t_h, t_d = http.first_after(t0, fx.nxt), dns.first_after(t0, fx.nxt)
    problems = failover_problems(nxt=fx.nxt, withdraw=w, withdraw_limit=1.0, recover=r, probes=probes,
                                 dns_probes=dns_probes, switch=None if t_h is None else t_h - t0,
                                 dns_switch=None if t_d is None else t_d - t0, lost_after=0, dns_lost_after=0)
    if policy.get("Restart", "no") != "no" and by_systemd is None:
        problems.append(f"{unit} has Restart={policy.get('Restart')} but systemd did not restart it")
    ok = not problems
    killed = f"{what} killed (systemctl kill --signal=SIGKILL {unit}): " if fx.machine else ""
    detail = (f"{killed}withdrawn at upstream {_fmt(w, 'ms')} after the kill (goal <= {target_s * 1000:.0f} ms), "
              f"{fx.client.name} on {fx.nxt} after {_fmt(s, 'ms')}; lost {lost}/{probes} HTTP, {dns_lost}/{dns_probes} "
              f"DNS; {how} after {_fmt(r)}"
              + "".join(f"; FAIL: {p}" for p in problems))
    return FaultResult(f"{service} killed", fx.code, fx.client.name, fx.nxt, ok, w, s, lost, probes, dns_lost, dns_probes,
                       r, detail, extra={"systemd_restart_s": by_systemd, "restart": policy.get("Restart")}
                       if fx.machine else {})


def frozen_agent(fx: Fixture) -> FaultResult:
    """SIGSTOP the agent, then kill Caddy: only the watchdog (the supervisor, as systemd) can withdraw."""
    fx.wait_stable()
    pid = fx.agent_pid()
    before = fx.restarts("health")
    with fx.watched() as (http, _, stream):
        try:
            caddy_auto = fx.driver.auto_restart("caddy")  # machine mode: the user data's drop-in
            caddy_before = fx.restarts("caddy") if caddy_auto else 0
            signal_pids([pid], signal.SIGSTOP)
            t0 = time.monotonic()
            fx.kill("caddy")
            t_w = stream.wait(fx.prefix, True, t0, fx.unit.watchdog_sec + 10)
            t_s = _wait(lambda: http.first_after(t0, fx.nxt) is not None, 5)
            t_s = http.first_after(t0, fx.nxt) if t_s else None
            end = (t_s or time.monotonic()) + 0.1
            time.sleep(max(0.0, end - time.monotonic()))
            lost, probes = http.lost(t0, end)
            killed = not alive(pid)
            new_pid = fx.agent_pid(timeout=fx.unit.restart_sec + 5)
            t_c = fx.systemd_restart("caddy", caddy_before, t0, 15) if caddy_auto else None
            t1 = time.monotonic() if t_c is None else t_c
            if t_c is None:
                fx.restart("caddy")
            t_a = stream.wait(fx.prefix, False, t1, 30)
            t_r = _wait(lambda: fx.on_pop(http), 10) if t_a else None
        finally:
            signal_pids([pid], signal.SIGCONT)
    w = None if t_w is None else t_w - t0
    r = None if t_r is None else t_r - t1
    limit = fx.unit.watchdog_sec + 0.5
    after = fx.restarts("health")
    ok = (w is not None and w <= limit and killed and new_pid != pid and r is not None
          and (not fx.machine or after > before) and (not caddy_auto or t_c is not None))
    caddy = ("; Caddy restarted" + (" (systemctl restart)" if fx.machine else "") if t_c is None
             else f"; systemd restarted caddy.service by itself {_fmt(t_c - t0)} after the kill")
    who = "systemd's watchdog" if fx.machine else "the supervisor's watchdog"
    detail = (f"agent {'(host pid ' if fx.machine else 'pid '}{pid}{')' if fx.machine else ''} SIGSTOPped, Caddy killed"
              f"{' (systemctl kill)' if fx.machine else ''}: withdrawn at upstream after {_fmt(w)} (WatchdogSec="
              f"{fx.unit.watchdog_sec:g}, limit {limit:g} s) by {who} and the unit's ExecStopPost; lost {lost}/{probes} "
              f"HTTP; agent {'SIGKILLed' if killed else 'NOT killed'} and restarted as pid {new_pid}"
              + (f" (NRestarts {before} -> {after})" if fx.machine else "")
              + f"{caddy}, re-announced and serving after {_fmt(r)}"
              + ("; FAIL: caddy.service has Restart= but systemd did not restart it" if caddy_auto and t_c is None
                 else ""))
    return FaultResult("agent frozen, Caddy killed", fx.code, fx.client.name, fx.nxt, ok, w, None, lost, probes,
                       recover_s=r, detail=detail, extra={"nrestarts": [before, after], "caddy_systemd_restart_s":
                                                          None if t_c is None else t_c - t0} if fx.machine else {})


def bird_restart_while_down(fx: Fixture, watch_s: float = 3.0) -> FaultResult:
    """Caddy down (process mode: killed; machine mode: ``systemctl stop``, its unit would restart a killed Caddy)
    and withdrawn; BIRD killed and started again (process mode: by the lab; machine mode: by systemd, the
    unit's Restart=): the new BIRD must announce nothing (fail-closed)."""
    fx.wait_stable()
    by_systemd: float | None = None
    with fx.watched(served=False) as (http, _, stream):
        fx.driver.stop("caddy")  # machine mode: stopped, so that caddy.service's Restart= keeps it down meanwhile
        t_w = stream.wait(fx.prefix, True, time.monotonic() - 1, 10)
        if t_w is None:
            raise LabError(f"{fx.code} was not withdrawn after Caddy was killed")
        time.sleep(0.2)
        before = fx.restarts("bird")
        t0 = time.monotonic()
        fx.kill("bird")
        if fx.machine:  # bird.service: Restart=on-abort; a SIGKILL is an abort, so systemd starts BIRD again itself
            _wait(lambda: not fx.session_established(), 5, step=0.02)  # the old session is gone at the upstream
            t_b = fx.systemd_restart("bird", before, t0, 15)
            if t_b is None:
                fx.restart("bird")
            else:
                by_systemd = t_b - t0
        else:
            with contextlib.suppress(FileNotFoundError):
                (fx.dir / "bird.ctl").unlink()
            fx.restart("bird")
        t_e = _wait(fx.session_established, 30, step=0.1)
        if t_e is not None:
            time.sleep(watch_s)
        leaked = [p for t, p, w in stream.events if t >= t0 and not w]
        lost, probes = http.lost(t0, time.monotonic())
        t1 = time.monotonic()
        fx.restart("caddy")
        t_a = stream.wait(fx.prefix, False, t1, 30)
        t_r = _wait(lambda: fx.on_pop(http), 10) if t_a else None
    e = None if t_e is None else t_e - t0
    r = None if t_r is None else t_r - t1
    ok = t_e is not None and not leaked and r is not None and (not fx.machine or by_systemd is not None)
    restarted = ("restarted by systemd (bird.service Restart=on-abort) " + _fmt(by_systemd) + " after the kill"
                 if by_systemd is not None else "restarted by the lab" + (" (systemd did NOT)" if fx.machine else ""))
    down = "stopped (systemctl stop)" if fx.machine else "killed"
    detail = (f"BIRD SIGKILLed with Caddy {down}, {restarted}: sessions Established again after {_fmt(e)}, then watched "
              f"{watch_s:g} s: {'announced ' + ', '.join(sorted(set(leaked))) if leaked else 'nothing announced'}; "
              f"lost {lost}/{probes} HTTP ({fx.client.name} stays on {fx.nxt}); Caddy restarted, re-announced after "
              f"{_fmt(r)}")
    return FaultResult("BIRD restarted while Caddy is down", fx.code, fx.client.name, fx.nxt, ok, None, None, lost,
                       probes, recover_s=r, detail=detail, extra={"established_s": e, "announced": sorted(set(leaked)),
                                                                  "systemd_restart_s": by_systemd})


def drain_and_stop(fx: Fixture) -> FaultResult:
    """``anycast-health --drain`` on the PoP, then Caddy stopped (the maintenance); 0 requests may be lost. Then
    Caddy back, ``--undrain``, and the client returns."""
    fx.wait_stable()
    with fx.watched(dns=True) as (http, dns, stream):
        t0 = time.monotonic()
        rc, out = fx.agent_cli("--drain")
        t_safe = time.monotonic()
        t_w = stream.first(fx.prefix, True, t0)
        t_s = http.first_after(t0, fx.nxt)
        fx.driver.stop("caddy")  # the maintenance the drain made safe, as an operator does it on the PoP
        time.sleep(1.0)
        t_end = time.monotonic()
        lost, probes = http.lost(t0, t_end)
        moves, other = http.losses(t0, t_end)
        dns_lost, dns_probes = dns.lost(t0, t_end)
        drained_state = fx.status()["state"] if rc == 0 else "?"
        fx.restart("caddy")
        time.sleep(fx.rise_s + 0.5)  # healthy again, still drained
        # The drain's graceful-shutdown phase re-announces the prefix (65535:0) before withdrawing it: only an
        # announcement after the withdrawal would mean the agent announced a drained PoP again.
        t_g = stream.first(fx.prefix, False, t0)
        t_g = t_g if t_w is not None and t_g is not None and t_g < t_w else None
        still = t_w is not None and stream.first(fx.prefix, False, t_w) is None
        t1 = time.monotonic()
        urc, uout = fx.agent_cli("--undrain")
        t_r = _wait(lambda: fx.on_pop(http), 10)
        back_lost, back_probes = http.lost(t1, time.monotonic())
    w = None if t_w is None else t_w - t0
    s = None if t_s is None else t_s - t0
    r = None if t_r is None else t_r - t1
    # The goal is 0. A request whose TCP connection is open at the instant the client's route moves (the 65535:0
    # re-announcement moves it) is reset by the next PoP: no drain can save it, so one such loss at the one move is
    # told apart (losses_at_moves); any other loss, or any DNS query lost, fails the row.
    ok = (rc == 0 and urc == 0 and other == 0 and len(moves) <= 1 and dns_lost == 0 and still
          and drained_state == "drained" and r is not None)
    safe = t_safe - t0
    cli = f"{AGENT_CLI} (in the container)" if fx.machine else "anycast-health"
    stop = "systemctl stop caddy" if fx.machine else "Caddy then stopped"
    g = "" if t_g is None else f"re-announced with 65535:0 (graceful shutdown) after {_fmt(t_g - t0, 'ms')}, "
    detail = (f"{cli} --drain: {g}withdrawn at upstream after {_fmt(w, 'ms')}, {fx.client.name} on {fx.nxt} after "
              f"{_fmt(s, 'ms')}, 'safe to stop' after {safe:.2f} s; {stop}: lost {lost}/{probes} HTTP"
              + "".join(f" ({a} -> {b} at {_fmt(t - t0, 'ms')}: open when the route moved, reset by {b})"
                        for t, a, b in moves)
              + f", {dns_lost}/{dns_probes} DNS (goal 0); status {drained_state}; healthy but drained: "
              f"{'not announced' if still else 'ANNOUNCED'}; --undrain: back on {fx.code} after {_fmt(r)}, "
              f"lost {back_lost}/{back_probes} while moving back"
              + ("" if rc == 0 else f"; --drain said: {out.splitlines()[-1:]}")
              + ("" if urc == 0 else f"; --undrain said: {uout.splitlines()[-1:]}"))
    return FaultResult("drain", fx.code, fx.client.name, fx.nxt, ok, w, s, lost, probes, dns_lost, dns_probes, r, detail,
                       extra={"safe_s": round(safe, 3), "undrain_lost": back_lost})


def status_row(fx: Fixture) -> tuple[bool, str]:
    """/status and /metrics of the PoP's agent: process mode, fetched from the client over the PoP's unicast address;
    machine mode, on the PoP (127.0.0.1 in its namespace), and the client must get no answer on the unicast address
    (the PoP's nftables admits admin.monitoringCidrs only)."""
    st = fx.status()
    metrics_text = fx.metrics()
    sessions = st["bird"]["sessions"]
    problems = []
    if st.get("schema") != 1 or st.get("pop") != fx.code:
        problems.append(f"schema {st.get('schema')} pop {st.get('pop')}")
    if st["state"] != "announced" or not st["exported"]["anycast"]:
        problems.append(f"state {st['state']} exported {st['exported']}")
    if not sessions or any(v["bgp_state"] != "Established" for v in sessions.values()):
        problems.append(f"sessions {sessions}")
    if any(c["ok"] is not True for c in st["checks"].values()):
        problems.append(f"checks {st['checks']}")
    if not st["agent"]["watchdog"]["enabled"]:
        problems.append("watchdog not armed")
    if "anycast_health_announced 1" not in metrics_text:
        problems.append("/metrics lacks anycast_health_announced 1")
    outside = ""
    if fx.machine:
        got = tcp_answer(fx.client.namespace, fx.unicast, STATUS_PORT)
        outside = f"; {fx.unicast}:{STATUS_PORT} from {fx.client.name}: {got}"
        if got != "no answer":
            problems.append(f"{fx.client.name} (outside admin.monitoringCidrs) reached {fx.unicast}:{STATUS_PORT}: {got}")
    where = (f"http://{LOOPBACK}:{STATUS_PORT}/status on {fx.code} (its namespace)" if fx.machine
             else f"http://{fx.unicast}:{STATUS_PORT}/status from {fx.client.name}")
    text = (f"{where}: state {st['state']}, "
            + ", ".join(f"{n} {v['bgp_state']} exporting {v['routes_exported']}" for n, v in sessions.items())
            + ", checks " + ", ".join(f"{n} {c['latency_ms']} ms" for n, c in st["checks"].items())
            + f", watchdog {st['agent']['watchdog']['timeout_s']} s; /metrics {len(metrics_text.splitlines())} lines"
            + outside)
    return not problems, text + ("; " + "; ".join(problems) if problems else "")


def fault_rows(plan: LabPlan, state: LabState, client: ClientPlan, pop: str, nxt: str,
               measurements: dict[str, Any], say: Any) -> list[tuple[str, str, bool, str]]:
    """Every health-agent row: (group, name, ok, detail); a fault that breaks becomes a FAIL row."""
    fx = Fixture(plan, state, client, pop, nxt)
    rows: list[tuple[str, str, bool, str]] = []
    if fx.machine:  # the names say what each row measures in this mode (see the module docstring)
        nsd = fx.show("nsd", "Restart").get("Restart", "?")
        steps: list[tuple[str, Any]] = [
            (f"status: {pop}'s /status and /metrics on the PoP (127.0.0.1); no answer from {client.name} (nftables)",
             status_row),
            (f"NSD killed at {pop} (systemctl kill -s KILL): withdrawn (event), {client.name} served by {nxt}, "
             f"systemd restarts it (Restart={nsd}), re-announced", lambda f: crash(f, "nsd")),
            (f"agent frozen at {pop}, then Caddy killed: systemd watchdog withdraws within WatchdogSec (real systemd)",
             frozen_agent),
            (f"BIRD killed at {pop} while Caddy is down, restarted by systemd: nothing announced (fail-closed)",
             bird_restart_while_down),
            (f"drain {pop} ({AGENT_CLI} --drain in the container, systemctl stop caddy): 0 requests lost while "
             f"{client.name} moves to {nxt}; undrain", drain_and_stop),
        ]
    else:
        steps = [
            (f"status: {pop}'s /status and /metrics from {client.name} (unicast address)", status_row),
            (f"NSD killed at {pop}: withdrawn (event), {client.name} served by {nxt}", lambda f: crash(f, "nsd")),
            (f"agent frozen at {pop}, then Caddy killed: withdrawn within the watchdog time", frozen_agent),
            (f"BIRD restarted at {pop} while Caddy is down: nothing announced (fail-closed)", bird_restart_while_down),
            (f"drain {pop}: 0 requests lost while {client.name} moves to {nxt}; undrain", drain_and_stop),
        ]
    for name, step in steps:
        say(f"health: {name}")
        try:
            res = step(fx)
        except (LabError, OSError, ValueError, KeyError) as exc:
            rows.append(("health", name, False, f"{type(exc).__name__}: {exc}"))
            continue
        if isinstance(res, FaultResult):
            measurements.setdefault("health", {})[res.fault] = {k: v for k, v in res.__dict__.items() if k != "detail"}
            rows.append(("health", name, res.ok, res.detail))
        else:
            rows.append(("health", name, res[0], res[1]))
    return rows


# Failover: Caddy killed at a PoP (the health agent withdraws), a PoP frozen (the hold timer does).

PREFERRED_CLIENTS = ("de", "gb", "us", "jp")


def pick_victim(plan: LabPlan) -> tuple[ClientPlan, str, str] | None:
    """(client, PoP it reaches, PoP it should move to) for a client steered by anycast with two anycast PoPs."""
    ordered = sorted(plan.clients, key=lambda c: (c.name not in PREFERRED_CLIENTS,
                                                  PREFERRED_CLIENTS.index(c.name) if c.name in PREFERRED_CLIENTS else 0))
    for c in ordered:
        pop = expected_pop(plan, c)
        if not plan.network.pop(pop).is_anycast:
            continue
        nxt = plan.nearest_anycast(c, exclude=frozenset({pop}))
        if nxt is not None:
            return c, pop, nxt
    return None


def _announced(pop: PopPlan, prefix: str) -> bool:
    s = pop.session(4) or pop.session(6)
    assert s is not None
    try:
        return prefix in bgp.adj_in(pop.upstream_namespace, str(s.pop_address), s.version)
    except (LabError, ValueError):
        return False


def _all_back(plan: LabPlan, pop: PopPlan) -> bool:
    """Every session of the PoP is Established and carries its anycast prefix again."""
    try:
        neigh = bgp.neighbors(pop.upstream_namespace)
        for s in pop.sessions:
            n = neigh.get(str(s.pop_address))
            prefix = plan.network.prefixes.ipv4 if s.version == 4 else plan.network.prefixes.ipv6
            if not (n and n.established):
                return False
            if prefix is not None and str(prefix) not in bgp.adj_in(pop.upstream_namespace, str(s.pop_address), s.version):
                return False
    except (LabError, ValueError):
        return False
    return True



@dataclass
class FailoverResult:
    pop: str
    client: str
    next_pop: str
    ok: bool
    withdraw_s: float | None  # event -> prefix gone from the upstream's Adj-RIB-In
    switch_s: float | None  # event -> first client request answered by next_pop
    lost: int  # client HTTP requests that failed between the event and the switch
    probes: int
    recover_s: float | None  # restore -> prefix back and the client on its PoP again
    detail: str
    dns_lost: int = 0  # client DNS queries (SOA with NSID, every 20 ms) that failed in the same window
    dns_probes: int = 0
    dns_switch_s: float | None = None  # event -> first DNS answer from next_pop (its NSID)
    lost_after: int = 0  # HTTP requests that failed after the switch, before the restore
    dns_lost_after: int = 0  # DNS queries that failed after DNS moved to next_pop, before the restore
    systemd_restart_s: float | None = None  # machine mode: event -> the unit's own Restart= had the daemon active again


def failover_problems(*, nxt: str, withdraw: float | None, withdraw_limit: float, switch: float | None,
                      recover: float | None, probes: int, dns_probes: int, dns_switch: float | None,
                      lost_after: int, dns_lost_after: int) -> list[str]:
    """Why a failover measurement fails (empty: it passes). HTTP and DNS both count: each must have been probed
    (``probes``/``dns_probes``: samples from the event to the restore), must have moved to ``nxt`` and must not fail
    once there; the prefix must be withdrawn in time and come back."""
    problems: list[str] = []
    if withdraw is None:
        problems.append("the upstream never withdrew the prefix")
    elif withdraw > withdraw_limit:
        problems.append(f"withdrawn after {withdraw:.2f} s, over the {withdraw_limit:g} s limit")
    for kind, n, moved, after in (("HTTP", probes, switch, lost_after), ("DNS", dns_probes, dns_switch, dns_lost_after)):
        if n == 0:
            problems.append(f"no {kind} probe ran")
        elif moved is None:
            problems.append(f"{kind} never answered from {nxt}")
        if after:
            problems.append(f"{after} {kind} probes failed after the move to {nxt}")
    if recover is None:
        problems.append("not back on the PoP after the restore")
    return problems


@dataclass(frozen=True)
class AfterEvent:
    """What the probers saw from the event ``t0`` to the restore ``t1``."""

    dns_switch: float | None  # event -> first DNS answer from the next PoP
    lost_after: int  # HTTP failures after the HTTP switch
    dns_lost_after: int  # DNS failures after the DNS switch
    http_samples: int  # HTTP probes from t0 to t1 (0: the prober did not run)
    dns_samples: int


def _after_event(prober: Prober, dns: Prober, t0: float, t_s: float | None, t1: float, nxt: str) -> AfterEvent:
    t_d = dns.first_after(t0, nxt)
    return AfterEvent(None if t_d is None else t_d - t0,
                      prober.lost(t_s, t1)[0] if t_s is not None else 0,
                      dns.lost(t_d, t1)[0] if t_d is not None else 0,
                      prober.lost(t0, t1)[1], dns.lost(t0, t1)[1])


def _verdict(prober: Prober, dns: Prober, nxt: str, withdraw_limit: float, t0: float, t_w: float | None,
             t_s: float | None, t1: float, t_r: float | None
             ) -> tuple[float | None, float | None, float | None, AfterEvent, list[str]]:
    """(withdraw, switch, recover) in seconds from the event ``t0`` (recover from the restore ``t1``), what the
    probers saw after the event, and :func:`failover_problems`."""
    withdraw = None if t_w is None else t_w - t0
    switch = None if t_s is None else t_s - t0
    recover = None if t_r is None else t_r - t1
    after = _after_event(prober, dns, t0, t_s, t1, nxt)
    problems = failover_problems(nxt=nxt, withdraw=withdraw, withdraw_limit=withdraw_limit, switch=switch,
                                 recover=recover, probes=after.http_samples, dns_probes=after.dns_samples,
                                 dns_switch=after.dns_switch, lost_after=after.lost_after,
                                 dns_lost_after=after.dns_lost_after)
    return withdraw, switch, recover, after, problems


def _prefix(plan: LabPlan) -> str:
    return str(plan.network.prefixes.ipv4 or plan.network.prefixes.ipv6)


def _service(plan: LabPlan) -> str:
    return str(plan.network.service.ipv4 or plan.network.service.ipv6)



def kill_caddy(plan: LabPlan, state: LabState, client: ClientPlan, pop_code: str, nxt: str,
               target_s: float = 1.0, limit_s: float = 3.0,
               on_event: Callable[[str, float], None] | None = None, down_s: float = 0.0) -> FailoverResult:
    """SIGKILL Caddy at ``pop_code``; time the withdrawal at the upstream and the client's switch; Caddy back: in
    machine mode by its unit's ``Restart=`` (the user data's drop-in; timed from systemd's ActiveEnterTimestamp), else
    (process mode, or a unit without ``Restart=``) the lab restarts it.

    ``on_event("killed" | "restarted", monotonic time)`` lets an observer (the lab's Prometheus) time itself;
    ``down_s`` keeps Caddy down at least that long (the agent withdraws in milliseconds and re-announces 0.6 s after
    the restart: a 1 s scrape would not see so short a withdrawal)."""
    pop = plan.pop(pop_code)
    pst = state["pops"][pop_code]
    prefix = _prefix(plan)
    prober = Prober(client.namespace, _service(plan)).start()
    dns = Prober(client.namespace, _service(plan), qname=plan.network.dns.zone).start()
    https = https_prober(state, client.namespace, _service(plan))  # tls.enabled: the same over HTTPS (lab/cloud/tls.py)
    # machine mode: the unit's own Restart= (the user data's drop-in) brings Caddy back, not the lab
    drv = pop_driver(pst)
    policy = drv.show("caddy", "Restart", "RestartUSec", "NRestarts")  # {} in process mode: the lab restarts it
    by_systemd: float | None = None
    try:
        if _wait(lambda: bool(prober.samples) and prober.samples[-1][1] == pop_code, 5, step=0.02) is None:
            raise LabError(f"{client.name} is not served by {pop_code} before the test")
        t0 = time.monotonic()
        drv.kill("caddy")
        if on_event:
            on_event("killed", t0)
        t_w = _wait(lambda: not _announced(pop, prefix), 10, step=0.02)
        t_s = _wait(lambda: prober.first_after(t0, nxt) is not None, 10, step=0.02)
        t_s = prober.first_after(t0, nxt) if t_s else None
        lost, probes = prober.lost(t0, t_s or time.monotonic())
        dns_lost, dns_probes = dns.lost(t0, t_s or time.monotonic())
        # Restore: Caddy back, the agent re-announces after `rise` good rounds.
        if policy.get("Restart", "no") != "no":  # systemd restarts it after RestartSec (down_s does not apply)
            t_u = drv.systemd_restart("caddy", int(policy.get("NRestarts") or 0), t0, 15)
            by_systemd = None if t_u is None else t_u - t0
        if by_systemd is None:
            time.sleep(max(0.0, t0 + down_s - time.monotonic()))
        # machine mode: what the PoP's systemd did with the killed unit meanwhile
        left = drv.show("caddy", "Restart", "ActiveState", "NRestarts") or None
        if by_systemd is None:
            t1 = time.monotonic()
            drv.restart("caddy")
        else:
            t1 = t0 + by_systemd
        if on_event:
            on_event("restarted", t1)
        t_r = _wait(lambda: _announced(pop, prefix) and bool(prober.samples) and prober.samples[-1][1] == pop_code, 20, step=0.02)
        if https is not None:
            _wait(lambda: https.first_after(t0, nxt) is not None, 5, step=0.02)
    finally:
        prober.stop()
        dns.stop()
        if https is not None:
            https.stop()
    withdraw, switch, recover, after, problems = _verdict(prober, dns, nxt, limit_s, t0, t_w, t_s, t1, t_r)
    dns_switch, lost_after, dns_lost_after = after.dns_switch, after.lost_after, after.dns_lost_after
    detail = (f"withdrawn at upstream after {_fmt(withdraw, none=NA)} (target <= {target_s:.0f} s), {client.name} on {nxt} after "
              f"{_fmt(switch, none=NA)} (DNS {_fmt(dns_switch, none=NA)}), lost {lost}/{probes} HTTP requests and {dns_lost}/{dns_probes} DNS "
              f"queries; Caddy restarted, re-announced after {_fmt(recover, none=NA)}")
    if left is not None and by_systemd is not None:
        detail += (f"; systemd: caddy.service Restart={left.get('Restart')} (RestartSec={policy.get('RestartUSec')}) "
                   f"restarted it by itself {by_systemd:.2f} s after the kill (NRestarts {policy.get('NRestarts')} -> "
                   f"{left.get('NRestarts')})")
    elif left is not None:
        detail += (f"; systemd: caddy.service Restart={left.get('Restart')}, {left.get('ActiveState')} "
                   f"{t1 - t0:.1f} s after the kill (NRestarts {left.get('NRestarts')}); then the lab's "
                   "systemctl restart")
        if policy.get("Restart", "no") != "no":
            problems.append(f"caddy.service has Restart={policy.get('Restart')} but systemd did not restart it")
    if https is not None:
        t_hs = https.first_after(t0, nxt)
        hs_lost, hs_total = https.lost(t0, t_hs or t1)
        detail += f"; HTTPS on {nxt} after {_fmt(None if t_hs is None else t_hs - t0, none=NA)}, lost {hs_lost}/{hs_total} handshakes"
        if t_hs is None:
            problems.append(f"HTTPS never answered from {nxt}")
    detail += "".join(f"; FAIL: {p}" for p in problems)
    return FailoverResult(pop_code, client.name, nxt, not problems, withdraw, switch, lost, probes, recover, detail, dns_lost,
                          dns_probes, dns_switch, lost_after, dns_lost_after, by_systemd)


def freeze_pop(plan: LabPlan, state: LabState, client: ClientPlan, pop_code: str, nxt: str,
               recover_timeout: float = 330) -> FailoverResult:
    """SIGSTOP every process of the PoP; time the hold-timer withdrawal; SIGCONT; time the re-establishment.

    The re-establishment waits for BIRD's ``error wait time`` on the PoP (rendered from bgp.errorWaitMin/Max, 5-120 s,
    doubling on errors within ``error forget time`` 300 s); the long timeout lets a larger configured wait pass too.
    """
    pop = plan.pop(pop_code)
    # Every process in the PoP's namespace (NSD's server children too), like a hung machine.
    pids = [p for p in namespace_pids(pop.namespace) if alive(p)]
    hold = plan.network.bgp.hold_time
    prefix = _prefix(plan)
    prober = Prober(client.namespace, _service(plan), interval=0.05).start()
    dns = Prober(client.namespace, _service(plan), interval=0.05, qname=plan.network.dns.zone).start()
    try:
        t0 = time.monotonic()
        signal_pids(pids, signal.SIGSTOP)
        t_w = _wait(lambda: not _announced(pop, prefix), hold + 15, step=0.05)
        t_s = _wait(lambda: prober.first_after(t0, nxt) is not None, 10, step=0.02)
        t_s = prober.first_after(t0, nxt) if t_s else None
        lost, probes = prober.lost(t0, t_s or time.monotonic())
        dns_lost, dns_probes = dns.lost(t0, t_s or time.monotonic())
        t1 = time.monotonic()
        signal_pids(pids, signal.SIGCONT)
        t_e = _wait(lambda: _all_back(plan, pop), recover_timeout, step=0.2)
        t_r = _wait(lambda: bool(prober.samples) and prober.samples[-1][1] == pop_code, 10, step=0.02) if t_e else None
    finally:
        signal_pids(pids, signal.SIGCONT)
        prober.stop()
        dns.stop()
    withdraw, switch, recover, after, problems = _verdict(prober, dns, nxt, hold + 1.5, t0, t_w, t_s, t1, t_r)
    dns_switch, lost_after, dns_lost_after = after.dns_switch, after.lost_after, after.dns_lost_after
    detail = (f"withdrawn at upstream after {_fmt(withdraw, none=NA)} (hold time {hold} s), {client.name} on {nxt} after "
              f"{_fmt(switch, none=NA)} (DNS {_fmt(dns_switch, none=NA)}), lost {lost}/{probes} HTTP requests and {dns_lost}/{dns_probes} DNS "
              f"queries; after SIGCONT re-established and serving again after {_fmt(recover, none=NA)}"
              + "".join(f"; FAIL: {p}" for p in problems))
    return FailoverResult(pop_code, client.name, nxt, not problems, withdraw, switch, lost, probes, recover, detail, dns_lost,
                          dns_probes, dns_switch, lost_after, dns_lost_after)


def watchdog_row(plan: LabPlan, state: LabState, client: ClientPlan, pop_code: str, nxt: str) -> tuple[str, str, bool, str]:
    """Freeze the agent (SIGSTOP), kill Caddy: only systemd can withdraw the PoP now. Its watchdog must SIGKILL the
    agent within WatchdogSec, the unit's ExecStopPost disables the anycast protocols (withdrawn at the upstream), and
    Restart= brings a new agent that announces again once Caddy is back."""
    pop = plan.pop(pop_code)
    pst = state["pops"][pop_code]
    prefix = str(plan.network.prefixes.ipv4 or plan.network.prefixes.ipv6)
    drv = pop_driver(pst)
    props = drv.show("health", "WatchdogUSec", "NRestarts")
    wd = props.get("WatchdogUSec", "0")
    watchdog_s = seconds(wd)
    if not watchdog_s:
        return ("failover", f"{pop_code}: health agent watchdog (systemd)", False,
                   f"anycast-health.service has no WatchdogSec (WatchdogUSec={wd})")
    restarts0 = int(props.get("NRestarts", "0"))
    service = str(plan.network.service.ipv4 or plan.network.service.ipv6)
    agent = drv.main_pid("health")
    http = Prober(client.namespace, service).start()
    try:
        if _wait(lambda: bool(http.samples) and http.samples[-1][1] == pop_code, 10, step=0.02) is None:
            raise LabError(f"{client.name} is not served by {pop_code} before the test")
        t0 = time.monotonic()
        signal_pids([agent], signal.SIGSTOP)
        drv.kill("caddy")
        t_w = _wait(lambda: not _announced(pop, prefix), watchdog_s + 10, step=0.02)
        killed = _wait(lambda: not alive(agent), 5, step=0.02) is not None
        t_s = _wait(lambda: http.first_after(t0, nxt) is not None, 5, step=0.02)
        lost, probes = http.lost(t0, (http.first_after(t0, nxt) if t_s else None) or time.monotonic())
        t1 = time.monotonic()
        drv.restart("caddy")
        t_r = _wait(lambda: _announced(pop, prefix) and bool(http.samples) and http.samples[-1][1] == pop_code, 30, step=0.02)
        new_agent = drv.main_pid("health")
    finally:
        signal_pids([agent], signal.SIGCONT)
        http.stop()
    restarts = drv.restarts("health")
    w = None if t_w is None else t_w - t0
    r = None if t_r is None else t_r - t1
    limit = watchdog_s + 1.0  # + BGP UPDATE propagation and our 20 ms polling
    ok = w is not None and w <= limit and killed and restarts > restarts0 and new_agent != agent and r is not None
    detail = (f"agent (host pid {agent}) SIGSTOPped, Caddy killed: withdrawn at upstream after "
              f"{'never' if w is None else f'{w:.2f} s'} (WatchdogSec={watchdog_s:g} s, limit {limit:g} s); agent "
              f"{'SIGKILLed by systemd' if killed else 'NOT killed'}, NRestarts {restarts0} -> {restarts}, new pid "
              f"{new_agent}; lost {lost}/{probes} HTTP; Caddy restarted (systemctl), re-announced and serving after "
              f"{'never' if r is None else f'{r:.2f} s'}")
    return ("failover", f"{pop_code}: agent frozen + Caddy killed -> systemd watchdog withdraws (real systemd)", ok,
               detail)
