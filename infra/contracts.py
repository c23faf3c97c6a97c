"""Wire contracts: what the Pulumi program, the renderers, the PoPs' agents, the readiness gate, the lab and the
monitoring files must agree on. Ports, paths on a PoP, systemd unit names, the health agent's ``health.json`` and
``/status`` documents and its metric names.

Standard library only, and it imports nothing from the project: every layer may import it (``infra``, ``userdata``,
``lab``, ``policies``, tests) without making two of them import each other.

The agents the user data ships (``userdata/files/anycast-health.py``, ``userdata/files/anycast-tls.py``) run on the
PoP with the standard library alone and cannot import this module. They keep their own copies of these values;
tests/unit/test_contracts.py loads each agent from its file and checks its built-in defaults, the keys it reads and
the keys and metric names it writes against this module, so a disagreement fails a test.
"""

# No ``from __future__ import annotations``: Python 3.11's TypedDict cannot see NotRequired in a string annotation.
import types
from typing import Any, Final, NotRequired, TypedDict, Union, get_args, get_origin, get_type_hints, is_typeddict

# --- Ports ---------------------------------------------------------------------------------------------------------
DNS_PORT: Final = 53
HTTP_PORT: Final = 80
HTTPS_PORT: Final = 443
SERVICE_PORTS: Final = (DNS_PORT, HTTP_PORT, HTTPS_PORT)  # open to the world; what a drain waits to go quiet
# Prometheus scrapes these on the PoP's unicast address, from admin.monitoringCidrs only (nftables, Vultr firewall).
BIRD_EXPORTER_PORT: Final = 9324  # Debian's prometheus-bird-exporter, upstream's default (czerwonk/bird_exporter)
HEALTH_STATUS_PORT: Final = 9325  # the health agent's /status (JSON) and /metrics (Prometheus), anycast PoPs only
# On the monitoring host (and the lab's monitoring namespace): prometheus-blackbox-exporter's default port.
BLACKBOX_EXPORTER_PORT: Final = 9115

# --- Paths on a PoP ------------------------------------------------------------------------------------------------
BIRD_SOCKET: Final = "/run/bird/bird.ctl"  # Debian's bird2 (bird.service, RuntimeDirectory=bird)
BIRDC: Final = "/usr/sbin/birdc"
HEALTH_CONFIG_FILE: Final = "/etc/anycast/health.json"
HEALTH_AGENT: Final = "/usr/local/sbin/anycast-health"
DRAIN_FILE: Final = "/var/lib/anycast/drain"  # survives a reboot: a PoP drained for maintenance stays drained
# Reboots for security updates (userdata/files/anycast-reboot.py, docs/security.md#security-updates-and-reboots).
REBOOT_CONFIG_FILE: Final = "/etc/anycast/reboot.json"
REBOOT_PEERS_FILE: Final = "/etc/anycast/reboot-peers.json"  # optional, written after boot: {code: status URL}
# With tls.enabled the Pulumi program writes the peer list into the certificate's bucket once the instances exist;
# anycast-tls fetch copies it into REBOOT_PEERS_FILE and these nftables sets (the status port's allowed sources).
REBOOT_PEERS_STORE_KEY: Final = "reboot/peers.json"
REBOOT_PEERS_MAX: Final = 256  # PoPs in the peer list at most: more is refused as hostile
STATUS_PEER_SETS: Final = ("status4", "status6")  # in table inet anycast (nftables.conf)
# nftables.conf counts every packet that reaches the service addresses from outside (not from lo: the agent's own
# checks) in this named counter; `anycast-health --drain` reads it (`nft -j list counter ...`) to tell when traffic
# has moved away. (family, table, counter), as `nft list counter` takes them.
ARRIVALS_COUNTER: Final = ("inet", "anycast", "arrivals")
STATUS_PEERS_NFT: Final = "/etc/anycast/status-peers.nft"  # `nft -f` file refilling those sets
REBOOT_AGENT: Final = "/usr/local/sbin/anycast-reboot"
REBOOT_REQUIRED_FILE: Final = "/var/run/reboot-required"  # Debian's packages (kernel, libc) touch it: a tmpfs
REBOOT_MARKER: Final = "/var/lib/anycast/reboot-drain"  # the coordinator drained for a reboot: undrain after boot
TLS_CONFIG_FILE: Final = "/etc/anycast/tls.json"
TLS_CREDENTIALS_FILE: Final = "/etc/anycast/tls-credentials"
TLS_AGENT: Final = "/usr/local/sbin/anycast-tls"
TLS_CERT_FILE: Final = "/etc/caddy/tls/cert.pem"
TLS_KEY_FILE: Final = "/etc/caddy/tls/key.pem"
LEGO_PATH: Final = "/var/lib/anycast-tls/lego"
# The certificate bundle in S3: written by the issuer PoP, read by every PoP, the bucket made by the Pulumi program.
TLS_STORE_KEY: Final = "tls/bundle.json"
TLS_STORE_REGION: Final = "us-east-1"  # the bucket's region, set on the Bucket resource too; Route53 is global (us-east-1)

