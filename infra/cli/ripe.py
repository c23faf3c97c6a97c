"""``anycast ripe plan|apply`` and ``anycast ripe roa plan|apply``: route objects and ROAs from the stack's model.

Exit codes: 0 done or nothing to do; 1 RIPE refused or could not be reached (the message says which and why);
2 bad input (missing or malformed API key, ripe.maintainer unset, bad --base-url or --timeout). Only this module
prints: retries of a slow or failing server show as ``retry: ...`` lines on stderr while they happen.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from infra.model import ConfigError
from infra.model.stack import load_network
from infra.ripe import routes
from infra.ripe.client import HOSTS, RipeDbClient
from infra.ripe.credentials import ripe_api_key, rpki_api_key
from infra.ripe.desired import route_specs
from infra.ripe.errors import BadInput, RipeError
from infra.ripe.rpki import RpkiClient, plan_roas, wanted_roas
from infra.ripe.transport import RetryPolicy

EXIT_OK, EXIT_REFUSED, EXIT_BAD_INPUT = 0, 1, 2


@dataclass
class Runtime:
    """Retry policy and sleep used by the commands; tests swap in short timeouts and a sleep that records."""

    policy: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] | None = None


RUNTIME = Runtime()
MAX_TIMEOUT = 3600.0


def _timeout(text: str) -> float:
    """``--timeout SECONDS``: a positive number of seconds, at most an hour."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text[:40]}' is not a number of seconds") from None
    if not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(f"{text[:40]} is not between 0 and {MAX_TIMEOUT:.0f} seconds")
    return value


def _policy(args: argparse.Namespace) -> RetryPolicy:
    return replace(RUNTIME.policy, budget=args.timeout) if args.timeout is not None else RUNTIME.policy


def _retry_line(line: str) -> None:
    print(f"retry: {line}", file=sys.stderr, flush=True)


def register(subparsers: Any) -> None:
    ripe = subparsers.add_parser(
        "ripe", help="RIPE Database route objects and RPKI ROAs for the stack's prefixes",
        description="Route/route6 objects and ROAs for the stack's prefixes (docs/ripe.md). Exit codes: 0 done or "
                    "nothing to do; 1 RIPE refused or could not be reached; 2 bad input (API key, maintainer, options).")
    sub = ripe.add_subparsers(dest="ripe_command", required=True, metavar="ACTION")
    for name, handler, text in (("plan", cmd_plan, "show what apply would create, update or leave alone"),
                                ("apply", cmd_apply, "create/update the route and route6 objects (only needed writes)")):
        p = sub.add_parser(name, help=text, description=text)
        _common(p)
        p.add_argument("--database", choices=sorted(HOSTS), help="RIPE (production) or TEST; default: ripe.database")
        if name == "plan":
            p.add_argument("--dry-run", action="store_true",
                           help="also ask RIPE to check each write (?dry-run); needs RIPE_API_KEY")
        p.set_defaults(func=handler)
    roa = sub.add_parser("roa", help="RPKI ROAs for the announced prefixes (RIPE NCC RPKI API)")
    roa_sub = roa.add_subparsers(dest="roa_command", required=True, metavar="ACTION")
    for name, handler, text in (("plan", cmd_roa_plan, "show missing and too-permissive ROAs"),
                                ("apply", cmd_roa_apply, "publish the missing ROAs (never deletes others)")):
        p = roa_sub.add_parser(name, help=text, description=text)
        _common(p)
        p.set_defaults(func=handler)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
    p.add_argument("--base-url", help="replace scheme and host only (a mirror, a test server); the path stays")
    p.add_argument("--prune", action="store_true", help="delete objects/ROAs this stack manages but no longer wants")
    p.add_argument("--timeout", type=_timeout, metavar="SECONDS",
                   help=f"the most one RIPE request may take, retries and waits included (default "
                        f"{RetryPolicy().budget:g}); one attempt waits at most {RetryPolicy().read_timeout:g} s for an answer")


