"""The dev stack booted in the lab with real BIRD, NSD, Caddy and GoBGP; assertions in BGP terms (arouteserver's
live-test style). Needs root and network namespaces; skipped, with the reason, only where those are missing.

Replaces a running dev lab (same namespaces); tears everything down afterwards, also on failure.
Set ANYCAST_LAB_SKIP_FREEZE=1 to leave out the frozen-PoP measurement (~75 s: hold timer + BIRD's error wait).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.model.stack import load_network
from lab.boot.up import down, up
from lab.checks import run_checks
from lab.net.netns import list_namespaces, namespace_pids
from lab.net.processes import alive
from lab.state import LabState, state_path
from tests.helpers.environment import LAB_REASON as REASON

pytestmark = [pytest.mark.lab, pytest.mark.slow]
STACK = "dev"


@pytest.fixture(scope="module")
def lab() -> Iterator[LabState]:
    if REASON:
        pytest.skip(REASON)
    try:
        state = up(STACK, load_network(STACK), quiet=True, timeout=60)
        yield state
    finally:
        down(STACK)


@pytest.fixture(scope="module")
def report(lab: dict[str, Any]) -> dict[str, Any]:
    freeze = os.environ.get("ANYCAST_LAB_SKIP_FREEZE") != "1"
    return run_checks(STACK, failover=True, freeze=freeze, progress=False)


def _check(report: dict[str, Any], group: str) -> list[dict[str, Any]]:
    found = [c for c in report["checks"] if c["group"] == group]
    assert found, f"no {group} checks ran"
    return found


def test_state_file(lab: dict[str, Any]) -> None:
    assert state_path(STACK).exists()
    assert lab["stack"] == STACK
    assert lab["anycast"] == {"ipv4": "192.0.2.1", "ipv6": "2001:db8:1000::1"}
    assert set(lab["pops"]) == {"ams", "ewr", "sao"}
    assert lab["pops"]["sao"]["mode"] == "unicast" and lab["pops"]["sao"]["unicast_ipv4"]
    clients = lab["clients"]
    assert {"br", "za", "us", "de", "gb", "in", "jp", "sg", "au", "hk"} <= set(clients)
    assert clients["br"]["expected_pop"] == "sao"  # GeoDNS: South America -> the unicast PoP
    assert clients["us"]["expected_pop"] == "ewr" and clients["de"]["expected_pop"] == "ams"
    assert lab["boot_seconds"] < 30


def test_bgp_sessions_established(report: dict[str, Any]) -> None:
    for c in _check(report, "bgp"):
        assert c["ok"], c


def test_upstreams_receive_exactly_the_networks_routes(report: dict[str, Any]) -> None:
    checks = {c["name"].split()[0]: c for c in _check(report, "routes")}
    assert set(checks) == {"ams", "ewr", "sao"}
    for c in checks.values():
        assert c["ok"], c
    assert "192.0.2.0/24 path 64500" in checks["ams"]["detail"]
    assert checks["sao"]["detail"] == "no routes"


def test_no_route_leak(report: dict[str, Any]) -> None:
    (c,) = _check(report, "leak")
    assert c["ok"], c
    assert report["measurements"]["routes_sent"] == 1000
    assert report["measurements"]["routes_leaked"] == 0


def test_every_client_lands_on_its_expected_pop(report: dict[str, Any]) -> None:
    checks = _check(report, "clients")
    assert len(checks) == 2 * 11  # IPv4 and IPv6 per client
    for c in checks:
        assert c["ok"], c


def _exporters(ns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False).stdout.split()
    return [int(p) for p in out if Path(f"/proc/{p}/comm").is_file()
            and Path(f"/proc/{p}/comm").read_text().startswith("prometheus-blac")]


@pytest.mark.skipif(shutil.which("prometheus-blackbox-exporter") is None, reason="prometheus-blackbox-exporter not installed")
def test_monitoring_with_the_real_blackbox_exporter(lab: dict[str, Any], report: dict[str, Any]) -> None:
    """Stack outputs from the lab's addresses -> `anycast monitoring targets` -> prometheus-blackbox-exporter in `de`."""
    checks = _check(report, "monitoring")
    for c in checks:
        assert c["ok"], c
    names = [c["name"] for c in checks]
    assert any(n.startswith("every HTTP target: probe_success 1") and n.endswith("(8)") for n in names), names
    assert any(n.startswith("every DNS target: probe_success 1") and n.endswith("(8)") for n in names), names
    assert "anycast HTTP from de answered by its nearest PoP (ams)" in names
    negative = [c for c in checks if c["name"].startswith("negative:")]
    assert len(negative) == 1 and "probe_success 0" in negative[0]["detail"]
    assert report["measurements"]["monitoring"]["total_s"] < 15
    outputs = json.loads((state_path(STACK).parent / "outputs.json").read_text())
    for code, pop in lab["pops"].items():  # the lab's addresses, not the recorded or rendered ones
        assert (outputs["pops"][code]["ipv4"], outputs["pops"][code]["ipv6"]) == (pop["unicast_ipv4"], pop["unicast_ipv6"])
    assert (state_path(STACK).parent / "monitoring" / "blackbox.yml").is_file()
    assert _exporters(f"acl-{STACK}-c-de") == []  # stopped by the check's teardown


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="make deps installs Debian's prometheus")
def test_prometheus_scrapes_every_pop_and_the_withdrawn_alert_fires(report: dict[str, Any]) -> None:
    checks = _check(report, "prometheus")
    for c in checks:
        assert c["ok"], c
    # 8 HTTP, 8 HTTPS and 8 DNS probes, 3 bird_exporter, 2 health agents, the blackbox exporter.
    assert any("(30/30)" in c["name"] for c in checks), [c["name"] for c in checks]
    (kill,) = [c for c in _check(report, "failover") if c["name"].startswith("Caddy killed")]
    assert "AnycastPopWithdrawn{pop=ams} firing" in kill["detail"]
    first = report["measurements"]["kill_caddy"][0]
    assert 0 < first["alert_fire_s"] < 5 and 0 < first["alert_clear_s"] < 10  # 1 s scrape and evaluation in the lab
    assert _exporters(f"acl-{STACK}-c-de") == []  # the check stopped its monitoring processes
    assert glob_processes("prometheus") == [] and glob_processes("prometheus-bird") == []


