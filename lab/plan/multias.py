"""The multi-AS topology (``anycast lab up --topology multi-as``): a small internet between the PoPs and the clients.

The default lab puts every client one hop behind every PoP's upstream, so a withdrawal converges at once. Here the
PoPs' upstreams (the provider edge, AS64515, GoBGP as in the default topology) are customers of transit ASes, the
transits peer with each other, and the clients are eyeball ASes buying transit from one or two of them::

                 peer                         peer
    T-EU AS64496 ---------- T-NA AS64497 ---------- T-AP AS64498
        |   \\_____________________|_____________________/  |      (T-EU and T-AP peer too)
        |  customer links: every PoP's upstream u-<code> (AS64515) buys from its continent's transit and a second one
        |                          |                          |
    eyeball de AS64510        eyeball us AS64511        eyeball jp AS64509
    (T-EU + T-NA)             (T-NA)                    (T-AP + T-EU)

Policy (Gao-Rexford): each transit tags every route on import with a large community naming where it came from
(``(own ASN, 1, 1)`` customer, ``(own ASN, 1, 2)`` peer) and sets the local preference from it (customer 200 >
peer 100); it exports to peers only routes tagged customer (no valley paths: a route from one peer never reaches
another), to customers everything. Eyeballs import from their providers with equal preference (shortest AS path
decides, then BIRD's tie-breakers) and announce nothing.

Timers (what a drain meets on the way): BIRD 2 has no MRAI (minimum route advertisement interval): it sends an update
as soon as its best route changes, so path hunting here runs at the speed of the CPU, not in 30 s MRAI rounds as
between many real routers (RFC 4271 suggests 30 s for eBGP). Transit and eyeball sessions: keepalive 3 s, hold 9 s
(as the PoPs' own sessions), ``connect delay time 1``, ``connect retry time 2``, ``error wait time 1, 3`` so that a
restarted speaker is back within seconds. A crashed process closes its TCP sessions at once (the kernel resets them),
so hold timers matter only for a silent failure.

Update propagation delay: every edge<->transit session runs through a relay in the transit's namespace that delays
each byte :data:`EDGE_UPDATE_DELAY_S` (0.5 s) each way (lab/net/edge.py; this kernel has no netem), standing in for a
loaded route processor, update batching and the iBGP hops inside a real transit. The edge's route to its PoP follows
its BGP RIB (lab/net/edge.py fib; the default topology's static route would keep forwarding to a withdrawn PoP), so a
plain withdrawal black-holes traffic at the edge until the withdrawal has reached the transits, as on the internet.

Graceful shutdown (RFC 8326): transits and eyeballs set local preference 0 on routes carrying 65535:0 (on import,
after the Gao-Rexford preference), so the agent's drain moves traffic to another PoP before it withdraws.

Every speaker sits on the default lab's backbone bridge; which sessions exist makes the topology. Transit sessions use
``next hop self``, so packets follow the AS path (client -> transit(s) -> upstream -> PoP); replies take the bridge
straight back (asymmetric, as on the internet).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from lab.plan.topology import BACKBONE_V4, BACKBONE_V6, CLIENT_SITES, ClientPlan, LabPlan, PopPlan, namespace_prefix

MULTI_AS = "multi-as"
DEFAULT = "default"
TOPOLOGIES = (DEFAULT, MULTI_AS)


@dataclass(frozen=True)
class Transit:
    name: str  # namespace t-<name>
    asn: int
    continents: tuple[str, ...]  # PoPs and eyeballs on these continents buy from it first
    backbone_v4: IPv4Address
    backbone_v6: IPv6Address


@dataclass(frozen=True)
class Eyeball:
    site: str  # a CLIENT_SITES name: the client namespace is the eyeball AS's speaker
    asn: int
    providers: tuple[str, ...]  # transit names


def _transit(i: int, name: str, asn: int, continents: tuple[str, ...]) -> Transit:
    return Transit(name, asn, continents, BACKBONE_V4.network_address + 768 + i + 1,
                   BACKBONE_V6.network_address + 0x30000 + i + 1)


TRANSITS: tuple[Transit, ...] = (
    _transit(0, "eu", 64496, ("EU", "AF")),
    _transit(1, "na", 64497, ("NA", "SA")),
    _transit(2, "ap", 64498, ("AS", "OC")),
)
PEERINGS: tuple[tuple[str, str], ...] = (("eu", "na"), ("na", "ap"), ("eu", "ap"))
EYEBALLS: tuple[Eyeball, ...] = (
    Eyeball("de", 64510, ("eu", "na")),  # multi-homed
    Eyeball("us", 64511, ("na",)),
    Eyeball("jp", 64509, ("ap", "eu")),  # multi-homed
)
SECOND_PROVIDER = {"eu": "na", "na": "eu", "ap": "na"}  # every upstream is multi-homed: two paths into the edge
EDGE_TIMERS = (3, 9)  # keepalive, hold (s) of every session this topology adds
# Update propagation delay on every edge<->transit session (each way), through lab/net/edge.py's relay: a loaded route
# processor, update batching and a few iBGP hops inside a real transit before its border routers act on an update.
EDGE_UPDATE_DELAY_S = 0.5
RELAY_PORT_V4, RELAY_PORT_V6 = 17900, 17950  # the relay's listeners in a transit namespace: + the customer's index
# RFC 8326 section 4.1: a receiver honouring GRACEFUL_SHUTDOWN sets LOCAL_PREF 0 on those paths (transits, eyeballs).
HONOUR_GSHUT = "if (65535, 0) ~ bgp_community then bgp_local_pref = 0;"
CUSTOMER, PEER = 1, 2  # large-community relationship values and what they mean
LOCAL_PREF = {CUSTOMER: 200, PEER: 100}


def transit(name: str) -> Transit:
    return next(t for t in TRANSITS if t.name == name)


def transit_namespace(stack: str, t: Transit) -> str:
    return f"{namespace_prefix(stack)}t-{t.name}"


def home_transit(continent: str | None) -> Transit:
    return next((t for t in TRANSITS if continent in t.continents), TRANSITS[0])


def pop_providers(plan: LabPlan, pop: PopPlan) -> tuple[Transit, Transit]:
    """The two transits the PoP's upstream (AS64515) buys from: its continent's and a second one."""
    first = home_transit(plan.network.pop(pop.code).continent)
    return first, transit(SECOND_PROVIDER[first.name])


def eyeball(client: ClientPlan) -> Eyeball:
    return next(e for e in EYEBALLS if e.site == client.name)


def overlay(plan: LabPlan) -> LabPlan:
    """``plan`` in the multi-AS topology: only the eyeball clients (with their own ASNs), plus the transits."""
    by_name = {e.site: e for e in EYEBALLS}
    clients = tuple(dataclasses.replace(c, asn=by_name[c.name].asn) for c in plan.clients if c.name in by_name)
    return dataclasses.replace(plan, clients=clients, topology=MULTI_AS,
                               extra_namespaces=tuple(transit_namespace(plan.stack, t) for t in TRANSITS))


def eyeball_sites() -> list[str]:
    known = {s.name for s in CLIENT_SITES}
    return [e.site for e in EYEBALLS if e.site in known]


@dataclass(frozen=True)
class Neighbor:
    name: str  # BIRD protocol name stem
    relation: int  # CUSTOMER or PEER (as the local speaker sees the neighbour)
    asn: int
    v4: IPv4Address
    v6: IPv6Address
    description: str
    relay_port: int | None = None  # an edge customer: the session runs through the delaying relay (v4 port; v6 + 50)


def transit_neighbors(plan: LabPlan, t: Transit) -> list[Neighbor]:
    out: list[Neighbor] = []
    for i, p in enumerate(plan.pops):
        if t in pop_providers(plan, p):
            out.append(Neighbor(f"c_{p.code}", CUSTOMER, p.upstream_asn, p.backbone_v4, p.backbone_v6,
                                f"customer: {p.code}'s upstream (provider edge), updates delayed "
                                f"{EDGE_UPDATE_DELAY_S:g} s each way", RELAY_PORT_V4 + i))
    for c in plan.clients:
        if t.name in eyeball(c).providers:
            out.append(Neighbor(f"c_{c.name}", CUSTOMER, c.asn, c.backbone_v4, c.backbone_v6, f"customer: eyeball {c.name}"))
    for a, b in PEERINGS:
        if t.name in (a, b):
            other = transit(b if t.name == a else a)
            out.append(Neighbor(f"p_{other.name}", PEER, other.asn, other.backbone_v4, other.backbone_v6,
                                f"peer: transit {other.name}"))
    return out


def fib_args(plan: LabPlan, pop: PopPlan) -> list[str]:
    """lab/net/edge.py fib arguments for an anycast PoP's upstream: the routes to the anycast prefixes via the PoP
    (the default topology's static routes) follow GoBGP's RIB; none for a unicast PoP."""
    out: list[str] = []
    if pop.mode != "anycast":
        return out
    for s in pop.sessions:
        prefix = plan.network.prefixes.ipv4 if s.version == 4 else plan.network.prefixes.ipv6
        if prefix is not None:
            out += [f"ipv{s.version}", str(prefix), str(s.pop_address), "pop"]
    return out


def _families(plan: LabPlan) -> list[int]:
    return ([4] if plan.network.prefixes.ipv4 is not None else []) + [6]


def _header(title: str, run_dir: Path, router_id: IPv4Address) -> list[str]:
    return [f"# {title}", f'log "{run_dir}/bird.log" all;', f"router id {router_id};",
            "protocol device { scan time 10; }",
            "protocol kernel kernel4 { ipv4 { import none; export all; }; }",
            "protocol kernel kernel6 { ipv6 { import none; export all; }; }"]


def _session(name: str, description: str, local: IPv4Address | IPv6Address, local_as: int,
             peer: IPv4Address | IPv6Address, peer_as: int, version: int, import_filter: str, export_filter: str,
             relay_port: int | None = None) -> list[str]:
    """One BGP session; with ``relay_port`` it runs through the namespace's delaying relay on the loopback (the
    routes' next hop, the edge's backbone address, resolves in ``igp4``/``igp6``: the connected networks only)."""
    keepalive, hold = EDGE_TIMERS
    if relay_port is not None:
        lo = "127.0.0.1" if version == 4 else "::1"
        ends = [f"  local {lo} as {local_as};", f"  neighbor {lo} port {relay_port + (0 if version == 4 else 50)} "
                f"as {peer_as}; multihop 2;"]
    else:
        ends = [f"  local {local} as {local_as};", f"  neighbor {peer} as {peer_as};"]
    return [f"protocol bgp {name}_{version} {{", f'  description "{description}";', *ends,
            "  connect delay time 1; connect retry time 2; error wait time 1, 3;",
            f"  hold time {hold}; keepalive time {keepalive};",
            f"  ipv{version} {{ import filter {import_filter}; export filter {export_filter}; next hop self;"
            + (f" igp table igp{version};" if relay_port is not None else "") + " };", "}"]


def relay_specs(plan: LabPlan, t: Transit) -> list[str]:
    """lab/net/edge.py relay arguments for transit ``t``: one listener per edge customer and family, connecting to
    the edge's backbone address from the transit's own."""
    out: list[str] = []
    for n in transit_neighbors(plan, t):
        if n.relay_port is None:
            continue
        for version in _families(plan):
            if version == 4:
                out.append(f"127.0.0.1:{n.relay_port}={n.v4}:179@{t.backbone_v4}")
            else:
                out.append(f"[::1]:{n.relay_port + 50}=[{n.v6}]:179@{t.backbone_v6}")
    return out


def transit_bird_conf(plan: LabPlan, t: Transit, run_dir: Path) -> str:
    """BIRD for transit ``t``: Gao-Rexford import tags and preferences, valley-free export."""
    out = _header(f"Lab transit {t.name} AS{t.asn}: customer > peer by local preference, no valley paths.", run_dir,
                  t.backbone_v4)
    for rel, word in ((CUSTOMER, "customer"), (PEER, "peer")):
        out += [f"filter from_{word} {{", f"  bgp_large_community.add(({t.asn}, 1, {rel}));",
                f"  bgp_local_pref = {LOCAL_PREF[rel]};", f"  {HONOUR_GSHUT}", "  accept;", "}"]
    # Connected networks in tables of their own: where the relayed (multihop) edge sessions resolve their next hops.
    out += ["ipv4 table igp4;", "ipv6 table igp6;",
            'protocol direct { ipv4 { table igp4; }; ipv6 { table igp6; }; interface "eth0"; }']
    out += ["filter to_customer { accept; }",
            f"filter to_peer {{ if ({t.asn}, 1, {CUSTOMER}) ~ bgp_large_community then accept; reject; }}"]
    for n in transit_neighbors(plan, t):
        word = "customer" if n.relation == CUSTOMER else "peer"
        for version in _families(plan):
            out += _session(n.name, n.description, t.backbone_v4 if version == 4 else t.backbone_v6, t.asn,
                            n.v4 if version == 4 else n.v6, n.asn, version, f"from_{word}", f"to_{word}", n.relay_port)
    return "\n".join(out) + "\n"


def eyeball_bird_conf(plan: LabPlan, client: ClientPlan, run_dir: Path) -> str:
    """BIRD for an eyeball AS (the client namespace): providers at equal preference, nothing announced."""
    e = eyeball(client)
    out = _header(f"Lab eyeball {client.name} AS{e.asn} ({client.site.city}): providers "
                  f"{', '.join(e.providers)}; shortest AS path wins.", run_dir, client.backbone_v4)
    out += [f"filter from_provider {{ bgp_local_pref = 100; {HONOUR_GSHUT} accept; }}", "filter none_out { reject; }"]
    for name in e.providers:
        t = transit(name)
        for version in _families(plan):
            out += _session(f"t_{t.name}", f"provider: transit {t.name}", client.backbone_v4 if version == 4 else
                            client.backbone_v6, e.asn, t.backbone_v4 if version == 4 else t.backbone_v6, t.asn, version,
                            "from_provider", "none_out")
    return "\n".join(out) + "\n"


def edge_neighbors_toml(plan: LabPlan, pop: PopPlan) -> str:
    """The GoBGP upstream's sessions to its two transits (appended to its PoP sessions). GoBGP drops every route a
    transit sends back (each carries AS64515 already: AS-path loop), so the edge never carries transit traffic. Passive:
    each transit connects through its delaying relay (from the transit's backbone address)."""
    keepalive, hold = EDGE_TIMERS
    lines: list[str] = []
    for t in pop_providers(plan, pop):
        for version in _families(plan):
            lines += ["[[neighbors]]", "  [neighbors.config]",
                      f'    neighbor-address = "{t.backbone_v4 if version == 4 else t.backbone_v6}"', f"    peer-as = {t.asn}",
                      "  [neighbors.transport.config]",
                      f'    local-address = "{pop.backbone_v4 if version == 4 else pop.backbone_v6}"',
                      "    passive-mode = true", "  [neighbors.timers.config]", "    connect-retry = 1", f"    hold-time = {hold}",
                      f"    keepalive-interval = {keepalive}", "    idle-hold-time-after-reset = 1",
                      "  [[neighbors.afi-safis]]", "    [neighbors.afi-safis.config]",
                      f'      afi-safi-name = "ipv{version}-unicast"', ""]
    return "\n".join(lines)


def drawing(plan: LabPlan) -> str:
    """The running topology in a few lines of text (``anycast lab convergence`` prints it)."""
    lines = ["transits: " + ", ".join(f"{t.name} AS{t.asn}" for t in TRANSITS)
             + "; peerings: " + ", ".join(f"{a}-{b}" for a, b in PEERINGS)]
    for p in plan.pops:
        a, b = pop_providers(plan, p)
        lines.append(f"  {p.code} ({p.mode}) -> u-{p.code} AS{p.upstream_asn} -> {a.name}, {b.name}")
    for c in plan.clients:
        lines.append(f"  eyeball {c.name} AS{c.asn} <- {', '.join(eyeball(c).providers)}")
    return "\n".join(lines)
