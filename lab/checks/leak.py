"""The route-leak test: an upstream sends 1,000 foreign routes to its PoP; nobody may re-export any of them.

A "leaking customer" (a throw-away BIRD with 1,000 static /24s from 172.16.0.0/12, AS64999) peers with the chosen
upstream's GoBGP over the upstream's loopback; GoBGP passes the routes on to the PoP like any Internet routes.
(``gobgp mrt inject`` would be shorter, but GoBGP 3.10's CLI closes the stream early and drops a random tail.)
The routes carry the lab marker 65535:666 so the lab's clients drop them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from lab.net import bgp
from lab.net.netns import LabError, nsrun, run
from lab.net.processes import start, stop
from lab.plan.configs import LEAK_COMMUNITY
from lab.plan.topology import LabPlan, PopPlan

LEAK_SPACE: dict[int, IPv4Network | IPv6Network] = {4: IPv4Network("172.16.0.0/12"), 6: IPv6Network("fdff::/16")}
LEAK_PREFIXLEN = {4: 24, 6: 48}
LEAKER_ASN = 64999
# The session between the upstream's GoBGP and the leaking customer runs over the upstream's loopback.
UPSTREAM_LO = {4: "10.255.255.1", 6: "fd00:ac1:ffff::1"}
LEAKER_LO = {4: "10.255.255.2", 6: "fd00:ac1:ffff::2"}


def leak_prefixes(count: int = 1000, version: int = 4) -> list[IPv4Network | IPv6Network]:
    """``count`` distinct prefixes from private space: /24s of 172.16.0.0/12 or /48s of fdff::/16."""
    out: list[IPv4Network | IPv6Network] = []
    for net in LEAK_SPACE[version].subnets(new_prefix=LEAK_PREFIXLEN[version]):
        if len(out) >= count:
            break
        out.append(net)
    return out


def leaker_conf(prefixes: list[IPv4Network | IPv6Network], upstream_asn: int, run_dir: Path, version: int = 4) -> str:
    routes = "\n".join(f"  route {n} blackhole;" for n in prefixes)
    return (f'log "{run_dir}/leaker.log" all;\nrouter id {LEAKER_LO[4]};\nprotocol device {{}}\n'
            f"protocol static leaked {{\n  ipv{version};\n{routes}\n}}\n"
            f"protocol bgp leak {{\n  local {LEAKER_LO[version]} port 1179 as {LEAKER_ASN};\n"
            f"  neighbor {UPSTREAM_LO[version]} port 179 as {upstream_asn};\n  multihop 2;\n  connect delay time 0;\n"
            f"  ipv{version} {{ import none; export filter {{ bgp_community.add(({LEAK_COMMUNITY[0]}, {LEAK_COMMUNITY[1]})); "
            f"accept; }}; }};\n}}\n")


@dataclass
class Leaker:
    """Start/stop the leaking customer behind ``pop``'s upstream."""

    plan: LabPlan
    pop: PopPlan
    run_dir: Path
    count: int = 1000
    version: int = 4
    pid: int | None = None

    def _lo(self) -> list[str]:
        plen = 32 if self.version == 4 else 128
        return [f"{UPSTREAM_LO[self.version]}/{plen}", f"{LEAKER_LO[self.version]}/{plen}"]

    def start(self, timeout: float = 15) -> list[IPv4Network | IPv6Network]:
        ns = self.pop.upstream_namespace
        v = self.version
        prefixes = leak_prefixes(self.count, v)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        conf = leaker_conf(prefixes, self.pop.upstream_asn, self.run_dir, v)
        (self.run_dir / "leaker.conf").write_text(conf, encoding="utf-8")
        for addr in self._lo():
            run(["ip", "-n", ns, "addr", "replace", addr, "dev", "lo"] + (["nodad"] if v == 6 else []))
        nsrun(ns, ["gobgp", "neighbor", "add", LEAKER_LO[v], "as", str(LEAKER_ASN)])
        self.pid = start(ns, ["bird", "-f", "-c", str(self.run_dir / "leaker.conf"), "-s", str(self.run_dir / "leaker.ctl"),
                              "-P", str(self.run_dir / "leaker.pid")], self.run_dir / "leaker.out")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            n = bgp.neighbors(ns).get(LEAKER_LO[v])
            if n and n.established and len(bgp.adj_in(ns, LEAKER_LO[v], v)) >= self.count:
                return prefixes
            time.sleep(0.2)
        raise LabError(f"{ns}: the leaking customer did not deliver {self.count} routes in {timeout:.0f} s")

    def stop(self) -> None:
        ns = self.pop.upstream_namespace
        if self.pid is not None:
            stop(self.pid)
            self.pid = None
        nsrun(ns, ["gobgp", "neighbor", "del", LEAKER_LO[self.version]], check=False)
        for addr in self._lo():
            run(["ip", "-n", ns, "addr", "del", addr, "dev", "lo"], check=False)
