"""bgp.ipv6NeighborRoute: auto, as the lab runs it (docs/lab.md, "Router advertisements").

The PoP has no static IPv6 default route: its upstream sends router advertisements (BIRD's radv), so the default
router is the upstream's link-local address, and the multihop IPv6 neighbour (Vultr's 2001:19f0:ffff::1, on the
upstream's loopback) is reachable only through it. At boot ``anycast-neighbor-route`` (the file the user data
installs) routed the neighbour as a /128 via that gateway before BIRD started. One row per PoP: the kernel route is
a /128 via a link-local gateway, BIRD's ``neighbor6`` table holds it, and the IPv6 session is Established.
"""

from __future__ import annotations

from lab.checks import Check, Context, register_group
from lab.net import bgp
from userdata.render import neighbor_route6


def _applies(ctx: Context) -> bool:
    return ctx.network.bgp.ipv6_neighbor_route == "auto"


def check_neighbor_routes(ctx: Context) -> list[Check]:
    rows = []
    for p in ctx.plan.pops:
        neighbor = neighbor_route6(ctx.network, ctx.network.pop(p.code))
        if neighbor is None:
            continue
        pst = ctx.state["pops"][p.code]
        kernel = ctx.driver.pop(p.code).exec(["ip", "-6", "route", "show", f"{neighbor}/128"]).stdout.split()
        via = kernel[kernel.index("via") + 1] if "via" in kernel else ""
        default = ctx.driver.pop(p.code).exec(["ip", "-6", "route", "show", "default"]).stdout.split()
        table = bgp.birdc(pst["bird_socket"], "show route table neighbor6")
        session = bgp.bird_protocols(pst["bird_socket"]).get("upstream6", ("missing", ""))
        ok = (via.startswith("fe80:") and "ra" in default and f"{neighbor}/128" in table
              and session[1].lower().startswith("established"))
        rows.append(Check("neighbor6", f"{p.code}: {neighbor}/128 via the router-advertised link-local gateway", ok,
                          f"kernel: {' '.join(kernel) or 'no /128'}; default: {' '.join(default[:6]) or 'none'}; "
                          f"BIRD neighbor6: {'has it' if f'{neighbor}/128' in table else 'missing'}; "
                          f"upstream6 {session[0]} {session[1]}".strip()))
    return rows


@register_group(15, "neighbor6", applies=_applies)
def _neighbor6(ctx: Context) -> None:
    ctx.say("IPv6 neighbour routes (bgp.ipv6NeighborRoute: auto)")
    ctx.guarded("neighbor6", "IPv6 neighbour routes", lambda: check_neighbor_routes(ctx))