def glob_processes(prefix: str) -> list[int]:
    """Pids of processes inside this stack's lab namespaces named exactly ``prefix`` (their comm)."""
    pids = [pid for ns in list_namespaces(f"acl-{STACK}-") for pid in namespace_pids(ns)]
    return [p for p in pids if alive(p) and Path(f"/proc/{p}/comm").read_text().strip() == prefix]


def test_failover(report: dict[str, Any]) -> None:
    for c in _check(report, "failover"):
        assert c["ok"], c
    kill = report["measurements"]["kill_caddy"][0]
    assert kill["withdraw_s"] is not None and kill["withdraw_s"] < 3
    if "freeze" in report["measurements"]:
        assert report["measurements"]["freeze"]["withdraw_s"] <= load_network(STACK).bgp.hold_time + 1.5


def test_https_with_a_real_acme_server(lab: dict[str, Any], report: dict[str, Any]) -> None:
    """Pebble issued through DNS-01 (anycast NSD CNAME -> Route53 stand-in TXT); every client gets HTTP/2 over TLS 1.3
    with the Pebble root and its PoP's X-PoP; a forced renewal under load fails no handshake (lab/checks/tls.py)."""
    checks = _check(report, "tls")
    for c in checks:
        assert c["ok"], c
    assert len([c for c in checks if re.match(r"\S+ \(\w\w\) HTTPS ", c["name"])]) == len(lab["clients"])
    assert any(c["name"].startswith("Pebble validated DNS-01") for c in checks)
    renewal = report["measurements"]["tls_renewal"]
    # Caddy 2.6.2 resets a connection caught in a reload's listener swap (docs/tls.md): only there, one per reload.
    assert renewal["handshakes_failed_outside_reload"] == 0 and renewal["handshakes"] >= 50
    assert renewal["handshakes_failed"] <= renewal["reloads"]
    assert lab["tls"]["setup_seconds"] < 60  # Pebble, moto, the resolver, one order (3 names), 3 fetches
    ca_file = Path(lab["tls"]["ca_file"])
    assert ca_file.is_absolute() and "BEGIN CERTIFICATE" in ca_file.read_text()


def test_health_agent_faults(report: dict[str, Any]) -> None:
    """Fail-closed, event-driven, supervised, drainable: every health row passes and the figures hold."""
    rows = _check(report, "health")
    names = " | ".join(c["name"] for c in rows)
    for c in rows:
        assert c["ok"], c
    for part in ("status:", "NSD killed", "agent frozen", "BIRD restarted", "drain"):
        assert part in names, names
    h = report["measurements"]["health"]
    assert h["nsd killed"]["withdraw_s"] is not None and h["nsd killed"]["withdraw_s"] < 1
    assert h["agent frozen, Caddy killed"]["withdraw_s"] <= 2.5  # WatchdogSec=2 + margin
    assert h["BIRD restarted while Caddy is down"]["extra"]["announced"] == []
    assert h["drain"]["lost"] == 0 and h["drain"]["probes"] > 0


def test_down_removes_everything_and_is_idempotent(lab: dict[str, Any], report: dict[str, Any]) -> None:
    pids = [pid for p in lab["pops"].values() for pid in p["pids"].values()]
    pids += [p["upstream"]["pid"] for p in lab["pops"].values()] + [c["pid"] for c in lab["clients"].values()]
    down(STACK)
    assert list_namespaces(f"acl-{STACK}-") == []
    assert not list(Path("/etc/netns").glob(f"acl-{STACK}-*"))  # the issuer's hosts/resolv.conf (lab/cloud/tls.py)
    assert not [p for p in pids if alive(p)]
    assert down(STACK) == 0
