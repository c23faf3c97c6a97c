"""Render every file a PoP boots with, and the ``#cloud-config`` document that installs them.

Pure and byte-stable: the same network and password always give the same bytes (no timestamps, fixed ordering), so
golden files, the lab and the Pulumi program share one output. Remember that on Vultr any change of the user data
replaces the instance.
"""

from __future__ import annotations

import ast
import base64
import functools
import gzip
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from ipaddress import IPv4Address, IPv6Address, ip_network
from typing import Any

import jinja2
import yaml

from infra.contracts import (
    ARRIVALS_COUNTER,
    BIRD_EXPORTER_PORT,
    BIRD_EXPORTER_UNIT,
    BIRD_SOCKET,
    DNS_PORT,
    HEALTH_AGENT,
    HEALTH_CONFIG_FILE,
    HEALTH_STATUS_PORT,
    HEALTH_UNIT,
    HEALTHZ_PATH,
    HTTP_PORT,
    HTTPS_PORT,
    REBOOT_AGENT,
    REBOOT_CONFIG_FILE,
    REBOOT_TIMER,
    REBOOT_UNIT,
    SERVICE_PORTS,
    STATUS_PEER_SETS,
)
from infra.model import (
    NO_EXPORT_OUTSIDE_VULTR,
    VULTR_ASN,
    VULTR_MULTIHOP,
    VULTR_NEIGHBOR_V4,
    VULTR_NEIGHBOR_V6,
    VULTR_PEER_ASN,
    ConfigError,
    Network,
    Pop,
)
from userdata import dnssec, hardening, reboots
from userdata import tls as tls_files
from userdata.health_config import health_config
from userdata.health_config import health_unit as _health_unit

# Vultr does not document a user-data limit, and its API carries user data base64-encoded (the Terraform provider
# encodes it: vultr/terraform-provider-vultr, resource_vultr_instance.go). Clouds that cap base64 user data do so at
# 64 KiB (OpenStack Nova: 65,535 bytes), which is 48 KiB before encoding: render within that. Stricter clouds exist
# (AWS EC2 16 KiB, Hetzner 32 KiB) for external PoPs: docs/deploy.md#user-data-size says what to do there.
USER_DATA_BUDGET = 48 * 1024

# Where each rendered file lives on a PoP (the lab maps these into its own directories).
HOST_PATHS = {
    "bird.conf": "/etc/bird/bird.conf",
    "Caddyfile": "/etc/caddy/Caddyfile",
    "nsd.conf": "/etc/nsd/nsd.conf",
    "nftables.conf": "/etc/nftables.conf",
    "health.json": HEALTH_CONFIG_FILE,
}
ZONES_DIR = "/etc/nsd/zones"
LOCAL_ADDRESSES_INCLUDE = f"{ZONES_DIR}/local-addresses.inc"
SERVICE_INTERFACE = "anycast0"
ZONE_SERIAL = 1  # identical on every PoP; the zone content changes only with user data, which replaces the PoP
PACKAGES = ["bird2", "caddy", "nftables", "nsd", "prometheus-bird-exporter", "python3"]
# Metrics for the monitoring networks (admin.monitoringCidrs) on the PoP's unicast address, ports in infra/contracts.py:
# Debian's prometheus-bird-exporter and the health agent.
BIRD_EXPORTER_DROPIN = f"/etc/systemd/system/{BIRD_EXPORTER_UNIT}.d/anycast.conf"


@dataclass(frozen=True)
class RenderedPop:
    """The files of one PoP, by file name (``user-data.yaml`` is the cloud-config that carries all the others)."""

    pop: str
    files: dict[str, str] = field(default_factory=dict)

    @property
    def user_data(self) -> str:
        return self.files["user-data.yaml"]


def _one_line(value: Any) -> Any:
    """Every ``{{ value }}`` of every template: one line of printable text, or rendering stops.

    The model already refuses such values; this is the second line of defence, so that no value can add a line
    (a protocol, a record, a rule) to bird.conf, the zone, nsd.conf, the Caddyfile or nftables.conf.
    """
    text = value if isinstance(value, str) else str(value)
    if any(ord(c) < 0x20 or ord(c) == 0x7F or c in "\u2028\u2029\x85" for c in text):
        raise ConfigError([f"render: refusing to write {text[:40]!r} into a config file: it holds a line break or "
                           "control character (fix the stack field it comes from)"])
    return value


