"""``anycast lab up``: namespaces, links, daemons, and the wait for BGP convergence, with progress lines."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

from infra import safe_write
from infra.model import Network
from lab.boot import multias
from lab.cloud import tls as lab_tls
from lab.drivers.health import supervised_command
from lab.net import bgp
from lab.net.netns import LabError, ip_batch, kill_namespaces, list_namespaces, nsrun, run
from lab.net.processes import LOCAL_ADDRESSES, NEIGHBOR_ROUTE, require_tools, start, wait_for
from lab.plan.configs import apply_substitutions, client_bird_conf, gobgpd_toml, lab_substitutions
from lab.plan.geodns import expected_pop, geo_answer
from lab.plan.multias import EDGE_UPDATE_DELAY_S, MULTI_AS
from lab.plan.signing import lab_ds, lab_network, render_lab_pop
from lab.plan.topology import LabPlan, PopPlan, Session, WellConnected, build_plan, namespace_prefix
from lab.state import LAB_ROOT, LabState, lab_dir, state_json, state_path
from userdata.render import arrivals_nft, neighbor_route6, zone_file_name

DEFAULT_PASSWORD = "lab-password"
LAB_PASSWORD_ENV = "ANYCAST_LAB_BGP_PASSWORD"


def lab_password() -> str:
    """The lab's own TCP-MD5 password: never the real ANYCAST_BGP_PASSWORD, which would land in .lab/ files."""
    return os.environ.get(LAB_PASSWORD_ENV) or DEFAULT_PASSWORD
class Progress:
    """One line per step with the elapsed time, on stderr (quiet=True keeps it silent)."""

    def __init__(self, quiet: bool = False) -> None:
        self.t0 = time.monotonic()
        self.quiet = quiet

    def __call__(self, text: str) -> None:
        if not self.quiet:
            print(f"[{time.monotonic() - self.t0:6.2f}s] {text}", file=sys.stderr, flush=True)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.t0


def ra_neighbor(network: Network, code: str) -> IPv6Address | None:
    """The IPv6 neighbour the PoP routes at boot (bgp.ipv6NeighborRoute: auto), else None. With it the lab gives the
    PoP no static IPv6 default route: as on Vultr it learns one from its upstream's router advertisements, whose
    gateway is the upstream's link-local address, and the neighbour is reachable only through that gateway."""
    return neighbor_route6(network, network.pop(code))


def default_route(s: Session, ra: bool) -> str | None:
    """The PoP's static default route for session ``s`` (an ``ip -batch`` line), None where router advertisements
    give it (``ra``: IPv6 with bgp.ipv6NeighborRoute: auto)."""
    if s.version == 6 and ra:
        return None
    return f"route add default via {s.link_gateway} dev eth0 onlink"


def radv_conf(pop: PopPlan, up_dir: Path) -> str:
    """The upstream's router advertisements on its PoP links (BIRD's radv protocol): the default router only, no
    prefix to autoconfigure (the PoP's address is static, as Vultr assigns it). 4 s between advertisements (BIRD's
    minimum) so that a PoP booting next to it has its default route within seconds."""
    return (f'log "{up_dir}/radv.log" all;\nrouter id {pop.backbone_v4};\nprotocol device {{ scan time 2; }}\n'
            'protocol radv {\n  interface "pop", "poq" {\n    min ra interval 3;\n    max ra interval 4;\n'
            '    prefix ::/0 { skip yes; };\n  };\n}\n')


def _start_radv(pop: PopPlan, up_dir: Path) -> int:
    _write(up_dir / "radv.conf", radv_conf(pop, up_dir))
    return start(pop.upstream_namespace, ["bird", "-f", "-c", str(up_dir / "radv.conf"), "-s", str(up_dir / "radv.ctl"),
                                          "-P", str(up_dir / "radv.pid")], up_dir / "radv.out")


