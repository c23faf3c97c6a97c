"""The Vultr region catalogue (data in ``data/regions.json``) and the geography helpers around it."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

CONTINENTS: dict[str, str] = {
    "AF": "Africa",
    "AN": "Antarctica",
    "AS": "Asia",
    "EU": "Europe",
    "NA": "North America",
    "OC": "Oceania",
    "SA": "South America",
}


@dataclass(frozen=True)
class Region:
    """One Vultr location: the id Vultr's API uses and where it is."""

    id: str
    city: str
    country: str
    continent: str
    lat: float
    lon: float


@lru_cache(maxsize=1)
def vultr_regions() -> dict[str, Region]:
    """All Vultr regions by id, loaded once from the packaged catalogue."""
    raw = json.loads(resources.files("infra").joinpath("data/regions.json").read_text(encoding="utf-8"))
    return {rid: Region(id=rid, **fields) for rid, fields in sorted(raw["regions"].items())}


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Distance on the Earth's surface (haversine, mean radius), the lab's stand-in for latency."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(a))


@lru_cache(maxsize=1)
def country_continents() -> dict[str, str]:
    """Country code -> Route53 continent code, from ``infra/data/geo_continents.json``."""
    raw = json.loads(resources.files("infra").joinpath("data/geo_continents.json").read_text(encoding="utf-8"))
    return dict(raw["countries"])


def continent_of(country: str) -> str | None:
    """The Route53 continent of ``country`` (ISO 3166-1 alpha-2), or None if the country is unknown."""
    return country_continents().get(country.upper())
