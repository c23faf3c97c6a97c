"""The lab's topology and addressing plan: pure data computed from the model (no processes, no root needed).

Shape (one namespace each, all names start with ``acl-<stack>-``):

* ``p-<code>``: a PoP. ``eth0`` to its upstream; service addresses on ``lo`` (the host uses ``anycast0``, a dummy
  link this kernel lacks). Runs the rendered BIRD, NSD, Caddy and the health agent.
* ``u-<code>``: the PoP's upstream router, GoBGP. Vultr PoPs: AS64515 owning 169.254.169.254 and 2001:19f0:ffff::1
  on ``lo`` (multihop 2, TCP-MD5). External PoPs: the configured neighbour ASN and addresses.
* ``bb``: the backbone, one bridge ``br0`` joining every upstream and every client.
* ``c-<name>``: a client in a country; its BIRD peers with every upstream over ``br0`` and sets local-pref from the
  great-circle distance to the PoP behind that upstream, so it reaches the nearest announcing PoP and fails over
  to the next-nearest when that PoP withdraws.

Option ``well_connected`` (off by default; ``anycast lab up --well-connected maa:EU``): the guide's step 8, "a PoP's
upstream is too well connected". Clients on the listed continents buy transit from that PoP's provider, so they see
its routes directly while every other upstream reaches them through one more AS (:data:`TRANSIT_ASN`, a regional
transit). Those clients then choose like BGP does between equal customers: the same local-pref for every upstream,
the shortest AS path first (so prepending and Vultr's "prepend n x" communities 20473:6001-6003 count), and only then
the nearest PoP (the distance as MED, compared across neighbours). Without the option nothing changes.

Option ``topology="multi-as"`` (``anycast lab up --topology multi-as``): transit ASes between the upstreams and
eyeball-AS clients, with Gao-Rexford policy (lab/plan/multias.py, docs/convergence.md).

Addresses: documentation and private space only. Vultr PoP links take /30s from 198.51.100.128/25 and /64s from
2001:db8:ff00::/48 (the PoP's "unicast" address is its end of the link); external PoPs use their configured
neighbour/unicast addresses; the backbone is 100.64.0.0/16 and fd00:ac1::/64.

Generations (``anycast lab rollout``, lab/scenarios/rollout.py): a replaced Vultr PoP boots beside the old one with a new unicast
address, as a replaced Vultr instance gets a new ``mainIp``. Even generations live in ``p-<code>`` on the link above
(upstream side ``pop``); odd ones in ``q-<code>``, on the same slot of 203.0.113.128/25 and 2001:db8:ff01::/48
(upstream side ``poq``). ``state.json`` records each PoP's generation; ``build_plan(..., generations=...)`` follows it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

from infra.model import VULTR_NEIGHBOR_V4, VULTR_NEIGHBOR_V6, VULTR_PEER_ASN, Network, Pop
from infra.model.regions import great_circle_km

PREFIX = "acl-"
VULTR_POOL_V4 = IPv4Network("198.51.100.128/25")
VULTR_POOL_V6 = IPv6Network("2001:db8:ff00::/48")
ODD_POOL_V4 = IPv4Network("203.0.113.128/25")  # links of odd generations (lab/scenarios/rollout.py), same slot as the even one
ODD_POOL_V6 = IPv6Network("2001:db8:ff01::/48")
BACKBONE_V4 = IPv4Network("100.64.0.0/16")
BACKBONE_V6 = IPv6Network("fd00:ac1::/64")
CLIENT_ASN_BASE = 65100
TRANSIT_ASN = 64496  # documentation ASN (RFC 5398): the transit between the other upstreams and a well-connected area
VULTR_PREPEND_COMMUNITIES = {"20473:6001": 1, "20473:6002": 2, "20473:6003": 3}  # "prepend n x to all" (Vultr)


@dataclass(frozen=True)
class ClientSite:
    name: str
    country: str
    continent: str
    city: str
    lat: float
    lon: float


# Where the lab's clients sit (the countries the issue asks for); continents as Route53 places the country.
CLIENT_SITES: tuple[ClientSite, ...] = (
    ClientSite("br", "BR", "SA", "São Paulo", -23.55, -46.63),
    ClientSite("za", "ZA", "AF", "Johannesburg", -26.20, 28.05),
    ClientSite("us", "US", "NA", "New York", 40.71, -74.01),
    ClientSite("uswest", "US", "NA", "Seattle", 47.61, -122.33),
    ClientSite("de", "DE", "EU", "Berlin", 52.52, 13.40),
    ClientSite("gb", "GB", "EU", "Manchester", 53.48, -2.24),
    ClientSite("in", "IN", "AS", "Mumbai", 19.08, 72.88),
    ClientSite("jp", "JP", "AS", "Osaka", 34.69, 135.50),
    ClientSite("sg", "SG", "AS", "Singapore", 1.35, 103.82),
    ClientSite("au", "AU", "OC", "Melbourne", -37.81, 144.96),
    ClientSite("hk", "HK", "AS", "Hong Kong", 22.30, 114.18),
)


@dataclass(frozen=True)
class Session:
    """One BGP session between a PoP and its upstream, as the upstream sees it."""

    version: int
    pop_address: IPv4Address | IPv6Address  # the PoP's source address (its end of the link)
    upstream_address: IPv4Address | IPv6Address  # the neighbour address in the PoP's bird.conf
    link_gateway: IPv4Address | IPv6Address  # the upstream's end of the link
    link: IPv4Network | IPv6Network  # the link subnet (originated by the upstream, so clients reach unicast PoPs)
    on_loopback: bool  # the upstream owns upstream_address on lo (multihop) instead of on the link
    multihop: int | None


@dataclass(frozen=True)
class PopPlan:
    code: str
    mode: str
    provider: str
    index: int
    namespace: str
    upstream_namespace: str
    upstream_asn: int
    password: bool
    lat: float
    lon: float
    sessions: tuple[Session, ...]
    backbone_v4: IPv4Address  # the upstream's backbone addresses
    backbone_v6: IPv6Address
    generation: int = 0  # how often `anycast lab rollout` replaced this PoP (see the module docstring)

    @property
    def uplink(self) -> str:
        """The upstream's side of this PoP's link."""
        return "pop" if self.generation % 2 == 0 else "poq"

    def session(self, version: int) -> Session | None:
        return next((s for s in self.sessions if s.version == version), None)

    @property
    def unicast_ipv4(self) -> str | None:
        s = self.session(4)
        return str(s.pop_address) if s else None

    @property
    def unicast_ipv6(self) -> str | None:
        s = self.session(6)
        return str(s.pop_address) if s else None


@dataclass(frozen=True)
class ClientPlan:
    site: ClientSite
    index: int
    namespace: str
    asn: int
    backbone_v4: IPv4Address
    backbone_v6: IPv6Address
    distances_km: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.site.name


@dataclass(frozen=True)
class WellConnected:
    """A PoP whose upstream is the direct transit of the clients on ``continents`` (the guide's step 8)."""

    pop: str
    continents: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.pop}:{','.join(self.continents)}"


