"""The parts of RIPE Atlas documents catchment reads, as pydantic models: DNS results ("Measurement Result Format",
https://atlas.ripe.net/docs/apis/measurement-result-format/) and probe objects (REST API reference, probes:
``id``, ``country_code``, ``asn_v4``, ``asn_v6``, ``geometry`` as GeoJSON Point, [longitude, latitude]).

Fields we do not use are ignored; the ones we use must have their documented type, so a hostile or broken file is
refused with the JSON path of the first bad field instead of being read as something else.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, model_validator

from infra.untrusted.schema import Loose

# dst_addr is the address the probe queried: an IPv4/IPv6 literal (or a host name for name targets).
Address = Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z.:_-]{1,253}$")]
Country = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$")]


class DnsAnswer(Loose):
    rt: Annotated[float, Field(ge=0)] | None = None
    abuf: Annotated[str, Field(max_length=65536 * 4 // 3 + 4)] | None = None


class DnsQuery(Loose):
    """One query: a result object itself, or one entry of its ``resultset`` (multi-server results)."""

    af: Literal[4, 6] | None = None
    dst_addr: Address | None = None
    result: DnsAnswer | None = None
    error: dict[str, Any] | None = None  # {"timeout": 5000}, {"socket": "..."}: only shown, through printable()


class DnsResult(DnsQuery):
    prb_id: Annotated[int, Field(ge=0)]
    type: str = "dns"
    resultset: list[DnsQuery] | None = None


class Point(Loose):
    coordinates: Annotated[list[float], Field(min_length=2, max_length=2)]  # [longitude, latitude]

    @model_validator(mode="after")
    def _on_earth(self) -> Point:
        lon, lat = self.coordinates
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise ValueError(f"[{lon}, {lat}] is not [longitude, latitude] on Earth")
        return self


class Probe(Loose):
    id: Annotated[int, Field(ge=0)]
    country_code: Country | None = None
    asn_v4: Annotated[int, Field(ge=0, le=2**32 - 1)] | None = None
    asn_v6: Annotated[int, Field(ge=0, le=2**32 - 1)] | None = None
    geometry: Point | None = None


class ProbePage(Loose):
    results: list[Probe]
    next: Annotated[str, Field(max_length=2000)] | None = None
