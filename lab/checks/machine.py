"""``anycast lab check`` rows only machine mode can show: cloud-init, systemd, the rendered units, the nftables
ruleset loaded and enforced, the health agent under systemd and its watchdog (see lab/drivers/machines.py)."""

from __future__ import annotations

import base64
import gzip
import json
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from infra.contracts import HEALTH_AGENT, TLS_FETCH_TIMER, TLS_FETCH_UNIT, TLS_ISSUE_TIMER, TLS_ISSUE_UNIT
from lab.checks import Check, Context, register_group
from lab.drivers.base import pop_driver
from lab.drivers.machine import UNITS, MachinePop
from lab.drivers.machines import nsexec
from lab.monitor.blackbox import PREFERRED_CLIENT
from lab.net.netns import LabError
from lab.net.probes import tcp_answer
from lab.plan.topology import ClientPlan, LabPlan, PopPlan
from lab.state import LabState

# Journal lines of priority err that are expected on every first boot (matched as substrings).
ALLOWED_JOURNAL = (
    # Debian's bird2 starts BIRD with the package's own bird.conf; runcmd restarts it with the rendered one, and
    # BIRD logs its clean shutdown at priority err.
    "Shutdown completed",
)


# The HTTPS units (tls.enabled): the timers wait, their oneshot services run now and then (the lab starts them once
# after convergence instead of waiting up to 32 minutes, see lab/cloud/tls.py UNIT_OF). Reported in a row of their own too.
TLS_UNITS = (TLS_FETCH_UNIT, TLS_ISSUE_UNIT, TLS_FETCH_TIMER, TLS_ISSUE_TIMER)


def _pids(state: LabState, code: str) -> int:
    return _machine(state, code).leader


def _machine(state: LabState, code: str) -> MachinePop:
    drv = pop_driver(state["pops"][code])
    if not isinstance(drv, MachinePop):
        raise LabError(f"{code} is not a machine-mode PoP")
    return drv


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
    out = nsexec(pid, ["systemctl", "show", "-p", "Id,ActiveState,Result,ExecMainStartTimestampMonotonic,"
                       "ConditionResult,ConditionTimestampMonotonic", *units]).stdout
    bad: list[str] = []
    for block, unit in zip(out.strip().split("\n\n"), units, strict=False):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        state, result = props.get("ActiveState", "?"), props.get("Result", "?")
        if kinds[unit] == "active":
            if state != "active":
                bad.append(f"{unit} {state}")
        elif props.get("ExecMainStartTimestampMonotonic", "0") == "0" and state != "activating":
            # started, but its Condition*= said there is nothing to do (anycast-status-peers before a peer list exists)
            if props.get("ConditionResult") != "no" or props.get("ConditionTimestampMonotonic", "0") == "0":
                bad.append(f"{unit} never ran")
        elif state == "failed" or result != "success":
            bad.append(f"{unit} {state} (result {result})")
    return bad


def _cloud_init(plan: LabPlan, state: LabState) -> Check:
    def one(p: PopPlan) -> str | None:
        pid = _pids(state, p.code)
        out = nsexec(pid, ["cloud-init", "status", "--long"]).stdout
        m = re.search(r"^status: (\S+)", out, re.M)
        result = json.loads(Path(f"/proc/{pid}/root/run/cloud-init/result.json").read_text(encoding="utf-8"))
        errors = result.get("v1", {}).get("errors", [])
        status = m.group(1) if m else "unknown"
        return None if status == "done" and not errors else f"status {status}, errors {errors}"

    bad = _each(plan.pops, one)
    return Check("machines", f"cloud-init status done without errors on every PoP ({len(plan.pops)})", not bad,
               "; ".join(bad) or "status: done; result.json errors: []")


def _system_running(plan: LabPlan, state: LabState) -> Check:
    def one(p: PopPlan) -> str | None:
        pid = _pids(state, p.code)
        out = nsexec(pid, ["systemctl", "is-system-running"]).stdout.strip()
        if out == "running":
            return None
        failed = [u for u in nsexec(pid, ["systemctl", "--failed", "--no-legend", "--plain"]).stdout.split()
                  if "." in u]
        return f"{out}; failed: {' '.join(failed)}"

    bad = _each(plan.pops, one)
    return Check("machines", "systemctl is-system-running = running on every PoP", not bad, "; ".join(bad) or "running")


def _units(plan: LabPlan, state: LabState, data: dict[str, bytes]) -> Check:
    counts: list[int] = []

    def one(p: PopPlan) -> str | None:
        kinds = rendered_unit_kinds(data[p.code].decode())
        counts.append(len(kinds))
        return ", ".join(unit_problems(_pids(state, p.code), kinds)) or None

    bad = _each(plan.pops, one)
    example = ", ".join(rendered_units(data[plan.pops[0].code].decode()))
    return Check("machines", "every rendered unit (and every daemon runcmd starts) active, timer-started oneshots "
               "succeeded", not bad, "; ".join(bad) or f"{sum(counts)} units, e.g. {plan.pops[0].code}: {example}")


