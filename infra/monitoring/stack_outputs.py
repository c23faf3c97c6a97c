"""The stack outputs as read back from ``pulumi stack output --json`` (``anycast monitoring targets --outputs``), as
pydantic models: the fields infra/monitoring.py, infra/alerts.py and infra/dashboard.py use, with the types
infra/outputs.py writes. Everything that ends up in a URL, a label or a regular expression of the monitoring
configuration is checked here: addresses are IP addresses, ports 1-65535, paths plain, PoP codes and names what the
model allows. Other keys (``geodns``, ``cost``, ``externalCloudConfig``) are ignored.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints, ValidationInfo, field_validator

from infra.model.fields import Country, DnsName, FreeText, PopCode
from infra.untrusted.schema import Loose
from infra.untrusted.urls import ip_literal

# An IP address literal without an IPv6 zone: it becomes the host of a probe URL (infra/untrusted/urls.py).
Address = Annotated[str, AfterValidator(ip_literal)]

Mode = Literal["anycast", "unicast"]
Family = Literal["ipv4", "ipv6"]
Port = Annotated[int, Field(ge=1, le=65535)]
# A probe name (``fra-ipv4``, ``anycast-ipv6``) and a URL path (``/healthz``): nothing that could end a label or a URL.
ProbeName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
UrlPath = Annotated[str, StringConstraints(pattern=r"^/(?:[A-Za-z0-9._~-][A-Za-z0-9._~/-]{0,199})?$")]
Word = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


class NetworkOut(Loose):
    asn: Annotated[int, Field(ge=1, le=2**32 - 1)]
    zone: DnsName
    anycastPops: list[PopCode]
    unicastPops: list[PopCode]


def _version_matches(address: str | None, family: str | None) -> str | None:
    if address is not None and family is not None and (":" in address) != (family == "ipv6"):
        raise ValueError(f"{address} is not an {family.replace('ip', 'IP')} address")
    return address


class PopOut(Loose):
    mode: Mode
    ipv4: Address | None = None
    ipv6: Address | None = None
    provider: Word | None = None
    region: Word | None = None
    city: FreeText | None = None
    country: Country | None = None
    continent: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = None
    latitude: Annotated[float, Field(ge=-90, le=90)] | None = None
    longitude: Annotated[float, Field(ge=-180, le=180)] | None = None

    @field_validator("ipv4", "ipv6")
    @classmethod
    def _family(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _version_matches(value, info.field_name)


class Probe(Loose):
    name: ProbeName
    family: Family
    address: Address  # after family: its validator reads the family
    port: Port
    pop: PopCode | None = None
    mode: Mode

    @field_validator("address")
    @classmethod
    def _family(cls, value: str, info: ValidationInfo) -> str | None:
        return _version_matches(value, info.data.get("family"))


class HttpProbe(Probe):
    path: UrlPath
    expectXPop: Annotated[list[PopCode], Field(min_length=1)]


class HttpsProbe(HttpProbe):
    serverName: DnsName


class DnsProbe(Probe):
    queryName: DnsName | None = None
    queryType: Literal["SOA"] | None = None
    expectNsid: Annotated[list[PopCode], Field(min_length=1)]


class ProbesOut(Loose):
    http: list[HttpProbe] = Field(default_factory=list)
    https: list[HttpsProbe] = Field(default_factory=list)
    dns: list[DnsProbe] = Field(default_factory=list)


class StackOutputs(Loose):
    network: NetworkOut
    pops: dict[PopCode, PopOut]
    probes: ProbesOut
