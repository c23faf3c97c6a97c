"""The anycast network model: one validated document, the single source of truth.

Every renderer, the Pulumi program, the RIPE client and the lab read a :class:`Network`. Config keys are camelCase
(as Pulumi config is written); attributes are snake_case. Cross-field rules raise :func:`_field_error` so that every
message names the exact field path, e.g. ``pops[3].region: 'amss' is not a Vultr region (ams, atl, ...)``.
"""

from __future__ import annotations

import ipaddress
import re
import zlib
from functools import cached_property
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from infra.model.errors import ConfigError, _field_error, format_errors
from infra.model.fields import (
    AnyNetwork,
    BgpPasswordEnv,
    Community,
    Country,
    DnsName,
    DnssecKeyEnv,
    DsRecord,
    FreeText,
    Ipv4Address,
    Ipv6Address,
    Mntner,
    PopCode,
    RipeDescr,
    S3BucketName,
    SshKey,
    VultrPlan,
    address_problem,
    country_codes,
    shown,
)
from infra.model.regions import CONTINENTS, continent_of, vultr_regions
from infra.model.rules import (
    RESERVED_ASNS,
    announce_problem,
    asn_problem,
    bogon_problem,
    community_problem,
    peer_asn_problem,
    prefix_problem,
)
from infra.model.vultr import MAX_PREPEND, VULTR_ASN


class Model(BaseModel):
    """Base: camelCase keys in config, unknown keys rejected, values frozen once validated."""

    # strict: YAML's true is not a number and 3 is not an address; the annotated types in infra.model.fields parse strings.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, strict=True)