def _guard(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """RIPE errors become one message and an exit code, never a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except BadInput as exc:
            _err(str(exc))
            return EXIT_BAD_INPUT
        except RipeError as exc:
            _err(str(exc))
            return EXIT_REFUSED
        except ConfigError:
            raise  # infra.cli.main prints it with exit code 2

    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


def _err(text: str) -> None:
    for line in text.splitlines():
        print(f"error: {line}" if line and not line.startswith(("  ", "hint:")) else line, file=sys.stderr)


def _route_setup(args: argparse.Namespace, need_key: bool) -> tuple[RipeDbClient, list[routes.Change]]:
    network = load_network(args.stack)
    specs = route_specs(network, args.stack)
    maintainer = specs[0].maintainer if specs else (network.ripe.maintainer or "")
    database = args.database or network.ripe.database
    key = ripe_api_key() if need_key else None
    client = RipeDbClient(database, key, args.base_url, _policy(args), RUNTIME.sleep, maintainer, on_retry=_retry_line)
    print(f"RIPE database {database} ({args.base_url or HOSTS[database]}), stack {args.stack}, maintainer {maintainer}")
    if not network.ripe.manage:
        print(f"note: ripe.manage is false in Pulumi.{args.stack}.yaml, so `pulumi up` does not manage these objects")
    changes = routes.plan(client, specs, args.stack, maintainer, prune=args.prune)
    for change in changes:
        print(change.line())
    counts = Counter(c.action for c in changes)
    print("plan: " + ", ".join(f"{counts[a]} {label}" for a, label in (
        (routes.Action.CREATE, "to create"), (routes.Action.UPDATE, "to update"), (routes.Action.DELETE, "to delete"),
        (routes.Action.OK, "unchanged"), (routes.Action.FOREIGN, "left alone"), (routes.Action.STALE, "stale"))))
    return client, changes


@_guard
def cmd_plan(args: argparse.Namespace) -> int:
    """Print the plan; with --dry-run also RIPE's verdict on each write."""
    client, changes = _route_setup(args, need_key=args.dry_run)
    if args.dry_run and any(c.action in routes.WRITES for c in changes):
        refusals = routes.dry_run(client, changes)
        if refusals:
            _err("\n".join(str(r) for r in refusals))
            return EXIT_REFUSED
        print("RIPE dry run: every write above would be accepted")
    return EXIT_OK


@_guard
def cmd_apply(args: argparse.Namespace) -> int:
    """Make only the writes in the plan (after a RIPE dry run of all of them)."""
    client, changes = _route_setup(args, need_key=True)
    written = routes.apply(client, changes, report=print)
    print(f"apply: {written} write(s)" if written else "apply: nothing to do (0 writes)")
    return EXIT_OK


def _roa_setup(args: argparse.Namespace) -> tuple[RpkiClient, Any]:
    network = load_network(args.stack)
    client = RpkiClient(rpki_api_key(), args.base_url, _policy(args), RUNTIME.sleep, on_retry=_retry_line)
    wanted = wanted_roas(network)
    if not wanted:
        raise BadInput(f"stack {args.stack} announces no prefix")
    plan = plan_roas(wanted, client.roas(), prune=args.prune)
    print(f"RPKI ROAs for stack {args.stack} (origin AS{network.roa_origin_asn})")
    for line in plan.lines():
        print(line)
    return client, plan


@_guard
def cmd_roa_plan(args: argparse.Namespace) -> int:
    _, plan = _roa_setup(args)
    print(f"plan: {len(plan.add)} to create, {len(plan.delete)} to delete, {len(plan.ok)} unchanged")
    return EXIT_OK


@_guard
def cmd_roa_apply(args: argparse.Namespace) -> int:
    client, plan = _roa_setup(args)
    if not plan.add and not plan.delete:
        print("apply: nothing to do (0 writes)")
        return EXIT_OK
    client.publish(plan.add, plan.delete)
    print(f"apply: published {len(plan.add)} new ROA(s), deleted {len(plan.delete)}")
    return EXIT_OK
