"""The route/route6 objects a network wants, and how a stored object compares with them.

The project owns five things in an object it created: the key (prefix + origin), ``descr``, ``mnt-by``, ``source`` and
one ``remarks`` line that marks it as managed (naming the stack, so two stacks sharing a maintainer never touch each
other's objects). Anything else a person adds by hand (``notify``, more ``remarks``, ``mnt-routes``) is kept on update.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network

from infra.model import Network
from infra.ripe.errors import BadInput
from infra.ripe.rpsl import RpslObject, make

MANAGED_PREFIX = "Managed by the anycast project"
OWNED = frozenset({"route", "route6", "origin", "descr", "mnt-by", "source"})


def managed_remark(stack: str) -> str:
    return f"{MANAGED_PREFIX} (stack {stack}); changes by hand are overwritten"


def managing_stack(obj: RpslObject) -> str | None:
    """The stack named in the managed remark, or None if this project did not create ``obj``."""
    for remark in obj.values("remarks"):
        if remark.startswith(MANAGED_PREFIX + " (stack ") and ")" in remark:
            return remark[len(MANAGED_PREFIX + " (stack "):].split(")", 1)[0]
    return None


@dataclass(frozen=True)
class RouteSpec:
    """One wanted route(6) object."""

    prefix: IPv4Network | IPv6Network
    origin: int
    maintainer: str
    descr: str
    stack: str

    @property
    def type(self) -> str:
        return "route" if self.prefix.version == 4 else "route6"

    @property
    def key(self) -> str:
        return f"{self.prefix}AS{self.origin}"

    def to_object(self, source: str) -> RpslObject:
        return make([(self.type, str(self.prefix)), ("descr", self.descr), ("origin", f"AS{self.origin}"),
                     ("remarks", managed_remark(self.stack)), ("mnt-by", self.maintainer), ("source", source)])

    def merged(self, actual: RpslObject, source: str) -> RpslObject:
        """``actual`` with the owned attributes set as wanted and everything added by hand kept, for a full PUT."""
        mine = managed_remark(self.stack)
        kept = [(a.name, a.value) for a in actual.attributes
                if a.name not in OWNED and not (a.name == "remarks" and a.value.startswith(MANAGED_PREFIX))]
        return make([(self.type, str(self.prefix)), ("descr", self.descr), ("origin", f"AS{self.origin}"),
                     ("remarks", mine), *kept, ("mnt-by", self.maintainer), ("source", source)])

    def differences(self, actual: RpslObject, source: str) -> list[str]:
        """What an update would change, in words; [] when ``actual`` is as wanted."""
        out = []
        if actual.values("descr") != [self.descr]:
            out.append(f"descr {actual.values('descr')} -> ['{self.descr}']")
        if actual.values("mnt-by") != [self.maintainer]:
            out.append(f"mnt-by {actual.values('mnt-by')} -> ['{self.maintainer}']")
        if managed_remark(self.stack) not in actual.values("remarks"):
            out.append("managed remark updated")
        if (actual.first("source") or "").upper() != source.upper():
            out.append(f"source {actual.first('source')} -> {source}")
        return out


def route_specs(network: Network, stack: str, maintainer: str | None = None) -> list[RouteSpec]:
    """One route per announced prefix, IPv4 first.

    The origin is ``network.roa_origin_asn``: the AS the Internet sees originating the prefix. With a Vultr-assigned
    private ASN, Vultr strips it and originates the prefix as AS20473, so a route object naming the private ASN would
    describe a route nobody sees.
    """
    mnt = maintainer or network.ripe.maintainer
    if not mnt:
        raise BadInput("ripe.maintainer is not set in the stack: it is the mnt-by of the route objects "
                       "(e.g. EXAMPLE-MNT); see docs/ripe.md")
    return [RouteSpec(ip_network(p), network.roa_origin_asn, mnt, network.ripe.descr, stack)
            for p in network.announced_prefixes]
