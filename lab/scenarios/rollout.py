"""``anycast lab rollout``: the health-gated, wave-by-wave replacement of ``pulumi up`` (docs/deploy.md), in the lab.

It re-renders the stack from its current file, finds the PoPs whose lab-run files changed (bird.conf, Caddyfile,
nsd.conf, the zone, health.json), and replaces them in the waves of ``rollout.waves`` (infra/derived/rollout.py, the program's
own function, so a wave holds the same PoPs as in ``pulumi up``; PoPs that did not change drop out of their wave):

1. every new PoP of the wave boots *beside* the old one: a second namespace (``q-<code>`` beside ``p-<code>``, see
   lab/plan/topology.py "Generations") with a new unicast address on a second link to the same upstream, which learns
   the new BGP neighbour from its config file and a SIGHUP (GoBGP ``docs/sources/cli-operations.md``, "Adding or
   deleting a peer dynamically"). Two namespaces can share the anycast addresses (each has its own ``lo``) but not
   the unicast address: one upstream cannot have the same neighbour twice, which is why, as on Vultr, a replaced
   PoP gets a new address;
2. the *same gate code* as the Pulumi program (:func:`infra.readiness.wait_ready`) polls it on that address, with
   sockets opened inside the upstream's namespace: HTTP ``X-PoP``, the agent's ``/status`` (checks, BGP sessions
   Established, anycast routes exported), DNS NSID for unicast PoPs;
3. only when every gate of the wave passed is each old PoP removed, gracefully: its agent drains it
   (``anycast-health --drain``), the upstream forwards the prefix to the new PoP as soon as the old routes left its
   Adj-RIB-In (the lab's upstreams have no FIB of their own: a static route is their forwarding table), the drain
   waits for connections to finish, then the old namespace goes. ``pulumi up`` deletes the old instances only at
   the end of the update; the lab removes them wave by wave, which the brief asks for and changes no traffic
   (old and new serve the same content).

A wave whose gate fails stops the rollout: the failed new PoPs are removed (``keep_failed`` leaves them for a look),
every old PoP keeps serving. Clients in every client namespace send one HTTP request and one DNS query every 20 ms to
the anycast address for the whole rollout; the report counts what was lost.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import multiprocessing
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from infra.contracts import DNSSEC_GATE_MARGIN_S
from infra.derived.rollout import rollout_waves
from infra.model import Network
from infra.readiness import GateTarget, NotReady, dns_nsid, http_get, wait_ready
from lab.boot.up import _originate_links, _pop_files, _start_pop, default_route, lab_password, pop_lab_files, ra_neighbor
from lab.cloud import tls as lab_tls
from lab.drivers.health import agent_cli
from lab.net import bgp
from lab.net.netns import NETNS_DIR, LabError, ip_batch, kill_namespaces, list_namespaces, run, socket_in
from lab.net.probes import losses_at_moves
from lab.net.processes import require_tools
from lab.plan.configs import gobgpd_toml
from lab.plan.geodns import geo_answer
from lab.plan.signing import render_lab_pop, state_network
from lab.plan.topology import LabPlan, PopPlan, build_plan, pop_dir_name, state_generations
from lab.state import LabState, PopState, load_state, save_state

PROBE_INTERVAL_S = 0.02
# DNS every 5th round (100 ms): NSD's response rate limiting (rrl-ratelimit, 200 answers/s per /24 by default) drops
# answers when the lab's clients, which all sit in 100.64.2.0/24, send 50 queries/s each to one PoP ("ratelimit
# block ... target 100.64.2.0/24" in nsd.log) -- a lab artifact, real clients are spread over many /24s.
DNS_EVERY = 5
PROBE_TIMEOUT_S = 0.2


def _nsd_refuses(files: dict[str, str]) -> dict[str, str]:
    return {**files, "nsd.conf": files["nsd.conf"] + "  this-is-not-an-nsd-option: yes\n"}


# Faults that stand for a broken template change: applied to every PoP's rendered files before they are compared.
FAULTS: dict[str, Callable[[dict[str, str]], dict[str, str]]] = {"nsd-config": _nsd_refuses}


# --- load: one request every 20 ms from every client ---------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _probe_loop(name: str, ns: str, address: str, zone: str, stop: Any, out: list[tuple[float, str, str | None]]) -> None:
    """One client: enter its namespace (setns, this thread only), then probe until ``stop`` is set."""
    fd = os.open(NETNS_DIR / ns, os.O_RDONLY)
    try:
        if _libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET, this thread only
            return
    finally:
        os.close(fd)
    rounds = 0
    while not stop.is_set():
        t = time.monotonic()
        try:
            xpop = http_get(address, 80, "/", PROBE_TIMEOUT_S).headers.get("x-pop")
        except (OSError, ValueError):
            xpop = None
        out.append((t, "http", xpop))
        if rounds % DNS_EVERY == 0:
            out.append((t, "dns", dns_nsid(address, 53, zone, PROBE_TIMEOUT_S)))
        rounds += 1
        rest = PROBE_INTERVAL_S - (time.monotonic() - t)
        if rest > 0:
            stop.wait(rest)


def _probe_process(namespaces: dict[str, str], address: str, zone: str, stop: Any, ready: Any, results: Any) -> None:
    """The probes' own process: a thread per client; on ``stop``, every sample goes back through ``results``."""
    gc.freeze()  # what the imports left is permanent: a collection here only scans the samples, in a few ms
    samples: dict[str, list[tuple[float, str, str | None]]] = {name: [] for name in namespaces}
    threads = [threading.Thread(target=_probe_loop, args=(name, ns, address, zone, stop, samples[name]), daemon=True)
               for name, ns in namespaces.items()]
    for t in threads:
        t.start()
    ready.set()
    stop.wait()
    for t in threads:
        t.join()
    results.send(samples)
    results.close()


