"""``anycast lab check``: assertions in BGP terms, what every client gets, and failover timing.

Each check is a :class:`Check` (name, ok, detail); measurements are numbers with their target. The report is a
JSON-safe dict; :func:`format_table` prints it for people. Every row can fail: a row over zero observations (no
session, no target, no log) is a FAIL, never a vacuous PASS (tests/unit/test_lab_checks.py breaks each condition).
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from infra.model import NO_EXPORT_OUTSIDE_VULTR, Network, Pop
from infra.model.stack import load_network
from lab import bgp, prometheus
from lab.boot import state_path
from lab.failover import freeze_pop, kill_caddy, pick_victim
from lab.geodns import expected_pop, geo_answer
from lab.leak import Leaker
from lab.monitoring import PREFERRED_CLIENT, ProbeResult, check_monitoring, write_lab_targets
from lab.netns import LabError, socket_in
from lab.probes import curl_pop, dig
from lab.topology import ClientPlan, LabPlan, PopPlan, build_plan, pop_dir_name, state_generations

NO_EXPORT = NO_EXPORT_OUTSIDE_VULTR


@dataclass(frozen=True)
class Check:
    group: str
    name: str
    ok: bool
    detail: str


def load_state(stack: str) -> dict[str, Any]:
    path = state_path(stack)
    if not path.exists():
        raise LabError(f"no lab state at {path}: run `anycast lab up --stack {stack}` first")
    return dict(json.loads(path.read_text(encoding="utf-8")))


def save_state(stack: str, state: dict[str, Any]) -> None:
    state_path(stack).write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def expected_routes(network: Network, pop: Pop, version: int) -> dict[str, tuple[tuple[int, ...], frozenset[str]]]:
    """What ``pop``'s upstream must receive over the IPv``version`` session: prefix -> (AS path, communities).

    Computed from the model, not from the renderer: anycast PoPs send the prefix with ``1 + prepend`` times the
    ASN and the configured communities (plus 20473:6000 and 64699:<asn> for announce-only-to); Vultr PoPs also send
    the service host route with 20473:6000; unicast PoPs send nothing.
    """
    prefix = network.prefixes.ipv4 if version == 4 else network.prefixes.ipv6
    service = network.service.ipv4 if version == 4 else network.service.ipv6
    if not pop.is_anycast or prefix is None or service is None:
        return {}
    path = (network.asn,) * (1 + pop.announce.prepend)
    comms = set(pop.announce.communities)
    if pop.announce.only_to:
        comms |= {NO_EXPORT, *(f"64699:{asn}" for asn in pop.announce.only_to)}
    out = {str(prefix): (path, frozenset(comms))}
    if pop.is_vultr:
        out[f"{service}/{32 if version == 4 else 128}"] = (path, frozenset(comms | {NO_EXPORT}))
    return out


def _fmt_route(prefix: str, path: tuple[int, ...], comms: frozenset[str]) -> str:
    return f"{prefix} path {' '.join(map(str, path))}" + (f" comm {','.join(sorted(comms))}" if comms else "")


def check_sessions(plan: LabPlan, state: dict[str, Any]) -> list[Check]:
    out: list[Check] = []
    bad_pop: list[str] = []
    bad_client: list[str] = []
    n_pop = n_client = 0
    for p in plan.pops:
        neigh = bgp.neighbors(p.upstream_namespace)
        for s in p.sessions:
            n_pop += 1
            n = neigh.get(str(s.pop_address))
            if n is None or not n.established:
                bad_pop.append(f"{p.code}/v{s.version}@upstream")
        try:
            protos = bgp.bird_protocols(state["pops"][p.code]["bird_socket"])
        except LabError as exc:
            bad_pop.append(f"{p.code}: BIRD does not answer ({exc})")
            protos = {}
        for s in p.sessions:
            st = protos.get(f"upstream{s.version}")
            if st is None or st[1] != "Established":
                bad_pop.append(f"{p.code}/upstream{s.version}@bird:{st}")
        for c in plan.clients:
            for s in p.sessions:
                n_client += 1
                addr = str(c.backbone_v4 if s.version == 4 else c.backbone_v6)
                n = neigh.get(addr)
                if n is None or not n.established:
                    bad_client.append(f"{c.name}-{p.code}/v{s.version}")
    for c in plan.clients:
        try:
            protos = bgp.bird_protocols(state["clients"][c.name]["bird_socket"])
        except LabError as exc:
            bad_client.append(f"{c.name}: BIRD does not answer ({exc})")
            continue
        for name, (state_, info) in protos.items():
            if name.startswith("up_") and info != "Established":
                bad_client.append(f"{c.name}:{name}:{state_}")
        if not any(name.startswith("up_") for name in protos):
            bad_client.append(f"{c.name}: BIRD has no up_ protocol")
    out.append(Check("bgp", "PoP <-> upstream sessions Established (both ends)", n_pop > 0 and not bad_pop,
                     f"{n_pop} sessions" + (f"; down: {', '.join(bad_pop)}" if bad_pop else "")))
    out.append(Check("bgp", "upstream <-> client sessions Established (both ends)", n_client > 0 and not bad_client,
                     f"{n_client} sessions" + (f"; down: {', '.join(bad_client[:8])}" if bad_client else "")))
    return out


def check_md5(plan: LabPlan) -> Check:
    """An unsigned SYN from a Vultr PoP's own address must get no answer: the upstream enforces TCP-MD5."""
    open_ = []
    tried = 0
    for p in plan.pops:
        if not p.password:
            continue
        for s in p.sessions[:1]:
            tried += 1
            fam = socket.AF_INET if s.version == 4 else socket.AF_INET6
            sock = socket_in(p.namespace, fam, socket.SOCK_STREAM)
            sock.settimeout(0.5)
            try:
                sock.connect((str(s.upstream_address), 179))
                open_.append(p.code)
            except OSError:
                pass
            finally:
                sock.close()
            break
        if tried >= 3:
            break
    return Check("bgp", "upstreams enforce the TCP-MD5 password", tried > 0 and not open_,
                 f"unsigned connects to AS64515 from {tried} PoPs: " + ("all dropped" if not open_ else f"accepted at {open_}"))