def parse_well_connected(spec: str, network: Network) -> WellConnected:
    """``CODE:CONT[,CONT...]`` (``maa:EU``); ValueError naming the option and the fix."""
    code, sep, areas = spec.partition(":")
    continents = tuple(a.strip().upper() for a in areas.split(",") if a.strip())
    if not sep or not code or not continents:
        raise ValueError(f"--well-connected: '{spec}' must be CODE:CONTINENTS like maa:EU or sao:NA")
    try:
        pop = network.pop(code)
    except KeyError:
        raise ValueError(f"--well-connected: '{code}' is not a PoP of this network") from None
    if not pop.is_anycast:
        raise ValueError(f"--well-connected: {code} is a unicast PoP; only an announcing (anycast) PoP can pull traffic")
    bad = [c for c in continents if c not in {s.continent for s in CLIENT_SITES}]
    if bad:
        known = ", ".join(sorted({s.continent for s in CLIENT_SITES}))
        raise ValueError(f"--well-connected: {', '.join(bad)} is not a continent with lab clients ({known})")
    return WellConnected(code, continents)


@dataclass(frozen=True)
class LabPlan:
    stack: str
    network: Network
    pops: tuple[PopPlan, ...]
    clients: tuple[ClientPlan, ...]
    backbone_namespace: str
    well_connected: tuple[WellConnected, ...] = ()
    topology: str = "default"  # or "multi-as" (lab/plan/multias.py: transits between the upstreams and the clients)
    extra_namespaces: tuple[str, ...] = ()  # the multi-AS topology's transits

    def pop(self, code: str) -> PopPlan:
        for p in self.pops:
            if p.code == code:
                return p
        raise KeyError(code)

    def client(self, name: str) -> ClientPlan:
        for c in self.clients:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def namespaces(self) -> list[str]:
        out = [self.backbone_namespace]
        for p in self.pops:
            out += [p.upstream_namespace, p.namespace]
        out += [c.namespace for c in self.clients]
        return out + list(self.extra_namespaces)

    def nearest_anycast(self, client: ClientPlan, exclude: frozenset[str] = frozenset()) -> str | None:
        """The anycast PoP the backbone sends ``client`` to (distance only), skipping ``exclude``."""
        best = [(d, code) for code, d in client.distances_km.items()
                if code not in exclude and self.network.pop(code).is_anycast]
        return min(best)[1] if best else None

    def hot_pops(self, client: ClientPlan) -> frozenset[str]:
        """PoPs whose upstream is ``client``'s direct transit (option ``well_connected``)."""
        in_lab = {p.code for p in self.pops}
        return frozenset(w.pop for w in self.well_connected if client.site.continent in w.continents and w.pop in in_lab)

    def as_path_length(self, client: ClientPlan, code: str) -> int:
        """The AS path length ``client`` sees for ``code``'s route under the option: upstream, own ASN and its
        prepends (Vultr's prepend communities included), plus the transit unless the upstream is the client's own."""
        pop = self.network.pop(code)
        prepends = pop.announce.prepend
        if pop.is_vultr:
            prepends += max((VULTR_PREPEND_COMMUNITIES.get(c, 0) for c in pop.announce.communities), default=0)
        return 2 + prepends + (0 if code in self.hot_pops(client) else 1)

    def routed_pop(self, client: ClientPlan, exclude: frozenset[str] = frozenset()) -> str | None:
        """The anycast PoP the lab's BGP sends ``client`` to: the nearest one, or with a well-connected upstream
        the shortest AS path first and the nearest among those."""
        if not self.hot_pops(client):
            return self.nearest_anycast(client, exclude)
        best = [(self.as_path_length(client, code), d, code) for code, d in client.distances_km.items()
                if code not in exclude and self.network.pop(code).is_anycast]
        return min(best)[2] if best else None