def _links(plan: LabPlan, machines: bool = False) -> tuple[list[str], dict[str, list[str]]]:
    """Root ``ip -batch`` lines creating every veth pair, and per-namespace batch lines configuring them.

    In machine mode the service addresses are left to the PoP's own ``anycast-addresses.service``."""
    root: list[str] = []
    per: dict[str, list[str]] = {ns: ["link set lo up"] for ns in plan.namespaces}
    bb = plan.backbone_namespace
    per[bb] += ["link add br0 type bridge", "link set br0 type bridge mcast_snooping 0", "link set br0 up"]
    net = plan.network
    for p in plan.pops:
        root.append(f"link add name eth0 netns {p.namespace} type veth peer name pop netns {p.upstream_namespace}")
        root.append(f"link add name bb0 netns {p.upstream_namespace} type veth peer name u{p.index} netns {bb}")
        per[bb] += [f"link set u{p.index} master br0", f"link set u{p.index} up"]
        up, pop = per[p.upstream_namespace], per[p.namespace]
        up += ["link set pop up", "link set bb0 up", f"addr add {p.backbone_v4}/16 dev bb0",
               f"addr add {p.backbone_v6}/64 dev bb0 nodad"]
        pop += ["link set eth0 up"]
        # Service addresses on lo: the host puts them on the dummy anycast0, which this kernel cannot create.
        if net.service.ipv4 is not None and not machines:
            pop.append(f"addr add {net.service.ipv4}/32 dev lo")
        if not machines:
            pop.append(f"addr add {net.service.ipv6}/128 dev lo")
        for s in p.sessions:
            nodad = "" if s.version == 4 else " nodad"
            plen = s.link.prefixlen
            if s.pop_address in s.link:
                pop.append(f"addr add {s.pop_address}/{plen} dev eth0{nodad}")
                up.append(f"addr add {s.link_gateway}/{plen} dev pop{nodad}")
            else:
                pop.append(f"addr add {s.pop_address}/{128 if s.version == 6 else 32} dev eth0{nodad}")
                up.append(f"addr add {s.link_gateway}/{plen} dev pop{nodad}")
            if s.on_loopback:
                up.append(f"addr add {s.upstream_address}/{32 if s.version == 4 else 128} dev lo")
            if (line := default_route(s, ra_neighbor(net, p.code) is not None)) is not None:
                pop.append(line)
            if s.pop_address not in s.link:
                up.append(f"route add {s.pop_address} dev pop")
            # The upstream forwards the anycast prefix to its PoP (GoBGP has no FIB; this static route is its FIB).
            prefix = net.prefixes.ipv4 if s.version == 4 else net.prefixes.ipv6
            if prefix is not None and p.mode == "anycast":
                up.append(f"route add {prefix} via {s.pop_address} dev pop")
    for c in plan.clients:
        root.append(f"link add name eth0 netns {c.namespace} type veth peer name c{c.index} netns {bb}")
        per[bb] += [f"link set c{c.index} master br0", f"link set c{c.index} up"]
        per[c.namespace] += ["link set eth0 up", f"addr add {c.backbone_v4}/16 dev eth0",
                             f"addr add {c.backbone_v6}/64 dev eth0 nodad"]
    return root, per


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    safe_write.write_file(path, text, mode)  # the lab runs as root: never through a link planted below .lab/


def pop_lab_files(network: Network, code: str, password: str, pop_dir: Path,
                  rendered: dict[str, str] | None = None) -> dict[str, str]:
    """The PoP's rendered files that the lab runs (lab substitutions applied), by path relative to ``pop_dir``.
    ``rendered``: the renderer's files, if the caller has them (``anycast lab rollout`` compares and injects faults)."""
    rendered = render_lab_pop(network, code, password).files if rendered is None else rendered
    zone = zone_file_name(network)
    files = apply_substitutions(rendered, lab_substitutions(pop_dir, zone) + lab_tls.substitutions(network, pop_dir))
    out: dict[str, str] = {n: files[n] for n in ("bird.conf", "Caddyfile", "nsd.conf", "health.json") if n in files}
    out[f"zones/{zone}"] = files[zone]
    return out


def _pop_files(network: Network, pop: PopPlan, password: str, pop_dir: Path, rendered: dict[str, str] | None = None) -> int:
    """Write the PoP's rendered files (lab substitutions applied) that the lab runs; return how many."""
    files = pop_lab_files(network, pop.code, password, pop_dir, rendered)
    for name, text in files.items():
        _write(pop_dir / name, text, 0o600 if name == "bird.conf" else 0o644)
    return len(files)