# --- systemd units the user data installs and the lab and gates look at ----------------------------------------------
HEALTH_UNIT: Final = "anycast-health.service"
BIRD_EXPORTER_UNIT: Final = "prometheus-bird-exporter.service"
TLS_FETCH_UNIT: Final = "anycast-tls-fetch.service"
TLS_ISSUE_UNIT: Final = "anycast-tls-issue.service"
TLS_FETCH_TIMER: Final = "anycast-tls-fetch.timer"
TLS_ISSUE_TIMER: Final = "anycast-tls-issue.timer"
REBOOT_UNIT: Final = "anycast-reboot.service"
# Oneshots at boot: service addresses (every PoP), own addresses into the zone (Vultr unicast PoPs), IPv6 neighbour route
ONESHOT_UNITS: Final = ("anycast-addresses.service", "anycast-local-addresses.service", "anycast-neighbor-route.service")
REBOOT_TIMER: Final = "anycast-reboot.timer"
STATUS_PEERS_UNIT: Final = "anycast-status-peers.service"  # loads STATUS_PEERS_NFT (tls.enabled)

# --- HTTP paths ----------------------------------------------------------------------------------------------------
HEALTHZ_PATH: Final = "/healthz"  # Caddy answers 200 with X-PoP (plain HTTP even when HTTPS redirects the rest)
STATUS_PATH: Final = "/status"
METRICS_PATH: Final = "/metrics"


# --- health.json: the health agent's configuration ------------------------------------------------------------------
# The keys the agent accepts, with their JSON types (int: an integer; float: any number; str: a non-empty string).
# A key absent from HEALTH_DEFAULTS is required; a NotRequired section is optional as a whole.

class HttpCheckConfig(TypedDict):
    host: str
    port: int
    path: str
    timeout_ms: int


class DnsCheckConfig(TypedDict):
    server: str
    port: int
    qname: str
    qtype: str
    timeout_ms: int


class BirdConfig(TypedDict):
    socket: str
    protocols: list[str]
    timeout_ms: int


class DampingConfig(TypedDict):
    stable_s: float
    min_hold_down_s: float
    max_hold_down_s: float
    half_life_s: float  # RFC 2439 figure of merit kept by the agent: 1000 per withdrawal, halved every half_life_s
    max_penalty: float  # announce only while one more withdrawal keeps it <= this (RFC 7196 suppresses at 6000); 0: off


class StatusConfig(TypedDict):
    address: str
    port: int  # 0: no status server


class DrainConfig(TypedDict):
    file: str
    quiet_s: float
    timeout_s: float
    ports: list[int]
    gshut_protocols: list[str]  # RFC 8326 phase of --drain: enabled first, before the withdrawal ([]: none)
    gshut_s: float  # at most this long in that phase, waiting for connections to go quiet
    quiet_fraction: float  # that phase is quiet below this fraction of the packet rate before it (ARRIVALS_COUNTER) ...
    quiet_per_s: float  # ... or below this many packets/s (after the withdrawal: only this), over quiet_s


