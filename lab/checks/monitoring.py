"""The monitoring rows of ``anycast lab check``: the generated blackbox-exporter targets probed by the real exporter,
and Prometheus with the generated config and alert rules scraping every PoP (it keeps running for the failover rows,
which time its alert, and is stopped when the check ends)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from infra.contracts import BLACKBOX_EXPORTER_PORT
from lab.checks import Check, Context, register_group
from lab.monitor import prometheus
from lab.monitor.blackbox import PREFERRED_CLIENT, ProbeResult, check_monitoring, write_lab_targets
from lab.plan.topology import LabPlan
from lab.state import LabState


def _summary(results: list[ProbeResult]) -> str:
    bad = [r for r in results if not r.ok]
    slowest = max((r.seconds for r in results), default=0.0)
    text = f"{len(results) - len(bad)}/{len(results)} as expected (slowest {slowest:.2f} s)"
    for r in bad[:4]:
        text += f"; {r.probe.name} {r.probe.target}: probe_success {r.success}" + (f" ({r.error})" if r.error else "")
    return text


def monitoring_checks(plan: LabPlan, state: LabState, measurements: dict[str, Any]) -> list[Check]:
    """Stack outputs from the lab's addresses -> `anycast monitoring targets` -> the real blackbox exporter, from one
    client namespace: every generated target succeeds, the anycast one from the nearest PoP, a wrong X-PoP fails."""
    names = [c.name for c in plan.clients]
    client = plan.client(PREFERRED_CLIENT if PREFERRED_CLIENT in names else names[0])
    nearest = plan.nearest_anycast(client)
    path, out_dir, outputs = write_lab_targets(plan.stack, plan.network, state)
    results, timing = check_monitoring(client.namespace, Path(state["dir"]), outputs, nearest)
    measurements["monitoring"] = timing
    where = f"blackbox exporter in {client.namespace} (127.0.0.1:{BLACKBOX_EXPORTER_PORT})"
    return monitoring_rows(plan, client.name, nearest, results, timing,
                           f"{path} -> {out_dir.name}/; {where}")


def monitoring_rows(plan: LabPlan, client_name: str, nearest: str | None, results: list[ProbeResult],
                    timing: dict[str, Any], where: str) -> list[Check]:
    """The monitoring rows from the probe results (pure: tests feed it fabricated results)."""
    generated = [r for r in results if r.probe.why.startswith("generated")]
    http = [r for r in generated if r.probe.kind == "http"]
    dns = [r for r in generated if r.probe.kind == "dns"]
    # The targets infra/monitoring/targets.py must generate for this lab: HTTP on every PoP's unicast address, DNS on the
    # unicast PoPs' (anycast PoPs serve DNS on the service address only), and both on the anycast service.
    anycast = {"anycast"} if any(p.mode == "anycast" for p in plan.pops) else set()
    want = {"HTTP": {p.code for p in plan.pops} | anycast, "DNS": {p.code for p in plan.pops if p.mode == "unicast"} | anycast}
    lacking = [f"{kind} {pop}" for kind, rows in (("HTTP", http), ("DNS", dns))
               for pop in sorted(want[kind] - {r.probe.why.removeprefix("generated target, pop ") for r in rows})]
    out = [Check("monitoring", f"outputs from the lab's addresses -> {len(http)} HTTP + {len(dns)} DNS targets",
                 not lacking, f"{where} up in {timing.get('exporter_start_s')} s, {timing.get('probes')} probes in "
                              f"{timing.get('total_s')} s" + (f"; no target for: {', '.join(lacking)}" if lacking else "")),
           Check("monitoring", f"every HTTP target: probe_success 1 with the expected X-PoP ({len(http)})",
                 bool(http) and all(r.ok for r in http), _summary(http)),
           Check("monitoring", f"every DNS target: probe_success 1, zone SOA and id.server ({len(dns)})",
                 bool(dns) and all(r.ok for r in dns), _summary(dns))]
    sharp = [r for r in results if r.probe.expect_success and not r.probe.why.startswith("generated")]
    if sharp or nearest is not None:
        out.append(Check("monitoring", f"anycast HTTP from {client_name} answered by its nearest PoP ({nearest})",
                         bool(sharp) and all(r.ok for r in sharp), _summary(sharp)))
    negative = [r for r in results if not r.probe.expect_success]
    if negative:
        r = negative[0]
        out.append(Check("monitoring", f"negative: {r.probe.name} fails (probe_success 0)", r.ok,
                         f"{r.probe.target}: probe_success {r.success}" + (f" ({r.error})" if r.error else "")
                         + f"; {r.probe.why}"))
    else:
        out.append(Check("monitoring", "negative: a wrong X-PoP fails", False, "fewer than two PoPs with unicast targets"))
    return out


def prometheus_checks(plan: LabPlan, state: LabState, measurements: dict[str, Any],
                      outputs: dict[str, Any]) -> tuple[list[Check], prometheus.Stack]:
    """Start Prometheus with the generated config (lab addresses, 1 s intervals) and the exporters; every target
    must be up, every rule loaded, and nothing may fire on the healthy lab."""
    from infra.monitoring.targets import exporter_file_sd, file_sd

    names = [c.name for c in plan.clients]
    client = plan.client(PREFERRED_CLIENT if PREFERRED_CLIENT in names else names[0])
    mon = prometheus.start_stack(plan, state, outputs, client)
    expected = prometheus.expected_target_count(file_sd(outputs) | exporter_file_sd(outputs))
    got, waited = prometheus.wait_targets_up(mon.ns, expected)
    per_job = prometheus.summarize_targets(got)
    down = [t for t in got if t.health != "up"]
    jobs = ", ".join(f"{job} {up}/{total}" for job, (up, total) in per_job.items())
    detail = (f"{mon.ns}: started in {mon.startup_s:.1f} s, all up {waited:.1f} s later; {jobs}"
              + "".join(f"; DOWN {t.job} {t.pop} {t.url}: {t.error}" for t in down[:4]))
    ok = expected > 0 and len(got) == expected and not down  # zero targets is no PASS
    checks = [Check("prometheus", f"Prometheus scrapes every target up: bird_exporter on every PoP, health agents, "
                                  f"probes, blackbox exporter ({len(got)}/{expected})", ok, detail)]
    time.sleep(3)  # a few evaluation rounds (1 s) on the scraped data
    groups = prometheus.api(mon.ns, "rules")["groups"]
    rules = [r["name"] for g in groups for r in g["rules"]]
    fired = prometheus.all_firing(mon.ns)
    text = ", ".join(f"{a['labels'].get('alertname')}{{pop={a['labels'].get('pop', '-')}}}" for a in fired[:6])
    checks.append(Check("prometheus", f"{len(rules)} alert rules loaded, none firing on the healthy lab",
                        len(rules) > 0 and not fired, f"rules: {', '.join(rules)}" + (f"; FIRING: {text}" if fired else "")))
    checks.append(dashboard_check(mon.ns, outputs))
    measurements["prometheus"] = {"startup_s": round(mon.startup_s, 2), "targets_up_s": round(waited, 2),
                                  "targets": len(got), "rules": len(rules)}
    return checks, mon


def dashboard_check(ns: str, outputs: dict[str, Any]) -> Check:
    """Every query of the generated Grafana dashboard returns data from the lab's Prometheus; the map query carries
    every PoP with its coordinates."""
    from infra.monitoring.dashboard import dashboard

    board = dashboard(outputs)
    empty: list[str] = []
    n = 0
    map_pops: set[str] = set()
    for panel in board["panels"]:
        for target in panel["targets"]:
            n += 1
            result = prometheus.api(ns, "query", {"query": target["expr"]})["result"]
            if not result:
                empty.append(f"{panel['title']} [{target['refId']}]")
            if panel["type"] == "geomap":
                map_pops |= {r["metric"]["pop"] for r in result if "latitude" in r["metric"] and "longitude" in r["metric"]}
    missing = sorted(set(outputs["pops"]) - map_pops)
    ok = not empty and not missing
    detail = (f"{len(board['panels'])} panels, {n} queries, {n - len(empty)} with data; map: {len(map_pops)} PoPs at "
              "their coordinates" + (f"; EMPTY: {', '.join(empty)}" if empty else "")
              + (f"; not on the map: {', '.join(missing)}" if missing else ""))
    return Check("prometheus", "every Grafana dashboard query returns data; every PoP on the map", ok, detail)




@register_group(70, "monitoring", applies=lambda ctx: ctx.options.monitoring)
def _monitoring(ctx: Context) -> None:
    ctx.say("monitoring: stack outputs -> blackbox-exporter targets, probed by the exporter from a client")
    ctx.guarded("monitoring", "blackbox exporter", lambda: monitoring_checks(ctx.plan, ctx.state, ctx.measurements))

    def prom() -> list[Check]:
        _, _, outputs = write_lab_targets(ctx.plan.stack, ctx.plan.network, ctx.state)
        rows, stack_ = prometheus_checks(ctx.plan, ctx.state, ctx.measurements, outputs)
        ctx.monitor = stack_
        ctx.cleanups.append(_stopper(ctx))
        return rows

    ctx.say("monitoring: Prometheus with the generated config and alerts, scraping every PoP's exporters")
    ctx.guarded("prometheus", "Prometheus", prom)
    ctx.save()


def _stopper(ctx: Context) -> Any:
    def stop() -> None:  # like the blackbox probes: the check leaves no monitoring process behind
        prometheus.stop_stack(ctx.state)
        ctx.save()
    return stop
