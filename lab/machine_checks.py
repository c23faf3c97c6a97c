"""``anycast lab check`` rows only machine mode can show: cloud-init, systemd, the rendered units, the nftables
ruleset loaded and enforced, the health agent under systemd and its watchdog (see lab/machines.py)."""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import re
import signal
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from infra.contracts import HEALTH_AGENT, TLS_FETCH_TIMER, TLS_FETCH_UNIT, TLS_ISSUE_TIMER, TLS_ISSUE_UNIT
from lab import pop_control
from lab.failover import _announced, _wait
from lab.machines import nsexec
from lab.netns import LabError, socket_in
from lab.probes import Prober
from lab.processes import alive, signal_pids
from lab.topology import ClientPlan, LabPlan, PopPlan


class Row(NamedTuple):
    group: str
    name: str
    ok: bool
    detail: str


# Journal lines of priority err that are expected on every first boot (matched as substrings).
ALLOWED_JOURNAL = (
    # Debian's bird2 starts BIRD with the package's own bird.conf; runcmd restarts it with the rendered one, and
    # BIRD logs its clean shutdown at priority err.
    "Shutdown completed",
)


# The HTTPS units (tls.enabled): the timers wait, their oneshot services run now and then (the lab starts them once
# after convergence instead of waiting up to 32 minutes, see lab/tls.py UNIT_OF). Reported in a row of their own too.
TLS_UNITS = (TLS_FETCH_UNIT, TLS_ISSUE_UNIT, TLS_FETCH_TIMER, TLS_ISSUE_TIMER)


def _pids(state: dict[str, Any], code: str) -> int:
    pid = pop_control.leader(state["pops"][code])
    if pid is None:
        raise LabError(f"{code} is not a machine-mode PoP")
    return pid


