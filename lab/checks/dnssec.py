"""``anycast lab check`` rows for a signed lab (group ``dnssec``, lab/plan/signing.py): validated answers (the AD bit)
from every client's Unbound over IPv4 and IPv6, and a zone tampered at one PoP turning into SERVFAIL at the resolvers
in that PoP's catchment (and only there), then restored."""

from __future__ import annotations

import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from infra import safe_write
from lab.boot.resolvers import versions
from lab.checks import Check, Context, register_group
from lab.net.netns import LabError, nsrun
from lab.plan.geodns import expected_pop
from lab.plan.signing import stub_address
from lab.plan.topology import ClientPlan, LabPlan
from userdata.render import zone_file_name

TAMPERED = {"A": "192.0.2.66", "AAAA": "2001:db8::66"}  # documentation addresses no stack serves
NX_LABEL = "no-such-name"
RELOAD_TIMEOUT = 10.0


@dataclass(frozen=True)
class Answer:
    status: str  # NOERROR, SERVFAIL, NXDOMAIN, or the error
    ad: bool
    values: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.status}{' AD' if self.ad else ''}{' ' + ','.join(self.values) if self.values else ''}"


_STATUS_RE = re.compile(r"status: ([A-Z]+)")
_FLAGS_RE = re.compile(r"^;; flags: ([a-z ]+);", re.M)


def parse_dig(out: str, rtype: str) -> Answer:
    """``dig +dnssec`` output -> status, AD flag and the ``rtype`` values of the answer section (TXT unquoted)."""
    status = _STATUS_RE.search(out)
    flags = _FLAGS_RE.search(out)
    values: list[str] = []
    in_answer = False
    for line in out.splitlines():
        if line.startswith(";; ANSWER SECTION"):
            in_answer = True
            continue
        if in_answer:
            if not line.strip() or line.startswith(";"):
                break
            parts = line.split(None, 4)
            if len(parts) == 5 and parts[3] == rtype:
                values.append(parts[4].strip('"'))
    if status is None:
        return Answer((out.strip().splitlines() or ["no output"])[-1][:120], False, ())
    return Answer(status.group(1), bool(flags and "ad" in flags.group(1).split()), tuple(values))


def ask(client: ClientPlan, version: int, qname: str, rtype: str) -> Answer:
    """Ask the client's own validating resolver (its loopback, IPv``version``) with the DO bit."""
    server = "127.0.0.1" if version == 4 else "::1"
    try:
        out = nsrun(client.namespace, ["dig", "+dnssec", "+time=3", "+tries=1", f"@{server}", qname, rtype],
                    check=False, timeout=15)
    except LabError as exc:
        return Answer(str(exc)[:120], False, ())
    return parse_dig(out, rtype)


def served(client: ClientPlan, server: str, qname: str, rtype: str) -> Answer:
    """What the PoP's NSD at ``server`` serves (no recursion, no validation)."""
    out = nsrun(client.namespace, ["dig", "+norec", "+time=1", "+tries=2", f"@{server}", qname, rtype],
                check=False, timeout=10)
    return parse_dig(out, rtype)


def flush(ctx: Context, client: ClientPlan) -> None:
    """Forget the zone, bogus data and the servers' state in the client's resolvers, so the next answer is fresh."""
    cdir = ctx.base / "clients" / client.name
    for v in versions(ctx.plan):
        conf = str(cdir / f"unbound{v}.conf")
        for cmd in (["flush_zone", ctx.network.dns.zone], ["flush_bogus"], ["flush_infra", "all"],
                    ["flush_requestlist"]):
            nsrun(client.namespace, ["unbound-control", "-c", conf, *cmd], timeout=10)


