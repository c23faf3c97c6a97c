"""``anycast lab check`` in the multi-AS topology (lab/plan/multias.py): every transit and eyeball session
Established, every eyeball routed to the anycast prefix, and (unless --skip-failover) a PoP crash measured: every
client served again within :data:`SERVED_AGAIN_LIMIT_S` and the transits saw the withdrawal (updates > 0); then the
same PoP drained by plain withdrawal and by the agent's drain (RFC 8326 graceful shutdown first): the graceful drain
loses no DNS query and no more HTTP requests than the plain one (loose on purpose: how much a plain withdrawal loses
depends on the machine's load)."""

from __future__ import annotations

from lab.boot.multias import bgp_down, unrouted
from lab.checks import Check, Context, register_group
from lab.scenarios.convergence import ConvergenceResult, pick_targets, run_scenario

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


def drain_rows(ctx: Context) -> list[Check]:
    code, _ = pick_targets(ctx.plan, ctx.state, None, None)
    plain = run_scenario(ctx.plan, ctx.state, "drain-plain", [code], ctx.say)
    graceful = run_scenario(ctx.plan, ctx.state, "drain", [code], ctx.say)
    for key, r in (("convergence_drain_plain", plain), ("convergence_drain", graceful)):
        ctx.measurements[key] = {"pop": code, "served_again_s": r.served_again_s, "http": list(r.http),
                                 "dns": list(r.dns), "updates": r.updates, "drain_s": r.drain_s, "gshut_s": r.gshut_s,
                                 "moved_s": r.moved_s}

    def said(r: ConvergenceResult) -> str:
        return (f"lost {r.http[0]}/{r.http[1]} HTTP, {r.dns[0]}/{r.dns[1]} DNS; safe to stop after {r.drain_s} s "
                f"{r.detail}").strip()
    return [Check("multi-as", f"{code} drained by plain withdrawal (--no-graceful): every client served again",
                  plain.ok, said(plain)),
            Check("multi-as", f"{code} drained with graceful shutdown: every client served again, the 65535:0 phase ran",
                  graceful.ok and graceful.gshut_s is not None, said(graceful) + f"; graceful phase {graceful.gshut_s} s"),
            Check("multi-as", f"{code} drained with graceful shutdown: no DNS query lost", graceful.dns[0] == 0,
                  f"{graceful.dns[0]}/{graceful.dns[1]} lost (plain withdrawal: {plain.dns[0]}/{plain.dns[1]})"),
            Check("multi-as", f"{code} drained with graceful shutdown: no more HTTP requests lost than by plain withdrawal",
                  graceful.http[0] <= plain.http[0],
                  f"graceful {graceful.http[0]}/{graceful.http[1]}, plain {plain.http[0]}/{plain.http[1]}")]


@register_group(12, "multi-as", topologies=MULTI)
def _static(ctx: Context) -> None:
    ctx.say("multi-AS topology: transit and eyeball sessions, routes")
    ctx.guarded("multi-as", "multi-AS sessions and routes", lambda: static_rows(ctx))


@register_group(84, "multi-as convergence", applies=lambda ctx: ctx.options.failover, topologies=MULTI)
def _crash(ctx: Context) -> None:
    ctx.say("multi-AS topology: a PoP crash, measured (~20 s)")
    ctx.guarded("multi-as", "PoP crash convergence", lambda: crash_rows(ctx))


@register_group(86, "multi-as drain", applies=lambda ctx: ctx.options.failover, topologies=MULTI)
def _drain(ctx: Context) -> None:
    ctx.say("multi-AS topology: the same drain by plain withdrawal and with graceful shutdown, measured (~40 s)")
    ctx.guarded("multi-as", "drain with and without graceful shutdown", lambda: drain_rows(ctx))