def _wait_dad(ns: str, timeout: float = 10.0) -> None:
    """Wait until no IPv6 address of the namespace's eth0 is tentative (duplicate address detection done)."""
    deadline = time.monotonic() + timeout
    while nsrun(ns, ["ip", "-6", "addr", "show", "dev", "eth0", "tentative"], check=False).strip():
        if time.monotonic() > deadline:
            raise LabError(f"{ns}: eth0 still has tentative IPv6 addresses after {timeout:.0f} s")
        time.sleep(0.1)


# What _start_pop starts and keeps running; other entries of "commands" ran once at boot (oneshot units).
DAEMONS = ("nsd", "caddy", "bird", "health")


def _start_pop(plan: LabPlan, pop: PopPlan, pop_dir: Path) -> dict[str, Any]:
    ns = pop.namespace
    pids: dict[str, int] = {}
    commands: dict[str, list[str]] = {}
    if pop.mode == "unicast":  # the shipped script writes the PoP's own addresses for @ and www
        nsrun(ns, ["/bin/sh", str(LOCAL_ADDRESSES), str(pop_dir / "zones" / "local-addresses.inc")])
    if (neighbor := ra_neighbor(plan.network, pop.code)) is not None:
        # anycast-neighbor-route.service (After=network-online.target, Before=bird.service): the /128 via the
        # router-advertised gateway. Online first: the lab's RAs arrive every few seconds, also while eth0's own
        # link-local address is still tentative (DAD), and a BIRD started then refuses the route ("KRT: Received
        # route ... with strange next-hop fe80::..."); on a real boot the RA answers the PoP's solicitation, sent
        # after DAD.
        _wait_dad(ns)
        boot_cmd = ["/bin/sh", str(NEIGHBOR_ROUTE), str(neighbor)]
        nsrun(ns, boot_cmd, timeout=90)
        commands["neighbor-route"] = boot_cmd
    commands["nsd"] = ["nsd", "-d", "-c", str(pop_dir / "nsd.conf")]
    commands["caddy"] = ["caddy", "run", "--config", str(pop_dir / "Caddyfile"), "--adapter", "caddyfile"]
    commands["bird"] = ["bird", "-f", "-c", str(pop_dir / "bird.conf"), "-s", str(pop_dir / "bird.ctl"),
                        "-P", str(pop_dir / "bird.pid")]
    env = {"HOME": str(pop_dir), "XDG_CONFIG_HOME": str(pop_dir / "xdg"), "XDG_DATA_HOME": str(pop_dir / "xdg")}
    lab_tls.bootstrap(ns, pop_dir)  # as the user data's runcmd: a certificate exists before Caddy starts
    for name, cmd in commands.items():
        if name in DAEMONS:
            pids[name] = start(ns, cmd, pop_dir / f"{name}.log", env=env)
    if pop.mode == "anycast":
        # The PoP's nftables.conf is not loaded in process mode; its packet counter for the service addresses is (in
        # a table that accepts everything), so that `anycast-health --drain` measures the traffic as on a PoP.
        _write(pop_dir / "arrivals.nft", arrivals_nft(plan.network))
        nsrun(ns, ["nft", "-f", str(pop_dir / "arrivals.nft")])
        # The agent under lab/net/supervise.py: the rendered unit's watchdog, ExecStopPost and Restart= (lab/drivers/health.py).
        commands["health"] = supervised_command(plan.network, pop_dir)
        if not wait_for(pop_dir / "bird.ctl", 5):
            raise LabError(f"{pop.code}: BIRD did not create its control socket (see {pop_dir / 'bird.log'})")
        pids["health"] = start(ns, commands["health"], pop_dir / "health.log")
    return {"pids": pids, "commands": commands}


def build(plan: LabPlan, password: str, base: Path) -> int:
    """Write every config of the lab under ``base`` (rendered PoP files with the lab substitutions, GoBGP and client
    BIRD configs) without booting anything: the render-only mode. Returns the number of files written."""
    network = plan.network
    n = 0
    multi = plan.topology == MULTI_AS
    for p in plan.pops:
        rendered = render_lab_pop(network, p.code, password).files  # once per PoP (~40 ms each)
        n += _pop_files(network, p, password, base / "pops" / p.code, rendered)
        n += lab_tls.write_pop_files(plan, p, rendered, base / "pops" / p.code, base)
        toml = multias.edge_toml(plan, p, password) if multi else gobgpd_toml(plan, p, password)
        _write(base / "upstreams" / p.code / "gobgpd.toml", toml, 0o600)
        n += 1
    if multi:  # transits, and the clients as eyeball ASes (lab/plan/multias.py)
        for path, text in multias.configs(plan, base).items():
            _write(path, text)
        return n + len(multias.configs(plan, base))
    for c in plan.clients:
        cdir = base / "clients" / c.name
        _write(cdir / "bird.conf", client_bird_conf(plan, c, cdir))
        n += 1
    return n


