"""``anycast lab check`` rows of the auditors, machine mode only (issue 21, docs/security.md): systemd's exposure score
of every unit inside a booted PoP, the rendered kernel settings in effect, a port scan with Debian's nmap from a
client, the upstream (the BGP peer) and the monitoring namespace, and Lynis' hardening index of one PoP.

nmap's scans are bounded: an explicit port list, one retry, a host timeout, and only the lab's own addresses.
https://nmap.org/book/man-performance.html, https://cisofy.com/documentation/lynis/
"""

from __future__ import annotations

import base64
import gzip
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infra.contracts import (
    BIRD_EXPORTER_PORT,
    HEALTH_STATUS_PORT,
    HEALTH_UNIT,
    ONESHOT_UNITS,
    REBOOT_UNIT,
    STATUS_PEERS_UNIT,
    TLS_FETCH_UNIT,
    TLS_ISSUE_UNIT,
)
from lab.checks import Check, Context, register_group
from lab.checks.machine import _each, _pids
from lab.drivers.machines import nsexec
from lab.monitor.blackbox import PREFERRED_CLIENT
from lab.net.netns import LabError, list_namespaces, run
from lab.plan.topology import ClientPlan, LabPlan, PopPlan
from lab.state import LabState
from userdata.hardening import SYSCTL_FILE

EXPOSURE_GOAL = 2.0  # issue 21: every unit we ship or drop in at or below this (0.0 locked down .. 10.0)
DEBIAN_UNITS = ("bird.service", "nsd.service", "caddy.service")  # Debian's units with our drop-ins
OUR_UNITS = (HEALTH_UNIT, TLS_FETCH_UNIT, TLS_ISSUE_UNIT, REBOOT_UNIT, STATUS_PEERS_UNIT, *ONESHOT_UNITS)
LYNIS_GOAL = 80

# What the scan asks (TCP SYN and UDP): the public ports, SSH, BGP, the exporters, Caddy's admin API and a few that
# a stock Debian host or a careless install would open.
TCP_PORTS = (22, 25, 53, 80, 111, 179, 443, 2019, 3306, 8080, 9100, 9115, BIRD_EXPORTER_PORT, HEALTH_STATUS_PORT)
UDP_PORTS = (53, 123, 161, 500)
PUBLIC = {("tcp", 53), ("udp", 53), ("tcp", 80), ("tcp", 443)}
NMAP_BOUNDS = ("-n", "-Pn", "--max-retries", "1", "--host-timeout", "60s", "--max-rtt-timeout", "500ms", "-T4")
SILENT = {"filtered", "open|filtered"}  # no answer at all: nftables dropped it
AUDIT_DIR = "/run/anycast-audit"  # scratch space inside a PoP (its /run, a tmpfs): nothing of its disk changes


_OVERALL = re.compile(r"Overall exposure level for \S+: (\d+\.\d)")


def _score_table(out: str) -> dict[str, float]:
    """``systemd-analyze security`` without units: one line per service, ``UNIT EXPOSURE PREDICATE HAPPY``."""
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(\S+\.service)\s+(\d+\.\d)\s", out, re.M)}


