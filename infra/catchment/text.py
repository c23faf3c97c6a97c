"""The catchment report as text for people: summary, worst probes, countries and continents (worst first),
and what was skipped and why."""

from __future__ import annotations

from infra.catchment.analysis import AreaRow, Report


def _share(a: AreaRow) -> str:
    return ", ".join(f"{pop} {share:.0%}" for pop, share in list(a.pop_share.items())[:3]) or "-"


def _num(v: float | None, unit: str = "") -> str:
    return "-" if v is None else f"{v:.0f}{unit}"


def format_report(report: Report, limit: int = 15) -> str:
    s = report.summary()
    lines = [f"catchment ({report.source}): {s['results']} results; {s['ok']} ok, {s['misrouted']} mis-routed "
             f"(> {report.tolerance_km:.0f} km farther than the nearest announcing PoP), {s['no_answer']} no answer, "
             f"{s['unknown_pop']} unknown PoP, {s['no_location']} without coordinates", ""]
    header = f"{'probe':<18} {'af':>2} {'country':<7} {'answered':<8} {'expected':<8} {'geodns':<6} {'rtt ms':>7} {'extra km':>8}  status"
    lines += ["probes (mis-routed first, then by extra distance):", header]
    order = sorted(report.probes, key=lambda p: (p.status != "misrouted", p.status != "ok", -(p.extra_km or 0), p.id))
    for p in order[:limit]:
        name = p.label or p.id
        lines.append(f"{name[:18]:<18} {p.af or '-':>2} {p.country or '??':<7} {p.pop or '-':<8} {p.expected_pop or '-':<8} "
                     f"{p.geodns_pop or '-':<6} {_num(p.rtt_ms) if p.rtt_ms is None or p.rtt_ms >= 1 else f'{p.rtt_ms:.2f}':>7} "
                     f"{_num(p.extra_km):>8}  {p.status}")
    if len(order) > limit:
        lines.append(f"... {len(order) - limit} more in catchment.json")
    for title, rows in (("countries", report.countries), ("continents", report.continents)):
        lines += ["", f"{title} (worst first):",
                  f"{'area':<5} {'probes':>6} {'mis-routed':>10} {'median extra km':>15} {'median rtt ms':>13}  served by"]
        for a in rows[:limit]:
            lines.append(f"{a.area:<5} {a.probes:>6} {f'{a.misrouted}/{a.judged}':>10} {_num(a.median_extra_km):>15} "
                         f"{_num(a.median_rtt_ms):>13}  {_share(a)} (expected {a.expected or '-'})")
    pulling = [(c, p) for c, p in report.pops.items() if p["misrouted_in"]]
    if pulling:
        lines += ["", "PoPs pulling traffic from far away:"]
        for code, info in sorted(pulling, key=lambda cp: -cp[1]["misrouted_in"]):
            lines.append(f"  {code}: {info['misrouted_in']} of {info['served']} served from "
                         f"{', '.join(info['pulled_countries'])} "
                         f"(median {_num(info['median_extra_km'])} km farther than their nearest PoP)")
    if report.skipped:
        lines += ["", f"skipped or not judged ({len(report.skipped)}):"]
        reasons: dict[str, list[str]] = {}
        for sk in report.skipped:
            reasons.setdefault(sk["reason"], []).append(sk["id"])
        for reason, ids in sorted(reasons.items(), key=lambda r: -len(r[1])):
            shown = ", ".join(ids[:6]) + (f" and {len(ids) - 6} more" if len(ids) > 6 else "")
            lines.append(f"  {len(ids)} x {reason} (probe {shown})")
    return "\n".join(lines) + "\n"
