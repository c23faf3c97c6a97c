"""A signed variant of the dev stack for the DNSSEC tests: the lab keys in tests/fixtures/dnssec (lab use only)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infra.model import Network, parse_network
from infra.model.stack import NETWORK_KEY, read_stack_config

KEYS = Path(__file__).resolve().parent / "fixtures" / "dnssec"
LAB_KEY = (KEYS / "lab-key.pem").read_text(encoding="utf-8")  # generated for the tests and the lab; signs nothing real
NEXT_KEY = (KEYS / "lab-key-next.pem").read_text(encoding="utf-8")
LAB_DS = "50133 13 2 53ECD2864B5ED1D43113E882D352EA0CA5C6FC14A99756F6EFFD4E9849020FB5"  # anycast dnssec ds --zone cdn.example.com
NEXT_DS = "42681 13 2 E0905852A33DC4616E876D902E8B7229071EEA16862F4704FA02681796322011"
ENV = {"ANYCAST_DNSSEC_KEY": LAB_KEY, "ANYCAST_DNSSEC_KEY_NEXT": NEXT_KEY}
NOW = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)  # a fixed render time: the golden signed zone stays the same bytes


def signed_doc(keys: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """dev without its Vultr unicast PoP (whose addresses exist only at boot), with dns.dnssec."""
    doc = copy.deepcopy(read_stack_config("dev")[NETWORK_KEY])
    doc["pops"] = [p for p in doc["pops"] if p.get("mode") != "unicast"]
    doc["dns"]["dnssec"] = {"keys": keys if keys is not None else [{"env": "ANYCAST_DNSSEC_KEY", "ds": LAB_DS}]}
    return doc


def signed_network(keys: list[dict[str, Any]] | None = None) -> Network:
    return parse_network(signed_doc(keys), source="signed")