def _stock_scores(pid: int) -> dict[str, float]:
    """Debian's unit files of the PoP alone, in an empty root under the container's /run: ``--offline`` on the PoP's
    own root would merge our drop-ins from /etc/systemd/system."""
    base = Path(f"/proc/{pid}/root")
    scratch = base / AUDIT_DIR.lstrip("/") / "stock"  # Lynis runs beside it meanwhile (in AUDIT_DIR/lynis)
    units = scratch / "lib/systemd/system"
    units.mkdir(parents=True, exist_ok=True)
    out: dict[str, float] = {}
    try:
        for unit in DEBIAN_UNITS:
            shutil.copy(base / "lib/systemd/system" / unit, units / unit)
            text = nsexec(pid, ["systemd-analyze", "security", "--offline=true", "--no-pager",
                                f"--root={AUDIT_DIR}/stock", unit], timeout=60).stdout
            m = _OVERALL.search(text)
            if m:
                out[unit] = float(m.group(1))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def _exposure(plan: LabPlan, state: LabState) -> list[Check]:
    """Inside every PoP: the exposure of each of our units as the running systemd sees it (the merged unit and its
    drop-ins), Debian's stock unit file beside it (``--offline`` on /lib/systemd/system/X, the PoP's own package)."""
    scores: dict[str, dict[str, float]] = {}
    stock: dict[str, float] = {}

    def one(p: PopPlan) -> str | None:
        pid = _pids(state, p.code)
        table = _score_table(nsexec(pid, ["systemd-analyze", "security", "--no-pager"], timeout=90).stdout)
        # The list without arguments leaves out units that are not running (a timer's oneshot between runs, a boot
        # oneshot that exited): those are asked for by name when the PoP has them.
        root = Path(f"/proc/{pid}/root/etc/systemd/system")
        for unit in OUR_UNITS:
            if unit not in table and (root / unit).is_file():
                text = nsexec(pid, ["systemd-analyze", "security", "--no-pager", unit], timeout=60).stdout
                if m := _OVERALL.search(text):
                    table[unit] = float(m.group(1))
        scores[p.code] = table
        if p.code == plan.pops[0].code:
            stock.update(_stock_scores(pid))
        ours = [u for u in (*OUR_UNITS, *DEBIAN_UNITS) if u in table]
        required = [*DEBIAN_UNITS, REBOOT_UNIT, ONESHOT_UNITS[0], *([HEALTH_UNIT] if p.mode == "anycast" else [])]
        missing = [u for u in required if u not in table]
        over = [f"{u} {table[u]}" for u in ours if table[u] > EXPOSURE_GOAL]
        return ", ".join([*(f"{u} not scored" for u in missing), *over]) or None

    bad = _each(plan.pops, one)
    first = plan.pops[0].code
    table = scores.get(first, {})
    mine = ", ".join(f"{u.removesuffix('.service')} {table[u]}"
                     + (f" (Debian's unit {stock[u]})" if u in stock else "")
                     for u in (*OUR_UNITS, *DEBIAN_UNITS) if u in table)
    others = ", ".join(f"{u.removesuffix('.service')} {s}" for u, s in sorted(table.items(), key=lambda x: -x[1])
                       if u not in (*OUR_UNITS, *DEBIAN_UNITS))
    ok = not bad and len(stock) == len(DEBIAN_UNITS)
    return [Check("audit", f"systemd-analyze security in every booted PoP: our units <= {EXPOSURE_GOAL} "
                           "(Debian's stock unit beside)", ok,
                  "; ".join(bad) or f"{first}: {mine}; the PoP's other services: {others}")]


def rendered_sysctls(user_data: str) -> dict[str, str]:
    """key -> value of the sysctl file the user data writes."""
    doc = yaml.safe_load(user_data) or {}
    entry: dict[str, Any] = next((f for f in doc.get("write_files") or [] if f.get("path") == SYSCTL_FILE), {})
    text = str(entry.get("content", ""))
    if entry.get("encoding") == "gz+b64":  # as cloud-init writes it
        text = gzip.decompress(base64.b64decode(text)).decode()
    return {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in text.splitlines())
            if v and not k.lstrip().startswith("#")}


def _sysctl(plan: LabPlan, state: LabState) -> list[Check]:
    """The rendered kernel settings in effect (the containers' /proc/sys/net is writable: lab/drivers/machines.py)."""
    counts: list[int] = []

    def one(p: PopPlan) -> str | None:
        data = (Path(state["pops"][p.code]["machine"]["dir"]) / "user-data.yaml").read_text(encoding="utf-8")
        want = rendered_sysctls(data)
        if not want:
            return f"no {SYSCTL_FILE} in the user data"
        out = nsexec(_pids(state, p.code), ["sysctl", *want]).stdout
        got = {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in out.splitlines())}
        counts.append(len(want))
        wrong = [f"{k} = {got.get(k, 'unreadable')} (want {v})" for k, v in want.items() if got.get(k) != v]
        return ", ".join(wrong) or None

    bad = _each(plan.pops, one)
    return [Check("audit", f"kernel settings of {SYSCTL_FILE} in effect in every booted PoP (sysctl)", not bad,
                  "; ".join(bad) or f"{sum(counts)} values read back on {len(plan.pops)} PoPs")]


@dataclass
class Scan:
    """nmap's verdict per (address, protocol, port)."""

    states: dict[tuple[str, str, int], str] = field(default_factory=dict)
    seconds: float = 0.0

    def open(self, addr: str) -> set[tuple[str, int]]:
        return {(proto, port) for (a, proto, port), s in self.states.items() if a == addr and s == "open"}

    def answered(self, addr: str) -> set[tuple[str, int]]:
        """Ports that sent anything back (open, or closed: a reset or ICMP unreachable passed the firewall)."""
        return {(proto, port) for (a, proto, port), s in self.states.items() if a == addr and s not in SILENT}