def _environment() -> jinja2.Environment:
    loader = jinja2.PackageLoader("userdata", "templates")
    env = jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True, autoescape=False, finalize=_one_line)
    # The ports and paths every template shares with the agents, the gate and monitoring (infra/contracts.py).
    env.globals.update(DNS_PORT=DNS_PORT, HTTP_PORT=HTTP_PORT, HTTPS_PORT=HTTPS_PORT, SERVICE_PORTS=SERVICE_PORTS,
                       HEALTHZ_PATH=HEALTHZ_PATH)
    return env


_ENV = _environment()


def check_password(password: str, source: str = "ANYCAST_BGP_PASSWORD") -> str:
    """The BGP password goes into BIRD's ``password "..."``: refuse what would break the quoting or TCP-MD5."""
    if not password:
        raise ConfigError([f"{source}: the BGP password is empty; copy it from the BGP tab of the Vultr control panel"])
    bad = [c for c in password if not (32 < ord(c) < 127) or c in '"\\']
    if bad:
        raise ConfigError([f"{source}: the BGP password may hold printable ASCII only, without spaces, quotes or backslashes"])
    if len(password) > 80:
        raise ConfigError([f"{source}: the BGP password is longer than TCP-MD5's 80 bytes"])
    return password


def _split_community(text: str) -> tuple[int, int]:
    high, low = text.split(":")
    return int(high), int(low)


def _communities(pop: Pop) -> list[tuple[int, int]]:
    """The PoP's communities in a fixed order: explicit ones, then announce-only-to intents."""
    out = [_split_community(c) for c in pop.announce.communities]
    if pop.announce.only_to:
        out.append(_split_community(NO_EXPORT_OUTSIDE_VULTR))
        out.extend((64699, asn) for asn in pop.announce.only_to)
    seen: list[tuple[int, int]] = []
    for c in out:
        if c not in seen:
            seen.append(c)
    return seen


def _families(network: Network, pop: Pop) -> list[dict[str, Any]]:
    families = []
    for version, prefix, service in ((4, network.prefixes.ipv4, network.service.ipv4), (6, network.prefixes.ipv6, network.service.ipv6)):
        if prefix is None or service is None:
            continue
        fam: dict[str, Any] = {"version": version, "prefix": prefix, "host_route": ip_network(service)}
        if pop.is_vultr:
            fam.update(neighbor=VULTR_NEIGHBOR_V4 if version == 4 else VULTR_NEIGHBOR_V6, peer_asn=VULTR_PEER_ASN,
                       multihop=VULTR_MULTIHOP, peer_description=f"Vultr AS{VULTR_PEER_ASN} (IPv{version})")
        else:
            assert pop.neighbor is not None  # the model requires it for external PoPs
            fam.update(neighbor=getattr(pop.neighbor, f"ipv{version}"), peer_asn=pop.neighbor.asn,
                       multihop=pop.neighbor.multihop, peer_description=f"{pop.city} transit AS{pop.neighbor.asn} (IPv{version})")
        families.append(fam)
    return families


def neighbor_route6(network: Network, pop: Pop) -> IPv6Address | None:
    """The IPv6 neighbour to route as a /128 at boot (bgp.ipv6NeighborRoute: auto, multihop sessions), else None."""
    if network.bgp.ipv6_neighbor_route != "auto":
        return None
    fam = next((f for f in _families(network, pop) if f["version"] == 6 and f["neighbor"] and f["multihop"]), None)
    return fam["neighbor"] if fam is not None else None


def render_bird(network: Network, pop: Pop, password: str) -> str:
    return _ENV.get_template("bird.conf.j2").render(
        network=network, pop=pop, families=_families(network, pop), communities=_communities(pop),
        no_export=_split_community(NO_EXPORT_OUTSIDE_VULTR), password=password if pop.is_vultr else "",
        neighbor_route6=neighbor_route6(network, pop), vultr_asn=VULTR_ASN)


