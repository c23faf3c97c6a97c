"""The health agent's configuration (``/etc/anycast/health.json``) and systemd unit for one anycast PoP."""

from __future__ import annotations

import copy
from typing import Any

from infra.contracts import BIRD_SOCKET, BIRDC, HEALTH_DEFAULTS
from infra.model import Network, Pop
from userdata.hardening import HEALTH_SANDBOX

WATCHDOG_SEC = 2  # systemd kills a silent agent after this; its worst-case round (checks + BIRD) stays below 1.2 s
RESTART_SEC = 1


def anycast_protocols(network: Network) -> list[str]:
    return [f"anycast{v}" for v, p in ((4, network.prefixes.ipv4), (6, network.prefixes.ipv6)) if p is not None]


def gshut_protocols(network: Network) -> list[str]:
    """bird.conf's graceful-shutdown twins of the anycast protocols (65535:0 and prepends; enabled by --drain)."""
    return [p.replace("anycast", "gshut", 1) for p in anycast_protocols(network)]


def health_config(network: Network, pop: Pop) -> dict[str, Any]:
    """Check Caddy and NSD on the service address (IPv4 if the network has it) and drive the anycast protocols.

    Damping follows BIRD's error wait time (bgp.errorWaitMin/Max): a crash loop announces no more often than BIRD
    would re-open a failing session. Every other value is the contract's default (infra/contracts.py), written out so
    that the file on the PoP says what the agent does.
    """
    service = network.service.ipv4 if network.service.ipv4 is not None else network.service.ipv6
    d = copy.deepcopy(HEALTH_DEFAULTS)
    return {
        "pop": pop.code,
        "interval_ms": d["interval_ms"],
        "rise": d["rise"],
        "fall": d["fall"],
        "http": {"host": str(service), **d["http"]},
        "dns": {"server": str(service), "qname": network.dns.zone, **d["dns"]},
        "bird": {"socket": BIRD_SOCKET, "protocols": anycast_protocols(network), **d["bird"]},
        "damping": {**d["damping"], "min_hold_down_s": network.bgp.error_wait_min,
                    "max_hold_down_s": network.bgp.error_wait_max},
        "status": d["status"],
        "drain": {**d["drain"], "gshut_protocols": gshut_protocols(network)},
    }


def withdraw_commands(network: Network, socket: str = BIRD_SOCKET) -> list[list[str]]:
    """What systemd runs when the agent stops for any reason (crash, watchdog kill, stop): disable every anycast
    protocol (and its graceful-shutdown twin) with birdc. Independent of the agent's code; a missing BIRD means
    nothing is announced anyway."""
    return [[BIRDC, "-s", socket, "disable", p] for p in (*anycast_protocols(network), *gshut_protocols(network))]


def health_unit(network: Network, config_path: str, agent_path: str) -> str:
    """anycast-health.service: Type=notify with a watchdog; ExecStopPost withdraws whenever the agent is gone."""
    stop_post = [f"ExecStopPost=-{' '.join(cmd)}" for cmd in withdraw_commands(network)]
    return "\n".join([
        "[Unit]",
        "Description=Anycast health agent: announces this PoP only while Caddy and NSD answer",
        "After=bird.service nsd.service caddy.service",
        "Wants=bird.service",
        "# Restart forever: while the agent is down the PoP stays withdrawn (ExecStopPost), never announced blindly.",
        "StartLimitIntervalSec=0",
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart=/usr/bin/python3 {agent_path} --config {config_path}",
        "# The agent sends WATCHDOG=1 every round (200 ms); silent for this long (frozen, wedged) -> SIGKILL at once",
        "# (a stopped process would ignore the default SIGABRT until TimeoutAbortSec).",
        f"WatchdogSec={WATCHDOG_SEC}",
        "WatchdogSignal=SIGKILL",
        "Restart=always",
        f"RestartSec={RESTART_SEC}",
        "TimeoutStopSec=5",
        "# Second line of defence, without the agent's code: whenever the agent stops (crash, watchdog, stop),",
        "# systemd disables the anycast protocols. The next agent re-enables them after `rise` good checks.",
        *stop_post,
        *HEALTH_SANDBOX,
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])
