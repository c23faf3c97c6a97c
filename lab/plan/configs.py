"""Configuration text for the lab: the emulated upstreams (GoBGP), the clients (BIRD), and the documented lab
substitutions applied to the rendered PoP files.

The rendered files run unchanged except for the substitutions in :data:`LAB_SUBSTITUTIONS`, each an exact text
replacement that must match (a renderer change that breaks one fails the lab loudly instead of drifting).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from infra.contracts import BIRD_SOCKET, DRAIN_FILE
from infra.model import NO_EXPORT_OUTSIDE_VULTR
from lab.plan.topology import TRANSIT_ASN, VULTR_PREPEND_COMMUNITIES, ClientPlan, LabPlan, PopPlan, local_pref

LEAK_COMMUNITY = (65535, 666)  # marks the routes the leak test injects, so clients drop them
NO_EXPORT = tuple(int(x) for x in NO_EXPORT_OUTSIDE_VULTR.split(":"))  # Vultr-internal host routes


@dataclass(frozen=True)
class Substitution:
    file: str  # key in RenderedPop.files ("<zone>" means the zone file)
    old: str
    new: str
    why: str


def lab_substitutions(pop_dir: Path, zone_file: str) -> list[Substitution]:
    """The lab's text substitutions for one PoP whose files live in ``pop_dir``."""
    d = str(pop_dir)
    return [
        Substitution("bird.conf", "log syslog all;", f'log "{d}/bird.log" all;',
                     "no syslog daemon in the lab; BIRD logs to a file in the PoP's lab directory"),
        Substitution("nsd.conf", 'zonesdir: "/etc/nsd/zones"', f'zonesdir: "{d}/zones"',
                     "zones live in the PoP's lab directory instead of /etc/nsd/zones"),
        Substitution("nsd.conf", 'username: ""',
                     f'username: ""\n  pidfile: "{d}/nsd.pid"\n  database: ""\n  zonelistfile: "{d}/zone.list"\n'
                     f'  xfrdfile: "{d}/xfrd.state"\n  xfrdir: "{d}"',
                     "20 NSDs share one host (run as root, not as a systemd unit): per-PoP pid and state files"),
        Substitution(zone_file, "$INCLUDE /etc/nsd/zones/local-addresses.inc", f"$INCLUDE {d}/zones/local-addresses.inc",
                     "unicast PoPs: the include written by anycast-local-addresses lives in the lab directory"),
        Substitution("health.json", f'"socket": "{BIRD_SOCKET}"', f'"socket": "{d}/bird.ctl"',
                     "each PoP's BIRD has its own control socket in its lab directory"),
        Substitution("health.json", f'"file": "{DRAIN_FILE}"', f'"file": "{d}/drain"',
                     "each PoP's drain file lives in its lab directory"),
    ]


def apply_substitutions(files: dict[str, str], subs: list[Substitution]) -> dict[str, str]:
    """Apply each substitution to its file; files a substitution names but the PoP lacks are skipped.

    Raises:
        ValueError: the text to replace is not in the file (the renderer changed; update the lab).
    """
    out = dict(files)
    for s in subs:
        if s.file not in out:
            continue
        if s.old not in out[s.file]:
            if s.file.endswith(".zone"):
                continue  # anycast PoPs have no $INCLUDE
            raise ValueError(f"lab substitution for {s.file}: {s.old!r} not found (renderer changed?)")
        out[s.file] = out[s.file].replace(s.old, s.new)
    return out