class HealthConfig(TypedDict):
    pop: str
    interval_ms: int
    rise: int
    fall: int
    http: NotRequired[HttpCheckConfig]  # at least one of http and dns
    dns: NotRequired[DnsCheckConfig]
    bird: BirdConfig
    damping: NotRequired[DampingConfig]
    status: NotRequired[StatusConfig]
    drain: NotRequired[DrainConfig]


# What the agent assumes for a key that health.json leaves out, and what the renderer writes unless the network says
# otherwise. The hold-downs follow BIRD's error wait (the model's bgp.errorWaitMin/Max defaults).
HEALTH_DEFAULTS: Final[dict[str, Any]] = {
    "interval_ms": 200,
    "rise": 3,
    "fall": 2,
    "http": {"port": HTTP_PORT, "path": HEALTHZ_PATH, "timeout_ms": 300},
    "dns": {"port": DNS_PORT, "qtype": "SOA", "timeout_ms": 300},
    "bird": {"timeout_ms": 250},
    "damping": {"stable_s": 10, "min_hold_down_s": 5, "max_hold_down_s": 120, "half_life_s": 900, "max_penalty": 5000},
    "status": {"address": "::", "port": HEALTH_STATUS_PORT},
    "drain": {"file": DRAIN_FILE, "quiet_s": 2, "timeout_s": 60, "ports": list(SERVICE_PORTS), "gshut_protocols": [],
              "gshut_s": 30, "quiet_fraction": 0.1, "quiet_per_s": 1},
}


# --- /status: the health agent's status document (schema 1) ---------------------------------------------------------
# Fields are only ever added within a schema; a reader must ignore fields it does not know. Time stamps are Unix
# seconds (wall clock), None until the event happened.
STATUS_SCHEMA: Final = 1
STATUS_STATES: Final = ("announced", "withdrawn", "drained", "changing", "unknown")
WITHDRAWAL_CAUSES: Final = ("check", "event", "drain")


class Withdrawals(TypedDict):
    check: int
    event: int
    drain: int


class AnnounceStatus(TypedDict):
    wanted: bool
    hold_down_until: float | None
    flaps: int
    announced_since: float | None
    withdrawals: Withdrawals


class DrainStatus(TypedDict):
    drained: bool
    file: str


class CheckStatus(TypedDict):
    ok: bool | None  # None before the first check
    detail: str | None
    latency_ms: float | None
    checked_at: float | None
    failures: int
    events: int
    watch: str  # "open" | "closed"


class ProtocolStatus(TypedDict):
    state: str  # BIRD's protocol state: "up", "down", "start"...
    info: str


class SessionStatus(TypedDict):
    state: str
    bgp_state: str | None  # "Established", ...; None while BIRD shows none
    routes_exported: int
    routes_imported: int


class BirdStatus(TypedDict):
    reachable: bool
    error: str | None
    version: str | None
    protocols: dict[str, ProtocolStatus | None]  # every anycast protocol of health.json; None: BIRD does not have it
    sessions: dict[str, SessionStatus]  # every BGP protocol BIRD has


class ExportedStatus(TypedDict):
    anycast: bool  # announced and at least one route exported over BGP
    routes: int


class WatchdogStatus(TypedDict):
    enabled: bool
    timeout_s: float | None
    last_ping_age_s: float | None


class AgentStatus(TypedDict):
    pid: int
    started: float | None
    interval_ms: int
    rise: int
    fall: int
    last_cycle_age_s: float | None
    watchdog: WatchdogStatus


# The readiness gate refuses a PoP of a signing stack whose served signatures expire within this margin: the same 14
# days at which AnycastDnssecSignatureExpiring fires (infra/monitoring/alerts.py), so a new PoP never starts alerting.
DNSSEC_GATE_MARGIN_S: Final[int] = 14 * 86400