class Prefixes(Model):
    ipv4: IPv4Network | None = Field(
        None, description="The IPv4 prefix announced from every anycast PoP (/16 to /24). Omit for an IPv6-only network.")
    ipv6: IPv6Network = Field(description="The IPv6 prefix announced from every anycast PoP (/29 to /48).")

    @field_validator("ipv4", "ipv6", mode="before")
    @classmethod
    def _strict_network(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None and not isinstance(value, (str, IPv4Network, IPv6Network)):
            raise ValueError(f"{shown(value)} is not a prefix: write it as a string like "
                             + ("192.0.2.0/24" if info.field_name == "ipv4" else "2001:db8::/48"))
        if isinstance(value, str):
            version = 4 if info.field_name == "ipv4" else 6
            if "%" in value:  # ip_network keeps a zone id, which would reach bird.conf
                raise ValueError(f"{shown(value)} has a zone id (%...): write the plain prefix, without %")
            try:
                net = ipaddress.ip_network(value, strict=True)
            except ValueError as exc:
                if "host bits set" in str(exc):
                    fixed = ipaddress.ip_network(value, strict=False)
                    raise ValueError(f"{shown(value)} has host bits set; did you mean {fixed}?") from None
                example = "192.0.2.0/24" if version == 4 else "2001:db8::/48"
                raise ValueError(f"{shown(value)} is not an IPv{version} prefix like {example}") from None
            if net.version != version:
                raise ValueError(f"{shown(value)} is an IPv{net.version} prefix; this field takes IPv{version}")
            return net
        return value

    @model_validator(mode="after")
    def _announceable(self) -> Prefixes:
        for name in ("ipv4", "ipv6"):
            net = getattr(self, name)
            if net is not None and (problem := prefix_problem(net)):
                raise _field_error(name, problem)
        return self


class ServiceAddresses(Model):
    ipv4: Ipv4Address | None = Field(None, description="The anycast IPv4 address every PoP serves on (inside prefixes.ipv4).")
    ipv6: Ipv6Address = Field(description="The anycast IPv6 address every PoP serves on (inside prefixes.ipv6).")


class Bgp(Model):
    hold_time: int = Field(9, ge=3, le=65535, description="BGP hold time in seconds: how long a frozen PoP keeps its routes.")
    keepalive_time: int = Field(3, ge=1, le=21845, description="BGP keepalive interval in seconds (at most holdTime / 3).")
    graceful_restart: bool = Field(
        False, description="BGP graceful restart. Off for anycast: it keeps a dead PoP's routes for minutes.")
    error_wait_min: int = Field(
        5, ge=1, le=3600,
        description="Seconds BIRD waits before reconnecting after a session error (BIRD's default 60 keeps a PoP that "
        "was frozen out of service for a minute after it recovers).")
    error_wait_max: int = Field(
        120, ge=1, le=3600,
        description="Upper bound of that wait, which doubles on each consecutive error: damping for a flapping PoP.")
    graceful_shutdown_prepend: int = Field(
        3, ge=0, le=3,
        description="A planned drain (anycast-health --drain) first re-announces with the RFC 8326 GRACEFUL_SHUTDOWN "
        "community 65535:0; upstreams that do not honour it (Vultr documents no support) see the path this many times "
        "longer: own-AS prepends, and on Vultr its prepend-to-all community 20473:600N. 0: community only.")
    ipv6_neighbor_route: Literal["auto", "none"] = Field(
        "none",
        description="'auto': at boot, route the IPv6 BGP neighbour (Vultr's 2001:19f0:ffff::1, multihop) as a /128 via "
        "the IPv6 default router learned from router advertisements, in the kernel, and show it in BIRD (table "
        "neighbor6); 'none': leave it to the default route. For multihop IPv6 sessions (docs/deploy.md).")
    password_env: BgpPasswordEnv = Field(
        "ANYCAST_BGP_PASSWORD",
        description="Environment variable holding the Vultr BGP (TCP-MD5) password outside Pulumi: ANYCAST_BGP_PASSWORD "
        "or ANYCAST_BGP_PASSWORD_<SUFFIX>, never another credential's variable; under Pulumi it is the "
        "anycast:bgpPassword secret.")

    @model_validator(mode="after")
    def _timers(self) -> Bgp:
        if self.keepalive_time * 3 > self.hold_time:
            raise _field_error("keepaliveTime", f"{self.keepalive_time} is more than holdTime / 3 ({self.hold_time} / 3)")
        if self.error_wait_min > self.error_wait_max:
            raise _field_error("errorWaitMin", f"{self.error_wait_min} is more than errorWaitMax ({self.error_wait_max})")
        return self


class DnssecKey(Model):
    env: DnssecKeyEnv = Field(
        description="Environment variable holding the private key (PEM, ECDSA P-256): ANYCAST_DNSSEC_KEY or "
        "ANYCAST_DNSSEC_KEY_<SUFFIX>; never the key itself (docs/dnssec.md).")
    ds: DsRecord = Field(
        description="The DS record this key must produce, '<key tag> 13 2 <SHA-256 hex>' (anycast dnssec ds prints "
        "it): a wrong or stale key fails the render instead of breaking validation.")
    publish_ds: bool = Field(
        True, description="Publish this key's DS in parentZone; false during the last steps of a rollover (docs/dnssec.md).")


class Dnssec(Model):
    keys: list[DnssecKey] = Field(
        min_length=1, max_length=2,
        description="The signing keys (one, or two during a rollover); each signs every RRset (docs/dnssec.md).")

    @field_validator("keys")
    @classmethod
    def _distinct(cls, keys: list[DnssecKey]) -> list[DnssecKey]:
        for field, values in (("env", [k.env for k in keys]), ("ds", [k.ds for k in keys])):
            if len(set(values)) != len(values):
                raise ValueError(f"two keys have the same {field}")
        return keys


class Dns(Model):
    parent_zone: DnsName = Field(description="The Route53 hosted zone that holds the delegation and the GeoDNS records, e.g. example.com.")
    create_parent_zone: bool = Field(False, description="Create the Route53 hosted zone instead of looking it up by name.")
    zone: DnsName = Field(description="The zone NSD serves from every PoP, delegated from parentZone, e.g. cdn.example.com.")
    nameservers: list[DnsName] = Field(
        min_length=1, description="Nameserver names for the zone; they live in parentZone as GeoDNS records.")
    http_names: list[DnsName] = Field(
        default_factory=list, description="HTTP names in parentZone answered by GeoDNS (anycast by default).")
    ttl: int = Field(
        60, ge=1, le=86400,
        description="TTL of the GeoDNS records and the zone's records (AWS advises 60 s or less with health checks).")
    dnssec: Dnssec | None = Field(None, description="Sign the zone and publish its DS in parentZone (docs/dnssec.md).")

    @field_validator("nameservers", "http_names")
    @classmethod
    def _unique(cls, values: list[str]) -> list[str]:
        if len(set(values)) != len(values):
            raise ValueError("names must be unique")
        return values

    @model_validator(mode="after")
    def _placement(self) -> Dns:
        # A name that is both a nameserver and an HTTP name would be two Route53 record sets of the same name and type.
        for i, name in enumerate(self.http_names):
            if name in self.nameservers:
                raise _field_error(f"httpNames[{i}]", f"'{name}' is also a nameserver; an HTTP name needs a name of its own")
        if not _within(self.zone, self.parent_zone) or self.zone == self.parent_zone:
            raise _field_error("zone", f"'{self.zone}' must be a subdomain of parentZone '{self.parent_zone}'")
        for field, names in (("nameservers", self.nameservers), ("httpNames", self.http_names)):
            for i, name in enumerate(names):
                if not _within(name, self.parent_zone):
                    raise _field_error(f"{field}[{i}]", f"'{name}' is not in parentZone '{self.parent_zone}'")
                if _within(name, self.zone):
                    raise _field_error(
                        f"{field}[{i}]",
                        f"'{name}' is inside the delegated zone '{self.zone}', where Route53 cannot answer with GeoDNS; "
                        f"use a name in '{self.parent_zone}' outside '{self.zone}'")
        return self


def _within(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)


class Defaults(Model):
    provider: Literal["vultr", "external"] = Field("vultr", description="Provider of PoPs that do not name one.")
    plan: VultrPlan = Field("vc2-1c-1gb", description="Vultr plan id for PoPs that do not name one.")
    os_id: int = Field(2136, ge=1, le=999999, description="Vultr OS id (2136 = Debian 12 x64 bookworm).")


# The widest network admin.monitoringCidrs may name: one organisation's monitoring, not a slice of the Internet.
WIDEST_MONITORING_CIDR = {4: 16, 6: 32}


class Admin(Model):
    ssh_cidrs: list[AnyNetwork] = Field(
        default_factory=list, description="Networks allowed to reach SSH on the PoPs (firewall and nftables).")
    ssh_keys: list[SshKey] = Field(default_factory=list, description="Public SSH keys installed on every PoP (no passwords).")
    monitoring_cidrs: list[AnyNetwork] = Field(
        default_factory=list, description="Networks of the Prometheus servers allowed to scrape the PoPs' exporters "
                                          "(bird_exporter tcp/9324, health agent tcp/9325; firewall and nftables); "
                                          "IPv4 /16 or longer, IPv6 /32 or longer. The PoPs' own addresses "
                                          "belong here only without tls.enabled (docs/security.md, reboots).")

    @field_validator("monitoring_cidrs")
    @classmethod
    def _monitoring_narrow(cls, values: list[IPv4Network | IPv6Network]) -> list[IPv4Network | IPv6Network]:
        # The exporters and the health agent's status port answer whoever these networks hold: 0.0.0.0/0 or ::/0
        # would publish them to the whole Internet.
        for i, net in enumerate(values):
            if net.prefixlen < (widest := WIDEST_MONITORING_CIDR[net.version]):
                raise _field_error(f"[{i}]", f"{net} is wider than /{widest}: it opens the exporter and status ports "
                                             "to that many hosts; list your Prometheus servers' networks")
        return values


class Ripe(Model):
    manage: bool = Field(False, description="Register route/route6 objects in the RIPE Database (needs RIPE_API_KEY).")
    maintainer: Mntner | None = Field(None, description="The mntner that maintains the route objects (mnt-by), e.g. EXAMPLE-MNT.")
    database: Literal["ripe", "test"] = Field("ripe", description="RIPE (production) or TEST database.")
    descr: RipeDescr = Field("anycast network", description="descr: of the route objects.")

    @model_validator(mode="after")
    def _maintainer(self) -> Ripe:
        if self.manage and self.maintainer is None:
            raise _field_error("maintainer", "is required when manage is true")
        return self



def _canary_then_rest() -> list[int | Literal["all"]]:
    return [1, "all"]


class Rollout(Model):
    """How ``pulumi up`` replaces PoPs (docs/deploy.md): wave by wave, each PoP gated on really serving."""

    waves: list[int | Literal["all"]] = Field(
        default_factory=_canary_then_rest,
        description="Sizes of the replacement waves over the Vultr PoPs in document order, e.g. [1, 2, 5, \"all\"]: "
                    "a wave starts only when every PoP of the wave before serves. Sizes grow; \"all\" (the rest) only last; "
                    "PoPs beyond the listed sizes form one last wave.")
    gate_timeout: int = Field(
        900, ge=60, le=7200, description="Seconds a replaced PoP may take to serve (HTTP, DNS, BGP, routes exported) "
                                         "before `pulumi up` stops with an error naming it.")

    @field_validator("waves", mode="before")
    @classmethod
    def _waves(cls, value: Any) -> Any:
        if not isinstance(value, list) or not value:
            raise _field_error("", "must be a non-empty list of wave sizes like [1, 2, 5, \"all\"]")
        for i, size in enumerate(value):
            if size == "all":
                if i != len(value) - 1:
                    raise _field_error(f"[{i}]", "'all' (every remaining PoP) must be the last wave")
            elif isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise _field_error(f"[{i}]", f"{size!r} is not a wave size: use a positive whole number or \"all\"")
            elif i and value[i - 1] != "all" and size < value[i - 1]:
                raise _field_error(f"[{i}]", f"{size} is smaller than the wave before ({value[i - 1]}): waves must not shrink")
        return value

class Announce(Model):
    prepend: int = Field(0, ge=0, le=MAX_PREPEND, description="Prepend the own ASN this many times (0-3) on this PoP's announcements.")
    communities: list[Community] = Field(
        default_factory=list,
        description="Communities on this PoP's announcements; on Vultr only Vultr's action communities.")
    only_to: list[int] = Field(
        default_factory=list,
        description="Vultr: announce only to these peer ASNs (adds 20473:6000 and 64699:<asn>).")


class Neighbor(Model):
    asn: int = Field(description="The external provider's ASN.")
    ipv4: Ipv4Address | None = Field(None, description="IPv4 neighbour address.")
    ipv6: Ipv6Address | None = Field(None, description="IPv6 neighbour address.")
    multihop: int | None = Field(None, ge=1, le=255, description="eBGP multihop, if the neighbour is not directly connected.")


class Unicast(Model):
    ipv4: Ipv4Address | None = Field(None, description="The PoP's own IPv4 address.")
    ipv6: Ipv6Address | None = Field(None, description="The PoP's own IPv6 address.")


class Pop(Model):
    code: PopCode = Field(description="Short unique name (lowercase letters/digits), used in hostnames, X-PoP and NSID.")
    provider: Literal["vultr", "external"] | None = Field(None, description="'vultr' (created by Pulumi) or 'external' (a box elsewhere).")
    region: str | None = Field(None, description="Vultr region id (required for Vultr PoPs).")
    mode: Literal["anycast", "unicast"] = Field("anycast", description="anycast announces the prefixes; unicast is reached through GeoDNS.")
    plan: VultrPlan | None = Field(None, description="Vultr plan id; defaults.plan if omitted.")
    city: FreeText | None = Field(None, description="City (from the region catalogue for Vultr PoPs).")
    country: Country | None = Field(None, description="ISO 3166-1 alpha-2 country (from the catalogue for Vultr PoPs).")
    continent: str | None = Field(None, description="Continent code AF AN AS EU NA OC SA (from the catalogue for Vultr PoPs).")
    latitude: float | None = Field(None, ge=-90, le=90, description="Latitude (from the catalogue for Vultr PoPs).")
    longitude: float | None = Field(None, ge=-180, le=180, description="Longitude (from the catalogue for Vultr PoPs).")
    announce: Announce = Field(default_factory=Announce, description="Announcement tuning for this PoP.")
    geodns: list[str] = Field(
        default_factory=list, description="Unicast PoPs: the continents (SA) or countries (BR) GeoDNS sends here.")
    neighbor: Neighbor | None = Field(None, description="External PoPs: their provider's BGP neighbour.")
    unicast: Unicast | None = Field(None, description="External PoPs: the box's own addresses (Vultr's come from the instance).")

    @field_validator("geodns")
    @classmethod
    def _areas(cls, values: list[str]) -> list[str]:
        for v in values:
            if not isinstance(v, str) or (v not in CONTINENTS and v not in country_codes()):
                raise ValueError(f"{shown(v)} is neither a continent ({', '.join(CONTINENTS)}) "
                                 "nor a country code like BR")
        if len(set(values)) != len(values):
            raise ValueError("areas must be unique")
        return values

    @model_validator(mode="after")
    def _resolve(self) -> Pop:
        # Provider defaults and geography are filled in by Network._resolve_pops, which knows the defaults.
        if self.mode == "unicast" and not self.geodns:
            raise _field_error("geodns", "a unicast PoP needs GeoDNS areas (e.g. [SA]) or no client ever reaches it")
        if self.mode == "anycast" and self.geodns:
            raise _field_error("geodns", "only unicast PoPs have GeoDNS areas; anycast PoPs are reached by BGP")
        return self

    # Resolved views: Network fills provider, plan and geography before validation (see _fill_pops), so on a
    # validated Network every PoP has them (Optional only because the document may leave them to the catalogue).
    @property
    def is_vultr(self) -> bool:
        return self.provider == "vultr"

    @property
    def is_anycast(self) -> bool:
        return self.mode == "anycast"

    @cached_property
    def router_id(self) -> IPv4Address:
        """A stable, per-PoP BGP router id (IPv6-only hosts have no IPv4 to derive one from)."""
        return IPv4Address(zlib.crc32(self.code.encode()) or 1)


def _fill_pop(raw: Any, provider: Any, plan: Any) -> Any:
    """A PoP document with provider, plan and geography filled from the defaults and the region catalogue.

    Runs before validation, on the raw document: a validated Pop is never patched afterwards. Values of the wrong
    type are left alone for validation to report.
    """
    if not isinstance(raw, dict):
        return raw
    pop = dict(raw)
    pop.setdefault("provider", provider)
    if pop["provider"] != "vultr":
        return pop
    pop.setdefault("plan", plan)
    region = vultr_regions().get(pop["region"]) if isinstance(pop.get("region"), str) else None
    if region is not None:
        for key, value in (("city", region.city), ("country", region.country), ("continent", region.continent),
                           ("latitude", region.lat), ("longitude", region.lon)):
            pop.setdefault(key, value)
    return pop


# Countries on two continents, where either is a fair answer for a box there (Route53 itself puts them in the first).
TRANSCONTINENTAL: dict[str, tuple[str, ...]] = {
    "RU": ("EU", "AS"), "TR": ("AS", "EU"), "KZ": ("AS", "EU"), "AZ": ("AS", "EU"), "GE": ("AS", "EU"),
    "AM": ("AS", "EU"), "CY": ("AS", "EU"), "EG": ("AF", "AS"), "ID": ("AS", "OC"), "PA": ("NA", "SA"),
}


def _pop_problems(pop: Pop) -> list[tuple[str, str]]:
    """What a PoP lacks or must not have for its provider, as (field, message)."""
    errors: list[tuple[str, str]] = []
    if pop.provider == "vultr":
        regions = vultr_regions()
        if pop.region is None:
            errors.append(("region", "is required for a Vultr PoP: a region id such as ams (see infra/data/regions.json)"))
        elif pop.region not in regions:
            some = ", ".join(list(regions)[:3])
            errors.append(("region", f"{shown(pop.region)} is not a Vultr region ({some}, ... {len(regions)} in all, "
                                     "see infra/data/regions.json)"))
        if pop.neighbor is not None:
            errors.append(("neighbor", "only external PoPs configure a neighbour; Vultr PoPs peer with AS64515"))
        if pop.unicast is not None:
            errors.append(("unicast", "Vultr PoPs get their addresses from the instance; remove unicast"))
    else:
        for field in ("city", "country", "continent", "latitude", "longitude"):
            if getattr(pop, field) is None:
                errors.append((field, "is required for an external PoP (no region catalogue to take it from)"))
        if pop.neighbor is None:
            errors.append(("neighbor", "is required for an external PoP: its provider's BGP neighbour (asn, ipv4/ipv6)"))
        if pop.unicast is None or (pop.unicast.ipv4 is None and pop.unicast.ipv6 is None):
            errors.append(("unicast", "is required for an external PoP: the box's own ipv4 and/or ipv6 address"))
        if pop.announce.only_to:
            errors.append(("announce.onlyTo", "is a Vultr feature (64699:<asn>); not available for external PoPs"))
        if pop.plan is not None:
            errors.append(("plan", "is a Vultr plan; an external PoP's cost goes to anycast:externalPopCosts"))
        if pop.country is not None and pop.continent in CONTINENTS and (
                (expected := continent_of(pop.country)) is not None and pop.continent != expected
                and pop.continent not in TRANSCONTINENTAL.get(pop.country, ())):
            errors.append(("continent", f"'{pop.continent}' contradicts country '{pop.country}', which Route53 places in "
                                        f"{expected}; fix continent or country"))
    for i, community in enumerate(pop.announce.communities):
        if problem := community_problem(community, vultr=pop.is_vultr):
            errors.append((f"announce.communities[{i}]", problem))
    if pop.continent is not None and pop.continent not in CONTINENTS:
        errors.append(("continent", f"{shown(pop.continent)} is not a continent code ({', '.join(CONTINENTS)})"))
    return errors


LETSENCRYPT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"
LETSENCRYPT_MAX_NAMES = 100  # names per certificate: https://letsencrypt.org/docs/rate-limits/
_EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


class Tls(Model):
    """HTTPS on every PoP with one certificate issued centrally by ACME DNS-01 (docs/tls.md)."""

    enabled: bool = Field(False, description="Serve HTTPS on port 443 and redirect HTTP to it (except /healthz).")
    email: str | None = Field(None, description="Contact address of the ACME account (Let's Encrypt expiry mail).")
    directory: str = Field(LETSENCRYPT_DIRECTORY, description="ACME directory URL (https://); Let's Encrypt's by default.")
    names: list[DnsName] = Field(
        default_factory=list,
        description="Names on the certificate; default: the zone, www.<zone> and dns.httpNames. Each must be in "
                    "dns.zone (NSD answers the challenge CNAME) or dns.parentZone (Route53 does).")
    challenge_zone: DnsName | None = Field(
        None, description="Route53 zone the program creates for the _acme-challenge TXT records (default "
                          "acme.<parentZone>); the only zone the ACME identity may write to.")
    issuer: str | None = Field(None, description="Code of the PoP that orders and renews the certificate (default: "
                                                 "the first anycast PoP); every PoP fetches it from the S3 store.")
    renew_days: int = Field(30, ge=7, le=60, description="Renew when the certificate has fewer days left than this.")
    key_type: Literal["ec256", "ec384", "rsa2048", "rsa4096"] = Field("ec256", description="Private key type (lego --key-type).")
    fetch_minutes: int = Field(15, ge=1, le=1440, description="How often every PoP looks for a renewed certificate.")
    bucket: S3BucketName | None = Field(
        None, description="S3 bucket that stores the certificate (default anycast-tls-<zone with dashes>). Bucket names "
                          "are global: pick another if `anycast preflight` reports the default as taken.")

    @field_validator("names")
    @classmethod
    def _names(cls, values: list[str]) -> list[str]:
        if len(set(values)) != len(values):
            raise ValueError("names must be unique")
        return values

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 254 or not _EMAIL_RE.fullmatch(value)):
            raise ValueError(f"{shown(value)} is not an email address like hostmaster@example.com")
        return value

    @field_validator("directory")
    @classmethod
    def _directory(cls, value: str) -> str:
        if len(value) > 2000 or not re.fullmatch(r"https://[A-Za-z0-9.-]+(:\d+)?(/[\x21-\x7e]*)?", value):
            raise ValueError(f"{shown(value)} is not an https:// URL; ACME directories are served over HTTPS only (RFC 8555)")
        return value

    @model_validator(mode="after")
    def _needs_email(self) -> Tls:
        if self.enabled and self.email is None:
            raise _field_error("email", "is required with tls.enabled: the ACME account's contact address")
        return self