def _start_upstream(plan: LabPlan, pop: PopPlan, password: str, up_dir: Path) -> int:
    return start(pop.upstream_namespace, ["gobgpd", "-f", str(up_dir / "gobgpd.toml"), "-t", "toml",
                                          "--log-level", "info", "--log-plain", "--pprof-disable",
                                          "--api-hosts", "127.0.0.1:50051"],
                 up_dir / "gobgpd.log")


def _originate_links(pop: PopPlan) -> None:
    """The upstream announces its PoP's link to the clients, so unicast addresses are reachable."""
    deadline = time.monotonic() + 10
    for s in pop.sessions:
        while True:
            out = run(["ip", "netns", "exec", pop.upstream_namespace, "gobgp", "global", "rib", "add", "-a",
                       f"ipv{s.version}", str(s.link)], check=False)
            if "error" not in out.lower():
                try:
                    if bgp.gobgp(pop.upstream_namespace, "global", "rib", "-a", f"ipv{s.version}", str(s.link)):
                        break
                except (LabError, ValueError):
                    pass
            if time.monotonic() > deadline:
                raise LabError(f"{pop.upstream_namespace}: could not originate {s.link}")
            time.sleep(0.1)


def down(stack: str | None, root: Path | None = None, say: Callable[[str], None] | None = None) -> int:
    """Remove every namespace (and so every link) and process of the lab; idempotent; returns namespaces removed."""
    from lab.drivers.machines import stop_all
    machines = stop_all(namespace_prefix(stack), root or LAB_ROOT)
    names = list_namespaces(namespace_prefix(stack))
    killed = kill_namespaces(names)
    lab_tls.cleanup(names)
    states = [state_path(stack, root)] if stack else list((root or LAB_ROOT).glob("*/state.json"))
    for st in states:
        if st.exists():
            st.unlink()
    if say:
        say(f"removed {len(names)} namespaces, stopped {killed} processes"
            + (f" and {machines} containers (cgroups removed, overlays unmounted)" if machines else ""))
    return len(names)


