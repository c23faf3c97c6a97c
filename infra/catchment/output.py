"""``--out DIR``: ``DIR/catchment.json`` (the machine-readable report), ``DIR/catchment.svg`` (the map) and
``DIR/catchment.txt`` (the table), plus ``DIR/advice.diff`` when there is advice."""

from __future__ import annotations

from pathlib import Path

from infra.catchment.analysis import Report
from infra.catchment.text import format_report
from infra.catchment.worldmap import render_svg
from infra.untrusted.jsontext import dumps


def write_outputs(report: Report, out: Path, title: str, diff: str | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "catchment.json": dumps(report.to_json(), indent=2, sort_keys=True) + "\n",  # no NaN: strict JSON
        "catchment.svg": render_svg(report, title),
        "catchment.txt": format_report(report, limit=10_000),
    }
    if diff:
        files["advice.diff"] = diff
    written = []
    for name, text in files.items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