def check_routes(plan: LabPlan) -> list[Check]:
    out: list[Check] = []
    for p in plan.pops:
        pop = plan.network.pop(p.code)
        problems: list[str] = [] if p.sessions else ["no BGP session to observe"]
        got_text: list[str] = []
        for s in p.sessions:
            want = expected_routes(plan.network, pop, s.version)
            got = bgp.adj_in(p.upstream_namespace, str(s.pop_address), s.version)
            for prefix, route in sorted(got.items()):
                got_text.append(_fmt_route(prefix, route.as_path, route.communities))
                if prefix not in want:
                    problems.append(f"unexpected {prefix}")
                elif (route.as_path, route.communities) != want[prefix]:
                    problems.append(f"{prefix}: got {_fmt_route(prefix, route.as_path, route.communities)}, "
                                    f"want {_fmt_route(prefix, *want[prefix])}")
            problems += [f"missing {prefix}" for prefix in want if prefix not in got]
        who = f"AS{p.upstream_asn}"
        name = f"{p.code} ({p.mode}) -> {who} receives " + ("exactly the network's routes" if pop.is_anycast else "nothing")
        out.append(Check("routes", name, not problems, "; ".join(problems) or ("; ".join(got_text) or "no routes")))
    return out


def check_leak(plan: LabPlan, base: Path, count: int = 1000) -> tuple[Check, dict[str, Any]]:
    """Inject ``count`` routes behind one upstream; no PoP may import them and no other upstream may receive any."""
    version = 4 if plan.network.prefixes.ipv4 is not None else 6
    source = next((p for p in plan.pops if p.mode == "anycast" and p.session(version)), None)
    if source is None:
        return Check("leak", "route leak", False, "no anycast PoP to inject behind"), {}
    leaker = Leaker(plan, source, base / "leak", count, version)
    sess = source.session(version)
    assert sess is not None
    try:
        prefixes = leaker.start()
        leaked = {str(n) for n in prefixes}
        deadline = time.monotonic() + 10
        sent = 0
        while time.monotonic() < deadline:
            sent = len(leaked & bgp.adj_out(source.upstream_namespace, str(sess.pop_address), version))
            if sent >= count:
                break
            time.sleep(0.2)
        time.sleep(1.0)  # give a (hypothetical) re-export time to show up
        sock = json.loads((base / "state.json").read_text(encoding="utf-8"))["pops"][source.code]["bird_socket"]
        text = bgp.birdc(Path(sock), f"show protocols all upstream{version}")
        imported = _bird_imported(text)
        reexported: dict[str, int] = {}
        for p in plan.pops:
            for s in p.sessions:
                got = bgp.adj_in(p.upstream_namespace, str(s.pop_address), s.version)
                n = len(leaked & set(got))
                if n:
                    reexported[f"{p.code}/v{s.version}"] = n
    finally:
        leaker.stop()
    total = sum(reexported.values())
    ok = sent >= count and imported == 0 and total == 0
    detail = (f"AS{source.upstream_asn} ({source.upstream_namespace}) sent {sent} foreign IPv{version} routes to "
              f"{source.code}; {source.code} imported {imported}; re-exported to upstreams: {total}"
              + (f" {reexported}" if reexported else ""))
    return Check("leak", f"no route leak ({count} routes from one upstream)", ok, detail), {
        "routes_sent": sent, "routes_imported": imported, "routes_leaked": total}