@dataclass
class Load:
    """A thread per client namespace (entered once with setns, so no thread per request) that sends an HTTP GET every
    20 ms and a DNS SOA query with NSID every 100 ms to the anycast address; ``samples``: (time, kind, PoP or None).

    The threads run in a process of their own (multiprocessing, spawn). In the caller's process they shared its GIL
    with the orchestration (rendering, subprocesses, and collections of a whole pytest session's heap, 0.2-0.5 s
    each): a probe's connection then stayed open p50 1.6 ms, p99 111 ms instead of 0.4 / 13 ms (11 clients against
    Caddy on a loaded 2-core machine), so about 3 connections instead of 0.6 were open at any instant. The upstream's
    switch to the new PoP resets every connection open at that instant, so the test counted 5 requests lost at once
    where the network loses at most a couple. CLOCK_MONOTONIC is shared, so the samples' times compare with ours."""

    namespaces: dict[str, str]  # client name -> namespace
    address: str
    zone: str
    samples: dict[str, list[tuple[float, str, str | None]]] = field(default_factory=dict)
    _stop: Any = None
    _results: Any = None
    _process: Any = None

    def start(self) -> Load:
        ctx = multiprocessing.get_context("spawn")  # not fork: a copy of a threaded caller may hold a lock forever
        self._stop, ready = ctx.Event(), ctx.Event()
        self._results, send = ctx.Pipe(duplex=False)
        self._process = ctx.Process(target=_probe_process, name="anycast-rollout-load", daemon=True,
                                    args=(self.namespaces, self.address, self.zone, self._stop, ready, send))
        self._process.start()
        send.close()
        if not ready.wait(60):
            self.stop()
            raise LabError("the clients' probe process did not start within 60 s")
        return self

    def stop(self) -> None:
        if self._process is None:
            return
        self._stop.set()
        try:
            if self._results.poll(60):
                self.samples = self._results.recv()
        except (EOFError, OSError):
            pass  # the probe process died: no samples, which the report shows as nothing sent
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
        self._process = None

    def finish(self, report: dict[str, Any], t0: float, what: str, path: Path, say: Any) -> dict[str, Any]:
        """Close a scenario's ``report``: its length, this load's summary, one line said, and the report kept as
        JSON at ``path`` (best effort: the report is returned either way)."""
        report["seconds"] = round(time.monotonic() - t0, 2)
        report["load"] = lost = self.summary(t0)
        say(f"{what} {'done' if report['ok'] else 'stopped'} after {report['seconds']:.1f} s; clients lost "
            f"{lost['http'][0]}/{lost['http'][1]} HTTP requests and {lost['dns'][0]}/{lost['dns'][1]} DNS queries")
        with contextlib.suppress(OSError):
            path.write_text(json.dumps(report, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
        return report

    def summary(self, t0: float = 0.0) -> dict[str, Any]:
        """Lost and sent per kind, lost per client, and each loss as (client, kind, seconds after ``t0``).

        ``at_switch``: the losses that sit alone between an answer from one PoP and the next answer, from another
        (client, kind, seconds, PoP before, PoP after): the client's route moved while that probe's connection was
        open, and the new PoP reset it. Each client probes one request at a time, so a switch costs a client at most
        one such loss; ``elsewhere`` counts every other loss (two in a row, or none at a switch: a blackhole, a PoP
        that stopped answering)."""
        out: dict[str, Any] = {"http": [0, 0], "dns": [0, 0], "lost_by_client": {}, "lost_at": [], "at_switch": [],
                               "elsewhere": 0}
        for name, samples in self.samples.items():
            lost = 0
            for kind in ("http", "dns"):
                seq = [(t, pop) for t, k, pop in samples if k == kind]
                failed = sorted(t for t, pop in seq if pop is None)
                out[kind][0] += len(failed)
                out[kind][1] += len(seq)
                lost += len(failed)
                out["lost_at"] += [(name, kind, round(t - t0, 3)) for t in failed]
                moves, other = losses_at_moves(seq)
                out["at_switch"] += [(name, kind, round(t - t0, 3), before, after) for t, before, after in moves]
                out["elsewhere"] += other
            if lost:
                out["lost_by_client"][name] = lost
        out["lost_at"].sort(key=lambda x: x[2])
        return out


# --- one PoP replaced ------------------------------------------------------------------------------------------------

@dataclass
class Swap:
    code: str
    old: PopPlan
    new: PopPlan
    old_dir: Path
    new_dir: Path
    started: dict[str, Any] | None = None
    gate_s: float | None = None
    switched_at: float | None = None  # monotonic time the upstream moved the prefix to the new PoP
    error: str | None = None
    log: list[str] = field(default_factory=list)


def _families(plan: LabPlan) -> list[tuple[int, str]]:
    return [(v, str(p)) for v, p in ((4, plan.network.prefixes.ipv4), (6, plan.network.prefixes.ipv6)) if p is not None]


def _upstream_pid(state: LabState, code: str) -> int:
    return int(state["pops"][code]["upstream"]["pid"])


def _reload_upstream(plan: LabPlan, swap: Swap, state: LabState, password: str, sessions: tuple[Any, ...],
                     base: Path) -> None:
    """Rewrite the upstream's gobgpd.toml with these PoP sessions and SIGHUP it (neighbours added/removed live)."""
    cfg = base / "upstreams" / swap.code / "gobgpd.toml"
    cfg.write_text(gobgpd_toml(plan, replace(swap.old, sessions=sessions), password), encoding="utf-8")
    os.kill(_upstream_pid(state, swap.code), signal.SIGHUP)


def _link_lines(pop: PopPlan, network: Network) -> tuple[list[str], list[str]]:
    """``ip -batch`` lines for a second PoP link on an existing upstream: (inside the PoP, inside the upstream)."""
    inside = ["link set lo up", "link set eth0 up"]
    if network.service.ipv4 is not None:
        inside.append(f"addr add {network.service.ipv4}/32 dev lo")
    inside.append(f"addr add {network.service.ipv6}/128 dev lo")
    upstream = [f"link set {pop.uplink} up"]
    for s in pop.sessions:
        nodad = "" if s.version == 4 else " nodad"
        inside.append(f"addr add {s.pop_address}/{s.link.prefixlen} dev eth0{nodad}")
        if (line := default_route(s, ra_neighbor(network, pop.code) is not None)) is not None:
            inside.append(line)
        upstream.append(f"addr add {s.link_gateway}/{s.link.prefixlen} dev {pop.uplink}{nodad}")
    return inside, upstream


def _remove_link(pop: PopPlan) -> None:
    """Delete the upstream's side of ``pop``'s link (the veth pair goes with it) once its namespace is gone.

    Deleting a namespace does not delete its links while anything still holds it: an orphaned TCP connection of the
    old PoP's Caddy (its client's ACKs now reach the new PoP, so it retransmits its FIN, for minutes) keeps
    the namespace, and so ``pop``/``poq`` in the upstream, alive. The next generation on that side then failed with
    "RTNETLINK answers: File exists" (seen booting the broken change's canary in a full ``make test``)."""
    run(["ip", "-n", pop.upstream_namespace, "link", "del", pop.uplink], check=False)


def boot_new(plan: LabPlan, swap: Swap, state: LabState, password: str, rendered: dict[str, str], base: Path) -> None:
    """The new PoP beside the old one: namespace, link, BGP neighbour at the upstream, files, daemons."""
    new = swap.new
    if new.namespace in list_namespaces(new.namespace):
        kill_namespaces([new.namespace])  # left over from an interrupted rollout
    _remove_link(new)  # the same, or a link an earlier generation's namespace still held when it was deleted
    if swap.new_dir.exists():
        shutil.rmtree(swap.new_dir)
    ip_batch([f"netns add {new.namespace}"])
    ip_batch([f"link add name eth0 netns {new.namespace} type veth peer name {new.uplink} netns {new.upstream_namespace}"])
    inside, upstream = _link_lines(new, plan.network)
    run(["ip", "-n", new.namespace, "-batch", "-"], input_text="\n".join(inside) + "\n")
    run(["ip", "-n", new.upstream_namespace, "-batch", "-"], input_text="\n".join(upstream) + "\n")
    _reload_upstream(plan, swap, state, password, swap.old.sessions + new.sessions, base)
    _pop_files(plan.network, new, password, swap.new_dir, rendered)
    if state.get("tls"):
        lab_tls.write_pop_files(plan, new, rendered, swap.new_dir, base)
        if new.code == state["tls"].get("issuer"):  # the issuer renews: its view of the lab's ACME cloud
            lab_tls._netns_etc(new.namespace, state["tls"]["cloud"]["address"])
    swap.started = _start_pop(plan, new, swap.new_dir)
    _originate_links(new)
    if state.get("tls"):  # the certificate the old PoP serves, from the lab's store, as the PoP's timer would
        ok, line, _ = lab_tls.run_script(new.namespace, "fetch", swap.new_dir)
        swap.log.append(f"anycast-tls fetch: {'ok' if ok else 'failed'}: {line[:100]}")


def gate(plan: LabPlan, swap: Swap, timeout: float, interval: float, say: Callable[[str], None]) -> None:
    new = swap.new
    address = new.unicast_ipv4 if plan.network.prefixes.ipv4 is not None else new.unicast_ipv6
    target = GateTarget(pop=new.code, mode=new.mode, addresses=(str(address),), zone=plan.network.dns.zone,
                        sessions=len(new.sessions),
                        dnssec_margin=DNSSEC_GATE_MARGIN_S if plan.network.dns.dnssec is not None else None)
    try:
        result = wait_ready(target, timeout=timeout, interval=interval,
                            connect=lambda fam, kind: socket_in(new.upstream_namespace, fam, kind),
                            say=lambda line: say(f"gate {line}"))
        swap.gate_s = result.seconds
    except NotReady as exc:
        swap.error = str(exc)


def _announced_by(up_ns: str, address: str, version: int, prefix: str) -> bool:
    try:
        return prefix in bgp.adj_in(up_ns, address, version)
    except (LabError, ValueError):
        return False


def _switch(plan: LabPlan, swap: Swap) -> None:
    """The upstream forwards the anycast prefixes to the new PoP (its FIB follows BGP: the old path is gone)."""
    for version, prefix in _families(plan):
        s = swap.new.session(version)
        if s is not None:
            run(["ip", "-n", swap.new.upstream_namespace, f"-{version}", "route", "replace", prefix, "via",
                 str(s.pop_address), "dev", swap.new.uplink])


def retire_old(plan: LabPlan, swap: Swap, *, state: LabState, password: str, base: Path) -> None:
    """Drain the old PoP (anycast: withdraw, move the upstream's forwarding once its routes are gone, wait for its
    connections), then remove its namespace, its BGP neighbour and its link routes."""
    old, up_ns = swap.old, swap.old.upstream_namespace
    if old.mode == "anycast":
        result: list[tuple[int, str]] = []
        drain = threading.Thread(target=lambda: result.append(agent_cli(old.namespace, swap.old_dir, "--drain", 90)))
        drain.start()
        deadline = time.monotonic() + 30
        pending = [(v, p, str(s.pop_address)) for v, p in _families(plan) if (s := old.session(v)) is not None]
        while pending and time.monotonic() < deadline:
            pending = [(v, p, a) for v, p, a in pending if _announced_by(up_ns, a, v, p)]
            time.sleep(0.02)
        _switch(plan, swap)
        swap.switched_at = time.monotonic()
        drain.join(95)
        rc, out = result[0] if result else (1, "no answer")
        swap.log.append(f"old {old.code} drained (rc {rc}): {out.splitlines()[-1] if out else ''}"[:200])
        if pending:
            swap.log.append(f"old {old.code} still announced at the upstream after 30 s: {pending}")
    kill_namespaces([old.namespace])
    _remove_link(old)
    lab_tls.cleanup([old.namespace])
    _reload_upstream(plan, swap, state, password, swap.new.sessions, base)
    for s in old.sessions:
        run(["ip", "netns", "exec", up_ns, "gobgp", "global", "rib", "del", "-a", f"ipv{s.version}", str(s.link)], check=False)


def remove_new(plan: LabPlan, swap: Swap, state: LabState, password: str, base: Path) -> None:
    """A failed new PoP goes (as the reverted ``pulumi up`` deletes it); the old one never stopped serving."""
    kill_namespaces([swap.new.namespace])
    _remove_link(swap.new)
    lab_tls.cleanup([swap.new.namespace])
    _reload_upstream(plan, swap, state, password, swap.old.sessions, base)
    for s in swap.new.sessions:
        run(["ip", "netns", "exec", swap.new.upstream_namespace, "gobgp", "global", "rib", "del", "-a", f"ipv{s.version}",
             str(s.link)], check=False)


def _archive(base: Path, path: Path, label: str) -> None:
    """Move a finished PoP directory below .lab/<stack>/rollouts/ (out of the paths `lab check` reads logs from)."""
    if path.exists():
        dest = base / "rollouts" / time.strftime("%Y%m%dT%H%M%S") / label
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), str(dest))