def state_generations(state: Mapping[str, Any]) -> dict[str, int]:
    """Each PoP's generation as ``state.json`` records it (0 when never replaced)."""
    return {code: int(p.get("generation", 0)) for code, p in state.get("pops", {}).items()}


def pop_dir_name(code: str, generation: int) -> str:
    """A PoP's directory under ``.lab/<stack>/pops/``: generations alternate between two, like the namespaces."""
    return code if generation % 2 == 0 else f"{code}.odd"


def namespace_prefix(stack: str | None) -> str:
    return f"{PREFIX}{stack}-" if stack else PREFIX


def _smallest_common(a: IPv4Address | IPv6Address, b: IPv4Address | IPv6Address, longest: int) -> IPv4Network | IPv6Network:
    for plen in range(longest, -1, -1):
        net = ipaddress.ip_network(f"{a}/{plen}", strict=False)
        if b in net:
            return net
    raise ValueError(f"{a} and {b} share no network")


def _external_sessions(pop: Pop, pool4: list[IPv4Network], pool6: list[IPv6Network]) -> list[Session]:
    assert pop.neighbor is not None and pop.unicast is not None
    out: list[Session] = []
    for version, longest in ((4, 30), (6, 64)):
        neighbor = getattr(pop.neighbor, f"ipv{version}")
        own = getattr(pop.unicast, f"ipv{version}")
        if neighbor is None or own is None:
            continue
        if pop.neighbor.multihop:  # neighbour owns its address on lo; a lab link carries the session
            link: IPv4Network | IPv6Network = pool4.pop(0) if version == 4 else pool6.pop(0)
            gateway = ipaddress.ip_address(int(link.network_address) + 1) if version == 4 else \
                ipaddress.ip_address(f"{link.network_address}1")
            out.append(Session(version, own, neighbor, gateway, link, True, pop.neighbor.multihop))
        else:
            link = _smallest_common(own, neighbor, longest)
            out.append(Session(version, own, neighbor, neighbor, link, False, None))
    return out


def _odd(link: IPv4Network | IPv6Network) -> IPv4Network | IPv6Network:
    """The same slot of the odd-generation pool."""
    even, odd = (VULTR_POOL_V4, ODD_POOL_V4) if link.version == 4 else (VULTR_POOL_V6, ODD_POOL_V6)
    offset = int(link.network_address) - int(even.network_address)
    return ipaddress.ip_network(f"{ipaddress.ip_address(int(odd.network_address) + offset)}/{link.prefixlen}")