class Network(Model):
    """The whole anycast network, as written under ``anycast:network`` in ``Pulumi.<stack>.yaml``."""

    asn: int = Field(description="The ASN that originates the prefixes: your own, or the private ASN Vultr assigned.")
    asn_source: Literal["own", "vultr-assigned"] = Field(
        "own", description="'own' for your public ASN; 'vultr-assigned' for the private ASN Vultr gives accounts without one.")
    prefixes: Prefixes = Field(description="The announced prefixes.")
    service: ServiceAddresses = Field(description="The anycast service addresses (inside the prefixes).")
    bgp: Bgp = Field(default_factory=Bgp, description="BGP session settings.")
    dns: Dns = Field(description="DNS: Route53 parent zone, the NSD zone, nameserver and HTTP names.")
    defaults: Defaults = Field(default_factory=Defaults, description="Defaults for PoPs.")
    admin: Admin = Field(default_factory=Admin, description="Administrative access.")
    ripe: Ripe = Field(default_factory=Ripe, description="RIPE Database route objects.")
    tls: Tls = Field(default_factory=Tls, description="HTTPS: one ACME certificate for every PoP (docs/tls.md).")
    rollout: Rollout = Field(default_factory=Rollout, description="Wave-by-wave, health-gated replacement of PoPs (docs/deploy.md).")
    pops: list[Pop] = Field(min_length=1, description="The points of presence.")

    @model_validator(mode="before")
    @classmethod
    def _fill_pops(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("pops"), list):
            return data
        defaults: dict[str, Any] = data["defaults"] if isinstance(data.get("defaults"), dict) else {}
        provider = defaults.get("provider", Defaults.model_fields["provider"].default)
        plan = defaults.get("plan", Defaults.model_fields["plan"].default)
        return {**data, "pops": [_fill_pop(p, provider, plan) for p in data["pops"]]}

    @model_validator(mode="after")
    def _check(self) -> Network:
        # Cross-field rules, in the order a reader of the config meets the fields.
        if problem := asn_problem(self.asn, self.asn_source):
            raise _field_error("asn", problem)
        if (self.prefixes.ipv4 is None) != (self.service.ipv4 is None):
            field = "service.ipv4" if self.prefixes.ipv4 is not None else "prefixes.ipv4"
            raise _field_error(field, "prefixes.ipv4 and service.ipv4 go together: set both or neither")
        if self.service.ipv4 is not None and self.prefixes.ipv4 is not None and self.service.ipv4 not in self.prefixes.ipv4:
            raise _field_error("service.ipv4", f"{self.service.ipv4} is outside prefixes.ipv4 {self.prefixes.ipv4}")
        if self.service.ipv6 not in self.prefixes.ipv6:
            raise _field_error("service.ipv6", f"{self.service.ipv6} is outside prefixes.ipv6 {self.prefixes.ipv6}")
        seen: dict[str, int] = {}
        for i, pop in enumerate(self.pops):
            if pop.code in seen:
                raise _field_error(f"pops[{i}].code", f"'{pop.code}' is already used by pops[{seen[pop.code]}]")
            seen[pop.code] = i
            if errors := _pop_problems(pop):
                field, message = errors[0]
                raise _field_error(f"pops[{i}].{field}", message)
            self._check_pop(i, pop)
        self._check_pop_addresses()
        self._check_geodns_areas()
        if len(self.anycast_pops) < 2:
            raise _field_error("pops", f"an anycast network needs at least two anycast PoPs, found {len(self.anycast_pops)}")
        self._check_tls()
        if self.ripe.manage and self.prefixes.ipv4 is None and self.prefixes.ipv6 is None:
            raise _field_error("ripe.manage", "there is no prefix to register")
        return self

    def _check_pop(self, i: int, pop: Pop) -> None:
        if pop.announce.prepend and self.asn_source == "vultr-assigned":
            raise _field_error(f"pops[{i}].announce.prepend",
                               "Vultr strips a private ASN, so prepending it does nothing; use communities 20473:6001-6003")
        if not pop.is_vultr and self.asn_source == "vultr-assigned":
            raise _field_error(f"pops[{i}].provider",
                               "an external PoP needs your own public ASN; a Vultr-assigned ASN works only inside Vultr")
        if pop.neighbor is not None:
            if problem := peer_asn_problem(pop.neighbor.asn):
                raise _field_error(f"pops[{i}].neighbor.asn", problem)
            if pop.neighbor.asn == self.asn:
                raise _field_error(f"pops[{i}].neighbor.asn", f"AS{self.asn} is the network's own ASN; the neighbour must be eBGP")
            if pop.neighbor.ipv4 is None and pop.neighbor.ipv6 is None:
                raise _field_error(f"pops[{i}].neighbor", "needs an ipv4 or ipv6 address")
            if pop.neighbor.ipv6 is not None and pop.unicast and pop.unicast.ipv6 is None:
                raise _field_error(f"pops[{i}].unicast.ipv6", "an IPv6 neighbour needs the box's own IPv6 address")
            if pop.neighbor.ipv4 is not None and pop.unicast and pop.unicast.ipv4 is None:
                raise _field_error(f"pops[{i}].unicast.ipv4", "an IPv4 neighbour needs the box's own IPv4 address")
        if pop.unicast is not None:
            for fam in ("ipv4", "ipv6"):
                addr = getattr(pop.unicast, fam)
                net = getattr(self.prefixes, fam)
                if addr is None:
                    continue
                if net is not None and addr in net:
                    raise _field_error(f"pops[{i}].unicast.{fam}",
                                       f"{addr} is inside the anycast prefix {net}; a unicast address must be reachable on its own")
                # GeoDNS hands this address to clients on the Internet: the same rules as for the prefixes.
                if problem := address_problem(addr) or bogon_problem(ipaddress.ip_network(addr)):
                    raise _field_error(f"pops[{i}].unicast.{fam}", f"{problem}; use the box's public address")
        if pop.neighbor is not None:
            for fam in ("ipv4", "ipv6"):
                if (addr := getattr(pop.neighbor, fam)) is not None and (
                        problem := self._neighbor_address_problem(addr, pop)):
                    raise _field_error(f"pops[{i}].neighbor.{fam}", problem)
        for j, asn in enumerate(pop.announce.only_to):
            if asn in RESERVED_ASNS or not 1 <= asn <= 65535:
                raise _field_error(f"pops[{i}].announce.onlyTo[{j}]", f"{shown(asn)} is not a 16-bit peer ASN (Vultr communities carry 1-65535)")
        if conflict := announce_problem(pop.announce.communities, pop.announce.only_to, self.asn, vultr=pop.is_vultr):
            raise _field_error(f"pops[{i}].{conflict[0]}", conflict[1])

    def _check_pop_addresses(self) -> None:
        # Two PoPs on one address, or a PoP peering with another PoP of this network, is a copy-paste slip: GeoDNS
        # and BGP would send traffic to whichever box answers first.
        owner: dict[IPv4Address | IPv6Address, str] = {}
        for i, pop in enumerate(self.pops):
            for fam in ("ipv4", "ipv6"):
                addr = getattr(pop.unicast, fam) if pop.unicast is not None else None
                if addr is None:
                    continue
                if addr in owner:
                    raise _field_error(f"pops[{i}].unicast.{fam}", f"{addr} is also {owner[addr]}: each PoP needs its own address")
                owner[addr] = f"pops[{i}].unicast.{fam} ({pop.code})"
        for i, pop in enumerate(self.pops):
            for fam in ("ipv4", "ipv6"):
                addr = getattr(pop.neighbor, fam) if pop.neighbor is not None else None
                if addr is not None and addr in owner:
                    raise _field_error(f"pops[{i}].neighbor.{fam}", f"{addr} is {owner[addr]}, a PoP of this network; "
                                                                     "the neighbour is the provider's router")

    def _neighbor_address_problem(self, addr: IPv4Address | IPv6Address, pop: Pop) -> str | None:
        own = {a for a in (self.service.ipv4, self.service.ipv6) if a is not None}
        if addr in own:
            return f"{addr} is the network's own anycast service address, not a neighbour"
        if any(addr in net for net in self.announced_prefixes):
            return f"{addr} is inside the network's own prefix; the neighbour is the provider's router"
        if pop.unicast is not None and addr in (pop.unicast.ipv4, pop.unicast.ipv6):
            return f"{addr} is this PoP's own address (unicast); the neighbour is the provider's router"
        # Providers put multihop BGP neighbours on IPv4 link-local addresses (Vultr itself uses 169.254.169.254
        # with multihop 2), so that one is allowed with multihop; everything else follows the prefixes' bogon rules.
        if isinstance(addr, IPv4Address) and addr.is_link_local and addr != IPv4Address("169.254.0.0"):
            if pop.neighbor is not None and pop.neighbor.multihop:
                return None
            return f"{addr} is link-local: reachable only with multihop (set neighbor.multihop, usually 2)"
        problem = address_problem(addr) or bogon_problem(ipaddress.ip_network(addr))
        return f"{problem}; a BGP neighbour needs a routable address" if problem else None

    def _check_geodns_areas(self) -> None:
        # Two unicast PoPs for one area would be two Route53 record sets with the same geolocation: refused by AWS.
        owner: dict[str, int] = {}
        for i, pop in enumerate(self.pops):
            for j, area in enumerate(pop.geodns):
                if area in owner:
                    raise _field_error(f"pops[{i}].geodns[{j}]",
                                       f"{area} is already sent to {self.pops[owner[area]].code} (pops[{owner[area]}]); "
                                       "GeoDNS can send an area to one unicast PoP only")
                owner[area] = i

    def _check_tls(self) -> None:
        tls, dns = self.tls, self.dns
        for i, name in enumerate(tls.names):
            if not (_within(name, dns.zone) or _within(name, dns.parent_zone)):
                raise _field_error(f"tls.names[{i}]", f"'{name}' is neither in zone '{dns.zone}' nor in parentZone "
                                                      f"'{dns.parent_zone}'; no challenge record can be placed for it")
        if tls.challenge_zone is not None and (
                not _within(tls.challenge_zone, dns.parent_zone) or tls.challenge_zone == dns.parent_zone
                or _within(tls.challenge_zone, dns.zone)):
            raise _field_error("tls.challengeZone", f"'{tls.challenge_zone}' must be a subdomain of parentZone "
                                                    f"'{dns.parent_zone}' outside zone '{dns.zone}'")
        if tls.issuer is not None and tls.issuer not in {p.code for p in self.pops}:
            raise _field_error("tls.issuer", f"'{tls.issuer}' is not a PoP code ({', '.join(p.code for p in self.pops)})")
        self._check_challenge_zone()
        if not tls.enabled:
            return
        names = self.tls_names
        # Without tls.names the certificate carries the zone, www.<zone> and every HTTP name: name the field they come from.
        fields = [f"tls.names[{i}]" for i in range(len(names))] if tls.names else (
            ["dns.zone", "dns.zone"] + [f"dns.httpNames[{i}]" for i in range(len(dns.http_names))])
        if len(names) > LETSENCRYPT_MAX_NAMES:
            field = "tls.names" if tls.names else "dns.httpNames"
            raise _field_error(field, f"the certificate would carry {len(names)} names; Let's Encrypt allows "
                                      f"{LETSENCRYPT_MAX_NAMES} per certificate")
        for field, name in zip(fields, names, strict=True):
            target = self.tls_challenge_target(name)
            if len(target) > 253 or len(f"_acme-challenge.{name}") > 253:
                raise _field_error(field, f"'_acme-challenge.{name[:40]}...' would point to a {len(target)}-character "
                                          f"name in tls.challengeZone '{self.tls_challenge_zone}'; DNS names end at "
                                          "253: shorten the name or the challenge zone")

    def _check_challenge_zone(self) -> None:
        # The challenge zone is a Route53 zone of its own, delegated from parentZone: the NSD zone inside it (or it
        # inside the NSD zone, refused above) would be delegated twice, and a name inside it is hidden by the delegation.
        if not (self.tls.enabled or self.tls.challenge_zone is not None):
            return
        cz, dns = self.tls_challenge_zone, self.dns
        which = "tls.challengeZone" if self.tls.challenge_zone is not None else "the default tls.challengeZone"
        if _within(dns.zone, cz) or _within(cz, dns.zone):
            raise _field_error("dns.zone", f"'{dns.zone}' and {which} '{cz}' are the same zone or one inside the "
                                           "other; give tls.challengeZone a name outside dns.zone")
        for field, names in (("dns.nameservers", dns.nameservers), ("dns.httpNames", dns.http_names),
                             ("tls.names", self.tls.names)):
            for i, name in enumerate(names):
                if _within(name, cz):
                    raise _field_error(f"{field}[{i}]", f"'{name}' is inside {which} '{cz}', which holds only ACME "
                                                        "challenge records")

    @property
    def tls_names(self) -> list[str]:
        """The certificate's names: ``tls.names``, or the zone, www.<zone> and the HTTP names."""
        return list(self.tls.names) or [self.dns.zone, f"www.{self.dns.zone}", *self.dns.http_names]

    @property
    def tls_challenge_zone(self) -> str:
        return self.tls.challenge_zone or f"acme.{self.dns.parent_zone}"

    def tls_challenge_target(self, name: str) -> str:
        """Where ``_acme-challenge.<name>`` points: ``<name>.<challenge zone>`` (a TXT lego writes through Route53)."""
        return f"{name}.{self.tls_challenge_zone}"

    @property
    def tls_issuer(self) -> str:
        return self.tls.issuer or self.anycast_pops[0].code

    # Derived views used by the renderers, the program and the lab.
    @property
    def anycast_pops(self) -> list[Pop]:
        return [p for p in self.pops if p.mode == "anycast"]

    @property
    def unicast_pops(self) -> list[Pop]:
        return [p for p in self.pops if p.mode == "unicast"]

    @property
    def announced_prefixes(self) -> list[IPv4Network | IPv6Network]:
        return [n for n in (self.prefixes.ipv4, self.prefixes.ipv6) if n is not None]

    @property
    def roa_origin_asn(self) -> int:
        """The origin a ROA must name: Vultr re-originates a Vultr-assigned private ASN as AS20473."""
        return VULTR_ASN if self.asn_source == "vultr-assigned" else self.asn

    def pop(self, code: str) -> Pop:
        for p in self.pops:
            if p.code == code:
                return p
        raise KeyError(code)


def parse_network(data: Any, source: str = "") -> Network:
    """Validate a network document (the value of ``anycast:network``); raise :class:`ConfigError` on any problem."""
    if not isinstance(data, dict):
        raise ConfigError([f"network: must be a mapping of fields, got {type(data).__name__}"], source)
    try:
        return Network.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc), source) from None
