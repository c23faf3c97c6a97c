"""The health agent's fault rows of ``anycast lab check`` (issue: a PoP never black-holes the anycast address).

Each fault runs against the running lab with one client probing the anycast address every 20 ms (HTTP, plus DNS
where NSD is the victim) and ``gobgp monitor adj-in`` streaming the PoP's upstream, so withdrawal times are measured
to the millisecond at the upstream, and requests lost are counted:

* a service crash (Caddy or NSD SIGKILLed; NSD's whole process group, as systemd would);
* the agent frozen (SIGSTOP) and then Caddy killed: the lab's supervisor (the unit's watchdog) must withdraw;
* BIRD restarted while Caddy is down: nothing may be announced at any moment;
* a drain: 0 requests lost while the client moves to the next PoP, then undrain.

Both lab modes run them. Process mode: the lab started the daemons and restarts what it killed; the agent runs under
``lab/supervise.py`` (the unit's semantics, emulated); /status is read from a client over the unicast address.
Machine mode: the PoP's own systemd runs everything (``lab/pop_control.py``: ``systemctl kill --signal=SIGKILL``
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
import json
import os
import re
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.contracts import HEALTH_CONFIG_FILE
from infra.contracts import HEALTH_STATUS_PORT as STATUS_PORT
from lab import bgp, pop_control
from lab.failover import failover_problems
from lab.health import AGENT_CLI, AdjInStream, agent_pid, metrics, pop_agent_cli, status, unit_semantics
from lab.netns import LabError, socket_in
from lab.probes import Prober
from lab.processes import alive, signal_pids, start
from lab.topology import ClientPlan, LabPlan


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


def _fmt(x: float | None, unit: str = "s") -> str:
    if x is None:
        return "never"
    return f"{x * 1000:.0f} ms" if unit == "ms" else f"{x:.2f} s"


LOOPBACK = "127.0.0.1"  # the agent listens on [::]:9325 (dual stack); nftables accepts iif lo


class Fixture:
    """One anycast PoP under test, its upstream stream and the client's probes; the PoP's daemons are the lab's
    processes (process mode) or its systemd's units (machine mode)."""

    def __init__(self, plan: LabPlan, state: dict[str, Any], client: ClientPlan, pop_code: str, nxt: str) -> None:
        self.plan, self.state, self.client, self.code, self.nxt = plan, state, client, pop_code, nxt
        self.pop = plan.pop(pop_code)
        self.pst = state["pops"][pop_code]
        self.dir = Path(self.pst["dir"])
        self.leader = pop_control.leader(self.pst)  # the container's PID 1 (machine mode), else None
        self.machine = self.leader is not None
        self.prefix = str(plan.network.prefixes.ipv4 or plan.network.prefixes.ipv6)
        self.service = str(plan.network.service.ipv4 or plan.network.service.ipv6)
        self.unicast = str(self.pst["unicast_ipv4"] or self.pst["unicast_ipv6"])
        # machine mode: the health.json the user data wrote inside the container
        cfg_path = Path(f"/proc/{self.leader}/root{HEALTH_CONFIG_FILE}") if self.machine else self.dir / "health.json"
        cfg = json.loads(cfg_path.read_text())
        self.stable_s = float(cfg["damping"]["stable_s"])
        self.rise_s = cfg["rise"] * cfg["interval_ms"] / 1000
        self.unit = unit_semantics(plan.network, str(self.dir / "bird.ctl"))
        if self.machine:  # the running unit's values, from its systemd
            props = self.show("health", "WatchdogUSec", "RestartUSec")
            self.unit = dataclasses.replace(self.unit, watchdog_sec=_seconds(props["WatchdogUSec"]),
                                            restart_sec=_seconds(props["RestartUSec"]))

    def show(self, name: str, *props: str) -> dict[str, str]:
        return pop_control.show(self.pst, name, *props)

    def status(self) -> dict[str, Any]:
        if self.machine:  # on the PoP itself: the container shares the PoP's network namespace
            return status(self.pop.namespace, LOOPBACK)
        return status(self.client.namespace, self.unicast)

    def metrics(self) -> str:
        return metrics(self.pop.namespace, LOOPBACK) if self.machine else metrics(self.client.namespace, self.unicast)

    def agent_pid(self, timeout: float = 5.0) -> int:
        if not self.machine:
            return agent_pid(self.dir, timeout)
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(LabError):
                return pop_control.main_pid(self.pst, "health")
            if time.monotonic() > deadline:
                raise LabError(f"no running anycast-health.service at {self.code}")
            time.sleep(0.05)

    def agent_cli(self, flag: str, timeout: float = 90.0) -> tuple[int, str]:
        """``anycast-health --drain``/``--undrain`` on the PoP (machine mode: the installed command in the container,
        with its default config /etc/anycast/health.json, as an operator types it)."""
        return pop_agent_cli(self.pst, flag, timeout)

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
        if self.machine:  # as an operator would: systemctl restart
            pop_control.restart(self.pst, name)
            return
        env = {"HOME": str(self.dir), "XDG_CONFIG_HOME": str(self.dir / "xdg"), "XDG_DATA_HOME": str(self.dir / "xdg")}
        self.pst["pids"][name] = start(self.pop.namespace, self.pst["commands"][name], self.dir / f"{name}.log", env=env)

    def kill(self, name: str) -> None:
        if self.machine:  # SIGKILL to every process of the unit; systemd then applies the unit's Restart=
            pop_control.kill(self.pst, name)
            return
        pid = self.pst["pids"][name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # the daemon leads its own session: NSD's children go too
        deadline = time.monotonic() + 2
        while alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.005)

    def restarts(self, name: str) -> int:
        """How often systemd itself restarted the unit (NRestarts: Restart= only, not systemctl restart)."""
        return pop_control.restarts(self.pst, name)

    def systemd_restart(self, name: str, before: int, after: float, timeout: float) -> float | None:
        """Wait for systemd's own restart of ``name`` (``pop_control.systemd_restart``)."""
        return pop_control.systemd_restart(self.pst, name, before, after, timeout)

    def session_established(self) -> bool:
        try:
            neigh = bgp.neighbors(self.pop.upstream_namespace)
        except (LabError, ValueError):
            return False
        return all((n := neigh.get(str(s.pop_address))) is not None and n.established for s in self.pop.sessions)

    def on_pop(self, prober: Prober) -> bool:
        return bool(prober.samples) and prober.samples[-1][1] == self.code