def render_caddyfile(pop: Pop, network: Network | None = None) -> str:
    """Plain HTTP, or (tls.enabled) HTTP redirecting to HTTPS except /healthz, and HTTPS with the stored certificate."""
    tls = None
    if network is not None and network.tls.enabled:
        tls = {"names": network.tls_names, "cert_file": tls_files.CERT_FILE, "key_file": tls_files.KEY_FILE}
    return _ENV.get_template("Caddyfile.j2").render(pop=pop, tls=tls)


def _listen_addresses(network: Network, pop: Pop) -> list[IPv4Address | IPv6Address]:
    if pop.is_anycast:
        return [a for a in (network.service.ipv4, network.service.ipv6) if a is not None]
    if pop.unicast is not None:
        return [a for a in (pop.unicast.ipv4, pop.unicast.ipv6) if a is not None]
    return []  # Vultr unicast PoP: its address is the instance's, unknown until it boots


def zone_answers(network: Network, pop: Pop) -> list[IPv4Address | IPv6Address]:
    """The addresses of ``@`` and ``www`` in the PoP's zone; empty: the PoP writes its own at boot.

    A signed zone cannot hold addresses known only at boot, so there a Vultr unicast PoP answers with the anycast
    addresses, signed like every other PoP's; clients steered to it still reach it by the GeoDNS HTTP names, whose
    records (Route53) hold its address (docs/dnssec.md)."""
    answers = _listen_addresses(network, pop)
    if not answers and network.dns.dnssec is not None:
        return [a for a in (network.service.ipv4, network.service.ipv6) if a is not None]
    return answers


def zone_file_name(network: Network) -> str:
    return f"{network.dns.zone}.zone"


def render_nsd_conf(network: Network, pop: Pop) -> str:
    return _ENV.get_template("nsd.conf.j2").render(network=network, pop=pop, listen=_listen_addresses(network, pop),
                                                   zone_file=zone_file_name(network))


def render_zone(network: Network, pop: Pop, signing: dnssec.ZoneSigning | None = None) -> str:
    """The zone file; with ``dns.dnssec`` signed by ``signing`` (userdata/dnssec.py, docs/dnssec.md)."""
    answers = zone_answers(network, pop)
    records = [("A" if isinstance(a, IPv4Address) else "AAAA", a) for a in answers]
    include = LOCAL_ADDRESSES_INCLUDE if not answers else ""
    text = _ENV.get_template("zone.j2").render(
        zone=network.dns.zone, pop=pop, ttl=network.dns.ttl, serial=ZONE_SERIAL, nameservers=network.dns.nameservers,
        records=records, include=include,
        acme_cnames=sorted(tls_files.challenge_cnames(network)[0].items()) if network.tls.enabled else [])
    if network.dns.dnssec is None:
        return text
    if signing is None:
        raise ConfigError(["dns.dnssec: the zone is to be signed but no key was loaded (userdata.dnssec.signing_from_env)"])
    return dnssec.sign_zone_text(text, network.dns.zone, signing.keys, signing.now)


def render_nftables(network: Network, pop: Pop) -> str:
    admin4 = [str(n) for n in network.admin.ssh_cidrs if n.version == 4]
    admin6 = [str(n) for n in network.admin.ssh_cidrs if n.version == 6]
    monitor4 = [str(n) for n in network.admin.monitoring_cidrs if n.version == 4]
    monitor6 = [str(n) for n in network.admin.monitoring_cidrs if n.version == 6]
    peers4 = [f["neighbor"] for f in _families(network, pop) if f["version"] == 4 and f["neighbor"]]
    peers6 = [f["neighbor"] for f in _families(network, pop) if f["version"] == 6 and f["neighbor"]]
    return _ENV.get_template("nftables.conf.j2").render(
        pop=pop, admin4=admin4, admin6=admin6, bgp_peers4=peers4, bgp_peers6=peers6, monitor4=monitor4,
        monitor6=monitor6, metrics_ports=metrics_ports(pop), service4=network.service.ipv4, service6=network.service.ipv6,
        status_sets=STATUS_PEER_SETS if network.tls.enabled else (), status_port=HEALTH_STATUS_PORT,
        arrivals=ARRIVALS_COUNTER, arrival_rules=arrival_rules(network))