def _nft_loaded(plan: LabPlan, state: LabState) -> Check:
    def one(p: PopPlan) -> str | None:
        out = nsexec(_pids(state, p.code), ["nft", "list", "ruleset"]).stdout
        if "table inet anycast" not in out:
            return "table inet anycast not loaded"
        if not re.search(r"type filter hook input priority filter; policy drop;", out):
            return "input chain without policy drop"
        return None

    bad = _each(plan.pops, one)
    return Check("machines", "nftables: the rendered ruleset loaded (table inet anycast, input policy drop)", not bad,
               "; ".join(bad) or f"loaded on {len(plan.pops)} PoPs")


def _nft_enforced(plan: LabPlan, client: ClientPlan) -> Check:
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
            got = tcp_answer(client.namespace, addr, port)
            if got != "no answer":
                problems.append(f"{p.code} {addr}:{port} from {client.name}: {got}")
        gw = s.link_gateway
        if any(gw in n for n in admin if n.version == gw.version):
            got = tcp_answer(p.upstream_namespace, addr, 22, timeout=3, source=str(gw))
            positive.append(f"{p.code}:{got}")
            if got != "ssh":
                problems.append(f"{p.code} {addr}:22 from admin address {gw}: {got} (want an SSH banner)")
    cidrs = ", ".join(str(n) for n in admin)
    return Check("machines", f"nftables enforced: SSH and BGP from {client.name} (outside admin CIDRs) get no answer",
               not problems, "; ".join(problems) or
               f"{len(plan.pops) * 2} connects dropped; SSH from the upstreams' addresses in {cidrs}: "
               f"{', '.join(positive) or 'none in the admin CIDRs'}")


def _agent(plan: LabPlan, state: LabState) -> Check:
    anycast = [p for p in plan.pops if p.mode == "anycast"]

    def one(p: PopPlan) -> str | None:
        drv = _machine(state, p.code)
        props = dict(line.split("=", 1) for line in drv.systemctl(
            "show", "-p", "ActiveState,SubState,Type,WatchdogUSec,Restart", UNITS["health"]).split())
        pid = drv.main_pid("health")
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        if props.get("ActiveState") != "active" or HEALTH_AGENT not in cmd:
            return f"{props} pid {pid} {cmd}"
        return None

    bad = _each(anycast, one)
    detail = "; ".join(bad)
    if not bad and anycast:
        props = _machine(state, anycast[0].code).systemctl("show", "-p", "Type,WatchdogUSec,Restart,NRestarts",
                                                           UNITS["health"]).split()
        detail = f"active on {len(anycast)} anycast PoPs; {anycast[0].code}: {' '.join(props)}"
    return Check("machines", "health agent runs under systemd (anycast-health.service active, the shipped agent)",
               bool(anycast) and not bad, detail)


def _journal(plan: LabPlan, state: LabState) -> Check:
    lines: list[str] = []

    def one(p: PopPlan) -> str | None:
        out = nsexec(_pids(state, p.code), ["journalctl", "-b", "-p", "err", "--no-pager", "-o", "short"]).stdout
        bad = [line for line in out.splitlines() if line.strip() and not line.startswith("-- ")
               and not any(a in line for a in ALLOWED_JOURNAL) and "anycast-tls" not in line]
        lines.extend(bad)
        return bad[0][:200] if bad else None

    bad = _each(plan.pops, one)
    return Check("logs", "no errors in the PoPs' journals (priority err and above)", not bad,
               "; ".join(bad) or f"{len(plan.pops)} journals read; allowed: {', '.join(ALLOWED_JOURNAL)}")


def _tls_units(plan: LabPlan, state: LabState, data: dict[str, bytes]) -> Check:
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
    return Check("machines", "HTTPS units from the user data active (anycast-tls timers waiting, fetch/issue succeeded)",
               not bad, "; ".join(bad[:3]) or f"{len(plan.pops)} PoPs; last fetch at {'; '.join(lines)}")


def machine_rows(plan: LabPlan, state: LabState, client: ClientPlan) -> list[Check]:
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


@register_group(65, "machines", applies=lambda ctx: ctx.driver.systemd)
def _machines(ctx: Context) -> None:
    names = [c.name for c in ctx.plan.clients]
    probe_client = ctx.plan.client(PREFERRED_CLIENT if PREFERRED_CLIENT in names else names[0])
    ctx.say("machines: cloud-init, systemd, rendered units, nftables loaded and enforced, journals, health agent")
    ctx.guarded("machines", "machine mode", lambda: machine_rows(ctx.plan, ctx.state, probe_client))