def _bird_imported(text: str) -> int:
    for line in text.splitlines():
        if "Routes:" in line and "imported" in line:
            return int(line.split("Routes:", 1)[1].split()[0])
    return -1


def _check_client(plan: LabPlan, client: ClientPlan, rtype: str) -> Check:
    net = plan.network
    want = expected_pop(plan, client)
    geo = geo_answer(plan, client, rtype=rtype)
    want_pop: PopPlan = plan.pop(want)
    if plan.network.pop(want).is_anycast:
        want_addr = str(net.service.ipv4 if rtype == "A" else net.service.ipv6)
    else:
        want_addr = str(want_pop.unicast_ipv4 if rtype == "A" else want_pop.unicast_ipv6)
    dns = dig(client.namespace, geo.address, net.dns.zone, rtype)
    addr = dns.answers[0] if dns.answers else want_addr
    xpop, err = curl_pop(client.namespace, addr)
    ok = dns.nsid == want and dns.answers == (want_addr,) and xpop == want and dns.error is None
    area = geo.set_identifier
    detail = (f"GeoDNS {area} -> {geo.address}; dig +nsid: NSID {dns.nsid}, {rtype} {','.join(dns.answers) or '-'}"
              f"{' (' + dns.error + ')' if dns.error else ''}; HTTP X-PoP {xpop or err}; expected {want}")
    fam = "IPv4" if rtype == "A" else "IPv6"
    return Check("clients", f"{client.name} ({client.site.country}, {client.site.city}) {fam} -> {want}", ok, detail)


def check_clients(plan: LabPlan) -> list[Check]:
    jobs = [(c, rtype) for c in plan.clients for rtype in (("A", "AAAA") if plan.network.service.ipv4 else ("AAAA",))]
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda job: _check_client(plan, *job), jobs))


# Log lines that mean trouble, per daemon log file name; ALLOWED_LOG_ERRORS are known-harmless matches.
LOG_ERRORS = {"bird.log": ("<ERR>", "<BUG>"), "nsd.log": ("error",), "caddy.log": ('"level":"error"',),
              "gobgpd.log": ("level=error", "level=fatal"), "health.log": ("bird: ",)}
ALLOWED_LOG_ERRORS: tuple[str, ...] = ("already enabled", "already disabled", "bird: anycast4: enabled",
                                       "bird: anycast6: enabled", "bird: anycast4: disabled", "bird: anycast6: disabled")


def expected_logs(plan: LabPlan) -> list[str]:
    """The daemon logs a running lab writes, relative to its directory (lab/boot.py; bird.log via lab/configs.py)."""
    out: list[str] = []
    for p in plan.pops:
        out += [f"pops/{pop_dir_name(p.code, p.generation)}/{name}.log"
                for name in ("bird", "nsd", "caddy", *(("health",) if p.mode == "anycast" else ()))]
        out.append(f"upstreams/{p.code}/gobgpd.log")
    return out