def arrival_rules(network: Network) -> list[str]:
    """The input chain's first rules: count every packet that reaches a service address from outside (not over lo,
    where the health agent's own checks come from) in ARRIVALS_COUNTER, whatever its state, before anything is
    accepted; no verdict. ``anycast-health --drain`` reads the counter to tell when traffic has moved away."""
    name = ARRIVALS_COUNTER[2]
    return [f'iif != "lo" {family} daddr {address} counter name "{name}"'
            for family, address in (("ip", network.service.ipv4), ("ip6", network.service.ipv6)) if address is not None]


def arrivals_nft(network: Network) -> str:
    """The counter and its rules alone, in a table of the same name whose chain accepts everything: what the
    process-mode lab loads into a PoP's namespace (where no nftables.conf runs), so that --drain counts there too."""
    family, table, name = ARRIVALS_COUNTER
    rules = "".join(f"\t\t{r}\n" for r in arrival_rules(network))
    return (f"table {family} {table} {{\n\tcounter {name} {{\n\t}}\n\n\tchain input {{\n"
            f"\t\ttype filter hook input priority filter; policy accept;\n{rules}\t}}\n}}\n")


def metrics_ports(pop: Pop) -> list[int]:
    """The ports Prometheus scrapes on ``pop``: bird_exporter everywhere, the health agent where it runs (anycast)."""
    return [BIRD_EXPORTER_PORT, HEALTH_STATUS_PORT] if pop.is_anycast else [BIRD_EXPORTER_PORT]


def render_health_json(network: Network, pop: Pop) -> str:
    return json.dumps(health_config(network, pop), indent=2, sort_keys=True, allow_nan=False) + "\n"


def _resource_text(name: str) -> str:
    return resources.files("userdata").joinpath(name).read_text(encoding="utf-8")