def _pop_state(swap: Swap, old: PopState) -> PopState:
    """The replaced PoP's state: the new namespace, addresses, generation, directory and daemons; the rest as before."""
    new = swap.new
    assert swap.started is not None
    return {**old, "namespace": new.namespace, "unicast_ipv4": new.unicast_ipv4, "unicast_ipv6": new.unicast_ipv6,
            "generation": new.generation, "dir": str(swap.new_dir), "bird_socket": str(swap.new_dir / "bird.ctl"),
            "pids": swap.started["pids"], "commands": swap.started["commands"]}


# --- the rollout ---------------------------------------------------------------------------------------------------

def _boot_and_gate(plan: LabPlan, state: LabState, password: str, base: Path,
                   mutate: Callable[[dict[str, str]], dict[str, str]] | None, timeout: float, interval: float,
                   say: Callable[[str], None], swap: Swap) -> None:
    rendered = render_lab_pop(plan.network, swap.code, password).files
    try:
        boot_new(plan, swap, state, password, mutate(rendered) if mutate else rendered, base)
    except Exception as exc:  # any failure of one new PoP stops the rollout like a failed gate, never a traceback
        swap.error = f"{swap.code}: boot failed: {type(exc).__name__}: {exc}"
        return
    gate(plan, swap, timeout, interval, say)


