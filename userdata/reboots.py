"""Security updates and the reboots they need (docs/security.md#security-updates-and-reboots): Debian's
unattended-upgrades installs security updates and never reboots; anycast-reboot (userdata/files/anycast-reboot.py)
reboots in the PoP's weekly slot (infra/derived/reboots.py), drained, only while enough other PoPs announce."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from infra.contracts import (
    DRAIN_FILE,
    HEALTH_AGENT,
    HEALTH_CONFIG_FILE,
    HEALTH_STATUS_PORT,
    HEALTH_UNIT,
    REBOOT_AGENT,
    REBOOT_CONFIG_FILE,
    REBOOT_MARKER,
    REBOOT_PEERS_FILE,
    REBOOT_REQUIRED_FILE,
    REBOOT_TIMER,
    REBOOT_UNIT,
    STATUS_PATH,
)
from infra.derived.reboots import reboot_slots
from infra.model import Network, Pop
from infra.untrusted.urls import ip_literal, probe_url
from userdata.hardening import REBOOT_SANDBOX

PACKAGE = "unattended-upgrades"
# apt.conf(5): lists add up over the files of apt.conf.d, so `#clear` first drops the origins of Debian's own
# 50unattended-upgrades (which also take point-release updates); scalars are set by the file read last (52 > 20, 50).
# ${distro_codename} is unattended-upgrades' own variable: bookworm-security on Debian 12.
APT_CONF = "/etc/apt/apt.conf.d/52anycast-unattended-upgrades"
APT_CONF_TEXT = "\n".join([
    "// Rendered by anycast: security updates; anycast-reboot reboots (docs/security.md).",
    'APT::Periodic::Update-Package-Lists "1";',
    'APT::Periodic::Unattended-Upgrade "1";',
    "#clear Unattended-Upgrade::Origins-Pattern;",
    "Unattended-Upgrade::Origins-Pattern {",
    '        "origin=Debian,codename=${distro_codename}-security,label=Debian-Security";',
    "};",
    'Unattended-Upgrade::Automatic-Reboot "false";',
    ""])
# Half of the other anycast PoPs must announce (of those this PoP can ask), at least one.
QUORUM_SHARE = 0.5
TIMER_CALENDAR = "*:0/5"  # every 5 minutes: a 60-minute slot gets 12 chances


def _status_url(pop: Pop) -> str | None:
    """Known before boot only for PoPs with a configured unicast address (external PoPs)."""
    if pop.unicast is None:
        return None
    if pop.unicast.ipv4 is not None:
        return f"http://{pop.unicast.ipv4}:{HEALTH_STATUS_PORT}{STATUS_PATH}"
    if pop.unicast.ipv6 is not None:
        return f"http://[{pop.unicast.ipv6}]:{HEALTH_STATUS_PORT}{STATUS_PATH}"
    return None


def reboot_config(network: Network, pop: Pop) -> dict[str, Any]:
    slot = reboot_slots(network)[pop.code]
    others = [p for p in network.pops if p.code != pop.code and p.is_anycast]
    peers = {p.code: url for p in others if (url := _status_url(p)) is not None}
    return {
        "pop": pop.code,
        "slot": {"start_minute": slot.start_minute, "minutes": slot.minutes, "utc": slot.label},
        "required_file": REBOOT_REQUIRED_FILE,
        "marker": REBOOT_MARKER,
        "drain_file": DRAIN_FILE,
        "drain": ["/usr/bin/python3", HEALTH_AGENT, "--drain", "--config", HEALTH_CONFIG_FILE] if pop.is_anycast else [],
        "reboot": ["/bin/systemctl", "reboot"],
        "peers": peers,
        "peers_file": REBOOT_PEERS_FILE,
        "group": [p.code for p in others if p.continent == pop.continent],
        "min_announcing": max(1, math.ceil(len(others) * QUORUM_SHARE)) if others else 0,
    }


def reboot_json(network: Network, pop: Pop) -> str:
    # One line: the user data has 48 KiB for everything (USER_DATA_BUDGET); `python3 -m json.tool` reads it.
    return json.dumps(reboot_config(network, pop), sort_keys=True, allow_nan=False, separators=(",", ":")) + "\n"


def peer_document(network: Network, addresses: Mapping[str, tuple[str | None, str | None]]) -> str:
    """The reboot peer list the Pulumi program writes into the certificate's bucket once the instances exist
    (REBOOT_PEERS_STORE_KEY; ``anycast-tls fetch`` installs it on every PoP): ``peers``, the status URL of every
    anycast PoP (IPv4 where it has one), and ``addresses``, every PoP's unicast addresses, which may ask the status
    port. ``addresses`` are the instances' (from the Vultr API) or the configured ones: each must be an IP literal,
    else ValueError naming the PoP."""
    peers: dict[str, str] = {}
    sources: dict[str, list[str]] = {}
    for pop in network.pops:
        try:
            found = [ip_literal(a) for a in addresses.get(pop.code, (None, None)) if a]
            if found:
                sources[pop.code] = found
            if pop.is_anycast and found:
                peers[pop.code] = probe_url("http", found[0], HEALTH_STATUS_PORT, STATUS_PATH)
        except ValueError as exc:
            raise ValueError(f"pops.{pop.code}: its address for the reboot peer list: {exc}") from None
    return json.dumps({"peers": peers, "addresses": sources}, indent=1, sort_keys=True, allow_nan=False) + "\n"


def units() -> dict[str, str]:
    """The service runs at boot before the health agent (to undo the drain of the reboot before) and from the timer."""
    return {
        REBOOT_UNIT: "\n".join([
            "[Unit]", "Description=Reboot for a security update (docs/security.md)",
            "After=network-online.target", f"Before={HEALTH_UNIT}", "",
            "[Service]", "Type=oneshot", f"ExecStart=/usr/bin/python3 {REBOOT_AGENT} --config {REBOOT_CONFIG_FILE} --once",
            *REBOOT_SANDBOX, "", "[Install]", "WantedBy=multi-user.target", ""]),
        REBOOT_TIMER: "\n".join([
            "[Unit]", "Description=Look for a pending reboot", "",
            "[Timer]", f"OnCalendar={TIMER_CALENDAR}", "AccuracySec=30s", "",
            "[Install]", "WantedBy=timers.target", ""]),
    }
