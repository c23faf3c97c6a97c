"""``anycast reboots``: each PoP's weekly reboot slot for security updates (docs/security.md)."""

from __future__ import annotations

import argparse

from infra.derived.reboots import schedule_table
from infra.model.stack import load_network


def _reboots(args: argparse.Namespace) -> int:
    print(schedule_table(load_network(args.stack)), end="")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reboots", help="the weekly reboot slot of each PoP (security updates), as a Markdown table")
    p.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
    p.set_defaults(func=_reboots)
