"""``anycast dnssec ds``: the DS record of the key in an environment variable, to write into ``dns.dnssec.keys[].ds``."""

from __future__ import annotations

import argparse
import os

from infra.model import ConfigError
from infra.model.fields import DNSSEC_KEY_ENV, dns_name, dnssec_key_env
from userdata.dnssec import dnskey_of, ds_text, parse_private_key


def _ds(args: argparse.Namespace) -> int:
    try:
        zone, env = dns_name(args.zone), dnssec_key_env(args.env)
    except ValueError as exc:
        raise ConfigError([f"--zone/--env: {exc}"]) from None
    pem = os.environ.get(env, "")
    if not pem.strip():
        raise ConfigError([f"{env}: not set; export it with the zone's PEM private key "
                           "(openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256)"])
    dnskey = dnskey_of(parse_private_key(pem, env))
    print(ds_text(zone, dnskey))  # public: the DS and (with --dnskey) the DNSKEY, never the private key
    if args.dnskey:
        print(f"{zone}. IN DNSKEY {dnskey.to_text()}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dnssec", help="DNSSEC helpers (docs/dnssec.md)")
    cmds = p.add_subparsers(dest="dnssec_command", required=True, metavar="COMMAND")
    ds = cmds.add_parser("ds", help="print the DS record (for dns.dnssec.keys[].ds) of the key in an environment variable")
    ds.add_argument("--zone", required=True, help="the signed zone (dns.zone), e.g. cdn.example.com")
    ds.add_argument("--env", default=DNSSEC_KEY_ENV, help=f"variable holding the PEM private key (default {DNSSEC_KEY_ENV})")
    ds.add_argument("--dnskey", action="store_true", help="also print the DNSKEY record (a resolver's trust anchor)")
    ds.set_defaults(func=_ds)
