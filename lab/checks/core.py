"""The static rows of ``anycast lab check``, in BGP terms and as every client sees the service: sessions, TCP-MD5,
the routes each upstream receives, a 1,000-route leak, DNS/HTTP from every client, and the daemons' logs."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from infra.model import NO_EXPORT_OUTSIDE_VULTR, Network, Pop
from lab.checks import Check, Context, register_group
from lab.checks.leak import Leaker
from lab.net import bgp
from lab.net.netns import LabError, socket_in
from lab.net.probes import curl_pop, dig
from lab.plan.geodns import expected_pop, geo_answer
from lab.plan.topology import ClientPlan, LabPlan, PopPlan, pop_dir_name

NO_EXPORT = NO_EXPORT_OUTSIDE_VULTR


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


def check_sessions(plan: LabPlan, state: Mapping[str, Any]) -> list[Check]:
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
    want_http = want
    # A signed zone at a Vultr unicast PoP holds the anycast addresses (userdata/render.py zone_answers).
    signed_vultr = net.dns.dnssec is not None and net.pop(want).unicast is None
    if plan.network.pop(want).is_anycast or signed_vultr:
        want_addr = str(net.service.ipv4 if rtype == "A" else net.service.ipv6)
        want_http = want if not signed_vultr else (plan.routed_pop(client) or want)
    else:
        want_addr = str(want_pop.unicast_ipv4 if rtype == "A" else want_pop.unicast_ipv6)
    dns = dig(client.namespace, geo.address, net.dns.zone, rtype)
    addr = dns.answers[0] if dns.answers else want_addr
    xpop, err = curl_pop(client.namespace, addr)
    ok = dns.nsid == want and dns.answers == (want_addr,) and xpop == want_http and dns.error is None
    area = geo.set_identifier
    detail = (f"GeoDNS {area} -> {geo.address}; dig +nsid: NSID {dns.nsid}, {rtype} {','.join(dns.answers) or '-'}"
              f"{' (' + dns.error + ')' if dns.error else ''}; HTTP X-PoP {xpop or err}; expected {want}"
              + (f" (HTTP {want_http}: the signed zone's anycast address)" if want_http != want else ""))
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
    """The daemon logs a running lab writes, relative to its directory (lab/boot/up.py; bird.log via lab/plan/configs.py)."""
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


@register_group(10, "bgp")
def _bgp(ctx: Context) -> None:
    ctx.say("BGP sessions")
    ctx.guarded("bgp", "BGP sessions", lambda: check_sessions(ctx.plan, ctx.state))
    ctx.guarded("bgp", "TCP-MD5", lambda: [check_md5(ctx.plan)])


@register_group(20, "routes")
def _routes(ctx: Context) -> None:
    ctx.say("routes received by every upstream")
    ctx.guarded("routes", "routes at the upstreams", lambda: check_routes(ctx.plan))


@register_group(30, "leak")
def _leak(ctx: Context) -> None:
    def leak() -> list[Check]:
        check, numbers = check_leak(ctx.plan, ctx.base)
        ctx.measurements.update(numbers)
        return [check]

    ctx.say("route leak: 1,000 routes from one upstream")
    ctx.guarded("leak", "route leak", leak)


@register_group(40, "clients")
def _clients(ctx: Context) -> None:
    ctx.say("DNS (GeoDNS + dig +nsid) and HTTP (X-PoP) from every client")
    ctx.guarded("clients", "clients", lambda: check_clients(ctx.plan))


@register_group(60, "logs")
def _logs(ctx: Context) -> None:
    # Machine-mode PoPs log to their journals (a row of lab/checks/machine.py); everything else logs to files.
    expected = [e for e in expected_logs(ctx.plan) if ctx.driver.daemon_logs_on_host or not e.startswith("pops/")]
    ctx.guarded("logs", "daemon logs", lambda: [check_logs(ctx.base, expected)])
