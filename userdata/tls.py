"""HTTPS on the PoPs: the files, units and names that carry one centrally issued certificate (docs/tls.md).

Pure: the Pulumi program, the renderers and the lab share these names. The certificate and its key are never in the
user data: every PoP fetches them from one S3 object (``anycast-tls fetch``, a systemd timer) with a read-only access
key; the issuer PoP orders and renews them with lego (ACME DNS-01 through Route53) and writes that object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.contracts import (
    LEGO_PATH,
    REBOOT_PEERS_FILE,
    REBOOT_PEERS_STORE_KEY,
    STATUS_PEERS_NFT,
    STATUS_PEERS_UNIT,
    TLS_FETCH_TIMER,
    TLS_FETCH_UNIT,
    TLS_ISSUE_TIMER,
    TLS_ISSUE_UNIT,
)
from infra.contracts import TLS_AGENT as SCRIPT
from infra.contracts import TLS_CERT_FILE as CERT_FILE
from infra.contracts import TLS_CONFIG_FILE as CONFIG_FILE
from infra.contracts import TLS_CREDENTIALS_FILE as CREDENTIALS_FILE
from infra.contracts import TLS_KEY_FILE as KEY_FILE
from infra.contracts import TLS_STORE_KEY as STORE_KEY
from infra.contracts import TLS_STORE_REGION as STORE_REGION
from infra.model import Network, Pop
from userdata.hardening import STATUS_PEERS_SANDBOX, TLS_FETCH_PEERS, TLS_ISSUE_STATE, TLS_SANDBOX

ACME_LABEL = "_acme-challenge"  # RFC 8555 section 8.4
# Debian's caddy.service: ExecReload=/usr/bin/caddy reload --config /etc/caddy/Caddyfile --force (a graceful config
# switch: listeners are kept, open connections finish). try-reload-or-restart does nothing if Caddy is not running.
RELOAD = ["systemctl", "try-reload-or-restart", "caddy.service"]
ISSUE_EVERY = "12h"  # the issuer checks twice a day; it orders only inside the renewal window
ISSUE_RETRY = "30min"  # after a failed order (Restart=on-failure of the issue service)


@dataclass(frozen=True)
class TlsCredentials:
    """An AWS access key for a PoP: the read-only one, or the issuer's. Lands only in CREDENTIALS_FILE (0600)."""

    access_key_id: str
    secret_access_key: str

    def __repr__(self) -> str:  # never print the secret
        return f"TlsCredentials(access_key_id={self.access_key_id!r}, secret_access_key='***')"


def store_bucket(network: Network) -> str:
    """The S3 bucket holding the bundle: ``tls.bucket``, else named after the zone, so it is stable and (S3 names are
    global) most likely yours; ``anycast preflight`` tells whether it is free."""
    if network.tls.bucket:
        return network.tls.bucket
    return f"anycast-tls-{network.dns.zone.replace('.', '-')}"[:63].rstrip("-")


def store_url(network: Network, key: str = STORE_KEY) -> str:
    return f"https://{store_bucket(network)}.s3.{STORE_REGION}.amazonaws.com/{key}"


def challenge_target(network: Network, name: str) -> str:
    """Where ``_acme-challenge.<name>`` points: ``<name>.<challenge zone>`` (a TXT lego writes through Route53)."""
    return network.tls_challenge_target(name)  # the model checks its length


def challenge_cnames(network: Network) -> tuple[dict[str, str], dict[str, str]]:
    """(in the NSD zone: relative owner -> target, in the Route53 parent zone: FQDN -> target) for every name."""
    zone = network.dns.zone
    nsd: dict[str, str] = {}
    route53: dict[str, str] = {}
    for name in network.tls_names:
        owner = f"{ACME_LABEL}.{name}"
        if name == zone or name.endswith("." + zone):
            nsd[owner[: -len(zone) - 1]] = challenge_target(network, name)
        else:
            route53[owner] = challenge_target(network, name)
    return nsd, route53


def is_issuer(network: Network, pop: Pop) -> bool:
    return network.tls.enabled and network.tls_issuer == pop.code