def check_logs(base: Path, expected: list[str] | tuple[str, ...] = ()) -> Check:
    """No daemon logged an error so far (run before the failover tests, which cause expected ones); every log in
    ``expected`` exists, and at least one log was read."""
    bad: list[str] = []
    missing = [e for e in expected if not (base / e).is_file()]
    files = 0
    for path in sorted(base.glob("*/*/*.log")):
        patterns = LOG_ERRORS.get(path.name)
        if not patterns:
            continue
        files += 1
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if any(p in line for p in patterns) and not any(a in line for a in ALLOWED_LOG_ERRORS):
                bad.append(f"{path.relative_to(base)}: {line.strip()[:160]}")
    return Check("logs", "no errors in the daemons' logs", files > 0 and not bad and not missing,
                 f"{files} logs read" + (f"; {len(bad)} error lines, first: {bad[0]}" if bad else "")
                 + (f"; missing: {', '.join(missing[:6])}" if missing else ""))


def _secs(x: float | None) -> str:
    return "never" if x is None else f"{x:.2f} s"


def _summary(results: list[ProbeResult]) -> str:
    bad = [r for r in results if not r.ok]
    slowest = max((r.seconds for r in results), default=0.0)
    text = f"{len(results) - len(bad)}/{len(results)} as expected (slowest {slowest:.2f} s)"
    for r in bad[:4]:
        text += f"; {r.probe.name} {r.probe.target}: probe_success {r.success}" + (f" ({r.error})" if r.error else "")
    return text


def monitoring_checks(plan: LabPlan, state: dict[str, Any], measurements: dict[str, Any]) -> list[Check]:
    """Stack outputs from the lab's addresses -> `anycast monitoring targets` -> the real blackbox exporter, from one
    client namespace: every generated target succeeds, the anycast one from the nearest PoP, a wrong X-PoP fails."""
    names = [c.name for c in plan.clients]
    client = plan.client(PREFERRED_CLIENT if PREFERRED_CLIENT in names else names[0])
    nearest = plan.nearest_anycast(client)
    path, out_dir, outputs = write_lab_targets(plan.stack, plan.network, state)
    results, timing = check_monitoring(client.namespace, Path(state["dir"]), outputs, nearest)
    measurements["monitoring"] = timing
    where = f"blackbox exporter in {client.namespace} (127.0.0.1:9115)"
    return monitoring_rows(plan, client.name, nearest, results, timing,
                           f"{path} -> {out_dir.name}/; {where}")


def monitoring_rows(plan: LabPlan, client_name: str, nearest: str | None, results: list[ProbeResult],
                    timing: dict[str, Any], where: str) -> list[Check]:
    """The monitoring rows from the probe results (pure: tests feed it fabricated results)."""
    generated = [r for r in results if r.probe.why.startswith("generated")]
    http = [r for r in generated if r.probe.kind == "http"]
    dns = [r for r in generated if r.probe.kind == "dns"]
    # The targets infra/monitoring/targets.py must generate for this lab: HTTP on every PoP's unicast address, DNS on the
    # unicast PoPs' (anycast PoPs serve DNS on the service address only), and both on the anycast service.
    anycast = {"anycast"} if any(p.mode == "anycast" for p in plan.pops) else set()
    want = {"HTTP": {p.code for p in plan.pops} | anycast, "DNS": {p.code for p in plan.pops if p.mode == "unicast"} | anycast}
    lacking = [f"{kind} {pop}" for kind, rows in (("HTTP", http), ("DNS", dns))
               for pop in sorted(want[kind] - {r.probe.why.removeprefix("generated target, pop ") for r in rows})]
    out = [Check("monitoring", f"outputs from the lab's addresses -> {len(http)} HTTP + {len(dns)} DNS targets",
                 not lacking, f"{where} up in {timing.get('exporter_start_s')} s, {timing.get('probes')} probes in "
                              f"{timing.get('total_s')} s" + (f"; no target for: {', '.join(lacking)}" if lacking else "")),
           Check("monitoring", f"every HTTP target: probe_success 1 with the expected X-PoP ({len(http)})",
                 bool(http) and all(r.ok for r in http), _summary(http)),
           Check("monitoring", f"every DNS target: probe_success 1, zone SOA and id.server ({len(dns)})",
                 bool(dns) and all(r.ok for r in dns), _summary(dns))]
    sharp = [r for r in results if r.probe.expect_success and not r.probe.why.startswith("generated")]
    if sharp or nearest is not None:
        out.append(Check("monitoring", f"anycast HTTP from {client_name} answered by its nearest PoP ({nearest})",
                         bool(sharp) and all(r.ok for r in sharp), _summary(sharp)))
    negative = [r for r in results if not r.probe.expect_success]
    if negative:
        r = negative[0]
        out.append(Check("monitoring", f"negative: {r.probe.name} fails (probe_success 0)", r.ok,
                         f"{r.probe.target}: probe_success {r.success}" + (f" ({r.error})" if r.error else "")
                         + f"; {r.probe.why}"))
    else:
        out.append(Check("monitoring", "negative: a wrong X-PoP fails", False, "fewer than two PoPs with unicast targets"))
    return out