class DnssecStatus(TypedDict):
    signature_expiration: int | None  # earliest RRSIG expiration in the DNS check's answer; None: unsigned (docs/dnssec.md)


class HealthStatus(TypedDict):
    schema: int
    pop: str
    time: float
    state: str  # one of STATUS_STATES
    reason: str
    healthy: bool | None  # None before the first decision
    announce: AnnounceStatus
    drain: DrainStatus
    checks: dict[str, CheckStatus]  # "http", "dns": the checks health.json configures
    bird: BirdStatus
    exported: ExportedStatus
    dnssec: DnssecStatus
    agent: AgentStatus


# --- /metrics: the health agent's Prometheus metrics, name -> type ---------------------------------------------------
HEALTH_METRICS: Final[dict[str, str]] = {
    "anycast_health_info": "gauge",
    "anycast_health_check_up": "gauge",
    "anycast_health_check_latency_seconds": "gauge",
    "anycast_health_check_failures_total": "counter",
    "anycast_health_connection_closed_total": "counter",
    "anycast_health_healthy": "gauge",
    "anycast_health_announce_wanted": "gauge",
    "anycast_health_announced": "gauge",
    "anycast_health_withdrawals_total": "counter",
    "anycast_health_flaps": "gauge",
    "anycast_health_drained": "gauge",
    "anycast_health_bird_up": "gauge",
    "anycast_health_bgp_session_up": "gauge",
    "anycast_health_bgp_routes_exported": "gauge",
    "anycast_health_watchdog_enabled": "gauge",
    "anycast_health_watchdog_last_ping_age_seconds": "gauge",
    "anycast_health_last_cycle_age_seconds": "gauge",
    "anycast_health_dnssec_signature_expiration_timestamp_seconds": "gauge",
}


# --- tls.json: anycast-tls's configuration ---------------------------------------------------------------------------

class TlsStore(TypedDict):
    url: str
    region: str


class TlsAcme(TypedDict):
    directory: str
    email: str
    key_type: str
    renew_days: int
    lego_path: str
    aws_region: str
    propagation_timeout: NotRequired[int]  # seconds lego waits for the TXT record (the agent's default: 300)
    polling_interval: NotRequired[int]


class TlsPeers(TypedDict):
    """The reboot peer list (docs/security.md#security-updates-and-reboots): its S3 URL, and REBOOT_PEERS_FILE (the
    nftables file STATUS_PEERS_NFT is written beside it)."""

    url: str
    file: str


class TlsConfig(TypedDict):
    pop: str  # for a human reading the file; the agent does not read it
    names: list[str]
    cert_file: str
    key_file: str
    group: str | None
    reload: list[str]
    credentials_file: str
    ca_file: str | None  # the lab's CA; None on a PoP (the system store)
    store: TlsStore
    acme: NotRequired[TlsAcme]  # the issuer PoP only
    peers: NotRequired[TlsPeers]  # rendered on every PoP; the lab leaves it out


# --- JSON Schema -----------------------------------------------------------------------------------------------------

_JSON_TYPES = {type(None): "null", bool: "boolean", int: "integer", float: "number", str: "string"}


def json_schema(tp: Any, closed: bool = True) -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) for one of the TypedDicts above, e.g. ``json_schema(HealthStatus)``.

    ``closed``: objects allow no key the contract lacks (what a writer must produce). A reader of ``/status`` should
    pass ``closed=False``: fields are added within a schema version.
    """
    if is_typeddict(tp):
        return {"type": "object", "properties": {k: json_schema(v, closed) for k, v in get_type_hints(tp).items()},
                "required": sorted(tp.__required_keys__), "additionalProperties": not closed}
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        return {"anyOf": [json_schema(a, closed) for a in args]}
    if origin is list:
        return {"type": "array", "items": json_schema(args[0], closed)}
    if origin is dict:
        return {"type": "object", "additionalProperties": json_schema(args[1], closed)}
    return {"type": _JSON_TYPES[tp]}