def parse_nmap_xml(text: str) -> dict[tuple[str, str, int], str]:
    states: dict[tuple[str, str, int], str] = {}
    for host in ET.fromstring(text).iter("host"):
        addr = next((a.get("addr", "") for a in host.iter("address") if a.get("addrtype") in ("ipv4", "ipv6")), "")
        for port in host.iter("port"):
            st = port.find("state")
            states[(addr, port.get("protocol", ""), int(port.get("portid", "0")))] = (
                st.get("state", "?") if st is not None else "?")
    return states


def nmap(ns: str, targets: Sequence[str], tcp: Sequence[int], udp: Sequence[int] = (),
         source: tuple[str, str] | None = None) -> Scan:
    """SYN (and UDP) scan of ``targets`` from namespace ``ns`` (one family per call); ``source`` = (address,
    interface) to scan from a given local address. A SYN scan never completes a handshake: no daemon sees a
    connection (BIRD's established session with this peer is not disturbed)."""
    if shutil.which("nmap") is None:
        raise LabError("nmap is not installed (make debs installs it)")
    ports = ",".join([f"T:{p}" for p in tcp] + [f"U:{p}" for p in udp])
    cmd = ["ip", "netns", "exec", ns, "nmap", "-sS", *(["-sU"] if udp else []), *NMAP_BOUNDS, "-p", ports, "-oX", "-"]
    if ":" in targets[0]:
        cmd.append("-6")
    if source:
        cmd += ["-S", source[0], "-e", source[1]]
    t0 = time.monotonic()
    res = subprocess.run([*cmd, *targets], capture_output=True, text=True, timeout=180, check=False)
    if res.returncode != 0 or "<nmaprun" not in res.stdout:
        raise LabError(f"nmap in {ns}: exit {res.returncode}: {res.stderr.strip()[:200]}")
    return Scan(parse_nmap_xml(res.stdout), time.monotonic() - t0)


def _fmt(ports: set[tuple[str, int]]) -> str:
    return " ".join(f"{port}/{proto}" for proto, port in sorted(ports, key=lambda x: (x[1], x[0]))) or "none"


def _route_dev(ns: str, dst: str, src: str) -> str:
    out = run(["ip", "-n", ns, "route", "get", dst, "from", src])
    m = re.search(r"\bdev (\S+)", out)
    if not m:
        raise LabError(f"{ns}: no route to {dst} from {src}")
    return m.group(1)