def prometheus_checks(plan: LabPlan, state: dict[str, Any], measurements: dict[str, Any],
                      outputs: dict[str, Any]) -> tuple[list[Check], prometheus.Stack]:
    """Start Prometheus with the generated config (lab addresses, 1 s intervals) and the exporters; every target
    must be up, every rule loaded, and nothing may fire on the healthy lab."""
    from infra.monitoring.targets import exporter_file_sd, file_sd

    names = [c.name for c in plan.clients]
    client = plan.client(PREFERRED_CLIENT if PREFERRED_CLIENT in names else names[0])
    mon = prometheus.start_stack(plan, state, outputs, client)
    expected = prometheus.expected_target_count(file_sd(outputs) | exporter_file_sd(outputs))
    got, waited = prometheus.wait_targets_up(mon.ns, expected)
    per_job = prometheus.summarize_targets(got)
    down = [t for t in got if t.health != "up"]
    jobs = ", ".join(f"{job} {up}/{total}" for job, (up, total) in per_job.items())
    detail = (f"{mon.ns}: started in {mon.startup_s:.1f} s, all up {waited:.1f} s later; {jobs}"
              + "".join(f"; DOWN {t.job} {t.pop} {t.url}: {t.error}" for t in down[:4]))
    ok = expected > 0 and len(got) == expected and not down  # zero targets is no PASS
    checks = [Check("prometheus", f"Prometheus scrapes every target up: bird_exporter on every PoP, health agents, "
                                  f"probes, blackbox exporter ({len(got)}/{expected})", ok, detail)]
    time.sleep(3)  # a few evaluation rounds (1 s) on the scraped data
    groups = prometheus.api(mon.ns, "rules")["groups"]
    rules = [r["name"] for g in groups for r in g["rules"]]
    fired = prometheus.all_firing(mon.ns)
    text = ", ".join(f"{a['labels'].get('alertname')}{{pop={a['labels'].get('pop', '-')}}}" for a in fired[:6])
    checks.append(Check("prometheus", f"{len(rules)} alert rules loaded, none firing on the healthy lab",
                        len(rules) > 0 and not fired, f"rules: {', '.join(rules)}" + (f"; FIRING: {text}" if fired else "")))
    checks.append(dashboard_check(mon.ns, outputs))
    measurements["prometheus"] = {"startup_s": round(mon.startup_s, 2), "targets_up_s": round(waited, 2),
                                  "targets": len(got), "rules": len(rules)}
    return checks, mon


def dashboard_check(ns: str, outputs: dict[str, Any]) -> Check:
    """Every query of the generated Grafana dashboard returns data from the lab's Prometheus; the map query carries
    every PoP with its coordinates."""
    from infra.monitoring.dashboard import dashboard

    board = dashboard(outputs)
    empty: list[str] = []
    n = 0
    map_pops: set[str] = set()
    for panel in board["panels"]:
        for target in panel["targets"]:
            n += 1
            result = prometheus.api(ns, "query", {"query": target["expr"]})["result"]
            if not result:
                empty.append(f"{panel['title']} [{target['refId']}]")
            if panel["type"] == "geomap":
                map_pops |= {r["metric"]["pop"] for r in result if "latitude" in r["metric"] and "longitude" in r["metric"]}
    missing = sorted(set(outputs["pops"]) - map_pops)
    ok = not empty and not missing
    detail = (f"{len(board['panels'])} panels, {n} queries, {n - len(empty)} with data; map: {len(map_pops)} PoPs at "
              "their coordinates" + (f"; EMPTY: {', '.join(empty)}" if empty else "")
              + (f"; not on the map: {', '.join(missing)}" if missing else ""))
    return Check("prometheus", "every Grafana dashboard query returns data; every PoP on the map", ok, detail)


