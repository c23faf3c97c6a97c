"""The catchment as a world map: an SVG drawn from the report alone, offline.

Equirectangular projection (x = longitude, y = latitude, linear), latitudes 84 N to 60 S. The land is the coarse
hand-written outline in ``infra/data/world_outline.json`` (its provenance is in the file); no tiles or map data are
downloaded. PoPs are squares (anycast filled, unicast hollow), probes are dots in the colour of the PoP that answered
them; a mis-routed probe gets a red ring and a thin red line to the PoP that answered it; probes without an answer
from one of our PoPs are grey crosses.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from typing import Any
from xml.sax.saxutils import escape

from infra.catchment.analysis import Report
from infra.untrusted.text import printable


def _text(value: object, limit: int = 300) -> str:
    """Data as XML character data: control characters shown as ``\\xNN`` text (XML 1.0 allows only tab, LF and CR of
    C0, 2.2 Char), then ``& < >`` escaped. Every text in the map that is not a literal of this file goes through here;
    no data is placed in an attribute (coordinates are numbers, colours come from the palette)."""
    return escape(printable(value, limit))

WIDTH, HEIGHT = 1200, 600
TOP, BOTTOM = 84.0, -60.0
LEGEND_H = 90
# Distinguishable colours (Paul Tol's "muted" and "bright" schemes, https://personal.sron.nl/~pault/), cycled.
PALETTE = ("#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377", "#BBBBBB", "#332288", "#88CCEE",
           "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255", "#AA4499", "#EE7733", "#0077BB",
           "#33BBEE", "#009988")


@lru_cache(maxsize=1)
def outline() -> dict[str, Any]:
    return dict(json.loads(resources.files("infra").joinpath("data/world_outline.json").read_text(encoding="utf-8")))


def project(lat: float, lon: float) -> tuple[float, float]:
    x = (lon + 180.0) / 360.0 * WIDTH
    y = (TOP - max(BOTTOM, min(TOP, lat))) / (TOP - BOTTOM) * HEIGHT
    return round(x, 1), round(y, 1)


Projection = Callable[[float, float], tuple[float, float]]

# The inset: Europe, where most PoPs and probes crowd, drawn larger over the empty South Pacific.
INSET_LON, INSET_LAT = (-12.0, 33.0), (35.0, 62.0)
INSET_BOX = (10.0, 385.0, 330.0, 205.0)  # x, y, width, height


def project_inset(lat: float, lon: float) -> tuple[float, float]:
    x0, y0, w, h = INSET_BOX
    x = x0 + (lon - INSET_LON[0]) / (INSET_LON[1] - INSET_LON[0]) * w
    y = y0 + (INSET_LAT[1] - lat) / (INSET_LAT[1] - INSET_LAT[0]) * h
    return round(x, 1), round(y, 1)


def _ring(points: list[list[float]], proj: Projection) -> str:
    return " ".join(f"{x},{y}" for x, y in (proj(lat, lon) for lon, lat in points))


def pop_colours(codes: list[str]) -> dict[str, str]:
    return {code: PALETTE[i % len(PALETTE)] for i, code in enumerate(codes)}


def _layer(report: Report, colours: dict[str, str], proj: Projection, scale: float) -> list[str]:
    """Land, PoPs (with labels), lines from mis-routed probes to their PoP, and probe dots, in that order (dots on top)."""
    out = []
    data = outline()
    for name, ring in data["land"].items():
        out.append(f'<polygon points="{_ring(ring, proj)}" fill="#f2efe6" stroke="#9a9a8a" stroke-width="0.6">'
                   f"<title>{_text(name)}</title></polygon>")
    for _name, ring in data["water"].items():
        out.append(f'<polygon points="{_ring(ring, proj)}" fill="#dbe9f4" stroke="#9a9a8a" stroke-width="0.6"/>')
    for code, pop in report.pops.items():
        if pop["lat"] is None or pop["lon"] is None:
            continue
        x, y = proj(pop["lat"], pop["lon"])
        fill = colours[code] if pop["mode"] == "anycast" else "#ffffff"
        out.append(f'<rect x="{x - 5}" y="{y - 5}" width="10" height="10" fill="{fill}" stroke="{colours[code]}" '
                   f'stroke-width="2.5"><title>{_text(code)} ({_text(pop["mode"])}): served {pop["served"]}</title></rect>')
        out.append(f'<text x="{x + 7}" y="{y + 12}" font-size="{10 * scale:.0f}" fill="#222" stroke="#fff" '
                   f'stroke-width="2.5" paint-order="stroke">{_text(code)}</text>')
    for p in report.probes:
        if p.misrouted and p.lat is not None and p.lon is not None and p.pop:
            pop = report.pops[p.pop]
            x1, y1 = proj(p.lat, p.lon)
            x2, y2 = proj(pop["lat"], pop["lon"])
            out.append(f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#cc0000" stroke-width="1.2" '
                       'stroke-dasharray="4 3" opacity="0.8"/>')
    for p in report.probes:
        if p.lat is None or p.lon is None:
            continue
        x, y = proj(p.lat, p.lon)
        tip = _text(f"probe {p.id} {p.label or ''} {p.country or '??'} AS{p.asn or '?'}: "
                     f"{p.pop or p.status} rtt {p.rtt_ms} ms, expected {p.expected_pop}"
                     + (f", +{p.extra_km:.0f} km" if p.extra_km else ""))
        if p.pop is None:
            out.append(f'<path d="M{x - 3},{y - 3}L{x + 3},{y + 3}M{x - 3},{y + 3}L{x + 3},{y - 3}" stroke="#777" '
                       f'stroke-width="1.5"><title>{tip}</title></path>')
            continue
        ring = ' stroke="#cc0000" stroke-width="2.5"' if p.misrouted else ' stroke="#333" stroke-width="0.8"'
        out.append(f'<circle cx="{x}" cy="{y}" r="{6 if p.misrouted else 4.5}" fill="{colours[p.pop]}"{ring}>'
                   f"<title>{tip}</title></circle>")
    return out


def render_svg(report: Report, title: str) -> str:
    """The map of ``report`` as a standalone SVG document: the world, and Europe enlarged in an inset."""
    colours = pop_colours(list(report.pops))
    h = HEIGHT + LEGEND_H
    x0, y0, w, bh = INSET_BOX
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{h}" viewBox="0 0 {WIDTH} {h}" '
           'font-family="DejaVu Sans, Arial, sans-serif">',
           f"<title>{_text(title)}</title>",
           f'<defs><clipPath id="inset"><rect x="{x0}" y="{y0}" width="{w}" height="{bh}"/></clipPath></defs>',
           f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#dbe9f4"/>']
    out += _layer(report, colours, project, 1.0)
    out.append(f'<rect x="{x0}" y="{y0}" width="{w}" height="{bh}" fill="#dbe9f4" stroke="#555" stroke-width="1"/>')
    out.append('<g clip-path="url(#inset)">')
    out += _layer(report, colours, project_inset, 1.1)
    out.append("</g>")
    out.append(f'<text x="{x0 + 4}" y="{y0 + bh - 5}" font-size="11" fill="#444">Europe (enlarged)</text>')
    # Legend
    s = report.summary()
    y0 = HEIGHT + 18
    out.append(f'<rect x="0" y="{HEIGHT}" width="{WIDTH}" height="{LEGEND_H}" fill="#ffffff"/>')
    out.append(f'<text x="10" y="{y0}" font-size="13" fill="#000">{_text(title)}: {s["results"]} results, '
               f'{s["ok"]} ok, {s["misrouted"]} mis-routed (red ring, dashed line to the PoP that answered), '
               f'{s["no_answer"] + s["unknown_pop"]} without an answer from a PoP (grey x)</text>')
    served = [c for c, p in report.pops.items() if p["served"]] or list(report.pops)
    for i, code in enumerate(served):
        col, row = i % 10, i // 10
        x, y = 10 + col * 118, y0 + 18 + row * 22
        out.append(f'<circle cx="{x + 5}" cy="{y - 4}" r="5" fill="{colours[code]}" stroke="#333" stroke-width="0.5"/>')
        out.append(f'<text x="{x + 14}" y="{y}" font-size="12" fill="#000">{_text(code)} '
                   f'({report.pops[code]["served"]})</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
