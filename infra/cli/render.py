"""``anycast render``: write every PoP's files and a summary, the same bytes the Pulumi program deploys."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from infra import safe_write
from infra.model import ConfigError, Network
from infra.model.stack import load_network
from userdata.render import render_network, summary


def bgp_password_from_env(network: Network) -> str:
    name = network.bgp.password_env
    value = os.environ.get(name)
    if not value:
        raise ConfigError([f"{name}: not set; export {name}=<the BGP password from the Vultr panel's BGP tab> "
                           "(under Pulumi it is the anycast:bgpPassword secret)"])
    return value


def write_rendered(network: Network, password: str, out: Path) -> int:
    """Render into ``out/<pop>/`` and ``out/summary.json``; returns the number of files written."""
    rendered = render_network(network, password)
    files: dict[str, str] = {}
    modes: dict[str, int] = {}
    for code, pop in rendered.items():
        for name, text in pop.files.items():
            files[f"{code}/{name}"] = text
            if name in ("user-data.yaml", "bird.conf"):  # they hold the BGP password: readable by the owner only
                modes[f"{code}/{name}"] = 0o600
    files["summary.json"] = json.dumps(summary(network), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    # Never follows a link planted in --out; refuses before writing anything (infra/safe_write.py).
    return len(safe_write.write_tree(out, files, modes))


def _render(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    network = load_network(args.stack)
    password = bgp_password_from_env(network)
    count = write_rendered(network, password, Path(args.out))
    elapsed = time.perf_counter() - started
    print(f"rendered {len(network.pops)} PoPs ({count} files) of stack {args.stack} into {args.out} in {elapsed:.2f} s",
          file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("render", help="render every PoP's cloud-config, bird.conf, Caddyfile, nsd.conf and zone")
    p.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
    p.add_argument("--out", required=True, help="output directory (one sub-directory per PoP, plus summary.json)")
    p.set_defaults(func=_render)
