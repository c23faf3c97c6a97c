"""Atlas-shaped test data for the catchment tests: DNS answers of our own PoPs (built with dnspython, so the NSID
sits in a real wire-format ``abuf``) and probe metadata in the format of ``/api/v2/probes/``."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import dns.edns
import dns.message
import dns.rdataclass
import dns.rdatatype
import dns.rrset

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ripe-atlas"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def answer_abuf(nsid: str | None, txt: str | None = None) -> str:
    """A CHAOS TXT id.server answer as NSD sends it: NSID option ``nsid`` and TXT ``txt``, base64 as Atlas stores it."""
    query = dns.message.make_query("id.server.", dns.rdatatype.TXT, dns.rdataclass.CH, use_edns=0,
                                   options=[dns.edns.GenericOption(dns.edns.OptionType.NSID, b"")])
    resp = dns.message.make_response(query)
    options: list[dns.edns.Option] = [dns.edns.GenericOption(dns.edns.OptionType.NSID, nsid.encode())] if nsid else []
    resp.use_edns(0, options=options)
    if txt is not None:
        resp.answer.append(dns.rrset.from_text("id.server.", 0, "CH", "TXT", f'"{txt}"'))
    return base64.b64encode(resp.to_wire()).decode()


def dns_result(prb_id: int, nsid: str | None, rt: float = 12.5, af: int = 4, dst: str = "192.0.2.1",
               msm_id: int = 1000001, txt: str | None = None) -> dict[str, Any]:
    return {"fw": 5080, "af": af, "dst_addr": dst, "from": "198.51.100.77", "msm_id": msm_id, "prb_id": prb_id,
            "proto": "UDP", "timestamp": 1764140000, "type": "dns", "msm_name": "Tdig",
            "result": {"rt": rt, "size": 60, "ID": 4242, "ANCOUNT": 1 if txt else 0, "QDCOUNT": 1,
                       "abuf": answer_abuf(nsid, txt)}}


def probe(pid: int, country: str | None, lat: float | None, lon: float | None, asn: int = 64496) -> dict[str, Any]:
    geometry = {"type": "Point", "coordinates": [lon, lat]} if lat is not None and lon is not None else None
    return {"id": pid, "asn_v4": asn, "asn_v6": None, "country_code": country, "geometry": geometry,
            "is_anchor": False, "is_public": True, "status": {"id": 1, "name": "Connected"}, "type": "Probe"}


# A small world of probes for the prod network: (id, country, lat, lon, PoP that answers).
WORLD: list[tuple[int, str | None, float | None, float | None, str]] = [
    (1001, "DE", 52.52, 13.40, "fra"),
    (1002, "DE", 48.14, 11.58, "fra"),
    (1003, "GB", 51.51, -0.13, "lhr"),
    (1004, "GB", 53.48, -2.24, "maa"),  # pulled to India: mis-routed
    (1005, "US", 40.71, -74.01, "ewr"),
    (1006, "US", 47.61, -122.33, "sea"),
    (1007, "JP", 35.68, 139.69, "nrt"),
    (1008, "BR", -23.55, -46.63, "mia"),
    (1009, "AU", -33.87, 151.21, "syd"),
    (1010, "FR", 48.86, 2.35, "ams"),  # 430 km: within the tolerance, not mis-routed
    (1011, "NL", None, None, "ams"),  # no coordinates
]


def world_results() -> list[dict[str, Any]]:
    return [dns_result(pid, pop, rt=10.0 + i) for i, (pid, _c, _la, _lo, pop) in enumerate(WORLD)]


def world_probes() -> dict[str, Any]:
    return {"count": len(WORLD), "next": None, "previous": None,
            "results": [probe(pid, c, la, lo) for pid, c, la, lo, _pop in WORLD]}