def run_checks(stack: str, failover: bool = True, freeze: bool = True, progress: bool = True,
               failover_runs: int = 1, monitoring: bool = True, health: bool = True) -> dict[str, Any]:
    """Run every check against the running lab of ``stack``; return the report (``ok`` is the verdict)."""
    def say(text: str) -> None:
        if progress:
            print(f"... {text}", file=sys.stderr, flush=True)

    state = load_state(stack)
    network = load_network(stack)
    plan = build_plan(stack, network, only=list(state["pops"]), generations=state_generations(state))  # after rollouts
    base = Path(state["dir"])
    checks: list[Check] = []
    measurements: dict[str, Any] = {}

    def guarded(group: str, name: str, step: Callable[[], list[Check]]) -> None:
        """Run one step; a failure inside it (the lab's, or a bug's) becomes a FAIL row instead of a traceback that
        aborts the whole check."""
        try:
            checks.extend(step())
        except Exception as exc:  # every failure must end as a row, never as a traceback
            checks.append(Check(group, name, False, f"{type(exc).__name__}: {str(exc)[:300]}"))

    def leak() -> list[Check]:
        check, numbers = check_leak(plan, base)
        measurements.update(numbers)
        return [check]

    say("BGP sessions")
    guarded("bgp", "BGP sessions", lambda: check_sessions(plan, state))
    guarded("bgp", "TCP-MD5", lambda: [check_md5(plan)])
    say("routes received by every upstream")
    guarded("routes", "routes at the upstreams", lambda: check_routes(plan))
    say("route leak: 1,000 routes from one upstream")
    guarded("leak", "route leak", leak)
    say("DNS (GeoDNS + dig +nsid) and HTTP (X-PoP) from every client")
    guarded("clients", "clients", lambda: check_clients(plan))
    if network.tls.enabled:
        from lab.tls_checks import tls_checks

        say("HTTPS: DNS-01 as Pebble saw it, the certificate at every PoP and from every client, a forced renewal")
        guarded("tls", "HTTPS", lambda: tls_checks(plan, state, measurements))
    machines = state.get("mode") == "machines"
    if machines:  # the PoPs log to their journals (a row of lab/machine_checks.py); the rest logs to files
        guarded("logs", "daemon logs", lambda: [check_logs(base, [e for e in expected_logs(plan)
                                                                  if not e.startswith("pops/")])])
        from lab.machine_checks import machine_rows

        names = [c.name for c in plan.clients]
        probe_client = plan.client(PREFERRED_CLIENT if PREFERRED_CLIENT in names else names[0])
        say("machines: cloud-init, systemd, rendered units, nftables loaded and enforced, journals, health agent")
        guarded("machines", "machine mode", lambda: [Check(*r) for r in machine_rows(plan, state, probe_client)])
    else:
        guarded("logs", "daemon logs", lambda: [check_logs(base, expected_logs(plan))])
    mon: list[prometheus.Stack] = []
    if monitoring:
        say("monitoring: stack outputs -> blackbox-exporter targets, probed by the exporter from a client")
        guarded("monitoring", "blackbox exporter", lambda: monitoring_checks(plan, state, measurements))

        def prom() -> list[Check]:
            _, _, outputs = write_lab_targets(plan.stack, plan.network, state)
            rows, stack_ = prometheus_checks(plan, state, measurements, outputs)
            mon.append(stack_)
            return rows

        say("monitoring: Prometheus with the generated config and alerts, scraping every PoP's exporters")
        guarded("prometheus", "Prometheus", prom)
        save_state(stack, state)
    if failover:
        victim = pick_victim(plan)
        if victim is None:
            checks.append(Check("failover", "failover", False, "no client has two anycast PoPs to choose from"))
        else:
            client, pop, nxt = victim
            for i in range(failover_runs):
                say(f"failover {i + 1}/{failover_runs}: kill Caddy at {pop}; {client.name} should move to {nxt}")
                name = f"Caddy killed at {pop}: withdrawn, {client.name} served by {nxt}"

                def kill(name: str = name) -> list[Check]:
                    if not mon:
                        res = kill_caddy(plan, state, client, pop, nxt)
                        measurements.setdefault("kill_caddy", []).append(asdict(res))
                        return [Check("failover", name, res.ok, res.detail)]
                    events: dict[str, float] = {}
                    watch = prometheus.AlertWatch(mon[0].ns, "AnycastPopWithdrawn", pop).start()
                    try:
                        res = kill_caddy(plan, state, client, pop, nxt, on_event=events.__setitem__, down_s=3.0)
                        watch.wait_cleared(15)
                    finally:
                        watch.stop()
                    fire = None if watch.fired_at is None or "killed" not in events else watch.fired_at - events["killed"]
                    clear = (None if watch.cleared_at is None or "restarted" not in events
                             else watch.cleared_at - events["restarted"])
                    alert_ok = fire is not None and clear is not None and fire > 0 and clear > 0
                    measurements.setdefault("kill_caddy", []).append(asdict(res) | {"alert_fire_s": fire,
                                                                                      "alert_clear_s": clear})
                    alert = (f"; Prometheus: AnycastPopWithdrawn{{pop={pop}}} firing {_secs(fire)} after the kill, "
                             f"cleared {_secs(clear)} after Caddy restarted")
                    return [Check("failover", name + ", alert fired and cleared", res.ok and alert_ok, res.detail + alert)]

                guarded("failover", name, kill)
                save_state(stack, state)
            if machines and not health:  # the health rows below include this fault (agent frozen, Caddy killed)
                from lab.machine_checks import watchdog_row

                say(f"watchdog: freeze the health agent at {pop} and kill Caddy; systemd must withdraw the PoP")
                guarded("failover", "watchdog", lambda: [Check(*watchdog_row(plan, state, client, pop, nxt))])
                save_state(stack, state)
            if health:  # both modes: the lab's processes, or the PoP's systemd (lab/faults.py)
                from lab.faults import fault_rows

                def health_rows() -> list[Check]:
                    return [Check(*r) for r in fault_rows(plan, state, client, pop, nxt, measurements, say)]

                guarded("health", "health agent faults", health_rows)
                save_state(stack, state)
            if freeze:
                say(f"freeze {pop} (SIGSTOP): waits for the hold timer, then SIGCONT and re-establishment")
                name = f"{pop} frozen: withdrawn by hold timer ({network.bgp.hold_time} s), back after SIGCONT"

                def frozen(name: str = name) -> list[Check]:
                    res = freeze_pop(plan, state, client, pop, nxt)
                    measurements["freeze"] = asdict(res)
                    return [Check("failover", name, res.ok, res.detail)]

                guarded("failover", name, frozen)
    if mon:  # like the blackbox probes above: the check leaves no monitoring process behind
        prometheus.stop_stack(state)
        save_state(stack, state)
    return {"stack": stack, "ok": all(c.ok for c in checks), "checks": [asdict(c) for c in checks],
            "measurements": measurements}


def format_table(report: dict[str, Any]) -> str:
    rows = [(c["group"], "PASS" if c["ok"] else "FAIL", c["name"], c["detail"]) for c in report["checks"]]
    w0 = max(len(r[0]) for r in rows)
    w2 = min(70, max(len(r[2]) for r in rows))
    lines = [f"{'group':<{w0}}  {'':4}  {'check':<{w2}}  detail", "-" * (w0 + w2 + 40)]
    for g, ok, name, detail in rows:
        lines.append(f"{g:<{w0}}  {ok}  {name:<{w2}}  {detail}")
    passed = sum(1 for c in report["checks"] if c["ok"])
    lines.append("-" * (w0 + w2 + 40))
    lines.append(f"{passed}/{len(rows)} checks passed: " + ("OK" if report["ok"] else "FAILED"))
    return "\n".join(lines)