@functools.cache
def _shipped_program(name: str) -> str:
    """A Python agent from userdata/files/ as the PoP gets it: the same code (``ast.unparse`` of its parse tree) without
    comments, docstrings and annotations (see _Unannotated), one space per indentation level, the shebang and the
    module docstring's first line (``--help``) kept. The source with its
    comments is what is reviewed and tested; this saves a quarter of the user data (about 6 KB per PoP gzip-compressed),
    which a signed zone during a key rollover needs under USER_DATA_BUDGET."""
    source = _resource_text(name)
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            if isinstance(node, ast.Module):
                body[0].value.value = body[0].value.value.strip().splitlines()[0]
            else:
                node.body = body[1:] or [ast.Pass()]
    tree = _Unannotated().visit(tree)
    shebang = source.splitlines()[0] if source.startswith("#!") else ""
    code = ast.unparse(tree)
    # One space per level instead of ast.unparse's four: 0.5 KB less over the three agents, gzip-compressed. Kept
    # only if it parses to the same tree (ast.unparse writes every string on one line, so no literal is touched).
    narrow = "\n".join(re.sub(r"^(?:    )+", lambda m: " " * (len(m.group(0)) // 4), line) for line in code.split("\n"))
    if ast.dump(ast.parse(narrow)) == ast.dump(ast.parse(code)):
        code = narrow
    return (shebang + "\n" if shebang else "") + code + "\n"


class _Unannotated(ast.NodeTransformer):
    """Drops the annotations that only type checkers read (the agents have ``from __future__ import annotations``,
    so Python never evaluates them): parameters, return types, and annotated assignments outside class bodies. Class
    bodies keep theirs: dataclass fields are annotations. About 2 KB of the health agent gzip-compressed."""

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.ClassDef:
        node.body = [self.visit(n) if not isinstance(n, ast.AnnAssign) else n for n in node.body]
        return node

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
        node.returns = None
        a = node.args
        for arg in (*a.posonlyargs, *a.args, *a.kwonlyargs, *(x for x in (a.vararg, a.kwarg) if x is not None)):
            arg.annotation = None
        self.generic_visit(node)
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST | None:
        if node.value is None:
            return None  # a bare declaration: no code
        return ast.copy_location(ast.Assign(targets=[node.target], value=node.value, lineno=node.lineno), node)


def _systemd_unit(description: str, unit: list[str], service: list[str]) -> str:
    return "\n".join(["[Unit]", f"Description={description}", *unit, "", "[Service]", *service, "",
                      "[Install]", "WantedBy=multi-user.target", ""])


_AFTER_NETWORK = ["After=network-online.target", "Wants=network-online.target"]
_ONESHOT = ["Type=oneshot", "RemainAfterExit=yes"]


def _service_addresses_unit(network: Network) -> str:
    cmds = [f"ExecStart=-/sbin/ip link add {SERVICE_INTERFACE} type dummy", f"ExecStart=/sbin/ip link set {SERVICE_INTERFACE} up"]
    for addr, plen in ((network.service.ipv4, 32), (network.service.ipv6, 128)):
        if addr is not None:
            cmds.append(f"ExecStart=/sbin/ip addr replace {addr}/{plen} dev {SERVICE_INTERFACE}")
    return _systemd_unit("Anycast service addresses on a dummy interface",
                         ["Before=bird.service nsd.service caddy.service", *_AFTER_NETWORK],
                         [*_ONESHOT, *cmds, *hardening.oneshot_sandbox("CAP_NET_ADMIN")])


def health_unit(network: Network) -> str:
    """anycast-health.service (Type=notify, watchdog, ExecStopPost withdraws): userdata/health_config.py."""
    return _health_unit(network, HOST_PATHS["health.json"], HEALTH_AGENT)

# Debian's unit runs `prometheus-bird-exporter $ARGS` as user bird with ARGS="-format.new" from
# /etc/default/prometheus-bird-exporter (a conffile, left alone); BIRD 2 needs -bird.v2 (one socket, both families).
# The drop-in replaces ExecStart, so the package's first start already uses it (written before the packages).
BIRD_EXPORTER_DROPIN_TEXT = "\n".join([
    "[Service]", "ExecStart=",
    f"ExecStart=/usr/bin/prometheus-bird-exporter -bird.v2 -format.new -bird.socket {BIRD_SOCKET} "
    f"-web.listen-address :{BIRD_EXPORTER_PORT}", ""])

# Debian's caddy.service has no Restart= (its nsd.service has Restart=always, bird.service Restart=on-abort): a crashed
# Caddy would stay down, the PoP withdrawn, until someone restarts it. on-failure: a crash, OOM kill, panic or failed
# start, not `systemctl stop`. RestartSec=2s is longer than the agent's slowest withdrawal (fall 2 x 200 ms + 300 ms
# timeout), so every crash is a withdrawal first, counted and visible; the PoP is back ~2.7 s after a crash (+ `rise`).
# A crash loop stops: the 6th start within 60 s fails the unit, the PoP stays withdrawn and AnycastPopWithdrawn fires
# (docs/health.md). In [Unit]: systemd.unit(5), StartLimitIntervalSec=/StartLimitBurst=; a drop-in, so the package's
# first start already uses it (written before the packages).
CADDY_RESTART_DROPIN = "/etc/systemd/system/caddy.service.d/restart.conf"
CADDY_RESTART_DROPIN_TEXT = "\n".join([
    "[Unit]", "StartLimitIntervalSec=60s", "StartLimitBurst=5", "",
    "[Service]", "Restart=on-failure", "RestartSec=2s", ""])

NEIGHBOR_ROUTE_SCRIPT = "/usr/local/sbin/anycast-neighbor-route"


def neighbor_route_unit(neighbor: IPv6Address) -> str:
    """bgp.ipv6NeighborRoute: auto; before BIRD, so its first IPv6 session attempt already has the route."""
    return _systemd_unit("Route the IPv6 BGP neighbour via the router-advertised gateway",
                         ["Before=bird.service", *_AFTER_NETWORK],
                         [*_ONESHOT, f"ExecStart=/bin/sh {NEIGHBOR_ROUTE_SCRIPT} {neighbor}",
                          *hardening.oneshot_sandbox("CAP_NET_ADMIN")])


LOCAL_ADDRESSES_UNIT = _systemd_unit(
    "Write this unicast PoP's own addresses into its NSD zone",
    ["Before=nsd.service", *_AFTER_NETWORK],
    [*_ONESHOT, f"ExecStart=/bin/sh /usr/local/sbin/anycast-local-addresses {LOCAL_ADDRESSES_INCLUDE}",
     *hardening.oneshot_sandbox(writes=ZONES_DIR)])


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings as ``|`` blocks, so user data stays readable in the Vultr panel and in diffs.

    The shared sandbox drop-in (hardening.SANDBOX_TEXT, one object) is written out once as ``&sandbox`` and then
    referred to as ``*sandbox``: six copies would cost 3 KB of USER_DATA_BUDGET. YAML aliases are plain YAML 1.1;
    cloud-init's loader resolves them.
    """

    def ignore_aliases(self, data: Any) -> bool:
        return not (isinstance(data, str) and data in _SHARED) and bool(super().ignore_aliases(data))

    def generate_anchor(self, node: Any) -> str:
        return _SHARED.get(node.value) or str(super().generate_anchor(node))


# Texts the user data holds more than once, written once as &name and then as *name.
_SHARED = {hardening.SANDBOX_TEXT: "sandbox", hardening.BANNER: "banner"}


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_LiteralDumper.add_representer(str, _str_presenter)


class _Command(list[str]):
    """A runcmd command, written on one line as a flow sequence (``- [systemctl, daemon-reload]``): the same list to
    cloud-init, a line per command to a reader, and 0.5 KB less of USER_DATA_BUDGET than a block list per command."""


def _command_presenter(dumper: yaml.SafeDumper, data: _Command) -> yaml.SequenceNode:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", list(data), flow_style=True)


_LiteralDumper.add_representer(_Command, _command_presenter)


def _write_file(path: str, content: str, permissions: str = "0644", owner: str = "root:root", defer: bool = False,
                compress: bool = False) -> dict[str, Any]:
    # cloud-init's defaults (cc_write_files.py: owner root:root, permissions 0644) are left out: 1.5 KB of the budget.
    entry: dict[str, Any] = {"path": path, "content": content}
    entry.update({k: v for k, v, default in (("owner", owner, "root:root"), ("permissions", permissions, "0644"))
                  if v != default})
    if compress:
        # The agents (reviewed as source in userdata/files/) and a signed zone (reviewed as its own golden file): gzip
        # keeps the user data within USER_DATA_BUDGET. mtime=0 keeps the bytes stable for golden files.
        packed = gzip.compress(content.encode("utf-8"), compresslevel=9, mtime=0)
        entry.update(content=base64.b64encode(packed).decode("ascii"), encoding="gz+b64")
    if defer:  # written after the packages are installed, when their users exist
        entry["defer"] = True
    return entry


def _tls_write_files(network: Network, pop: Pop, files: dict[str, str],
                     credentials: tls_files.TlsCredentials | None) -> list[dict[str, Any]]:
    """anycast-tls, its config and timers; the access key only when given (the Pulumi program passes it)."""
    out = [_write_file(tls_files.CONFIG_FILE, files["tls.json"], compress=True),
           _write_file(tls_files.SCRIPT, _shipped_program("files/anycast-tls.py"), "0755", compress=True)]
    for name, text in tls_files.units(network, pop).items():
        # the services (each with its sandbox lines) gzip-compressed: the peer list's unit made room short (USER_DATA_BUDGET)
        out.append(_write_file(f"/etc/systemd/system/{name}", text, compress=name.endswith(".service")))
    if credentials is not None:
        creds = {"access_key_id": credentials.access_key_id, "secret_access_key": credentials.secret_access_key}
        out.append(_write_file(tls_files.CREDENTIALS_FILE, json.dumps(creds, allow_nan=False) + "\n", "0600"))
    return out


def render_cloud_config(network: Network, pop: Pop, files: dict[str, str],
                        tls_credentials: tls_files.TlsCredentials | None = None) -> str:
    zone_name = zone_file_name(network)
    needs_local_addresses = not zone_answers(network, pop)
    write_files = [
        _write_file(HOST_PATHS["bird.conf"], files["bird.conf"], "0640", "root:bird", defer=True, compress=True),
        # The Caddyfile and nftables.conf are reviewed as golden files of their own: gzip keeps the user data within
        # USER_DATA_BUDGET since the reboot coordinator, the graceful-shutdown drain and the auditors' fixes (2 KB);
        # so do the health agent's unit, the agents' JSON configs, nsd.conf and the IPv6 neighbour script below.
        _write_file(HOST_PATHS["Caddyfile"], files["Caddyfile"], defer=True, compress=True),
        _write_file(HOST_PATHS["nsd.conf"], files["nsd.conf"], defer=True, compress=True),
        # A signed zone (RRSIG/NSEC/DNSKEY) is about 3x the unsigned one: gzip keeps the user data within
        # USER_DATA_BUDGET (the zone file itself is a golden file and validated by nsd-checkzone/ldns-verify-zone).
        _write_file(f"{ZONES_DIR}/{zone_name}", files[zone_name], defer=True, compress=network.dns.dnssec is not None),
        _write_file(HOST_PATHS["nftables.conf"], files["nftables.conf"], "0755", compress=True),
        _write_file("/etc/systemd/system/anycast-addresses.service", _service_addresses_unit(network), compress=True),
        _write_file(hardening.OURS_SANDBOX, hardening.SANDBOX_TEXT),  # every anycast-*.service (prefix drop-in)
        _write_file(BIRD_EXPORTER_DROPIN, BIRD_EXPORTER_DROPIN_TEXT),
        _write_file(CADDY_RESTART_DROPIN, CADDY_RESTART_DROPIN_TEXT),
        *(_write_file(path, text, compress=text is not hardening.SANDBOX_TEXT) for path, text in hardening.DROPINS.items()),
        _write_file(hardening.SSHD_DROPIN, hardening.SSHD_DROPIN_TEXT, "0600", compress=True),
        _write_file(hardening.SYSCTL_FILE, hardening.SYSCTL_TEXT, compress=True),  # the largest plain file left
        *(_write_file(path, text) for path, text in hardening.HOST_FILES.items()),
    ]
    services = ["anycast-addresses.service"]
    if pop.is_anycast:
        write_files += [
            _write_file(HOST_PATHS["health.json"], files["health.json"], compress=True),
            _write_file(HEALTH_AGENT, _shipped_program("files/anycast-health.py"), "0755", compress=True),
            _write_file(f"/etc/systemd/system/{HEALTH_UNIT}", health_unit(network), compress=True),
        ]
    # Security updates and the reboots they need, on every PoP (userdata/reboots.py).
    write_files += [
        _write_file(reboots.APT_CONF, reboots.APT_CONF_TEXT, compress=True),
        _write_file(REBOOT_CONFIG_FILE, files["reboot.json"], compress=True),  # a golden file of its own
        _write_file(REBOOT_AGENT, _shipped_program("files/anycast-reboot.py"), "0755", compress=True),
        *(_write_file(f"/etc/systemd/system/{name}", text, compress=name.endswith(".service"))
          for name, text in reboots.units().items()),
    ]
    if needs_local_addresses:
        write_files += [
            _write_file("/usr/local/sbin/anycast-local-addresses", _resource_text("files/anycast-local-addresses.sh"), "0755"),
            _write_file("/etc/systemd/system/anycast-local-addresses.service", LOCAL_ADDRESSES_UNIT, compress=True),
        ]
        services.append("anycast-local-addresses.service")
    if (neighbor6 := neighbor_route6(network, pop)) is not None:
        write_files += [
            _write_file(NEIGHBOR_ROUTE_SCRIPT, _resource_text("files/anycast-neighbor-route.sh"), "0755", compress=True),
            _write_file("/etc/systemd/system/anycast-neighbor-route.service", neighbor_route_unit(neighbor6), compress=True),
        ]
        services.append("anycast-neighbor-route.service")
    if network.tls.enabled:
        write_files += _tls_write_files(network, pop, files, tls_credentials)
    runcmd: list[Any] = [
        ["systemctl", "daemon-reload"],
        hardening.SYSCTL_APPLY,
        hardening.LOGIN_DEFS_APPLY,
        ["nft", "-f", HOST_PATHS["nftables.conf"]],
        ["systemctl", "enable", "nftables.service"],
        ["systemctl", "enable", "--now", *services],
        ["systemctl", "restart", "nsd.service", "caddy.service", "bird.service"],
        ["systemctl", "restart", BIRD_EXPORTER_UNIT],
    ]
    runcmd.append(["systemctl", "enable", "--now", REBOOT_UNIT, REBOOT_TIMER])
    if pop.is_anycast:
        runcmd.append(["systemctl", "enable", "--now", HEALTH_UNIT])
    if network.tls.enabled:
        at = runcmd.index(["systemctl", "restart", "nsd.service", "caddy.service", "bird.service"])
        runcmd[at:at] = [["/usr/bin/python3", tls_files.SCRIPT, "bootstrap", "--config", tls_files.CONFIG_FILE]]
        timers = [u for u in tls_files.units(network, pop) if u.endswith(".timer")]
        runcmd[at + 2:at + 2] = [["systemctl", "enable", "--now", *timers, tls_files.STATUS_PEERS_UNIT],  # after Caddy
                                 ["systemctl", "start", "--no-block", *(t.replace(".timer", ".service") for t in timers)]]
    doc: dict[str, Any] = {
        "hostname": f"anycast-{pop.code}",
        "fqdn": f"{pop.code}.{network.dns.zone}",
        "package_update": True,
        "packages": [*PACKAGES, reboots.PACKAGE, *tls_files.packages(network, pop)],
        "ssh_pwauth": False,
    }
    if network.admin.ssh_keys:
        doc["ssh_authorized_keys"] = list(network.admin.ssh_keys)
    doc["write_files"] = write_files
    doc["runcmd"] = [_Command(c) if isinstance(c, list) else c for c in runcmd]
    body = yaml.dump(doc, Dumper=_LiteralDumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1000)
    text = f"#cloud-config\n# PoP {pop.code} ({pop.city}, {pop.country}), {pop.mode}. Rendered by anycast: edit the stack.\n{body}"
    if len(text.encode("utf-8")) > USER_DATA_BUDGET:
        raise ConfigError([f"pops.{pop.code}: the rendered user data is {len(text.encode())} bytes, over the "
                           f"{USER_DATA_BUDGET}-byte budget (48 KiB: 64 KiB once base64-encoded); see "
                           "docs/deploy.md#user-data-size"])
    return text


def render_pop(network: Network, pop: Pop, bgp_password: str,
               tls_credentials: tls_files.TlsCredentials | None = None,
               signing: dnssec.ZoneSigning | None = None) -> RenderedPop:
    """All files of ``pop``; ``bgp_password`` lands only in bird.conf and the user data that carries it, and
    ``tls_credentials`` (the PoP's AWS access key for the certificate store) only in the user data. ``signing``
    (required with ``dns.dnssec``) signs the zone; its private keys land nowhere."""
    check_password(bgp_password)
    files: dict[str, str] = {
        "bird.conf": render_bird(network, pop, bgp_password),
        "Caddyfile": render_caddyfile(pop, network),
        "nsd.conf": render_nsd_conf(network, pop),
        zone_file_name(network): render_zone(network, pop, signing),
        "nftables.conf": render_nftables(network, pop),
        "reboot.json": reboots.reboot_json(network, pop),
    }
    if pop.is_anycast:
        files["health.json"] = render_health_json(network, pop)
    if network.tls.enabled:
        files["tls.json"] = json.dumps(tls_files.tls_config(network, pop), indent=2, sort_keys=True, allow_nan=False) + "\n"
    files["user-data.yaml"] = render_cloud_config(network, pop, files, tls_credentials)
    return RenderedPop(pop=pop.code, files=files)


def render_network(network: Network, bgp_password: str,
                   signing: dnssec.ZoneSigning | None = None) -> dict[str, RenderedPop]:
    return {pop.code: render_pop(network, pop, bgp_password, signing=signing) for pop in network.pops}


def summary(network: Network) -> dict[str, Any]:
    """What the rendered network announces from where: JSON-safe and free of secrets."""
    pops = {}
    for pop in network.pops:
        pops[pop.code] = {
            "provider": pop.provider,
            "region": pop.region,
            "city": pop.city,
            "country": pop.country,
            "continent": pop.continent,
            "mode": pop.mode,
            "announces": [str(p) for p in network.announced_prefixes] if pop.is_anycast else [],
            "prepend": pop.announce.prepend,
            "communities": [f"{a}:{b}" for a, b in _communities(pop)],
            "geodns": list(pop.geodns),
        }
    return {
        "asn": network.asn,
        "asn_source": network.asn_source,
        "roa_origin_asn": network.roa_origin_asn,
        "prefixes": [str(p) for p in network.announced_prefixes],
        "service": {k: str(v) for k, v in (("ipv4", network.service.ipv4), ("ipv6", network.service.ipv6)) if v is not None},
        "zone": network.dns.zone,
        "pops": pops,
    }