def _seconds(value: str) -> float:
    """systemd's time span text ('2s', '100ms', '1min 30s', 'infinity', '0') in seconds (0 if none)."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1, "min": 60, "h": 3600}
    return sum(float(num) * units[unit] for num, unit in re.findall(r"([\d.]+)\s*(us|ms|min|s|h)", value))


def _tcp_answers(ns: str, addr: str, port: int, timeout: float = 1.0) -> str:
    """'open', 'refused' or 'no answer' for a TCP connect from namespace ``ns``."""
    sock = socket_in(ns, socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((addr, port))
        return "open"
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "no answer"
    finally:
        sock.close()


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
    policy = fx.show(service, "Restart", "RestartUSec") if fx.machine else {}
    before = fx.restarts(service) if fx.machine else 0
    by_systemd: float | None = None  # kill -> systemd's own restart active
    http = Prober(fx.client.namespace, fx.service).start()
    dns = Prober(fx.client.namespace, fx.service, qname=fx.plan.network.dns.zone).start()
    stream = AdjInStream(fx.pop.upstream_namespace).start()
    try:
        if _wait(lambda: fx.on_pop(http), 5) is None:
            raise LabError(f"{fx.client.name} is not served by {fx.code} before the test")
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
        if fx.machine and policy.get("Restart", "no") != "no":
            t_u = fx.systemd_restart(service, before, t0, _seconds(policy.get("RestartUSec", "")) + 10)
            if t_u is not None:
                t1, by_systemd = t_u, t_u - t0
        if by_systemd is None:
            t1 = time.monotonic()
            fx.restart(service)
        t_a = stream.wait(fx.prefix, False, t1, 30)
        t_r = _wait(lambda: fx.on_pop(http) and fx.on_pop(dns), 10) if t_a else None
    finally:
        http.stop()
        dns.stop()
        stream.stop()
    w = None if t_w is None else t_w - t0
    s = None if t_s is None else t_s - t0
    r = None if t_r is None else t_r - t1
    what = "Caddy" if service == "caddy" else "NSD"
    unit = pop_control.UNITS[service]
    if not fx.machine:
        how = f"{what} restarted by the lab, re-announced and serving"
    elif by_systemd is not None:
        how = (f"systemd restarted {unit} by itself (Restart={policy.get('Restart')}, RestartSec="
               f"{policy.get('RestartUSec')}) {_fmt(by_systemd)} after the kill; re-announced and serving")
    else:
        how = f"{unit} has Restart={policy.get('Restart')}: restarted with systemctl restart; re-announced and serving"
    # The failover verdict (lab/failover.py): HTTP and DNS both probed and both moved to the next PoP, withdrawn within
    # 1 s, back after the restart. Losses are counted only up to 0.1 s after the switch here, so none "after" it.
    t_h, t_d = http.first_after(t0, fx.nxt), dns.first_after(t0, fx.nxt)
    problems = failover_problems(nxt=fx.nxt, withdraw=w, withdraw_limit=1.0, recover=r, probes=probes,
                                 dns_probes=dns_probes, switch=None if t_h is None else t_h - t0,
                                 dns_switch=None if t_d is None else t_d - t0, lost_after=0, dns_lost_after=0)
    if fx.machine and policy.get("Restart", "no") != "no" and by_systemd is None:
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
    before = fx.restarts("health") if fx.machine else 0
    http = Prober(fx.client.namespace, fx.service).start()
    stream = AdjInStream(fx.pop.upstream_namespace).start()
    try:
        if _wait(lambda: fx.on_pop(http), 5) is None:
            raise LabError(f"{fx.client.name} is not served by {fx.code} before the test")
        caddy_auto = fx.machine and pop_control.auto_restart(fx.pst, "caddy")  # the user data's drop-in
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
        http.stop()
        stream.stop()
    w = None if t_w is None else t_w - t0
    r = None if t_r is None else t_r - t1
    limit = fx.unit.watchdog_sec + 0.5
    after = fx.restarts("health") if fx.machine else 0
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
    http = Prober(fx.client.namespace, fx.service).start()
    stream = AdjInStream(fx.pop.upstream_namespace).start()
    try:
        if fx.machine:  # stopped, so that caddy.service's Restart= (the user data's drop-in) keeps it down meanwhile
            pop_control.systemctl(fx.pst, "stop", pop_control.UNITS["caddy"])
        else:
            fx.kill("caddy")
        t_w = stream.wait(fx.prefix, True, time.monotonic() - 1, 10)
        if t_w is None:
            raise LabError(f"{fx.code} was not withdrawn after Caddy was killed")
        time.sleep(0.2)
        before = fx.restarts("bird") if fx.machine else 0
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
    finally:
        http.stop()
        stream.stop()
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
    http = Prober(fx.client.namespace, fx.service).start()
    dns = Prober(fx.client.namespace, fx.service, qname=fx.plan.network.dns.zone).start()
    stream = AdjInStream(fx.pop.upstream_namespace).start()
    try:
        if _wait(lambda: fx.on_pop(http), 5) is None:
            raise LabError(f"{fx.client.name} is not served by {fx.code} before the test")
        t0 = time.monotonic()
        rc, out = fx.agent_cli("--drain")
        t_safe = time.monotonic()
        t_w = stream.first(fx.prefix, True, t0)
        t_s = http.first_after(t0, fx.nxt)
        if fx.machine:  # the maintenance the drain made safe, as an operator does it on the PoP
            pop_control.systemctl(fx.pst, "stop", pop_control.UNITS["caddy"])
        else:
            fx.kill("caddy")
        time.sleep(1.0)
        lost, probes = http.lost(t0, time.monotonic())
        dns_lost, dns_probes = dns.lost(t0, time.monotonic())
        drained_state = fx.status()["state"] if rc == 0 else "?"
        fx.restart("caddy")
        time.sleep(fx.rise_s + 0.5)  # healthy again, still drained
        still = stream.first(fx.prefix, False, t0) is None
        t1 = time.monotonic()
        urc, uout = fx.agent_cli("--undrain")
        t_r = _wait(lambda: fx.on_pop(http), 10)
        back_lost, back_probes = http.lost(t1, time.monotonic())
    finally:
        http.stop()
        dns.stop()
        stream.stop()
    w = None if t_w is None else t_w - t0
    s = None if t_s is None else t_s - t0
    r = None if t_r is None else t_r - t1
    ok = rc == 0 and urc == 0 and lost == 0 and still and drained_state == "drained" and r is not None
    safe = t_safe - t0
    cli = f"{AGENT_CLI} (in the container)" if fx.machine else "anycast-health"
    stop = "systemctl stop caddy" if fx.machine else "Caddy then stopped"
    detail = (f"{cli} --drain: withdrawn at upstream after {_fmt(w, 'ms')}, {fx.client.name} on {fx.nxt} after "
              f"{_fmt(s, 'ms')}, 'safe to stop' after {safe:.2f} s; {stop}: lost {lost}/{probes} HTTP, "
              f"{dns_lost}/{dns_probes} DNS (goal 0); status {drained_state}; healthy but drained: "
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
        got = _tcp_answers(fx.client.namespace, fx.unicast, STATUS_PORT)
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


def fault_rows(plan: LabPlan, state: dict[str, Any], client: ClientPlan, pop: str, nxt: str,
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
