"""The failover rows of ``anycast lab check``: Caddy killed at the victim PoP (with the Prometheus alert timed when
the monitoring group runs Prometheus), the health agent's faults, the systemd watchdog, and a frozen PoP. The
scenarios themselves are lab/scenarios/faults.py; these groups pick the victim and turn the results into rows."""

from __future__ import annotations

from dataclasses import asdict

from lab.checks import Check, Context, register_group
from lab.monitor import prometheus
from lab.scenarios.faults import fault_rows, freeze_pop, kill_caddy, watchdog_row


def _secs(x: float | None) -> str:
    return "never" if x is None else f"{x:.2f} s"


@register_group(80, "failover", applies=lambda ctx: ctx.options.failover)
def _kill_caddy(ctx: Context) -> None:
    if ctx.victim is None:
        ctx.checks.append(Check("failover", "failover", False, "no client has two anycast PoPs to choose from"))
        return
    client, pop, nxt = ctx.victim
    runs = ctx.options.failover_runs
    for i in range(runs):
        ctx.say(f"failover {i + 1}/{runs}: kill Caddy at {pop}; {client.name} should move to {nxt}")
        name = f"Caddy killed at {pop}: withdrawn, {client.name} served by {nxt}"

        def kill(name: str = name) -> list[Check]:
            if ctx.monitor is None:
                res = kill_caddy(ctx.plan, ctx.state, client, pop, nxt)
                ctx.measurements.setdefault("kill_caddy", []).append(asdict(res))
                return [Check("failover", name, res.ok, res.detail)]
            events: dict[str, float] = {}
            watch = prometheus.AlertWatch(ctx.monitor.ns, "AnycastPopWithdrawn", pop).start()
            try:
                res = kill_caddy(ctx.plan, ctx.state, client, pop, nxt, on_event=events.__setitem__, down_s=3.0)
                watch.wait_cleared(15)
            finally:
                watch.stop()
            fire = None if watch.fired_at is None or "killed" not in events else watch.fired_at - events["killed"]
            clear = (None if watch.cleared_at is None or "restarted" not in events
                     else watch.cleared_at - events["restarted"])
            alert_ok = fire is not None and clear is not None and fire > 0 and clear > 0
            ctx.measurements.setdefault("kill_caddy", []).append(asdict(res) | {"alert_fire_s": fire,
                                                                                  "alert_clear_s": clear})
            alert = (f"; Prometheus: AnycastPopWithdrawn{{pop={pop}}} firing {_secs(fire)} after the kill, "
                     f"cleared {_secs(clear)} after Caddy restarted")
            return [Check("failover", name + ", alert fired and cleared", res.ok and alert_ok, res.detail + alert)]

        ctx.guarded("failover", name, kill)
        ctx.save()


# The health rows include this fault (agent frozen, Caddy killed); without them, a PoP run by its own systemd still
# shows its watchdog.
@register_group(82, "watchdog", applies=lambda ctx: (ctx.options.failover and not ctx.options.health and ctx.driver.systemd
                                               and ctx.victim is not None))
def _watchdog(ctx: Context) -> None:
    assert ctx.victim is not None
    client, pop, nxt = ctx.victim
    ctx.say(f"watchdog: freeze the health agent at {pop} and kill Caddy; systemd must withdraw the PoP")
    ctx.guarded("failover", "watchdog", lambda: [Check(*watchdog_row(ctx.plan, ctx.state, client, pop, nxt))])
    ctx.save()


@register_group(85, "health", applies=lambda ctx: ctx.options.failover and ctx.options.health and ctx.victim is not None)
def _health(ctx: Context) -> None:
    assert ctx.victim is not None
    client, pop, nxt = ctx.victim

    def health_rows() -> list[Check]:
        return [Check(*r) for r in fault_rows(ctx.plan, ctx.state, client, pop, nxt, ctx.measurements, ctx.say)]

    ctx.guarded("health", "health agent faults", health_rows)
    ctx.save()


@register_group(90, "freeze", applies=lambda ctx: ctx.options.failover and ctx.options.freeze and ctx.victim is not None)
def _freeze(ctx: Context) -> None:
    assert ctx.victim is not None
    client, pop, nxt = ctx.victim
    ctx.say(f"freeze {pop} (SIGSTOP): waits for the hold timer, then SIGCONT and re-establishment")
    name = f"{pop} frozen: withdrawn by hold timer ({ctx.network.bgp.hold_time} s), back after SIGCONT"

    def frozen() -> list[Check]:
        res = freeze_pop(ctx.plan, ctx.state, client, pop, nxt)
        ctx.measurements["freeze"] = asdict(res)
        return [Check("failover", name, res.ok, res.detail)]

    ctx.guarded("failover", name, frozen)
