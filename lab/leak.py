"""The route-leak test: an upstream sends 1,000 foreign routes to its PoP; nobody may re-export any of them.

A "leaking customer" (a throw-away BIRD with 1,000 static /24s from 172.16.0.0/12, AS64999) peers with the chosen
upstream's GoBGP over the upstream's loopback; GoBGP passes the routes on to the PoP like any Internet routes.
(``gobgp mrt inject`` would be shorter, but GoBGP 3.10's CLI closes the stream early and drops a random tail.)
The routes carry the lab marker 65535:666 so the lab's clients drop them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path

from lab import bgp
from lab.configs import LEAK_COMMUNITY
from lab.netns import LabError, nsrun, run
from lab.processes import start, stop
from lab.topology import LabPlan, PopPlan

LEAK_SPACE = IPv4Network("172.16.0.0/12")
LEAKER_ASN = 64999
UPSTREAM_LO = "10.255.255.1"
LEAKER_LO = "10.255.255.2"


def leak_prefixes(count: int = 1000) -> list[IPv4Network]:
    """``count`` distinct /24s from 172.16.0.0/12 (private space)."""
    it = LEAK_SPACE.subnets(new_prefix=24)
    return [next(it) for _ in range(count)]


def leaker_conf(prefixes: list[IPv4Network], upstream_asn: int, run_dir: Path) -> str:
    routes = "\n".join(f"  route {n} blackhole;" for n in prefixes)
    return (f'log "{run_dir}/leaker.log" all;\nrouter id {LEAKER_LO};\nprotocol device {{}}\n'
            f"protocol static leaked {{\n  ipv4;\n{routes}\n}}\n"
            f"protocol bgp leak {{\n  local {LEAKER_LO} port 1179 as {LEAKER_ASN};\n"
            f"  neighbor {UPSTREAM_LO} port 179 as {upstream_asn};\n  multihop 2;\n  connect delay time 0;\n"
            f"  ipv4 {{ import none; export filter {{ bgp_community.add(({LEAK_COMMUNITY[0]}, {LEAK_COMMUNITY[1]})); "
            f"accept; }}; }};\n}}\n")


@dataclass
class Leaker:
    """Start/stop the leaking customer behind ``pop``'s upstream."""

    plan: LabPlan
    pop: PopPlan
    run_dir: Path
    count: int = 1000
    pid: int | None = None

    def start(self, timeout: float = 15) -> list[IPv4Network]:
        ns = self.pop.upstream_namespace
        prefixes = leak_prefixes(self.count)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "leaker.conf").write_text(leaker_conf(prefixes, self.pop.upstream_asn, self.run_dir), encoding="utf-8")
        run(["ip", "-n", ns, "addr", "replace", f"{UPSTREAM_LO}/32", "dev", "lo"])
        run(["ip", "-n", ns, "addr", "replace", f"{LEAKER_LO}/32", "dev", "lo"])
        nsrun(ns, ["gobgp", "neighbor", "add", LEAKER_LO, "as", str(LEAKER_ASN)])
        self.pid = start(ns, ["bird", "-f", "-c", str(self.run_dir / "leaker.conf"), "-s", str(self.run_dir / "leaker.ctl"),
                              "-P", str(self.run_dir / "leaker.pid")], self.run_dir / "leaker.out")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            n = bgp.neighbors(ns).get(LEAKER_LO)
            if n and n.established and len(bgp.adj_in(ns, LEAKER_LO, 4)) >= self.count:
                return prefixes
            time.sleep(0.2)
        raise LabError(f"{ns}: the leaking customer did not deliver {self.count} routes in {timeout:.0f} s")

    def stop(self) -> None:
        ns = self.pop.upstream_namespace
        if self.pid is not None:
            stop(self.pid)
            self.pid = None
        nsrun(ns, ["gobgp", "neighbor", "del", LEAKER_LO], check=False)
        for addr in (UPSTREAM_LO, LEAKER_LO):
            run(["ip", "-n", ns, "addr", "del", f"{addr}/32", "dev", "lo"], check=False)
