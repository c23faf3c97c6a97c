"""A Grafana dashboard for the anycast network, from its stack outputs: ``DIR/grafana-dashboard.json``.

Import it in Grafana (Dashboards -> New -> Import) and pick the Prometheus that uses ``DIR/prometheus.yml``. It
reads only the metrics and labels the generated scrape jobs produce (infra/monitoring/targets.py, infra/monitoring/alerts.py):

* stats: anycast PoPs announcing (of the stack's count), BGP sessions up, alerts firing, targets down;
* a table of every PoP (city, country, mode, exporter up, BGP up, announced, HTTP probe, probe latency);
* a Geomap of the PoPs at their coordinates (``latitude``/``longitude`` target labels from the outputs): 1 serving
  (announced, or a unicast PoP whose exporter answers), 0 withdrawn or down;
* time series: BGP sessions, prefixes exported per PoP, session state changes, probe latency per PoP, and the
  health agent's check latency.

The JSON follows Grafana's dashboard schema (schemaVersion 39, Grafana 11); tests/unit/test_dashboard.py validates it,
and every panel's options and queries, against the JSON schemas grafana/grafana-foundation-sdk generates from
Grafana's own kinds (vendored in tests/fixtures/grafana-schemas/).
"""

from __future__ import annotations

from typing import Any

from infra.monitoring.alerts import BIRD_JOB, BLACKBOX_JOB, HEALTH_JOB, PROBE_JOBS

SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
POP_LABELS = "pop, city, country, mode, latitude, longitude"
BIRD = f'job="{BIRD_JOB}"'
STATIC = f'{BIRD},proto="Static",name=~"anycast[46]"'
BGP = f'{BIRD},proto="BGP"'
PROBES = "|".join(PROBE_JOBS)


def _target(ref: str, expr: str, legend: str = "", instant: bool = False, table: bool = False) -> dict[str, Any]:
    t: dict[str, Any] = {"refId": ref, "datasource": DATASOURCE, "expr": expr, "editorMode": "code"}
    if legend:
        t["legendFormat"] = legend
    if instant or table:
        t["instant"], t["range"] = True, False
    else:
        t["range"] = True
    if table:
        t["format"] = "table"
    return t


def _panel(pid: int, kind: str, title: str, grid: tuple[int, int, int, int], targets: list[dict[str, Any]],
           options: dict[str, Any], description: str = "", unit: str | None = None,
           custom: dict[str, Any] | None = None, transformations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    x, y, w, h = grid
    defaults: dict[str, Any] = {}
    if unit:
        defaults["unit"] = unit
    if custom is not None:
        defaults["custom"] = custom
    panel: dict[str, Any] = {"type": kind, "id": pid, "title": title, "datasource": DATASOURCE,
                             "gridPos": {"x": x, "y": y, "w": w, "h": h}, "targets": targets, "options": options,
                             "fieldConfig": {"defaults": defaults, "overrides": []}}
    if description:
        panel["description"] = description
    if transformations:
        panel["transformations"] = transformations
    return panel


def _stat(pid: int, title: str, x: int, expr: str, description: str) -> dict[str, Any]:
    options = {"graphMode": "none", "colorMode": "value", "justifyMode": "auto", "textMode": "value",
               "wideLayout": True, "showPercentChange": False, "percentChangeColorMode": "standard",
               "orientation": "auto", "reduceOptions": {"calcs": ["lastNotNull"], "values": False, "fields": ""}}
    return _panel(pid, "stat", title, (x, 0, 6, 4), [_target("A", expr, instant=True)], options, description)


def _timeseries(pid: int, title: str, grid: tuple[int, int, int, int], expr: str, legend: str, unit: str | None,
                description: str) -> dict[str, Any]:
    options = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []},
               "tooltip": {"mode": "multi", "sort": "desc"}}
    custom = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 0, "showPoints": "never", "spanNulls": False}
    return _panel(pid, "timeseries", title, grid, [_target("A", expr, legend)], options, description, unit, custom)