def _each(pops: Sequence[PopPlan], fn: Callable[[PopPlan], str | None]) -> list[str]:
    """Run ``fn`` on every PoP in parallel; the problems it returns, prefixed with the PoP code."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(fn, pops))
    return [f"{p.code}: {r}" for p, r in zip(pops, results, strict=True) if r]


def rendered_unit_kinds(user_data: str) -> dict[str, str]:
    """Units the user data writes (``/etc/systemd/system/*.service|*.timer``) or starts in ``runcmd`` (restart,
    start, enable --now), and what each must be after boot: ``active`` (daemons, timers, oneshots that remain after
    exit) or ``ran`` (a oneshot a timer starts: its last run succeeded)."""
    doc = yaml.safe_load(user_data) or {}
    kinds: dict[str, str] = {}
    for f in doc.get("write_files") or []:
        path = f.get("path", "")
        if not re.fullmatch(r"/etc/systemd/system/[^/]+\.(service|timer)", path):
            continue
        text = str(f.get("content", ""))
        if f.get("encoding") in ("gz+b64", "gzip+base64"):
            text = gzip.decompress(base64.b64decode(text)).decode()
        elif f.get("encoding") in ("b64", "base64"):
            text = base64.b64decode(text).decode()
        oneshot = re.search(r"^Type=oneshot$", text, re.M) and not re.search(r"^RemainAfterExit=yes$", text, re.M)
        kinds[Path(path).name] = "ran" if oneshot else "active"
    for cmd in doc.get("runcmd") or []:
        words = cmd.split() if isinstance(cmd, str) else [str(w) for w in cmd]
        if words[:1] == ["systemctl"] and (set(words) & {"restart", "start"} or "--now" in words):
            kinds.update({w: kinds.get(w, "active") for w in words if w.endswith((".service", ".timer"))})
    return dict(sorted(kinds.items()))


def rendered_units(user_data: str) -> list[str]:
    return list(rendered_unit_kinds(user_data))


def unit_problems(pid: int, kinds: dict[str, str]) -> list[str]:
    """``unit state`` for every unit of ``kinds`` that is not what it must be, in the container of ``pid``."""
    units = list(kinds)
    out = nsexec(pid, ["systemctl", "show", "-p", "Id,ActiveState,Result,ExecMainStartTimestampMonotonic",
                       *units]).stdout
    bad: list[str] = []
    for block, unit in zip(out.strip().split("\n\n"), units, strict=False):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        state, result = props.get("ActiveState", "?"), props.get("Result", "?")
        if kinds[unit] == "active":
            if state != "active":
                bad.append(f"{unit} {state}")
        elif props.get("ExecMainStartTimestampMonotonic", "0") == "0" and state != "activating":
            bad.append(f"{unit} never ran")
        elif state == "failed" or result != "success":
            bad.append(f"{unit} {state} (result {result})")
    return bad


def _cloud_init(plan: LabPlan, state: dict[str, Any]) -> Row:
    def one(p: PopPlan) -> str | None:
        pid = _pids(state, p.code)
        out = nsexec(pid, ["cloud-init", "status", "--long"]).stdout
        m = re.search(r"^status: (\S+)", out, re.M)
        result = json.loads(Path(f"/proc/{pid}/root/run/cloud-init/result.json").read_text(encoding="utf-8"))
        errors = result.get("v1", {}).get("errors", [])
        status = m.group(1) if m else "unknown"
        return None if status == "done" and not errors else f"status {status}, errors {errors}"

    bad = _each(plan.pops, one)
    return Row("machines", f"cloud-init status done without errors on every PoP ({len(plan.pops)})", not bad,
               "; ".join(bad) or "status: done; result.json errors: []")


def _system_running(plan: LabPlan, state: dict[str, Any]) -> Row:
    def one(p: PopPlan) -> str | None:
        pid = _pids(state, p.code)
        out = nsexec(pid, ["systemctl", "is-system-running"]).stdout.strip()
        if out == "running":
            return None
        failed = [u for u in nsexec(pid, ["systemctl", "--failed", "--no-legend", "--plain"]).stdout.split()
                  if "." in u]
        return f"{out}; failed: {' '.join(failed)}"

    bad = _each(plan.pops, one)
    return Row("machines", "systemctl is-system-running = running on every PoP", not bad, "; ".join(bad) or "running")


def _units(plan: LabPlan, state: dict[str, Any], data: dict[str, bytes]) -> Row:
    counts: list[int] = []

    def one(p: PopPlan) -> str | None:
        kinds = rendered_unit_kinds(data[p.code].decode())
        counts.append(len(kinds))
        return ", ".join(unit_problems(_pids(state, p.code), kinds)) or None

    bad = _each(plan.pops, one)
    example = ", ".join(rendered_units(data[plan.pops[0].code].decode()))
    return Row("machines", "every rendered unit (and every daemon runcmd starts) active, timer-started oneshots "
               "succeeded", not bad, "; ".join(bad) or f"{sum(counts)} units, e.g. {plan.pops[0].code}: {example}")


def _nft_loaded(plan: LabPlan, state: dict[str, Any]) -> Row:
    def one(p: PopPlan) -> str | None:
        out = nsexec(_pids(state, p.code), ["nft", "list", "ruleset"]).stdout
        if "table inet anycast" not in out:
            return "table inet anycast not loaded"
        if not re.search(r"type filter hook input priority filter; policy drop;", out):
            return "input chain without policy drop"
        return None

    bad = _each(plan.pops, one)
    return Row("machines", "nftables: the rendered ruleset loaded (table inet anycast, input policy drop)", not bad,
               "; ".join(bad) or f"loaded on {len(plan.pops)} PoPs")


def _tcp(ns: str, addr: str, port: int, timeout: float = 1.0, source: str | None = None) -> str:
    """'open' (connected; 'ssh' if an SSH banner came), 'refused', or 'no answer' (dropped)."""
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    sock = socket_in(ns, fam, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        if source:
            sock.bind((source, 0))
        sock.connect((addr, port))
        with contextlib.suppress(OSError):
            if sock.recv(16).startswith(b"SSH-"):
                return "ssh"
        return "open"
    except ConnectionRefusedError:
        return "refused"
    except (TimeoutError, OSError):
        return "no answer"
    finally:
        sock.close()


def _nft_enforced(plan: LabPlan, client: ClientPlan) -> Row:
    """From a client (outside every admin CIDR) SSH and BGP to each PoP's unicast address must get no answer; from
    the upstream's link address, when it lies inside admin.sshCidrs, SSH must answer (sshd runs: the drop is nftables)."""
    admin = list(plan.network.admin.ssh_cidrs)
    problems: list[str] = []
    positive: list[str] = []
    for p in plan.pops:
        s = p.session(4) or p.session(6)
        assert s is not None
        addr = str(s.pop_address)
        for port in (22, 179):
            got = _tcp(client.namespace, addr, port)
            if got != "no answer":
                problems.append(f"{p.code} {addr}:{port} from {client.name}: {got}")
        gw = s.link_gateway
        if any(gw in n for n in admin if n.version == gw.version):
            got = _tcp(p.upstream_namespace, addr, 22, timeout=3, source=str(gw))
            positive.append(f"{p.code}:{got}")
            if got != "ssh":
                problems.append(f"{p.code} {addr}:22 from admin address {gw}: {got} (want an SSH banner)")
    cidrs = ", ".join(str(n) for n in admin)
    return Row("machines", f"nftables enforced: SSH and BGP from {client.name} (outside admin CIDRs) get no answer",
               not problems, "; ".join(problems) or
               f"{len(plan.pops) * 2} connects dropped; SSH from the upstreams' addresses in {cidrs}: "
               f"{', '.join(positive) or 'none in the admin CIDRs'}")


def _agent(plan: LabPlan, state: dict[str, Any]) -> Row:
    anycast = [p for p in plan.pops if p.mode == "anycast"]

    def one(p: PopPlan) -> str | None:
        pst = state["pops"][p.code]
        props = dict(line.split("=", 1) for line in pop_control.systemctl(
            pst, "show", "-p", "ActiveState,SubState,Type,WatchdogUSec,Restart", pop_control.UNITS["health"]).split())
        pid = pop_control.main_pid(pst, "health")
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        if props.get("ActiveState") != "active" or HEALTH_AGENT not in cmd:
            return f"{props} pid {pid} {cmd}"
        return None

    bad = _each(anycast, one)
    detail = "; ".join(bad)
    if not bad and anycast:
        pst = state["pops"][anycast[0].code]
        props = pop_control.systemctl(pst, "show", "-p", "Type,WatchdogUSec,Restart,NRestarts",
                                      pop_control.UNITS["health"]).split()
        detail = f"active on {len(anycast)} anycast PoPs; {anycast[0].code}: {' '.join(props)}"
    return Row("machines", "health agent runs under systemd (anycast-health.service active, the shipped agent)",
               bool(anycast) and not bad, detail)


def _journal(plan: LabPlan, state: dict[str, Any]) -> Row:
    lines: list[str] = []

    def one(p: PopPlan) -> str | None:
        out = nsexec(_pids(state, p.code), ["journalctl", "-b", "-p", "err", "--no-pager", "-o", "short"]).stdout
        bad = [line for line in out.splitlines() if line.strip() and not line.startswith("-- ")
               and not any(a in line for a in ALLOWED_JOURNAL) and "anycast-tls" not in line]
        lines.extend(bad)
        return bad[0][:200] if bad else None

    bad = _each(plan.pops, one)
    return Row("logs", "no errors in the PoPs' journals (priority err and above)", not bad,
               "; ".join(bad) or f"{len(plan.pops)} journals read; allowed: {', '.join(ALLOWED_JOURNAL)}")


def _tls_units(plan: LabPlan, state: dict[str, Any], data: dict[str, bytes]) -> Row:
    lines: list[str] = []

    def one(p: PopPlan) -> str | None:
        kinds = {u: k for u, k in rendered_unit_kinds(data[p.code].decode()).items() if u in TLS_UNITS}
        if not kinds:
            return None
        pid = _pids(state, p.code)
        bad = unit_problems(pid, kinds)
        fetch = nsexec(pid, ["journalctl", "-b", "-o", "cat", "--no-pager", "-n", "1", "-u",
                             "anycast-tls-fetch.service", "_TRANSPORT=stdout"]).stdout.strip()
        if p.code == shown:
            lines.append(f"{p.code}: {fetch[:120]}")
        return ", ".join(bad) or None

    # a PoP whose certificate came from its fetch unit (the issuer's came with its issue run)
    shown = next((p.code for p in plan.pops if p.code != plan.network.tls_issuer), plan.pops[0].code)
    bad = _each(plan.pops, one)
    return Row("machines", "HTTPS units from the user data active (anycast-tls timers waiting, fetch/issue succeeded)",
               not bad, "; ".join(bad[:3]) or f"{len(plan.pops)} PoPs; last fetch at {'; '.join(lines)}")


def machine_rows(plan: LabPlan, state: dict[str, Any], client: ClientPlan) -> list[Row]:
    """The static machine-mode rows (run before failover)."""
    # the user data each PoP booted from (lab up keeps a copy), not a fresh render
    data = {p.code: (Path(state["pops"][p.code]["machine"]["dir"]) / "user-data.yaml").read_bytes() for p in plan.pops}
    rows = [_cloud_init(plan, state), _system_running(plan, state), _units(plan, state, data),
            _journal(plan, state), _nft_loaded(plan, state), _nft_enforced(plan, client)]  # journal before the
    # SSH probe, whose closed connection sshd logs as an error
    if any(p.mode == "anycast" for p in plan.pops):
        rows.append(_agent(plan, state))
    if plan.network.tls.enabled:
        rows.append(_tls_units(plan, state, data))
    return rows


def watchdog_row(plan: LabPlan, state: dict[str, Any], client: ClientPlan, pop_code: str, nxt: str) -> Row:
    """Freeze the agent (SIGSTOP), kill Caddy: only systemd can withdraw the PoP now. Its watchdog must SIGKILL the
    agent within WatchdogSec, the unit's ExecStopPost disables the anycast protocols (withdrawn at the upstream), and
    Restart= brings a new agent that announces again once Caddy is back."""
    pop = plan.pop(pop_code)
    pst = state["pops"][pop_code]
    prefix = str(plan.network.prefixes.ipv4 or plan.network.prefixes.ipv6)
    props = dict(line.split("=", 1) for line in pop_control.systemctl(
        pst, "show", "-p", "WatchdogUSec,NRestarts", pop_control.UNITS["health"]).split())
    wd = props.get("WatchdogUSec", "0")
    watchdog_s = _seconds(wd)
    if not watchdog_s:
        return Row("failover", f"{pop_code}: health agent watchdog (systemd)", False,
                   f"anycast-health.service has no WatchdogSec (WatchdogUSec={wd})")
    restarts0 = int(props.get("NRestarts", "0"))
    service = str(plan.network.service.ipv4 or plan.network.service.ipv6)
    agent = pop_control.main_pid(pst, "health")
    http = Prober(client.namespace, service).start()
    try:
        if _wait(lambda: bool(http.samples) and http.samples[-1][1] == pop_code, 10) is None:
            raise LabError(f"{client.name} is not served by {pop_code} before the test")
        t0 = time.monotonic()
        signal_pids([agent], signal.SIGSTOP)
        pop_control.kill(pst, "caddy")
        t_w = _wait(lambda: not _announced(pop, prefix), watchdog_s + 10)
        killed = _wait(lambda: not alive(agent), 5) is not None
        t_s = _wait(lambda: http.first_after(t0, nxt) is not None, 5)
        lost, probes = http.lost(t0, (http.first_after(t0, nxt) if t_s else None) or time.monotonic())
        t1 = time.monotonic()
        pop_control.restart(pst, "caddy")
        t_r = _wait(lambda: _announced(pop, prefix) and bool(http.samples) and http.samples[-1][1] == pop_code, 30)
        new_agent = pop_control.main_pid(pst, "health")
    finally:
        signal_pids([agent], signal.SIGCONT)
        http.stop()
    restarts = int(pop_control.systemctl(pst, "show", "-p", "NRestarts", "--value",
                                         pop_control.UNITS["health"]).strip() or 0)
    w = None if t_w is None else t_w - t0
    r = None if t_r is None else t_r - t1
    limit = watchdog_s + 1.0  # + BGP UPDATE propagation and our 20 ms polling
    ok = w is not None and w <= limit and killed and restarts > restarts0 and new_agent != agent and r is not None
    detail = (f"agent (host pid {agent}) SIGSTOPped, Caddy killed: withdrawn at upstream after "
              f"{'never' if w is None else f'{w:.2f} s'} (WatchdogSec={watchdog_s:g} s, limit {limit:g} s); agent "
              f"{'SIGKILLed by systemd' if killed else 'NOT killed'}, NRestarts {restarts0} -> {restarts}, new pid "
              f"{new_agent}; lost {lost}/{probes} HTTP; Caddy restarted (systemctl), re-announced and serving after "
              f"{'never' if r is None else f'{r:.2f} s'}")
    return Row("failover", f"{pop_code}: agent frozen + Caddy killed -> systemd watchdog withdraws (real systemd)", ok,
               detail)


def _seconds(value: str) -> float:
    """systemd's time span text ('2s', '500ms', '1min 30s', 'infinity', '0') in seconds (0 if none)."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1, "min": 60, "h": 3600}
    total = 0.0
    for num, unit in re.findall(r"([\d.]+)\s*(us|ms|min|s|h)", value):
        total += float(num) * units[unit]
    return total