def _scan(plan: LabPlan, state: LabState, client: ClientPlan) -> list[Check]:
    """From ``client`` (outside every admin CIDR): only the public ports answer on each PoP's unicast addresses and
    the anycast addresses; from each upstream's BGP address 179 answers; from the monitoring namespace (a source in
    admin.monitoringCidrs) the exporter ports answer on the unicast addresses."""
    pops = plan.pops
    unicast = {p.code: [a for a in (p.unicast_ipv4, p.unicast_ipv6) if a] for p in pops}
    anycast = [str(a) for a in (plan.network.service.ipv4, plan.network.service.ipv6) if a] if any(
        p.mode == "anycast" for p in pops) else []
    targets = [a for addrs in unicast.values() for a in addrs] + anycast
    v4, v6 = [a for a in targets if ":" not in a], [a for a in targets if ":" in a]
    with ThreadPoolExecutor(max_workers=2) as pool:
        scans = list(pool.map(lambda t: nmap(client.namespace, t, TCP_PORTS, UDP_PORTS), [t for t in (v4, v6) if t]))
    states = {k: v for sc in scans for k, v in sc.states.items()}
    scan = Scan(states, max(sc.seconds for sc in scans))
    problems: list[str] = []
    for addr in targets:
        if not any(a == addr for a, _, _ in states):
            problems.append(f"{addr}: not scanned")
            continue
        extra = scan.answered(addr) - PUBLIC
        if extra:
            problems.append(f"{addr}: {_fmt(extra)} answered")
    for addr in anycast:
        if scan.open(addr) != PUBLIC:
            problems.append(f"anycast {addr}: open {_fmt(scan.open(addr))} (want {_fmt(PUBLIC)})")
    for p in pops:
        for addr in unicast[p.code]:
            if ("tcp", 80) not in scan.open(addr):
                problems.append(f"{p.code} {addr}: 80/tcp {states.get((addr, 'tcp', 80))}")
    shown = "; ".join(f"{a}: {_fmt(scan.open(a))}" for a in ([*unicast[pops[0].code], *anycast]))
    rows = [Check("audit", f"nmap from {client.name} ({len(TCP_PORTS)} TCP + {len(UDP_PORTS)} UDP ports, "
                           f"{len(targets)} addresses): only 53/udp, 53/tcp, 80, 443 answer", not problems,
                  "; ".join(problems[:6]) or f"open: {shown}; every other port silent (dropped); "
                                             f"{scan.seconds:.1f} s")]

    # BGP from the configured peer only. The client's SYNs were dropped above (nftables). From the peer's own address
    # a SYN without a TCP-MD5 signature gets no answer either where the session has a password (the kernel drops it,
    # RFC 2385): there the established session is the proof that nftables lets the peer in; without a password the
    # SYN scan must find 179 open.
    peer_bad: list[str] = []
    seen: list[str] = []
    for p in pops:
        established = nsexec(_pids(state, p.code), ["ss", "-Htn", "state", "established"]).stdout
        for s in p.sessions:
            src, dst = str(s.upstream_address), str(s.pop_address)
            got = nmap(p.upstream_namespace, [dst], (179,), source=(src, _route_dev(p.upstream_namespace, dst, src)))
            st = got.states.get((dst, "tcp", 179))
            peer = f"[{src}]" if ":" in src else src
            up = re.search(rf"(^|\s){re.escape(peer)}:\d+(\s|$)", established, re.M) is not None
            if not up:
                peer_bad.append(f"{p.code}: no established BGP connection with {src}")
            if p.password and st != "filtered":
                peer_bad.append(f"{p.code} {dst}:179 from {src} without the TCP-MD5 key: {st} (want no answer)")
            elif not p.password and st != "open":
                peer_bad.append(f"{p.code} {dst}:179 from {src}: {st} (want open)")
            seen.append(f"{p.code}/{s.version} {'MD5, unsigned SYN dropped' if p.password else st}")
    n = sum(len(p.sessions) for p in pops)
    rows.append(Check("audit", f"179/tcp only from the configured peer ({n} sessions established; nmap from the "
                               "peer's own address)", bool(n) and not peer_bad,
                      "; ".join(peer_bad) or f"{', '.join(seen)}; from {client.name}: dropped"))

    from lab.monitor.prometheus import monitor_namespace

    mon = monitor_namespace(plan.stack)
    if mon not in list_namespaces(mon):
        rows.append(Check("audit", "nmap from admin.monitoringCidrs: the exporter ports answer", False,
                          f"no monitoring namespace {mon} (run the check without --skip-monitoring)"))
        return rows
    exporters = (BIRD_EXPORTER_PORT, HEALTH_STATUS_PORT)
    # nmap picks its own source address (not the routes' src): name the one inside admin.monitoringCidrs
    sources = {c.version: str(next(iter(c.hosts())) if c.num_addresses > 1 else c.network_address)
               for c in reversed(plan.network.admin.monitoring_cidrs)}
    jobs = [(t, sources[v]) for v, t in ((4, [a for a in (p.unicast_ipv4 for p in pops) if a]),
                                         (6, [a for a in (p.unicast_ipv6 for p in pops) if a])) if t and v in sources]
    with ThreadPoolExecutor(max_workers=2) as pool:
        mscans = list(pool.map(lambda j: nmap(mon, j[0], exporters, source=(j[1], _route_dev(mon, j[0][0], j[1]))),
                               jobs))
    mstates = {k: v for sc in mscans for k, v in sc.states.items()}
    mon_bad = []
    for p in pops:
        for addr in unicast[p.code]:
            want = {BIRD_EXPORTER_PORT} | ({HEALTH_STATUS_PORT} if p.mode == "anycast" else set())
            opened = {port for (a, _proto, port), st in mstates.items() if a == addr and st == "open"}
            if not want <= opened:
                mon_bad.append(f"{p.code} {addr}: open {sorted(opened)} (want {sorted(want)})")
    cidrs = ", ".join(str(c) for c in plan.network.admin.monitoring_cidrs)
    rows.append(Check("audit", f"nmap from admin.monitoringCidrs ({cidrs}): {BIRD_EXPORTER_PORT} and "
                               f"{HEALTH_STATUS_PORT} (anycast PoPs) answer on the unicast addresses", not mon_bad,
                      "; ".join(mon_bad) or f"{len(mstates)} port states as expected; from {client.name}: dropped"))
    return rows


