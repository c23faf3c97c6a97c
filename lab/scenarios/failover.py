"""Failover measurements: kill Caddy at a PoP (the health agent withdraws), freeze a PoP (the hold timer does)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.cloud.tls import https_prober
from lab.drivers import pop_control
from lab.net import bgp
from lab.net.netns import LabError, namespace_pids
from lab.net.probes import Prober
from lab.net.processes import alive, signal_pids
from lab.plan.geodns import expected_pop
from lab.plan.topology import ClientPlan, LabPlan, PopPlan

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


def _wait(cond: Any, timeout: float, step: float = 0.02) -> float | None:
    """Poll ``cond()`` until true; the monotonic time it became true, or None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return time.monotonic()
        time.sleep(step)
    return None


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


def _prefix(plan: LabPlan) -> str:
    return str(plan.network.prefixes.ipv4 or plan.network.prefixes.ipv6)


def _service(plan: LabPlan) -> str:
    return str(plan.network.service.ipv4 or plan.network.service.ipv6)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f} s"


def kill_caddy(plan: LabPlan, state: dict[str, Any], client: ClientPlan, pop_code: str, nxt: str,
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
    machine = pop_control.leader(pst) is not None
    policy = pop_control.show(pst, "caddy", "Restart", "RestartUSec", "NRestarts") if machine else {}
    by_systemd: float | None = None
    try:
        if _wait(lambda: bool(prober.samples) and prober.samples[-1][1] == pop_code, 5) is None:
            raise LabError(f"{client.name} is not served by {pop_code} before the test")
        t0 = time.monotonic()
        pop_control.kill(pst, "caddy")
        if on_event:
            on_event("killed", t0)
        t_w = _wait(lambda: not _announced(pop, prefix), 10)
        t_s = _wait(lambda: prober.first_after(t0, nxt) is not None, 10)
        t_s = prober.first_after(t0, nxt) if t_s else None
        lost, probes = prober.lost(t0, t_s or time.monotonic())
        dns_lost, dns_probes = dns.lost(t0, t_s or time.monotonic())
        # Restore: Caddy back, the agent re-announces after `rise` good rounds.
        if policy.get("Restart", "no") != "no":  # systemd restarts it after RestartSec (down_s does not apply)
            t_u = pop_control.systemd_restart(pst, "caddy", int(policy.get("NRestarts") or 0), t0, 15)
            by_systemd = None if t_u is None else t_u - t0
        if by_systemd is None:
            time.sleep(max(0.0, t0 + down_s - time.monotonic()))
        # machine mode: what the PoP's systemd did with the killed unit meanwhile
        left = pop_control.show(pst, "caddy", "Restart", "ActiveState", "NRestarts") if machine else None
        if by_systemd is None:
            d = Path(pst["dir"])
            env = {"HOME": str(d), "XDG_CONFIG_HOME": str(d / "xdg"), "XDG_DATA_HOME": str(d / "xdg")}
            t1 = time.monotonic()
            pop_control.restart(pst, "caddy", env=env, log=d / "caddy.log")
        else:
            t1 = t0 + by_systemd
        if on_event:
            on_event("restarted", t1)
        t_r = _wait(lambda: _announced(pop, prefix) and bool(prober.samples) and prober.samples[-1][1] == pop_code, 20)
        if https is not None:
            _wait(lambda: https.first_after(t0, nxt) is not None, 5)
    finally:
        prober.stop()
        dns.stop()
        if https is not None:
            https.stop()
    withdraw = None if t_w is None else t_w - t0
    switch = None if t_s is None else t_s - t0
    recover = None if t_r is None else t_r - t1
    after = _after_event(prober, dns, t0, t_s, t1, nxt)
    dns_switch, lost_after, dns_lost_after = after.dns_switch, after.lost_after, after.dns_lost_after
    problems = failover_problems(nxt=nxt, withdraw=withdraw, withdraw_limit=limit_s, switch=switch, recover=recover,
                                 probes=after.http_samples, dns_probes=after.dns_samples, dns_switch=dns_switch,
                                 lost_after=lost_after,
                                 dns_lost_after=dns_lost_after)
    detail = (f"withdrawn at upstream after {_fmt(withdraw)} (target <= {target_s:.0f} s), {client.name} on {nxt} after "
              f"{_fmt(switch)} (DNS {_fmt(dns_switch)}), lost {lost}/{probes} HTTP requests and {dns_lost}/{dns_probes} DNS "
              f"queries; Caddy restarted, re-announced after {_fmt(recover)}")
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
        detail += f"; HTTPS on {nxt} after {_fmt(None if t_hs is None else t_hs - t0)}, lost {hs_lost}/{hs_total} handshakes"
        if t_hs is None:
            problems.append(f"HTTPS never answered from {nxt}")
    detail += "".join(f"; FAIL: {p}" for p in problems)
    return FailoverResult(pop_code, client.name, nxt, not problems, withdraw, switch, lost, probes, recover, detail, dns_lost,
                          dns_probes, dns_switch, lost_after, dns_lost_after, by_systemd)


def freeze_pop(plan: LabPlan, state: dict[str, Any], client: ClientPlan, pop_code: str, nxt: str,
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
        t_s = _wait(lambda: prober.first_after(t0, nxt) is not None, 10)
        t_s = prober.first_after(t0, nxt) if t_s else None
        lost, probes = prober.lost(t0, t_s or time.monotonic())
        dns_lost, dns_probes = dns.lost(t0, t_s or time.monotonic())
        t1 = time.monotonic()
        signal_pids(pids, signal.SIGCONT)
        t_e = _wait(lambda: _all_back(plan, pop), recover_timeout, step=0.2)
        t_r = _wait(lambda: bool(prober.samples) and prober.samples[-1][1] == pop_code, 10) if t_e else None
    finally:
        signal_pids(pids, signal.SIGCONT)
        prober.stop()
        dns.stop()
    withdraw = None if t_w is None else t_w - t0
    switch = None if t_s is None else t_s - t0
    recover = None if t_r is None else t_r - t1
    after = _after_event(prober, dns, t0, t_s, t1, nxt)
    dns_switch, lost_after, dns_lost_after = after.dns_switch, after.lost_after, after.dns_lost_after
    problems = failover_problems(nxt=nxt, withdraw=withdraw, withdraw_limit=hold + 1.5, switch=switch, recover=recover,
                                 probes=after.http_samples, dns_probes=after.dns_samples, dns_switch=dns_switch,
                                 lost_after=lost_after,
                                 dns_lost_after=dns_lost_after)
    detail = (f"withdrawn at upstream after {_fmt(withdraw)} (hold time {hold} s), {client.name} on {nxt} after "
              f"{_fmt(switch)} (DNS {_fmt(dns_switch)}), lost {lost}/{probes} HTTP requests and {dns_lost}/{dns_probes} DNS "
              f"queries; after SIGCONT re-established and serving again after {_fmt(recover)}"
              + "".join(f"; FAIL: {p}" for p in problems))
    return FailoverResult(pop_code, client.name, nxt, not problems, withdraw, switch, lost, probes, recover, detail, dns_lost,
                          dns_probes, dns_switch, lost_after, dns_lost_after)
