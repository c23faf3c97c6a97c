"""``anycast preflight --stack NAME``: read-only checks of the Vultr, AWS and RIPE accounts and public DNS before the
first ``pulumi up``. One row per check (PASS, WARN, FAIL, SKIP) with the fix in one line; exit code 1 when any row
FAILs, 2 on bad input. Nothing is created or changed, and no credential is ever printed (docs/deploy.md).
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import sys
from collections import Counter
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

from infra.model import Network
from infra.model.stack import load_network
from infra.monitoring.targets import load_outputs
from infra.preflight.aws import Aws, aws_rows, parent_zone_servers
from infra.preflight.dns import DnsOptions, dns_rows
from infra.preflight.gates import gate_rows
from infra.preflight.http import BadUrl, Timeouts
from infra.preflight.ripe import RipeUrls, ripe_rows
from infra.preflight.rows import Row, Status
from infra.preflight.stack import stack_rows
from infra.preflight.text import clean, redact
from infra.preflight.vultr import vultr_api, vultr_rows
from infra.ripe.errors import BadInput
from infra.ripe.transport import RetryPolicy, base_url

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
SECTIONS = ("stack", "vultr", "aws", "ripe", "dns", "gates")
DEFAULT_TIMEOUT = 20.0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text[:40]}' is not a number of seconds") from None
    if not math.isfinite(value) or not 0 < value <= 600:
        raise argparse.ArgumentTypeError(f"{text[:40]} is not between 0 and 600 seconds")
    return value


def _address(text: str) -> IPv4Address | IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text[:60]}' is not an IPv4 or IPv6 address") from None


def _resolver(text: str) -> tuple[str, int | None]:
    host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    try:
        ipaddress.ip_address(host)
        return host, int(port) if port else None
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text[:60]}' is not ADDRESS or IPv4:PORT") from None


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "preflight", help="read-only checks of the Vultr, AWS and RIPE accounts and public DNS before pulumi up",
        description=__doc__.splitlines()[0] + " Credentials come from VULTR_API_KEY, the stack's bgp.passwordEnv "
        "(ANYCAST_BGP_PASSWORD), AWS's usual variables, RIPE_API_KEY and RIPE_RPKI_API_KEY.")
    p.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
    p.add_argument("--only", action="append", choices=SECTIONS, help="run only these sections (repeatable)")
    p.add_argument("--from", dest="sources", action="append", type=_address, default=[], metavar="ADDRESS",
                   help="the public address of the machine that will run pulumi up (checked against "
                        "admin.monitoringCidrs; never looked up)")
    p.add_argument("--outputs", type=Path, metavar="FILE",
                   help="stack outputs (pulumi stack output --json) of a deployed stack: ask each PoP's status port "
                        "from here, as the readiness gates do")
    p.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"the most one request may take, retries included (default {DEFAULT_TIMEOUT:g})")
    p.add_argument("--resolver", type=_resolver, metavar="ADDRESS[:PORT]",
                   help="DNS resolver for the delegation checks (default: the system's)")
    p.add_argument("--dns-port", type=int, default=None, metavar="PORT",
                   help="port of the parent zone's name servers (53; another only for a local test server)")
    p.add_argument("--ripe-url", help="RIPE Database base URL (default https://rest.db.ripe.net)")
    p.add_argument("--rpki-url", help="RIPE NCC RPKI API base URL (default https://my.ripe.net)")
    p.add_argument("--ripestat-url", help="RIPEstat base URL (default https://stat.ripe.net)")
    p.set_defaults(func=cmd_preflight)


# Never printed, whatever a check or an API answer put into a row: the last line of defence (the checks already
# build rows from public facts only).
SECRET_VARIABLES = ("VULTR_API_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "RIPE_API_KEY", "RIPE_RPKI_API_KEY")


def _secrets(network: Network, env: dict[str, str]) -> list[str]:
    values = [env.get(v, "") for v in (*SECRET_VARIABLES, network.bgp.password_env)]
    values += [v.partition(":")[2] for v in values if ":" in v]  # the SECRET of KEYID:SECRET alone
    return [v for v in values if v]


def _print(row: Row, secrets: list[str]) -> None:
    print(redact(row.line(), secrets), flush=True)


def cmd_preflight(args: argparse.Namespace) -> int:
    network = load_network(args.stack)
    outputs = load_outputs(args.outputs) if args.outputs else None
    env = dict(os.environ)
    sections = args.only or list(SECTIONS)
    t = args.timeout
    timeouts = Timeouts(connect=min(3.0, t), read=min(10.0, t), total=t)
    policy = RetryPolicy(attempts=2, backoff=1.0, budget=t, connect_timeout=min(3.0, t), read_timeout=min(20.0, t))
    try:  # every base URL is checked before the first request, so bad input never leaves half a report
        for option, url in (("--ripe-url", args.ripe_url), ("--rpki-url", args.rpki_url), ("--ripestat-url", args.ripestat_url)):
            if url:
                base_url(url, option)
        vultr_api(env, timeouts)
    except (BadUrl, BadInput) as exc:
        print(f"error: {clean(str(exc), 300)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"preflight of stack {args.stack} (read-only; nothing is created or changed)", flush=True)
    rows: list[Row] = []
    secrets = _secrets(network, env)
    aws = Aws(timeouts)  # one breaker: the DNS section's Route53 lookup does not wait for a silent AWS again
    runners: dict[str, Callable[[], list[Row]]] = {
        "stack": lambda: stack_rows(network, args.stack),
        "vultr": lambda: _vultr(network, args.stack, env, timeouts),
        "aws": lambda: aws_rows(network, args.stack, aws),
        "ripe": lambda: ripe_rows(network, args.stack, env, RipeUrls(args.ripe_url, args.rpki_url, args.ripestat_url), policy),
        "dns": lambda: _dns(network, args, aws if "aws" in sections else None),
        "gates": lambda: gate_rows(network, args.stack, args.sources, env, outputs, timeout=min(3.0, t)),
    }
    try:
        for name in SECTIONS:
            if name in sections:
                for row in runners[name]():
                    rows.append(row)
                    _print(row, secrets)
    except (BadUrl, BadInput) as exc:
        print(f"error: {clean(str(exc), 300)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    counts = Counter(r.status for r in rows)
    print(f"preflight: {counts[Status.PASS]} pass, {counts[Status.WARN]} warn, {counts[Status.FAIL]} fail, "
          f"{counts[Status.SKIP]} skip" + ("; fix every FAIL before pulumi up" if counts[Status.FAIL] else ""))
    return EXIT_FAILED if counts[Status.FAIL] else EXIT_OK


def _vultr(network: Network, stack: str, env: dict[str, str], timeouts: Timeouts) -> list[Row]:
    api, key = vultr_api(env, timeouts)
    return vultr_rows(network, stack, env, api, key)


def _dns(network: Network, args: argparse.Namespace, aws: Aws | None) -> list[Row]:
    resolver, port = args.resolver if args.resolver else (None, None)
    opts = DnsOptions(resolver, args.dns_port or port or 53, timeout=min(3.0, args.timeout))
    route53 = parent_zone_servers(network, aws) if aws is not None else None
    return dns_rows(network, opts, route53)