def validation_rows(ctx: Context, version: int) -> list[Check]:
    """Every client: the PoP's ``pop`` TXT (which PoP answered), ``www`` and a signed NXDOMAIN, all with AD."""
    zone = ctx.network.dns.zone
    rtype = "A" if version == 4 else "AAAA"
    parts, bad = [], []
    for c in ctx.plan.clients:
        want = expected_pop(ctx.plan, c)
        pop, www, nx = ask(c, version, f"pop.{zone}", "TXT"), ask(c, version, f"www.{zone}", rtype), \
            ask(c, version, f"{NX_LABEL}.{zone}", "A")
        ok = (pop.status == "NOERROR" and pop.ad and pop.values == (want,) and www.status == "NOERROR" and www.ad
              and bool(www.values) and nx.status == "NXDOMAIN" and nx.ad)
        text = f"{c.name}->{pop.values[0] if pop.values else '?'}"
        parts.append(text + ("" if ok else f" (want {want}: pop {pop}; www {www}; nx {nx})"))
        if not ok:
            bad.append(c.name)
    return [Check("dnssec", f"validated answers (AD) from every client's Unbound over IPv{version} "
                  f"({len(ctx.plan.clients)})", bool(parts) and not bad,
                  f"pop TXT, www {rtype}, signed NXDOMAIN via IPv{version} stubs: " + ", ".join(parts))]


def pick_tamper_pop(plan: LabPlan) -> tuple[str, list[ClientPlan], list[ClientPlan]] | None:
    """An anycast PoP with clients in its catchment and clients elsewhere: (code, its clients, the others)."""
    for p in plan.pops:
        if p.mode != "anycast":
            continue
        mine = [c for c in plan.clients if expected_pop(plan, c) == p.code]
        others = [c for c in plan.clients if c not in mine]
        if mine and others:
            return p.code, mine, others
    return None


def tamper(text: str) -> str:
    """The zone file with ``www``'s addresses replaced by TAMPERED (its RRSIGs left as they were): what a hijacked
    or corrupted PoP would serve."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[0] == "www" and parts[2] == "IN" and parts[3] in TAMPERED:
            line = " ".join([*parts[:4], TAMPERED[parts[3]]])
        out.append(line)
    changed = "\n".join(out) + "\n"
    if changed == text or changed.rstrip("\n") == text.rstrip("\n"):
        raise LabError("the zone file has no www A/AAAA line to tamper with")
    return changed


def _serve(ctx: Context, code: str, zone_file: Path, text: str, probe: ClientPlan, want: tuple[str, str]) -> float:
    """Write the PoP's zone file, make its NSD reload (SIGHUP), and wait until it serves ``want`` (rtype, value)."""
    t0 = time.monotonic()
    safe_write.write_file(zone_file, text, 0o644)
    ctx.driver.pop(code).kill("nsd", signal.SIGHUP)
    server = stub_address(ctx.plan, probe, 4 if want[0] == "A" else 6)  # ``probe`` is in ``code``'s catchment
    while time.monotonic() - t0 < RELOAD_TIMEOUT:
        if want[1] in served(probe, server, f"www.{ctx.network.dns.zone}", want[0]).values:
            return time.monotonic() - t0
        time.sleep(0.1)
    raise LabError(f"{code}: NSD did not serve {want[0]} {want[1]} within {RELOAD_TIMEOUT:.0f} s of the reload")