def dashboard(outputs: dict[str, Any]) -> dict[str, Any]:
    """The dashboard document (a dict ready for ``json.dumps``)."""
    network = outputs["network"]
    n_anycast = len(network["anycastPops"])
    zone = network["zone"]
    table_targets = [
        _target("up", f"max by ({POP_LABELS}, provider) (up{{{BIRD}}})", table=True),
        _target("bgp", f"min by (pop) (max without (state) (bird_protocol_up{{{BGP}}}))", table=True),
        _target("announced", f"min by (pop) (bird_protocol_up{{{STATIC}}})", table=True),
        _target("http", 'min by (pop) (probe_success{job="anycast-http",pop!="anycast"})', table=True),
        _target("latency", 'max by (pop) (probe_duration_seconds{job="anycast-http",pop!="anycast"})', table=True),
    ]
    table_transformations = [
        {"id": "merge", "options": {}},
        {"id": "organize", "options": {
            "excludeByName": {"Time": True, "latitude": True, "longitude": True},
            "indexByName": {"pop": 0, "city": 1, "country": 2, "mode": 3, "provider": 4, "Value #up": 5,
                            "Value #bgp": 6, "Value #announced": 7, "Value #http": 8, "Value #latency": 9},
            "renameByName": {"Value #up": "exporter up", "Value #bgp": "BGP up", "Value #announced": "announced",
                             "Value #http": "HTTP probe", "Value #latency": "probe seconds"}}},
    ]
    table_options = {"frameIndex": 0, "showHeader": True, "cellHeight": "sm",
                     "sortBy": [{"displayName": "pop", "desc": False}],
                     "footer": {"show": False, "reducer": ["sum"], "countRows": False}}
    serving = (f"(min by ({POP_LABELS}) (bird_protocol_up{{{STATIC}}})) "
               f'or (max by ({POP_LABELS}) (up{{{BIRD},mode="unicast"}}))')
    geomap_options = {
        "view": {"id": "zero", "lat": 20, "lon": 0, "zoom": 1},
        "controls": {"showZoom": True, "mouseWheelZoom": True, "showAttribution": True},
        "basemap": {"type": "default", "name": "Basemap"},
        "layers": [{"type": "markers", "name": "PoPs", "tooltip": True,
                    "location": {"mode": "coords", "latitude": "latitude", "longitude": "longitude"},
                    "config": {"showLegend": True, "style": {
                        "size": {"fixed": 8}, "color": {"field": "Value"},
                        "text": {"field": "pop", "mode": "field"}, "textConfig": {"offsetY": -12}}}}],
        "tooltip": {"mode": "details"},
    }
    to_numbers = {"id": "convertFieldType", "options": {"conversions": [
        {"targetField": "latitude", "destinationType": "number"},
        {"targetField": "longitude", "destinationType": "number"}]}}
    panels = [
        _stat(1, f"Anycast PoPs announcing (of {n_anycast})", 0,
              f"count(max by (pop) (bird_protocol_prefix_export_count{{{BGP},mode=\"anycast\"}}) > 0) or vector(0)",
              "PoPs whose BGP sessions export routes (AnycastTooFewPopsAnnouncing fires below its threshold)."),
        _stat(2, "BGP sessions up", 6, f"sum(max without (state) (bird_protocol_up{{{BGP}}}))",
              "Established sessions to the upstreams, IPv4 and IPv6, every PoP."),
        _stat(3, "Alerts firing", 12, 'count(ALERTS{alertstate="firing",alertname=~"Anycast.*"}) or vector(0)',
              "Alerts of DIR/alerts.yml in state firing; each has a runbook annotation."),
        _stat(4, "Targets down", 18,
              f'count(up{{job=~"{BIRD_JOB}|{HEALTH_JOB}|{PROBES}|{BLACKBOX_JOB}"}} == 0) or vector(0)',
              "Scrape targets that do not answer (exporters, probes through the blackbox exporter)."),
        _panel(5, "table", "PoPs", (0, 4, 24, 9), table_targets, table_options,
               "One row per PoP: 1 = yes. Unicast PoPs announce nothing (announced is empty).",
               transformations=table_transformations),
        _panel(6, "geomap", "PoPs on the map (1 serving, 0 withdrawn or down)", (0, 13, 12, 12),
               [_target("A", serving, table=True)], geomap_options,
               "Anycast PoPs: their anycast static protocols up; unicast PoPs: their exporter answers.",
               transformations=[to_numbers]),
        _timeseries(7, "BGP sessions (1 Established)", (12, 13, 12, 12),
                    f"max without (state) (bird_protocol_up{{{BGP}}})", "{{pop}} {{name}}", None,
                    "bird_protocol_up of every BGP session; AnycastBgpSessionDown fires after 2 minutes at 0."),
        _timeseries(8, "Announcements: routes exported per PoP", (0, 25, 12, 9),
                    f"sum by (pop) (bird_protocol_prefix_export_count{{{BGP}}})", "{{pop}}", None,
                    "Prefix and service host route, per family; 0 = withdrawn."),
        _timeseries(9, "BGP session state changes (30 min)", (12, 25, 12, 9),
                    f"resets(bird_protocol_uptime{{{BGP}}}[30m])", "{{pop}} {{name}}", None,
                    "AnycastBgpSessionFlapping fires at 4."),
        _timeseries(10, f"Probe latency per PoP ({zone})", (0, 34, 12, 9),
                    f'max by (pop, job) (probe_duration_seconds{{job=~"{PROBES}"}})', "{{pop}} {{job}}", "s",
                    "Blackbox exporter probes: HTTP X-PoP and DNS per unicast address, and the anycast address."),
        _timeseries(11, "Health agent check latency", (12, 34, 12, 9),
                    "anycast_health_check_latency_seconds", "{{pop}} {{check}}", "s",
                    "The health agent's last HTTP and DNS check on each anycast PoP."),
    ]
    return {
        "uid": f"anycast-{network['asn']}",
        "title": f"Anycast AS{network['asn']} ({zone})",
        "description": "Generated by `anycast monitoring targets` from the stack outputs; regenerate, do not edit.",
        "tags": ["anycast", "bgp", "generated"],
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "links": [],
        "annotations": {"list": [{
            "name": "Annotations & Alerts", "builtIn": 1, "type": "dashboard", "enable": True, "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)", "datasource": {"type": "grafana", "uid": "-- Grafana --"}}]},
        "templating": {"list": [{"type": "datasource", "name": "datasource", "label": "Prometheus",
                                 "query": "prometheus", "refresh": 1, "hide": 0}]},
        "panels": panels,
    }