def up(stack: str, network: Network, only: list[str] | None = None, password: str | None = None,
       well_connected: tuple[WellConnected, ...] = (),
       root: Path | None = None, quiet: bool = False, timeout: float = 60, machines: bool = False,
       topology: str = "default") -> LabState:
    """Boot the lab; return the state (also written to ``state.json``). Raises LabError on failure.

    ``machines``: every PoP is a Debian 12 container booted from its user data (lab/boot/machines.py);
    ``topology``: "multi-as" puts transit ASes between upstreams and clients (lab/plan/multias.py)."""
    say = Progress(quiet)
    for d in (lab_dir(stack, root).parent, lab_dir(stack, root)):  # as root, rmtree below must not follow a link
        if d.is_symlink():
            raise LabError(f"{d}: is a symlink; make it a real folder (the lab never deletes or writes through links)")
    require_tools()
    password = password or lab_password()
    network = lab_network(network)  # a signing stack signs with the lab's key, never the real one
    plan = build_plan(stack, network, only, well_connected, topology=topology)
    multi = plan.topology == MULTI_AS
    if multi and machines:
        raise LabError("--topology multi-as: process mode only for now (drop --machines)")
    prep = None
    if machines:
        from lab.boot import machines as machine_lab
        prep = machine_lab.prepare(plan, password, say)
    base = lab_dir(stack, root)
    if list_namespaces(namespace_prefix(stack)):
        down(stack, root, say)
    else:  # a crashed machine-mode run may have left overlays mounted below base: never rmtree through them
        from lab.drivers.machines import stop_all
        stop_all(namespace_prefix(stack), root or LAB_ROOT)
    if base.exists():  # fresh logs and configs for every boot (only the lab's own directory)
        shutil.rmtree(base)
    base.mkdir(parents=True, exist_ok=True)
    say(f"stack {stack}: {len(plan.pops)} PoPs, {len(plan.pops)} upstreams, {len(plan.clients)} clients, "
        f"{len(plan.namespaces)} namespaces")
    say(f"wrote {build(plan, password, base)} configs: rendered by userdata.render (+ lab substitutions), GoBGP, clients")
    ip_batch([f"netns add {ns}" for ns in plan.namespaces])
    root_lines, per_ns = _links(plan, machines)
    if multi:
        extra_root, extra = multias.links(plan)
        root_lines += extra_root
        for ns, lines in extra.items():
            per_ns[ns] += lines
    ip_batch(root_lines)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda item: run(["ip", "-n", item[0], "-batch", "-"], input_text="\n".join(item[1]) + "\n"),
                      per_ns.items()))
        list(pool.map(lambda ns: nsrun(ns, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1",
                                            "net.ipv6.conf.all.forwarding=1"]),
                      [p.upstream_namespace for p in plan.pops] + list(plan.extra_namespaces)))
    if multi:
        multias.no_redirects(plan)
    say("namespaces, veth links and the backbone bridge are up")
    upstream_pids = {p.code: _start_upstream(plan, p, password, base / "upstreams" / p.code) for p in plan.pops}
    say(f"started {len(upstream_pids)} GoBGP upstreams")
    ra = [p for p in plan.pops if ra_neighbor(network, p.code) is not None]
    for p in ra:  # as on Vultr: the PoP accepts router advertisements (accept_ra=2 also when forwarding)
        nsrun(p.namespace, ["sysctl", "-q", "-w", "net.ipv6.conf.eth0.accept_ra=2"])
    radv_pids = {p.code: _start_radv(p, base / "upstreams" / p.code) for p in ra}
    if ra:
        say(f"router advertisements (BIRD radv) on {len(ra)} upstream links: the IPv6 default route of "
            f"{', '.join(p.code for p in ra)} is link-local (bgp.ipv6NeighborRoute: auto)")
    cloud = None
    if prep is not None:
        from lab.boot import machines as machine_lab
        files: dict[str, bytes] = {}
        if lab_tls.enabled(network):  # before the containers: their fetch timers may fire before convergence
            cloud = lab_tls.start_cloud(plan, base, say, front=True)
            files = lab_tls.machine_files(plan, base, prep.image)
        started = machine_lab.boot(plan, prep, base, say, files=files)
        say(f"booted {len(started)} PoP containers; cloud-init done on every one")
    else:
        with ThreadPoolExecutor(max_workers=8) as pool:
            started = dict(zip([p.code for p in plan.pops],
                               pool.map(lambda p: _start_pop(plan, p, base / "pops" / p.code), plan.pops), strict=True))
        say(f"started BIRD, NSD, Caddy (+ health agent on anycast PoPs) in {len(started)} PoPs")
    client_pids = {}
    for c in plan.clients:
        cdir = base / "clients" / c.name
        client_pids[c.name] = start(c.namespace, ["bird", "-f", "-c", str(cdir / "bird.conf"), "-s", str(cdir / "bird.ctl"),
                                                  "-P", str(cdir / "bird.pid")], cdir / "bird.out")
    say(f"started BIRD in {len(client_pids)} clients")
    resolvers = {}
    if network.dns.dnssec is not None:  # signed (lab/plan/signing.py): a validating Unbound per client and family
        from lab.boot.resolvers import start_resolvers
        resolvers = start_resolvers(plan, base, lab_ds(network))
        say(f"started a validating Unbound (IPv4, IPv6) in {len(resolvers)} clients, anchored at the lab's DS")
    transits = multias.start_transits(plan, base, EDGE_UPDATE_DELAY_S) if multi else {}
    if multi:
        fib = multias.start_fib_syncs(plan, base)
        say(f"started BIRD in {len(transits)} transits ({', '.join(transits)}) behind relays delaying their edge "
            f"sessions {EDGE_UPDATE_DELAY_S:g} s each way, and the FIB sync of {len(fib)} upstreams: multi-AS topology")
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(_originate_links, plan.pops))
    say("upstreams originate their PoP links (unicast reachability)")
    state = _state(plan, base, started, upstream_pids, client_pids)
    for code, pid in radv_pids.items():
        state["pops"][code]["upstream"]["radv_pid"] = pid
    state["mode"] = "machines" if machines else "processes"
    state["well_connected"] = [str(w) for w in plan.well_connected]
    if network.dns.dnssec is not None:
        state["dnssec"] = {"ds": lab_ds(network), "resolvers": resolvers}
    if multi:
        state["topology"] = "multi-as"
        state["transits"] = transits
    _write(base / "state.json", state_json(state))
    if multi:
        multias.wait_converged(plan, base, say, timeout)
    else:
        wait_converged(plan, base, say, timeout)
    state["boot_seconds"] = round(say.elapsed, 2)
    if lab_tls.enabled(network):  # after convergence: ACME needs the network
        state["tls"] = lab_tls.setup(plan, state, base, say, cloud)
        state["tls"]["setup_seconds"] = round(say.elapsed - state["boot_seconds"], 2)
    _write(base / "state.json", state_json(state))
    say(f"converged in {state['boot_seconds']:.1f} s (ready after {say.elapsed:.1f} s); state: {base / 'state.json'}")
    return state