def gobgpd_toml(plan: LabPlan, pop: PopPlan, password: str) -> str:
    """GoBGP config of ``pop``'s upstream: its PoP sessions (TCP-MD5 towards Vultr PoPs) and every client."""
    lines = ["[global.config]", f"  as = {pop.upstream_asn}", f'  router-id = "{pop.backbone_v4}"', ""]

    def neighbor(addr: str, asn: int, afi: str, local: str, *, auth: bool, multihop: int | None, passive: bool,
                 hold: int) -> None:
        lines.extend(["[[neighbors]]", "  [neighbors.config]", f'    neighbor-address = "{addr}"', f"    peer-as = {asn}"])
        if auth:
            lines.append(f'    auth-password = "{password}"')
        lines.extend(["  [neighbors.transport.config]", f'    local-address = "{local}"'])
        if passive:
            lines.append("    passive-mode = true")
        if multihop:
            lines.extend(["  [neighbors.ebgp-multihop.config]", "    enabled = true", f"    multihop-ttl = {multihop}"])
        lines.extend(["  [neighbors.timers.config]", "    connect-retry = 1", f"    hold-time = {hold}",
                      f"    keepalive-interval = {max(1, hold // 3)}", "    idle-hold-time-after-reset = 1",
                      "  [[neighbors.afi-safis]]", "    [neighbors.afi-safis.config]", f'      afi-safi-name = "{afi}"', ""])

    for s in pop.sessions:
        neighbor(str(s.pop_address), plan.network.asn, f"ipv{s.version}-unicast", str(s.upstream_address),
                 auth=pop.password, multihop=s.multihop if s.on_loopback else None, passive=False, hold=90)
    for c in plan.clients:
        if pop.session(4) is not None:
            neighbor(str(c.backbone_v4), c.asn, "ipv4-unicast", str(pop.backbone_v4), auth=False, multihop=None,
                     passive=True, hold=30)
        if pop.session(6) is not None:
            neighbor(str(c.backbone_v6), c.asn, "ipv6-unicast", str(pop.backbone_v6), auth=False, multihop=None,
                     passive=True, hold=30)
    return "\n".join(lines)


def client_bird_conf(plan: LabPlan, client: ClientPlan, run_dir: Path) -> str:
    """BIRD for a client: one session per upstream and family, local-pref from the distance to that PoP."""
    out = [
        f"# Lab client {client.name} ({client.site.city}, {client.site.country}): prefers the nearest PoP.",
        f'log "{run_dir}/bird.log" all;',
        f"router id {client.backbone_v4};",
        "protocol device { scan time 10; }",
        "protocol kernel kernel4 { ipv4 { import none; export all; }; }",
        "protocol kernel kernel6 { ipv6 { import none; export all; }; }",
    ]
    hot = plan.hot_pops(client)
    if hot:
        out[0] += (f" Step-8 option: {', '.join(sorted(hot))} upstream is this client's transit; the others come"
                   f" through AS{TRANSIT_ASN}; shortest AS path first, then the nearest (MED).")
    for pop in plan.pops:
        pref = local_pref(client.distances_km[pop.code])
        if hot:  # equal local-pref, AS path length decides, the distance (as MED, compared across ASes) breaks ties
            policy = ["      bgp_local_pref = 100;", f"      bgp_med = {int(client.distances_km[pop.code] // 10)};"]
            if plan.network.pop(pop.code).is_vultr:  # Vultr acts on its "prepend n x to all" communities
                for community, n in VULTR_PREPEND_COMMUNITIES.items():
                    high, low = community.split(":")
                    policy.append(f"      if ({high}, {low}) ~ bgp_community then {{ "
                                  + " ".join([f"bgp_path.prepend({pop.upstream_asn});"] * n) + " }")
            if pop.code not in hot:
                policy.append(f"      bgp_path.prepend({TRANSIT_ASN});")
        else:
            policy = [f"      bgp_local_pref = {pref};"]
        for version in (4, 6):
            if pop.session(version) is None:
                continue
            local = client.backbone_v4 if version == 4 else client.backbone_v6
            peer = pop.backbone_v4 if version == 4 else pop.backbone_v6
            out += [
                f"protocol bgp up_{pop.code}_{version} {{",
                f'  description "{pop.code} upstream AS{pop.upstream_asn}, {client.distances_km[pop.code]:.0f} km";',
                f"  local {local} as {client.asn};",
                f"  neighbor {peer} as {pop.upstream_asn};",
                "  connect delay time 1; connect retry time 2; error wait time 1, 3;",
                "  hold time 30; keepalive time 10;",
                *(["  med metric yes;"] if hot else []),
                f"  ipv{version} {{",
                "    import filter {",
                f"      if ({NO_EXPORT[0]}, {NO_EXPORT[1]}) ~ bgp_community then reject;",
                f"      if ({LEAK_COMMUNITY[0]}, {LEAK_COMMUNITY[1]}) ~ bgp_community then reject;",
                *policy,
                "      # RFC 8326: a drain's GRACEFUL_SHUTDOWN routes lose to every other path (docs/maintenance.md)",
                "      if (65535, 0) ~ bgp_community then bgp_local_pref = 0;",
                "      accept;",
                "    };",
                "    export none;",
                "  };",
                "}",
            ]
    return "\n".join(out) + "\n"