# Lynis is a shell script with its include files and database; Debian's package is installed on the host, not in
# the PoP. Its files are copied into the container's /run (a tmpfs of the container's own; nothing of the PoP's disk
# changes) and it runs there with its log and report beside them.
LYNIS_FILES = {"lynis": Path("/usr/sbin/lynis"), "include": Path("/usr/share/lynis/include"),
               "db": Path("/usr/share/lynis/db"), "plugins": Path("/etc/lynis/plugins"),
               "default.prf": Path("/etc/lynis/default.prf")}
LYNIS_DIR = f"{AUDIT_DIR}/lynis"


# Lynis' findings a PoP keeps, each with why (docs/security.md, "Lynis", says the same at more length). The Lynis row
# passes when the index reaches LYNIS_GOAL or every finding left is one of these; a new finding fails it. A key is
# the test ID, or "ID:word" for one detail of it (SSH-7408 reports each sshd option apart).
LYNIS_EXPLAINED = {
    "LYNIS": "Debian's packaged Lynis (3.0.8) is used on purpose; it says it is older than 4 months",
    "PKGS-7388": "lab only: the containers' apt source is the lab's mirror; Vultr's Debian 12 has debian-security",
    "DEB-0280": "no interactive users: root by key from admin.sshCidrs only",
    "DEB-0810": "upgrades are unattended: nobody reads apt-listbugs",
    "DEB-0811": "upgrades are unattended: nobody reads apt-listchanges",
    "DEB-0831": "no needrestart: it would restart BIRD/NSD/Caddy undrained; anycast-reboot drains and reboots instead",
    "DEB-0880": "SSH takes keys only and only from admin.sshCidrs (nftables): fail2ban would have nothing to ban",
    "BOOT-5264": "our units score <= 2.0 (the exposure row); the rest are Debian's own (ssh, getty, dbus)",
    "KRNL-5788": "lab only: a container boots no kernel of its own",
    "KRNL-6000": "lab only for kernel.*/fs.*/dev.* (61-anycast-kernel.conf sets them on a VM; a container shows the "
                 "host's, read-only); rp_filter=2 on purpose",
    "AUTH-9262": "no passwords are used except Vultr's root console password",
    "AUTH-9284": "the locked accounts are Debian's system users",
    "FILE-6310": "one file system, as Vultr's image comes; a PoP keeps no data (it is replaced, not repaired)",
    "FILE-7524": "Debian's defaults for the files Lynis lists",
    "HOME-9304": "Debian's defaults; no users besides root",
    "NAME-4028": "a PoP needs no DNS domain of its own",
    "NAME-4404": "lab only: Vultr's cloud-init writes the host name into /etc/hosts",
    "PKGS-7370": "a PoP is replaced, not repaired: no debsums",
    "PKGS-7394": "a PoP is replaced, not repaired: no apt-show-versions",
    "SSH-7408:Port": "port 22 stays: a different port hides nothing from a scan; 22 is open to admin.sshCidrs only",
    "LOGG-2154": "no remote syslog: Prometheus scrapes the PoP (docs/monitoring.md)",
    "ACCT-9622": "no process accounting: nothing on a PoP runs that the user data does not start",
    "ACCT-9626": "no sysstat: Prometheus has the figures",
    "ACCT-9628": "no auditd: it cannot run in the lab's containers, and nobody reads its log",
    "FINT-4350": "no AIDE: a PoP is rebuilt from its user data on every change; a baseline on the host proves nothing",
    "TOOL-5002": "cloud-init and Pulumi manage a PoP; Lynis does not look for them",
    "HRDN-7230": "no malware scanner: no uploads, no mail, no user files",
}


@dataclass(frozen=True)
class Lynis:
    index: int
    tests: int
    findings: list[str]  # "ID detail-or-text" of each warning and suggestion
    unexplained: list[str]
    seconds: float


