"""``anycast lab up|check|down|exec``: the command-line face of the lab (only this module prints and exits)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from infra.model.stack import load_network
from lab import api
from lab.api import LabError


def register(subparsers: Any) -> None:
    lab = subparsers.add_parser("lab", help="boot the network in local network namespaces and check it (root)",
                                description=__doc__.splitlines()[0] if __doc__ else None)
    sub = lab.add_subparsers(dest="lab_command", required=True, metavar="ACTION")

    p = sub.add_parser("up", help="boot every PoP, upstream and client; print progress; write the state file")
    p.add_argument("--stack", required=True, help="stack name (Pulumi.<stack>.yaml), e.g. dev or prod")
    p.add_argument("--pops", default="", help="comma-separated PoP codes to boot (default: all)")
    p.add_argument("--timeout", type=float, default=60, help="seconds to wait for convergence (default %(default)s)")
    p.add_argument("--well-connected", action="append", default=[], metavar="CODE:CONTINENTS",
                   help="the guide's step 8: this PoP's upstream is the direct transit of the clients on these "
                        "continents (maa:EU), so AS-path length decides for them (docs/catchment.md); off by default")
    p.add_argument("--topology", choices=("default", "multi-as"), default="default",
                   help="multi-as: transit ASes with Gao-Rexford policy between the upstreams and eyeball-AS clients "
                        "(docs/convergence.md); default: every client peers with every upstream")
    p.add_argument("--machines", action="store_true",
                   help="boot every PoP as a Debian 12 container from its rendered user data (systemd-nspawn, "
                        "cloud-init; image and package mirror cached under /var/cache/anycast-lab)")
    p.add_argument("--dnssec", action="store_true",
                   help="sign the zone with the lab's DNSSEC key (ANYCAST_LAB_DNSSEC_KEY, else the test key) even if "
                        "the stack does not sign; a validating Unbound runs in every client (docs/dnssec.md)")
    p.add_argument("--build-only", action="store_true",
                   help="only write every config under .lab/<stack>/ (render-only mode; no namespaces, no root)")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("check", help="assert sessions, routes, leaks, DNS/HTTP per client; measure failover")
    p.add_argument("--stack", default=None, help="stack name (default: the one lab that is running)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--skip-failover", action="store_true", help="only the static checks (no kill/freeze)")
    p.add_argument("--skip-freeze", action="store_true", help="skip the frozen-PoP measurement (~60 s)")
    p.add_argument("--skip-monitoring", action="store_true", help="skip the blackbox-exporter probes")
    p.add_argument("--skip-health", action="store_true",
                   help="skip the health-agent faults (NSD killed, agent frozen, BIRD restart, drain; ~60 s)")
    p.add_argument("--machines", action="store_true",
                   help="insist on machine mode: refuse unless the lab was booted with `lab up --machines` (its rows: "
                        "cloud-init, systemd, journals, exposure, Lynis, port scan, run whenever it was)")
    p.set_defaults(func=cmd_check)

    for action, text in (("drain", "withdraw a PoP (anycast-health --drain on it) and wait until it is safe to stop"),
                         ("undrain", "end a drain (anycast-health --undrain); the PoP announces again when healthy")):
        p = sub.add_parser(action, help=text)
        p.add_argument("--stack", default=None, help="stack name (default: the one lab that is running)")
        p.add_argument("pop", help="PoP code, e.g. ams")
        p.set_defaults(func=cmd_drain, action=action)

    p = sub.add_parser("rollout", help="re-render the stack and replace every changed PoP wave by wave, each gated on "
                                       "serving (as pulumi up does); clients probe the anycast address all along")
    p.add_argument("--stack", required=True, help="the running lab's stack; its current Pulumi.<stack>.yaml is rendered")
    p.add_argument("--gate-timeout", type=float, default=None,
                   help="seconds a new PoP may take to serve (default: the stack's rollout.gateTimeout)")
    p.add_argument("--fault", choices=("nsd-config",), default=None,
                   help="stand-in for a broken template change: nsd-config makes NSD refuse its config on every PoP")
    p.add_argument("--keep-failed", action="store_true", help="leave the new PoPs of a failed wave running to look at")
    p.add_argument("--restart-in-place", action="store_true",
                   help="no new PoPs: restart every Vultr PoP in its namespace wave by wave, as a plan resize reboots "
                        "it, each gate re-armed (the next wave waits until the restarted PoPs are ready)")
    p.add_argument("--down-seconds", type=float, default=None,
                   help="with --restart-in-place: how long each PoP stays down between shutdown and boot (default 3)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_rollout)

    p = sub.add_parser("convergence", help="multi-AS topology: crash, drain (graceful shutdown first), plain-withdrawal "
                                           "drain and region withdrawal, each measured (time until every client is "
                                           "served again, loss, updates at the transits)")
    p.add_argument("--stack", default=None, help="stack name (default: the one lab that is running)")
    p.add_argument("--scenario", default="crash,drain,drain-plain,region",
                   help="comma-separated, of crash, drain, drain-plain, region (default: %(default)s)")
    p.add_argument("--pop", default=None, help="the PoP to crash and drain (default: the first anycast PoP)")
    p.add_argument("--region", default=None, help="continent to withdraw from (EU, NA, ...; default: the PoP's)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_convergence)

    p = sub.add_parser("down", help="remove every namespace, link and process of the lab (idempotent)")
    p.add_argument("--stack", default=None, help="only this stack's lab (default: every acl-* namespace)")
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("exec", help="run a command in a lab namespace: anycast lab exec NAME -- CMD ...")
    p.add_argument("--stack", default=None, help="stack whose namespace NAME is (default: the only one running)")
    p.add_argument("name", help="client name (de), PoP code (ams), u-<code> for an upstream, or a full namespace")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="the command (after --)")
    p.set_defaults(func=cmd_exec)


def _err(text: str) -> int:
    print(f"error: {text}", file=sys.stderr)
    return 1


def cmd_up(args: argparse.Namespace) -> int:
    network = load_network(args.stack)
    if args.dnssec:
        network = api.signed(network)
    only = [c.strip() for c in args.pops.split(",") if c.strip()] or None
    try:
        well = tuple(api.parse_well_connected(spec, network) for spec in args.well_connected)
    except ValueError as exc:
        return _err(f"lab up: {exc}")
    if args.build_only:
        try:
            n, where = api.build_only(args.stack, network, only, well, args.topology)
        except KeyError as exc:
            return _err(f"lab up: unknown PoP {exc}")
        except ValueError as exc:
            return _err(f"lab up: {exc}")
        print(f"wrote {n} configs under {where} (nothing booted)")
        return 0
    try:
        state = api.up(args.stack, network, only=only, well_connected=well, timeout=args.timeout, machines=args.machines,
                       topology=args.topology)
    except ValueError as exc:
        return _err(f"lab up: {exc}")
    except (LabError, KeyError) as exc:
        return _err(f"lab up: {exc} (clean up with: anycast lab down --stack {args.stack})")
    print(f"lab {args.stack} is up in {state['boot_seconds']} s: {len(state['pops'])} PoPs, {len(state['clients'])} clients")
    print(f"state: {state['dir']}/state.json")
    return 0


def _pick_stack(args: argparse.Namespace, what: str) -> str | None:
    """``--stack``, or the one running lab; None (after saying why) if that is ambiguous."""
    if args.stack is None:
        stacks = api.running_stacks()
        if len(stacks) != 1:
            _err(f"{what}: pass --stack (running labs: {', '.join(stacks) or 'none'})")
            return None
        args.stack = stacks[0]
    return str(args.stack)


def cmd_check(args: argparse.Namespace) -> int:
    if _pick_stack(args, "lab check") is None:
        return 1
    try:
        report = api.check(args.stack, failover=not args.skip_failover, freeze=not args.skip_freeze,
                            progress=not args.json, monitoring=not args.skip_monitoring,
                            health=not args.skip_health, machines=args.machines)
    except LabError as exc:
        return _err(f"lab check: {exc}")
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True, allow_nan=False))
    else:
        print(api.format_report(report))
    return 0 if report["ok"] else 1


def cmd_drain(args: argparse.Namespace) -> int:
    """`anycast lab drain|undrain POP`: the agent's own --drain/--undrain, run on the PoP (inside its namespace; in
    machine mode the installed /usr/local/sbin/anycast-health inside the container)."""
    if _pick_stack(args, f"lab {args.action}") is None:
        return 1
    try:
        rc, out = api.drain(args.stack, args.pop, args.action)
    except LabError as exc:
        return _err(f"lab {args.action}: {exc}")
    print(out)
    return rc


def cmd_convergence(args: argparse.Namespace) -> int:
    if _pick_stack(args, "lab convergence") is None:
        return 1
    scenarios = tuple(x.strip() for x in args.scenario.split(",") if x.strip())
    known = ("crash", "drain", "drain-plain", "region")
    bad = [x for x in scenarios if x not in known]
    if bad or not scenarios:
        return _err(f"lab convergence: --scenario: {', '.join(bad) or 'empty'} is not one of {', '.join(known)}")
    try:
        report = api.convergence(args.stack, scenarios=scenarios, pop=args.pop, region=args.region,
                                 say=lambda s: print(s, file=sys.stderr, flush=True))
    except LabError as exc:
        return _err(f"lab convergence: {exc}")
    print(json.dumps(report, indent=2, sort_keys=True, allow_nan=False) if args.json else api.format_convergence(report))
    return 0 if report["ok"] else 1


def cmd_down(args: argparse.Namespace) -> int:
    n = api.down(args.stack, say=lambda s: print(s, file=sys.stderr))
    print(f"lab down: {n} namespaces removed")
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    try:
        report = api.restart_in_place(args.stack, load_network(args.stack), gate_timeout=args.gate_timeout,
                                      down_s=args.down_seconds, say=lambda s: print(s, file=sys.stderr, flush=True))
    except LabError as exc:
        return _err(f"lab rollout: {exc}")
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True, allow_nan=False))
        return 0 if report["ok"] else 1
    load = report.get("load", {"http": [0, 0], "dns": [0, 0]})
    print(f"lab rollout {args.stack} --restart-in-place: "
          f"{'OK' if report['ok'] else 'STOPPED at wave ' + str(report.get('stopped_at_wave'))}; "
          f"{report['passed_waves']}/{len(report['waves'])} waves in {report.get('seconds', 0)} s; "
          f"lost {load['http'][0]}/{load['http'][1]} HTTP, {load['dns'][0]}/{load['dns'][1]} DNS")
    for w in report["wave_times"]:
        print(f"  wave {w['wave']}: started at {w['started_s']} s, every PoP ready again at {w['ready_s']} s")
    for r in report["restarted"]:
        withdrawn = "" if r["withdrawn_for_s"] is None else f", withdrawn at its upstream for {r['withdrawn_for_s']} s"
        print(f"  {r['pop']} ({r['mode']}): gate passed {r['gate_s'] and round(r['gate_s'], 1)} s after the restart "
              f"request{withdrawn}" + (f"; {r['error']}" if r["error"] else ""))
    return 0 if report["ok"] else 1


def cmd_rollout(args: argparse.Namespace) -> int:
    if args.restart_in_place:
        if args.fault or args.keep_failed:
            return _err("lab rollout: --restart-in-place changes nothing to fail; drop --fault/--keep-failed")
        return cmd_restart(args)
    try:
        report = api.rollout(args.stack, load_network(args.stack), gate_timeout=args.gate_timeout, fault=args.fault,
                         keep_failed=args.keep_failed, say=lambda s: print(s, file=sys.stderr, flush=True))
    except LabError as exc:
        return _err(f"lab rollout: {exc}")
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True, allow_nan=False))
    else:
        load = report.get("load", {"http": [0, 0], "dns": [0, 0]})
        verdict = "replaced " + ", ".join(r["pop"] for r in report["replaced"]) if report["replaced"] else "nothing replaced"
        print(f"lab rollout {args.stack}: {'OK' if report['ok'] else 'STOPPED at wave ' + str(report.get('stopped_at_wave'))}"
              f"; {verdict}; {report['passed_waves']}/{len(report['waves'])} waves in {report.get('seconds', 0)} s; "
              f"lost {load['http'][0]}/{load['http'][1]} HTTP, {load['dns'][0]}/{load['dns'][1]} DNS")
        for code, why in report["failed"].items():
            print(f"  {code}: {why}")
    return 0 if report["ok"] else 1


def cmd_exec(args: argparse.Namespace) -> int:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        return _err("lab exec: no command given (anycast lab exec NAME -- CMD ...)")
    try:
        ns = api.resolve_namespace(args.name, args.stack)
    except LabError as exc:
        return _err(str(exc))
    os.execvp("ip", ["ip", "netns", "exec", ns, *cmd])
    return 127  # not reached