def _state(plan: LabPlan, base: Path, pops: dict[str, Any], upstream_pids: dict[str, int],
           client_pids: dict[str, int]) -> LabState:
    net = plan.network
    return {
        "stack": plan.stack,
        "dir": str(base),
        "anycast": {"ipv4": str(net.service.ipv4) if net.service.ipv4 else None, "ipv6": str(net.service.ipv6)},
        "prefixes": [str(p) for p in net.announced_prefixes],
        "backbone": plan.backbone_namespace,
        "pops": {p.code: {
            "namespace": p.namespace, "mode": p.mode, "provider": p.provider,
            "unicast_ipv4": p.unicast_ipv4, "unicast_ipv6": p.unicast_ipv6,
            "upstream": {"namespace": p.upstream_namespace, "asn": p.upstream_asn, "pid": upstream_pids[p.code],
                         "backbone_ipv4": str(p.backbone_v4), "backbone_ipv6": str(p.backbone_v6)},
            "dir": str(base / "pops" / p.code), "bird_socket": str(base / "pops" / p.code / "bird.ctl"),
            "pids": pops[p.code]["pids"], "commands": pops[p.code]["commands"], **pops[p.code]} for p in plan.pops},
        "clients": {c.name: {
            "namespace": c.namespace, "country": c.site.country, "city": c.site.city,
            "expected_pop": expected_pop(plan, c), "geodns": geo_answer(plan, c).__dict__,
            "bird_socket": str(base / "clients" / c.name / "bird.ctl"), "pid": client_pids[c.name]}
            for c in plan.clients},
    }


def convergence(plan: LabPlan, base: Path) -> tuple[int, int, list[str]]:
    """(established sessions, expected sessions, clients not yet on their expected upstream)."""
    up = total = 0
    for p in plan.pops:
        try:
            neigh = bgp.neighbors(p.upstream_namespace)
        except (LabError, ValueError):
            neigh = {}
        total += len(neigh) or (len(p.sessions) * (1 + len(plan.clients)))
        up += sum(1 for n in neigh.values() if n.established)
    waiting = []
    prefix = str(plan.network.prefixes.ipv4 or plan.network.prefixes.ipv6)
    for c in plan.clients:
        want = plan.routed_pop(c) or expected_pop(plan, c)  # the nearest anycast PoP, or the step-8 option's choice
        hop = plan.pop(want).backbone_v4 if plan.network.prefixes.ipv4 else plan.pop(want).backbone_v6
        try:
            via = bgp.bird_route_via(base / "clients" / c.name / "bird.ctl", prefix)
        except LabError:
            via = None
        if via != str(hop):
            waiting.append(c.name)
    return up, total, waiting


def wait_converged(plan: LabPlan, base: Path, say: Callable[[str], None], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        up, total, waiting = convergence(plan, base)
        line = f"BGP sessions established {up}/{total}; clients routed to their " \
               f"{'predicted (--well-connected)' if plan.well_connected else 'nearest'} PoP " \
               f"{len(plan.clients) - len(waiting)}/{len(plan.clients)}"
        if line != last:
            say(line)
            last = line
        if up == total and not waiting:
            return
        if time.monotonic() > deadline:
            raise LabError(f"not converged after {timeout:.0f} s: {line}; waiting: {', '.join(waiting)}")
        time.sleep(0.5)
