"""The health agent's configuration (``/etc/anycast/health.json``) for one anycast PoP."""

from __future__ import annotations

from typing import Any

from infra.model import Network, Pop

BIRD_SOCKET = "/run/bird/bird.ctl"


def health_config(network: Network, pop: Pop) -> dict[str, Any]:
    """Check Caddy and NSD on the service address (IPv4 if the network has it) and drive the anycast protocols."""
    service = network.service.ipv4 if network.service.ipv4 is not None else network.service.ipv6
    protocols = [f"anycast{v}" for v, p in ((4, network.prefixes.ipv4), (6, network.prefixes.ipv6)) if p is not None]
    return {
        "pop": pop.code,
        "interval_ms": 200,
        "rise": 3,
        "fall": 2,
        "http": {"host": str(service), "port": 80, "path": "/healthz", "timeout_ms": 300},
        "dns": {"server": str(service), "port": 53, "qname": network.dns.zone, "qtype": "SOA", "timeout_ms": 300},
        "bird": {"socket": BIRD_SOCKET, "protocols": protocols},
    }