def build_plan(stack: str, network: Network, only: list[str] | None = None,
               well_connected: tuple[WellConnected, ...] = (), generations: dict[str, int] | None = None,
               topology: str = "default") -> LabPlan:
    """The whole lab for ``network``; ``only`` limits it to some PoP codes (unknown codes raise KeyError);
    ``well_connected`` turns on the step-8 routing for those PoPs' upstreams (see the module docstring);
    ``generations``: Vultr PoPs replaced by ``anycast lab rollout`` (odd: the other namespace and link pool);
    ``topology``: "multi-as" puts transit ASes between the upstreams and the clients (lab/plan/multias.py)."""
    pops = network.pops
    if only:
        for code in only:
            network.pop(code)
        pops = [p for p in pops if p.code in only]
    taken: list[IPv4Network | IPv6Network] = []
    for p in network.pops:
        if p.unicast is not None:
            for a in (p.unicast.ipv4, p.unicast.ipv6):
                if a is not None:
                    taken.append(ipaddress.ip_network(f"{a}/{30 if a.version == 4 else 64}", strict=False))
    pool4 = [n for n in VULTR_POOL_V4.subnets(new_prefix=30) if not any(n.overlaps(t) for t in taken if t.version == 4)]
    pool6 = [n for n in VULTR_POOL_V6.subnets(new_prefix=64) if not any(n.overlaps(t) for t in taken if t.version == 6)][:4096]
    ns = namespace_prefix(stack)
    plans: list[PopPlan] = []
    for i, pop in enumerate(pops):
        gen = (generations or {}).get(pop.code, 0) if pop.is_vultr else 0
        if pop.is_vultr:
            sessions: list[Session] = []
            if network.prefixes.ipv4 is not None:
                link4 = pool4.pop(0)
                link4 = link4 if gen % 2 == 0 else _odd(link4)  # type: ignore[assignment]
                gw4, own4 = list(link4.hosts())
                sessions.append(Session(4, own4, VULTR_NEIGHBOR_V4, gw4, link4, True, 2))
            link6 = pool6.pop(0)
            link6 = link6 if gen % 2 == 0 else _odd(link6)  # type: ignore[assignment]
            sessions.append(Session(6, link6.network_address + 2, VULTR_NEIGHBOR_V6, link6.network_address + 1, link6, True, 2))
            asn, password = VULTR_PEER_ASN, True
        else:
            assert pop.neighbor is not None
            sessions = _external_sessions(pop, pool4, pool6)
            asn, password = pop.neighbor.asn, False  # the renderer sets a password only towards Vultr
        assert pop.latitude is not None and pop.longitude is not None
        plans.append(PopPlan(
            code=pop.code, mode=pop.mode, provider=pop.provider or "vultr", index=i,
            namespace=f"{ns}{'p' if gen % 2 == 0 else 'q'}-{pop.code}", generation=gen,
            upstream_namespace=f"{ns}u-{pop.code}", upstream_asn=asn, password=password, lat=pop.latitude,
            lon=pop.longitude, sessions=tuple(sessions), backbone_v4=BACKBONE_V4.network_address + 256 + i + 1,
            backbone_v6=BACKBONE_V6.network_address + 0x10000 + i + 1))
    clients = []
    for j, site in enumerate(CLIENT_SITES):
        dist = {p.code: round(great_circle_km(site.lat, site.lon, p.lat, p.lon), 1) for p in plans}
        clients.append(ClientPlan(site=site, index=j, namespace=f"{ns}c-{site.name}", asn=CLIENT_ASN_BASE + j,
                                  backbone_v4=BACKBONE_V4.network_address + 512 + j + 1,
                                  backbone_v6=BACKBONE_V6.network_address + 0x20000 + j + 1, distances_km=dist))
    plan = LabPlan(stack=stack, network=network, pops=tuple(plans), clients=tuple(clients), backbone_namespace=f"{ns}bb",
                   well_connected=tuple(well_connected))
    if topology != "default":
        from lab.plan.multias import overlay  # imports this module
        if well_connected:
            raise ValueError("--well-connected: only in the default topology (the multi-AS one has its own transits)")
        plan = overlay(plan)
    return plan


def local_pref(distance_km: float) -> int:
    """Closer is better: 100000 minus the distance in tens of km (the Earth is < 20040 km around half-way)."""
    return max(1, 100000 - int(distance_km // 10))
