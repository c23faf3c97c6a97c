"""The generated Grafana dashboard against Grafana's own JSON schemas (tests/fixtures/grafana-schemas/README.md).

The schemas forbid unknown keys (``additionalProperties: false``) on the dashboard, panels, grid positions, field
config, and each panel plugin's options, so a misspelt or misplaced key fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from infra.monitoring.dashboard import dashboard
from infra.monitoring.targets import load_outputs, write_targets

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
OUTPUTS = FIXTURES / "stack-outputs-prod.json"
PLUGINS = {"table": "table", "geomap": "geomap", "timeseries": "timeseries", "stat": "stat"}


def _schema(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / "grafana-schemas" / f"{name}.jsonschema.json").read_text(encoding="utf-8")))


def _errors(instance: Any, schema: dict[str, Any], definition: str | None = None) -> list[str]:
    if definition is not None:
        schema = {"$ref": f"#/definitions/{definition}", "definitions": schema["definitions"]}
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]


@pytest.fixture(scope="module")
def board() -> dict[str, Any]:
    return dashboard(load_outputs(OUTPUTS))


def test_dashboard_matches_grafanas_schema(board: dict[str, Any]) -> None:
    assert _errors(board, _schema("dashboard")) == []


@pytest.mark.parametrize("kind", sorted(PLUGINS))
def test_panel_options_and_queries_match_their_plugin_schemas(board: dict[str, Any], kind: str) -> None:
    panels = [p for p in board["panels"] if p["type"] == kind]
    assert panels, kind
    plugin, query = _schema(PLUGINS[kind]), _schema("prometheus")
    for p in panels:
        assert _errors(p["options"], plugin, "Options") == [], p["title"]
        custom = p["fieldConfig"]["defaults"].get("custom")
        if custom is not None:
            assert _errors(custom, plugin, "FieldConfig") == [], p["title"]
        for t in p["targets"]:
            assert _errors(t, query) == [], (p["title"], t["refId"])


def test_the_schema_check_can_fail(board: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(board))
    broken["panels"][0]["gridPos"]["w"] = 30  # wider than Grafana's 24 columns
    broken["panels"][1]["option"] = {}  # misspelt key
    errors = _errors(broken, _schema("dashboard"))
    assert errors and any("panels/0" in e or "panels/1" in e for e in errors)
    assert _errors({"showHeader": True}, _schema("table"), "Options")  # frameIndex is required


def test_panels_cover_the_issue_and_do_not_overlap(board: dict[str, Any]) -> None:
    kinds = [p["type"] for p in board["panels"]]
    assert kinds.count("table") == 1 and kinds.count("geomap") == 1 and kinds.count("stat") == 4
    titles = " ".join(p["title"] for p in board["panels"])
    for word in ("PoPs", "map", "BGP sessions", "Announcements", "Probe latency"):
        assert word in titles, word
    assert "(of 18)" in board["panels"][0]["title"]
    cells = set()
    for p in board["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, p["title"]
                cells.add((x, y))
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])


def test_queries_use_the_generated_jobs_and_real_metric_names(board: dict[str, Any], tmp_path: Path) -> None:
    write_targets(load_outputs(OUTPUTS), tmp_path)
    written = json.loads((tmp_path / "grafana-dashboard.json").read_text())
    assert written == board
    jobs = {j["job_name"] for j in yaml.safe_load((tmp_path / "prometheus.yml").read_text())["scrape_configs"]}
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    for expr in exprs:
        for job in re.findall(r'job="([^"]+)"', expr):
            assert job in jobs, expr
    metrics = {m for e in exprs for m in re.findall(r"\b([A-Za-z_][A-Za-z0-9_]*)\{", e)}
    # bird_exporter 1.4 (-format.new), blackbox_exporter, Prometheus, and the health agent's own metric.
    assert metrics == {"up", "bird_protocol_up", "bird_protocol_prefix_export_count", "bird_protocol_uptime",
                       "probe_success", "probe_duration_seconds", "ALERTS"}, metrics
    assert "anycast_health_check_latency_seconds" in exprs
    # The map's coordinates are target labels written from the outputs.
    bird = json.loads((tmp_path / "bird.json").read_text())
    assert all("latitude" in g["labels"] and "longitude" in g["labels"] for g in bird)