def tamper_rows(ctx: Context) -> list[Check]:
    picked = pick_tamper_pop(ctx.plan)
    if picked is None:
        return [Check("dnssec", "tampered zone at one PoP -> SERVFAIL in its catchment", False,
                      "no anycast PoP has clients both in and outside its catchment")]
    code, mine, _others = picked
    zone = ctx.network.dns.zone
    zone_file = Path(ctx.state["pops"][code]["dir"]) / "zones" / zone_file_name(ctx.network)
    original = zone_file.read_text(encoding="utf-8")
    rtype = "A" if 4 in versions(ctx.plan) else "AAAA"
    real = served(mine[0], stub_address(ctx.plan, mine[0], 4 if rtype == "A" else 6), f"www.{zone}", rtype).values
    rows = []
    try:
        took = _serve(ctx, code, zone_file, tamper(original), mine[0], (rtype, TAMPERED[rtype]))
        for c in ctx.plan.clients:
            flush(ctx, c)
        seen = {(c.name, v): ask(c, v, f"www.{zone}", rtype) for c in ctx.plan.clients for v in versions(ctx.plan)}
        pop_txt = {(c.name, v): ask(c, v, f"pop.{zone}", "TXT") for c in mine for v in versions(ctx.plan)}
        fail = [k for k in seen if k[0] in {c.name for c in mine}]
        good = [k for k in seen if k not in fail]
        ok = (all(seen[k].status == "SERVFAIL" for k in fail) and all(seen[k].status == "NOERROR" and seen[k].ad for k in good)
              and all(a.status == "NOERROR" and a.ad for a in pop_txt.values()))
        rows.append(Check(
            "dnssec", f"www {rtype} tampered at {code} -> SERVFAIL at the resolvers in its catchment, AD elsewhere",
            ok and bool(fail) and bool(good),
            f"{code} served {TAMPERED[rtype]} (was {','.join(real)}) {took:.2f} s after the SIGHUP; "
            + ", ".join(f"{n}/v{v} {seen[(n, v)]}" for n, v in seen)
            + "; its other RRsets still validate: " + ", ".join(f"{n}/v{v} pop {a}" for (n, v), a in pop_txt.items())))
    finally:
        took = _serve(ctx, code, zone_file, original, mine[0], (rtype, real[0] if real else ""))
        for c in mine:
            flush(ctx, c)
    back = {(c.name, v): ask(c, v, f"www.{zone}", rtype) for c in mine for v in versions(ctx.plan)}
    rows.append(Check("dnssec", f"{code}'s zone restored -> AD again at its resolvers", all(
        a.status == "NOERROR" and a.ad and set(a.values) == set(real) for a in back.values()) and bool(real),
        f"reloaded in {took:.2f} s; " + ", ".join(f"{n}/v{v} {a}" for (n, v), a in back.items())))
    return rows


@register_group(45, "dnssec", applies=lambda ctx: ctx.network.dns.dnssec is not None)
def dnssec_group(ctx: Context) -> None:
    ctx.say("DNSSEC: validating Unbound in every client (AD over IPv4 and IPv6), a tampered zone at one PoP")
    for v in versions(ctx.plan):
        ctx.guarded("dnssec", f"validated answers over IPv{v}", lambda v=v: validation_rows(ctx, v))  # type: ignore[misc]
    if ctx.driver.systemd:
        ctx.say("dnssec: the tamper row runs in the process-mode lab only")
        return
    ctx.guarded("dnssec", "tampered zone at one PoP", lambda: tamper_rows(ctx))
    ctx.say("dnssec: a CSK rollover by double signature through a signed parent, every client asking throughout")
    ctx.guarded("dnssec", "rollover", lambda: rollover_rows(ctx))


def rollover_rows(ctx: Context) -> list[Check]:
    from lab.scenarios.dnssec_rollover import rollover

    try:
        report = rollover(ctx.plan, ctx.state)
    finally:
        ctx.save()  # the client resolvers were restarted: their new pids
    ctx.measurements["dnssec_rollover"] = report
    seen = report["seen"]
    total = sum(sum(c.values()) for c in seen.values())
    lost = {k: {o: n for o, n in c.items() if o != "AD"} for k, c in seen.items() if set(c) - {"AD"}}
    quiet = [k for k, c in seen.items() if c.get("AD", 0) < 10]
    ok = bool(seen) and not lost and not quiet
    detail = (f"{total} answers at {len(seen)} resolvers over {report['run_s']} s, "
              + ("all AD" if not lost else f"not AD: {lost}")
              + (f"; fewer than 10 answers at {', '.join(quiet)}" if quiet else "")
              + "; steps at " + ", ".join(f"{label} {t} s" for label, t in report["steps"])
              + f"; DS {report['old_ds'].split()[0]} -> {report['new_ds'].split()[0]}; setup {report['setup_s']} s")
    rows = [Check("dnssec", "CSK rollover (double signature, DS via a signed parent) loses no validation on any client",
                  ok, detail)]
    try:
        control = rollover(ctx.plan, ctx.state, control=True)
    finally:
        ctx.save()
    failed = {k: sum(n for o, n in c.items() if o != "AD") for k, c in control["seen"].items()}
    broken = sorted(k for k, n in failed.items() if n)
    rows.append(Check("dnssec", "control: the new key alone while the parent holds the old DS -> validation lost",
                      len(broken) == len(failed) > 0,
                      f"{sum(failed.values())} of {sum(sum(c.values()) for c in control['seen'].values())} answers not "
                      f"AD, at {len(broken)}/{len(failed)} resolvers (the rollover row above can fail)"))
    return rows