def explained(test_id: str, details: str) -> bool:
    word = re.split(r"[\s(]", details.strip(), maxsplit=1)[0] if details.strip() else ""
    return test_id in LYNIS_EXPLAINED or f"{test_id}:{word}" in LYNIS_EXPLAINED


def parse_lynis_report(text: str) -> tuple[int | None, int, list[tuple[str, str, str]]]:
    """(hardening index, tests performed, findings) from lynis-report.dat (``key=value``, lists as
    ``key[]=ID|text|details|solution``); a finding is (ID, text, details)."""
    index = re.search(r"^hardening_index=(\d+)$", text, re.M)
    tests = re.search(r"^lynis_tests_done=(\d+)$", text, re.M)
    findings = []
    for line in re.findall(r"^(?:warning|suggestion)\[\]=(.+)$", text, re.M):
        parts = [*line.split("|"), "", ""]
        findings.append((parts[0], parts[1], "" if parts[2] == "-" else parts[2]))
    return (int(index.group(1)) if index else None, int(tests.group(1)) if tests else 0, findings)


def lynis(pid: int) -> Lynis:
    """``lynis audit system --quick`` inside the container of ``pid`` (Debian's lynis of the host, copied in)."""
    missing = [str(p) for p in LYNIS_FILES.values() if not p.exists()]
    if missing:
        raise LabError(f"lynis is not installed ({', '.join(missing)}; make debs installs it)")
    root = Path(f"/proc/{pid}/root")
    dest = root / LYNIS_DIR.lstrip("/")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True, mode=0o700)
    for name, src in LYNIS_FILES.items():
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / name)
    t0 = time.monotonic()
    try:
        nsexec(pid, ["sh", "-c", f"cd {LYNIS_DIR} && ./lynis audit system --quick --no-colors --profile default.prf "
                                 f"--logfile {LYNIS_DIR}/lynis.log --report-file {LYNIS_DIR}/report.dat "
                                 "</dev/null >/dev/null 2>&1"], timeout=600)
        seconds = time.monotonic() - t0
        report = (dest / "report.dat").read_text(encoding="utf-8", errors="replace")
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    index, tests, findings = parse_lynis_report(report)
    if index is None:
        raise LabError(f"lynis in pid {pid}: no hardening_index in its report ({len(report)} bytes)")
    named = [f"{i} {d or t}" for i, t, d in findings]
    return Lynis(index, tests, named, [f"{i} {d or t}" for i, t, d in findings if not explained(i, d)], seconds)


def _lynis_row(plan: LabPlan, state: LabState, measurements: dict[str, object]) -> list[Check]:
    p = next((p for p in plan.pops if p.mode == "anycast"), plan.pops[0])
    got = lynis(_pids(state, p.code))
    measurements["lynis"] = {"pop": p.code, "index": got.index, "tests": got.tests, "findings": got.findings,
                             "unexplained": got.unexplained, "seconds": round(got.seconds, 1)}
    return [Check("audit", f"Lynis hardening index of a booted PoP >= {LYNIS_GOAL}, or every finding left explained "
                           "(lynis audit system --quick)", got.index >= LYNIS_GOAL or not got.unexplained,
                  f"{p.code}: index {got.index} ({got.tests} tests, {got.seconds:.0f} s); {len(got.findings)} findings, "
                  f"unexplained: {'; '.join(got.unexplained) or 'none'}")]


def audit_rows(ctx: Context) -> None:
    names = [c.name for c in ctx.plan.clients]
    client = ctx.plan.client(PREFERRED_CLIENT if PREFERRED_CLIENT in names else names[0])
    with ThreadPoolExecutor(max_workers=1) as pool:  # Lynis takes a minute: the other rows run meanwhile
        slow = pool.submit(_lynis_row, ctx.plan, ctx.state, ctx.measurements)
        ctx.guarded("audit", "systemd-analyze security", lambda: _exposure(ctx.plan, ctx.state))
        ctx.guarded("audit", "kernel settings in effect", lambda: _sysctl(ctx.plan, ctx.state))
        ctx.guarded("audit", "nmap", lambda: _scan(ctx.plan, ctx.state, client))
        ctx.guarded("audit", "Lynis hardening index", slow.result)


@register_group(75, "audit", applies=lambda ctx: ctx.driver.systemd)
def _audit(ctx: Context) -> None:
    ctx.say("audit: systemd-analyze security, sysctl in effect, nmap from a client/peer/monitoring, Lynis")
    audit_rows(ctx)
