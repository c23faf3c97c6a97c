"""``anycast lab check`` in the multi-AS topology (lab/plan/multias.py): every transit and eyeball session
Established, every eyeball routed to the anycast prefix, and (unless --skip-failover) a PoP crash measured: every
client served again within :data:`SERVED_AGAIN_LIMIT_S` and the transits saw the withdrawal (updates > 0)."""

from __future__ import annotations

from lab.boot.multias import bgp_down, unrouted
from lab.checks import Check, Context, register_group
from lab.scenarios.convergence import pick_targets, run_scenario

SERVED_AGAIN_LIMIT_S = 15.0  # loose: without MRAI the lab converges in about a second; a busy machine is slower
MULTI = ("multi-as",)


def static_rows(ctx: Context) -> list[Check]:
    down, waiting = bgp_down(ctx.plan, ctx.base), unrouted(ctx.plan, ctx.base)
    return [Check("multi-as", "transit and eyeball sessions Established", not down,
                  f"down: {', '.join(down)}" if down else "every session up"),
            Check("multi-as", "every eyeball has a route to the anycast prefix", not waiting and bool(ctx.plan.clients),
                  f"unrouted: {', '.join(waiting)}" if waiting else f"{len(ctx.plan.clients)} eyeballs routed")]


def crash_rows(ctx: Context) -> list[Check]:
    code, _ = pick_targets(ctx.plan, ctx.state, None, None)
    r = run_scenario(ctx.plan, ctx.state, "crash", [code], ctx.say)
    ctx.measurements["convergence_crash"] = {"pop": code, "served_again_s": r.served_again_s, "http": list(r.http),
                                             "dns": list(r.dns), "updates": r.updates}
    served = r.served_again_s is not None and r.served_again_s <= SERVED_AGAIN_LIMIT_S and r.ok
    return [Check("multi-as", f"{code} crashed: every client served again within {SERVED_AGAIN_LIMIT_S:.0f} s", served,
                  f"{r.served_again_s} s; lost {r.http[0]}/{r.http[1]} HTTP, {r.dns[0]}/{r.dns[1]} DNS {r.detail}".strip()),
            Check("multi-as", f"{code} crashed: the transits saw the withdrawal", r.total_updates > 0,
                  f"updates received: {r.updates}"),
            Check("multi-as", f"{code} restarted: every client back on its PoP", r.restored_s is not None,
                  f"after {r.restored_s} s")]


@register_group(12, "multi-as", topologies=MULTI)
def _static(ctx: Context) -> None:
    ctx.say("multi-AS topology: transit and eyeball sessions, routes")
    ctx.guarded("multi-as", "multi-AS sessions and routes", lambda: static_rows(ctx))


@register_group(84, "multi-as convergence", applies=lambda ctx: ctx.options.failover, topologies=MULTI)
def _crash(ctx: Context) -> None:
    ctx.say("multi-AS topology: a PoP crash, measured (~20 s)")
    ctx.guarded("multi-as", "PoP crash convergence", lambda: crash_rows(ctx))