def changed_pops(plan: LabPlan, state: Mapping[str, Any], password: str,
                 fault: Callable[[dict[str, str]], dict[str, str]] | None) -> dict[str, list[str]]:
    """PoP code -> the lab-run files whose text differs from what the running PoP was started with."""
    out: dict[str, list[str]] = {}
    for p in plan.pops:
        d = Path(state["pops"][p.code]["dir"])
        rendered = render_lab_pop(plan.network, p.code, password).files
        want = pop_lab_files(plan.network, p.code, password, d, fault(rendered) if fault else rendered)
        diff = sorted(n for n, text in want.items() if not (d / n).is_file() or (d / n).read_text(encoding="utf-8") != text)
        if diff:
            out[p.code] = diff
    return out


def rollout(stack: str, network: Network, *, gate_timeout: float | None = None, interval: float = 1.0,
            fault: str | None = None, keep_failed: bool = False, password: str | None = None,
            say: Callable[[str], None] = lambda _s: None) -> dict[str, Any]:
    """Replace every changed PoP of the running lab ``stack`` wave by wave; return the report (also on failure)."""
    require_tools()
    state = load_state(stack)
    if state.get("mode") == "machines":
        raise LabError("anycast lab rollout runs in the process-mode lab (anycast lab up without --machines)")
    password = password or lab_password()
    base = Path(state["dir"])
    network = state_network(network, state)  # signed with the lab key if the lab was booted signed
    try:
        plan = build_plan(stack, network, only=list(state["pops"]), generations=state_generations(state))
    except KeyError as exc:
        raise LabError(f"PoP {exc} of the running lab is no longer in Pulumi.{stack}.yaml: boot it again "
                       f"(anycast lab up --stack {stack}); a rollout replaces PoPs, it does not add or remove them") from None
    for p in plan.pops:
        pst = state["pops"][p.code]
        if (p.mode, p.unicast_ipv4, p.unicast_ipv6) != (pst["mode"], pst["unicast_ipv4"], pst["unicast_ipv6"]):
            raise LabError(f"{p.code}: the change moves the PoP in the lab's topology (mode or addresses); boot it "
                           f"again with anycast lab up --stack {stack}")
    mutate = FAULTS[fault] if fault else None
    changed = changed_pops(plan, state, password, mutate)
    vultr = {c for c in changed if network.pop(c).is_vultr}
    waves = [w for w in ([c for c in wave if c in vultr] for wave in rollout_waves(network, only=set(state["pops"]))) if w]
    timeout = float(gate_timeout if gate_timeout is not None else network.rollout.gate_timeout)
    report: dict[str, Any] = {
        "stack": stack, "fault": fault, "changed": changed, "external_not_replaced": sorted(set(changed) - vultr),
        "waves": waves, "gate_timeout_s": timeout, "passed_waves": 0, "replaced": [], "failed": {}, "ok": True,
    }
    if not waves:
        say("nothing to replace: no Vultr PoP's files changed")
        return report
    say(f"{len(vultr)} PoPs changed ({', '.join(sorted(vultr))}); waves: "
        + " | ".join(",".join(w) for w in waves) + f"; gate timeout {timeout:.0f} s")
    anycast = str(network.service.ipv4 or network.service.ipv6)
    load = Load({n: c["namespace"] for n, c in state["clients"].items()}, anycast, network.dns.zone).start()
    t0 = time.monotonic()
    try:
        for k, wave in enumerate(waves):
            tw = time.monotonic()
            swaps = []
            for code in wave:
                old = plan.pop(code)
                new_gen = old.generation + 1
                new_plan = build_plan(stack, network, only=list(state["pops"]),
                                      generations={**state_generations(state), code: new_gen})
                swaps.append(Swap(code, old, new_plan.pop(code), Path(state["pops"][code]["dir"]),
                                  base / "pops" / pop_dir_name(code, new_gen)))
            say(f"wave {k + 1}/{len(waves)}: booting {', '.join(wave)} beside the old PoPs")
            with ThreadPoolExecutor(max_workers=min(8, len(swaps))) as pool:
                list(pool.map(partial(_boot_and_gate, plan, state, password, base, mutate, timeout, interval, say), swaps))
            failed = [sw for sw in swaps if sw.error]
            if failed:
                report["ok"] = False
                report["stopped_at_wave"] = k + 1
                report["failed"] = {sw.code: sw.error for sw in failed}
                say(f"wave {k + 1} failed: " + "; ".join(str(sw.error) for sw in failed))
                if not keep_failed:
                    for sw in swaps:
                        remove_new(plan, sw, state, password, base)
                        _archive(base, sw.new_dir, f"{sw.code}.failed")
                    say("removed the new PoPs of the failed wave; every old PoP kept serving")
                break
            say(f"wave {k + 1}: every gate passed ({', '.join(f'{sw.code} {sw.gate_s:.1f} s' for sw in swaps)}); "
                "draining and removing the old PoPs")
            with ThreadPoolExecutor(max_workers=min(8, len(swaps))) as pool:
                list(pool.map(partial(retire_old, plan, state=state, password=password, base=base), swaps))
            for sw in swaps:
                _archive(base, sw.old_dir, f"{sw.code}.gen{sw.old.generation}")
                state["pops"][sw.code].update(_pop_state(sw, state["pops"][sw.code]))
                report["replaced"].append({"pop": sw.code, "gate_s": round(sw.gate_s or 0, 2), "log": sw.log,
                                           "switched_at_s": None if sw.switched_at is None else round(sw.switched_at - t0, 3)})
            plan = build_plan(stack, network, only=list(state["pops"]), generations=state_generations(state))
            for name, c in state["clients"].items():
                c["geodns"] = geo_answer(plan, plan.client(name)).__dict__
            save_state(stack, state)
            report["passed_waves"] = k + 1
            say(f"wave {k + 1} done in {time.monotonic() - tw:.1f} s")
    finally:
        load.stop()
    return load.finish(report, t0, "rollout", base / "rollout.json", say)