def tls_config(network: Network, pop: Pop) -> dict[str, Any]:
    """``/etc/anycast/tls.json``, read by anycast-tls (no secrets: the access key is in CREDENTIALS_FILE)."""
    cfg: dict[str, Any] = {
        "pop": pop.code,
        "names": network.tls_names,
        "cert_file": CERT_FILE,
        "key_file": KEY_FILE,
        "group": "caddy",
        "reload": RELOAD,
        "credentials_file": CREDENTIALS_FILE,
        "ca_file": None,
        "store": {"url": store_url(network), "region": STORE_REGION},
        # The reboot peer list (docs/security.md#security-updates-and-reboots), fetched with the certificate.
        "peers": {"url": store_url(network, REBOOT_PEERS_STORE_KEY), "file": REBOOT_PEERS_FILE},
    }
    if is_issuer(network, pop):
        tls = network.tls
        cfg["acme"] = {"directory": tls.directory, "email": tls.email, "key_type": tls.key_type,
                       "renew_days": tls.renew_days, "lego_path": LEGO_PATH, "aws_region": STORE_REGION}
    return cfg


def _unit(description: str, body: list[str], install: str | None = None) -> str:
    lines = ["[Unit]", f"Description={description}", *body]
    if install:
        lines += ["", "[Install]", f"WantedBy={install}"]
    return "\n".join(lines) + "\n"


def units(network: Network, pop: Pop) -> dict[str, str]:
    """systemd units by file name: the fetch timer everywhere, the issue timer on the issuer."""
    cmd = f"/usr/bin/python3 {SCRIPT} %s --config {CONFIG_FILE}"
    out = {
        TLS_FETCH_UNIT: _unit(
            "Install the HTTPS certificate from the S3 store when it changed, then reload Caddy",
            ["After=network-online.target", f"Wants=network-online.target {STATUS_PEERS_UNIT}", "", "[Service]",
             "Type=oneshot", f"ExecStart={cmd % 'fetch'}",
             "# exit 75: the store is still empty (before the issuer's first order), the bootstrap certificate stays",
             "SuccessExitStatus=75", *TLS_SANDBOX, *TLS_FETCH_PEERS]),
        TLS_FETCH_TIMER: _unit(
            "Look for a renewed HTTPS certificate",
            ["", "[Timer]", "OnBootSec=1min", f"OnUnitActiveSec={network.tls.fetch_minutes}min", "RandomizedDelaySec=60"],
            "timers.target"),
    }
    # The reboot peer list's nftables sets (docs/security.md#security-updates-and-reboots): loaded at boot after the
    # firewall, and after every fetch (which Wants= it), so a reloaded firewall gets them back within a fetch period.
    out[STATUS_PEERS_UNIT] = _unit(
        "Reboot peers: open the status port",
        [f"After=nftables.service {TLS_FETCH_UNIT}", f"ConditionPathExists={STATUS_PEERS_NFT}", "", "[Service]",
         "Type=oneshot", f"ExecStart=/usr/sbin/nft -f {STATUS_PEERS_NFT}", *STATUS_PEERS_SANDBOX], "multi-user.target")
    if is_issuer(network, pop):
        out[TLS_ISSUE_UNIT] = _unit(
            "Order or renew the HTTPS certificate (ACME DNS-01 via Route53) and store it in S3",
            ["After=network-online.target", "Wants=network-online.target", "", "[Service]", "Type=oneshot",
             f"ExecStart={cmd % 'issue'}", "TimeoutStartSec=20min",
             # A failed order (the network's first, before its DNS answers; the CA down) is tried again in 30 min,
             # not at the timer's next check 12 h later: 2 failed validations per name an hour at most, under Let's
             # Encrypt's 5 (https://letsencrypt.org/docs/rate-limits/).
             "Restart=on-failure", f"RestartSec={ISSUE_RETRY}", *TLS_SANDBOX, TLS_ISSUE_STATE])
        out[TLS_ISSUE_TIMER] = _unit(
            "Check twice a day whether the HTTPS certificate is due for renewal",
            ["", "[Timer]", "OnBootSec=2min", f"OnUnitActiveSec={ISSUE_EVERY}", "RandomizedDelaySec=30min"],
            "timers.target")
    return out


def packages(network: Network, pop: Pop) -> list[str]:
    """Extra Debian packages: openssl (checks and the bootstrap certificate), lego on the issuer."""
    if not network.tls.enabled:
        return []
    return ["lego", "openssl"] if is_issuer(network, pop) else ["openssl"]
