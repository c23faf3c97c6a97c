"""Booting the multi-AS topology's extra parts (lab/plan/multias.py): the transits' links and BIRDs, their configs,
and the wait until every session is up and every eyeball has a route to the anycast prefix."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path

from lab.net import bgp
from lab.net.netns import LabError, nsrun
from lab.net.processes import start
from lab.plan.configs import gobgpd_toml
from lab.plan.multias import TRANSITS, edge_neighbors_toml, eyeball_bird_conf, fib_args, relay_specs, transit_bird_conf, transit_namespace
from lab.plan.topology import LabPlan, PopPlan


def edge_toml(plan: LabPlan, pop: PopPlan, password: str) -> str:
    """The upstream's GoBGP config: its PoP sessions as in the default topology, then its two transits (no clients)."""
    return gobgpd_toml(dataclasses.replace(plan, clients=()), pop, password) + "\n" + edge_neighbors_toml(plan, pop)


def configs(plan: LabPlan, base: Path) -> dict[Path, str]:
    """Every BIRD config this topology adds or changes: transits, and the clients as eyeball ASes."""
    out = {base / "transits" / t.name / "bird.conf": transit_bird_conf(plan, t, base / "transits" / t.name) for t in TRANSITS}
    for c in plan.clients:
        out[base / "clients" / c.name / "bird.conf"] = eyeball_bird_conf(plan, c, base / "clients" / c.name)
    return out


def links(plan: LabPlan) -> tuple[list[str], dict[str, list[str]]]:
    """Root ``ip -batch`` lines giving every transit a port on the backbone bridge, and its own lines."""
    root: list[str] = []
    per: dict[str, list[str]] = {plan.backbone_namespace: []}
    for i, t in enumerate(TRANSITS):
        ns = transit_namespace(plan.stack, t)
        root.append(f"link add name eth0 netns {ns} type veth peer name t{i} netns {plan.backbone_namespace}")
        per[plan.backbone_namespace] += [f"link set t{i} master br0", f"link set t{i} up"]
        per[ns] = ["link set eth0 up", f"addr add {t.backbone_v4}/16 dev eth0", f"addr add {t.backbone_v6}/64 dev eth0 nodad"]
    return root, per


def no_redirects(plan: LabPlan) -> None:
    """No ICMP redirects on the shared bridge: a transit forwarding a client's packet back out of the port it came in
    would otherwise tell the client to send straight to the upstream, and the client's kernel would cache that route
    past every withdrawal (the transits would be skipped; a drained PoP would keep answering). On the internet no
    transit shares a LAN with its eyeballs' hosts."""
    for t in TRANSITS:
        nsrun(transit_namespace(plan.stack, t), ["sysctl", "-q", "-w", "net.ipv4.conf.all.send_redirects=0",
                                                 "net.ipv4.conf.eth0.send_redirects=0"])
    for c in plan.clients:
        nsrun(c.namespace, ["sysctl", "-q", "-w", "net.ipv4.conf.all.accept_redirects=0",
                            "net.ipv4.conf.eth0.accept_redirects=0", "net.ipv6.conf.all.accept_redirects=0",
                            "net.ipv6.conf.eth0.accept_redirects=0"])


EDGE_SCRIPT = Path(__file__).resolve().parents[1] / "net" / "edge.py"


def start_fib_syncs(plan: LabPlan, base: Path) -> dict[str, int]:
    """In every anycast PoP's upstream: the route to the anycast prefix follows GoBGP's RIB (lab/net/edge.py fib),
    replacing the default topology's static route. PoP code -> pid."""
    out: dict[str, int] = {}
    for p in plan.pops:
        if args := fib_args(plan, p):
            out[p.code] = start(p.upstream_namespace, [sys.executable, str(EDGE_SCRIPT), "fib", *args],
                                base / "upstreams" / p.code / "fib.log")
    return out


def start_transits(plan: LabPlan, base: Path, delay: float) -> dict[str, dict[str, object]]:
    """Per transit namespace: the relay delaying its edge sessions by ``delay`` each way (lab/net/edge.py relay),
    then its BIRD; the state's ``transits`` entry."""
    out: dict[str, dict[str, object]] = {}
    for t in TRANSITS:
        d = base / "transits" / t.name
        ns = transit_namespace(plan.stack, t)
        relay_pid = start(ns, [sys.executable, str(EDGE_SCRIPT), "relay", str(delay), *relay_specs(plan, t)],
                          d / "relay.log")
        pid = start(ns, ["bird", "-f", "-c", str(d / "bird.conf"), "-s", str(d / "bird.ctl"), "-P", str(d / "bird.pid")],
                    d / "bird.out")
        out[t.name] = {"namespace": ns, "asn": t.asn, "pid": pid, "relay_pid": relay_pid, "bird_socket": str(d / "bird.ctl"),
                       "backbone_ipv4": str(t.backbone_v4), "backbone_ipv6": str(t.backbone_v6)}
    return out


def sockets(plan: LabPlan, base: Path) -> dict[str, Path]:
    """Every BIRD of this topology by a name: transits ``t-<name>`` and eyeballs (the client names)."""
    out = {f"t-{t.name}": base / "transits" / t.name / "bird.ctl" for t in TRANSITS}
    out.update({c.name: base / "clients" / c.name / "bird.ctl" for c in plan.clients})
    return out


def bgp_down(plan: LabPlan, base: Path) -> list[str]:
    """``speaker/protocol`` for every BGP session of a transit or eyeball that is not Established."""
    down: list[str] = []
    for name, sock in sockets(plan, base).items():
        try:
            protocols = bgp.bird_protocols(sock)
        except LabError:
            down.append(f"{name}/(no BIRD)")
            continue
        down += [f"{name}/{p}" for p, (state, info) in protocols.items()
                 if p.startswith(("c_", "p_", "t_")) and not (state == "up" and info.startswith("Established"))]
    return down


def unrouted(plan: LabPlan, base: Path) -> list[str]:
    """Eyeballs without a route to the anycast prefix."""
    prefix = str(plan.network.prefixes.ipv4 or plan.network.prefixes.ipv6)
    out = []
    for c in plan.clients:
        try:
            via = bgp.bird_route_via(base / "clients" / c.name / "bird.ctl", prefix)
        except LabError:
            via = None
        if via is None:
            out.append(c.name)
    return out


def edge_sessions(plan: LabPlan) -> tuple[int, int]:
    up = total = 0
    for p in plan.pops:
        try:
            neigh = bgp.neighbors(p.upstream_namespace)
        except (LabError, ValueError):
            neigh = {}
        total += len(neigh) or 1
        up += sum(1 for n in neigh.values() if n.established)
    return up, total


def wait_converged(plan: LabPlan, base: Path, say: Callable[[str], None], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        up, total = edge_sessions(plan)
        down, waiting = bgp_down(plan, base), unrouted(plan, base)
        line = (f"upstream sessions {up}/{total}; transit and eyeball sessions down {len(down)}; eyeballs with a route "
                f"to the anycast prefix {len(plan.clients) - len(waiting)}/{len(plan.clients)}")
        if line != last:
            say(line)
            last = line
        if up == total and not down and not waiting:
            return
        if time.monotonic() > deadline:
            raise LabError(f"multi-AS topology not converged after {timeout:.0f} s: {line}; down: {', '.join(down[:6])}; "
                           f"unrouted: {', '.join(waiting)}")
        time.sleep(0.5)
