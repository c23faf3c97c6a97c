"""Every generated alert, firing and quiet, under the real rule engine: ``promtool test rules`` (Debian's prometheus).

The input series carry the labels the generated scrape jobs give them (``job``, ``instance``, ``pop``, ``mode`` ...)
and the metric names the real exporters export (bird_exporter 1.4 with ``-bird.v2 -format.new``, measured against
BIRD 2.0.12; blackbox_exporter). Expected annotations are the templates filled in here by plain substitution, so a
broken template fails too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.model import ConfigError
from infra.monitoring.alerts import alerts, rules_document
from infra.monitoring.targets import load_outputs, prometheus_config, write_targets

OUTPUTS = Path(__file__).resolve().parent.parent / "fixtures" / "stack-outputs-prod.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: `make deps` installs Debian's prometheus")

AMS = {"job": "anycast-bird", "instance": "203.0.113.100:9324", "pop": "ams", "mode": "anycast"}
FRA = {"job": "anycast-bird", "instance": "203.0.113.107:9324", "pop": "fra", "mode": "anycast"}
SAO = {"job": "anycast-bird", "instance": "203.0.113.123:9324", "pop": "sao", "mode": "unicast"}
STATIC4 = {"proto": "Static", "name": "anycast4", "ip_version": "4", "import_filter": "ACCEPT", "export_filter": "REJECT"}
BGP4 = {"proto": "BGP", "name": "upstream4", "ip_version": "4", "import_filter": "REJECT", "export_filter": "ACCEPT"}
BGP6 = BGP4 | {"name": "upstream6", "ip_version": "6"}
PROBE_SAO = {"job": "anycast-http", "instance": "http://203.0.113.123:80/healthz", "pop": "sao", "mode": "unicast",
             "module": "http_xpop_sao", "probe": "sao-ipv4", "family": "ipv4", "asn": "64500"}
PROBE_ANY = PROBE_SAO | {"instance": "http://192.0.2.1:80/healthz", "pop": "anycast", "mode": "anycast",
                         "module": "http_xpop_anycast", "probe": "anycast-ipv4"}
PROBE_DNS = {"job": "anycast-dns", "instance": "192.0.2.1:53", "pop": "anycast", "mode": "anycast", "module": "dns_zone",
             "probe": "anycast-ipv4", "family": "ipv4", "asn": "64500"}
PROBE_TLS = PROBE_SAO | {"job": "anycast-https", "instance": "https://203.0.113.123:443/healthz", "module": "https_xpop_sao"}
BLACKBOX = {"job": "blackbox-exporter", "instance": "127.0.0.1:9115"}


def _series(metric: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{metric}{{{inner}}}", "values": values}


# alert -> (interval, eval_time, input series, expected alerts as (labels, $value)); one firing and one quiet case each.
CASES: dict[str, dict[str, tuple[str, str, list[dict[str, str]], list[tuple[dict[str, str], str]]]]] = {
    "AnycastPopWithdrawn": {
        "firing": ("1m", "5m", [_series("bird_protocol_up", AMS | STATIC4 | {"state": ""}, "1 1 0x5"),
                                _series("bird_protocol_up", FRA | STATIC4 | {"state": ""}, "1x7")],
                   [(AMS | STATIC4, "0")]),
        # Withdrawn for less than `for` (a blip), and unicast PoPs have no anycast static protocol at all.
        "quiet": ("1m", "5m", [_series("bird_protocol_up", AMS | STATIC4 | {"state": ""}, "1 0 1x5"),
                               _series("bird_protocol_up", SAO | BGP4 | {"state": "Established"}, "1x7")], []),
    },
    "AnycastBgpSessionDown": {
        # The `state` label changes with the BGP state: the alert must follow the session across the change.
        "firing": ("1m", "8m", [_series("bird_protocol_up", AMS | BGP4 | {"state": "Established"}, "1 1 1 stale"),
                                _series("bird_protocol_up", AMS | BGP4 | {"state": "Active"}, "_ _ _ 0x7")],
                   [(AMS | BGP4, "0")]),
        "quiet": ("1m", "8m", [_series("bird_protocol_up", AMS | BGP4 | {"state": "Established"}, "1x10"),
                               _series("bird_protocol_up", SAO | BGP6 | {"state": "Established"}, "1x10")], []),
    },
    "AnycastPopExportsNothing": {
        # ams: announced (anycast4 up), upstream4 Established, the export count drops to 0 (an export filter mistake);
        # fra: the same session exporting its route.
        "firing": ("1m", "5m", [_series("bird_protocol_prefix_export_count", AMS | BGP4, "1 1 0x4"),
                                _series("bird_protocol_up", AMS | BGP4 | {"state": "Established"}, "1x6"),
                                _series("bird_protocol_up", AMS | STATIC4 | {"state": ""}, "1x6"),
                                _series("bird_protocol_prefix_export_count", FRA | BGP4, "1x6"),
                                _series("bird_protocol_up", FRA | BGP4 | {"state": "Established"}, "1x6"),
                                _series("bird_protocol_up", FRA | STATIC4 | {"state": ""}, "1x6")],
                   [(AMS | BGP4, "0")]),
        # Exporting nothing is right when the agent withdrew (ams: anycast4 down, AnycastPopWithdrawn's case), when
        # the session is down (fra: AnycastBgpSessionDown's), on a family the PoP does not announce (ams upstream6:
        # no anycast6) and for less than `for` (a blip); unicast PoPs have no anycast static protocol.
        "quiet": ("1m", "5m", [_series("bird_protocol_prefix_export_count", AMS | BGP4, "0x6"),
                               _series("bird_protocol_up", AMS | BGP4 | {"state": "Established"}, "1x6"),
                               _series("bird_protocol_up", AMS | STATIC4 | {"state": ""}, "0x6"),
                               _series("bird_protocol_prefix_export_count", AMS | BGP6, "0x6"),
                               _series("bird_protocol_up", AMS | BGP6 | {"state": "Established"}, "1x6"),
                               _series("bird_protocol_prefix_export_count", FRA | BGP4, "0x6"),
                               _series("bird_protocol_up", FRA | BGP4 | {"state": "Active"}, "0x6"),
                               _series("bird_protocol_up", FRA | STATIC4 | {"state": ""}, "1x6"),
                               _series("bird_protocol_prefix_export_count", FRA | BGP6, "1 1 1 1 0 1"),
                               _series("bird_protocol_up", FRA | BGP6 | {"state": "Established"}, "1x6"),
                               _series("bird_protocol_up", FRA | STATIC4 | {"name": "anycast6", "ip_version": "6", "state": ""}, "1x6"),
                               _series("bird_protocol_prefix_export_count", SAO | BGP4, "0x6"),
                               _series("bird_protocol_up", SAO | BGP4 | {"state": "Established"}, "1x6")], []),
    },
    "AnycastBgpSessionFlapping": {
        "firing": ("1m", "10m", [_series("bird_protocol_uptime", AMS | BGP4, "100 160 0 60 0 60 0 60 0 60 120")],
                   [(AMS | BGP4, "4")]),
        # One down-and-up (two resets) in 30 minutes is not flapping; a session that stays up never resets.
        "quiet": ("1m", "10m", [_series("bird_protocol_uptime", AMS | BGP4, "100 160 0 60 120 180 240 300 360 420 480"),
                                _series("bird_protocol_uptime", FRA | BGP4, "0+60x10")], []),
    },
    "AnycastTooFewPopsAnnouncing": {
        "firing": ("1m", "5m", [_series("bird_protocol_prefix_export_count", AMS | BGP4, "2x6"),
                                _series("bird_protocol_prefix_export_count", FRA | BGP4, "2 0x5"),
                                _series("bird_protocol_prefix_export_count", FRA | BGP6, "0x6")],
                   [({}, "1")]),
        "quiet": ("1m", "5m", [_series("bird_protocol_prefix_export_count", AMS | BGP4, "2x6"),
                               _series("bird_protocol_prefix_export_count", FRA | BGP4, "0x6"),
                               _series("bird_protocol_prefix_export_count", FRA | BGP6, "2x6")], []),
    },
    "AnycastUnicastPopUnhealthy": {
        "firing": ("30s", "3m", [_series("probe_success", PROBE_SAO, "1 0x6")], [(PROBE_SAO, "0")]),
        # Shorter than Route53's three checks 30 s apart; and the anycast target belongs to AnycastProbeFailing.
        "quiet": ("30s", "3m", [_series("probe_success", PROBE_SAO, "1 1 1 0 0 1 1"),
                                _series("probe_success", PROBE_ANY, "0x6")], []),
    },
    "AnycastProbeFailing": {
        # HTTPS of a unicast PoP too (Route53 checks only HTTP); the unicast HTTP target is AnycastUnicastPopUnhealthy's.
        "firing": ("1m", "5m", [_series("probe_success", PROBE_DNS, "0x5"), _series("probe_success", PROBE_ANY, "1 1 0 0 0 0"),
                                _series("probe_success", PROBE_SAO, "0x5"), _series("probe_success", PROBE_TLS, "0x5")],
                   [(PROBE_DNS, "0"), (PROBE_ANY, "0"), (PROBE_TLS, "0")]),
        "quiet": ("1m", "5m", [_series("probe_success", PROBE_DNS, "1x5"), _series("probe_success", PROBE_ANY, "1x5")], []),
    },
    "AnycastCertificateExpiring": {
        "firing": ("1m", "2h", [_series("probe_ssl_earliest_cert_expiry", PROBE_ANY, f"{10 * 86400}x150")],
                   [(PROBE_ANY, str(10 * 86400 - 7200))]),
        "quiet": ("1m", "2h", [_series("probe_ssl_earliest_cert_expiry", PROBE_ANY, f"{30 * 86400}x150")], []),
    },
    "AnycastPopNoMetrics": {
        "firing": ("1m", "5m", [_series("up", AMS, "1 0x5"), _series("up", FRA | {"job": "anycast-health"}, "1x6")],
                   [(AMS, "0")]),
        "quiet": ("1m", "5m", [_series("up", AMS, "1 0 0 1 1 1"), _series("up", BLACKBOX, "1x6")], []),
    },
    "AnycastBlackboxExporterDown": {
        "firing": ("1m", "5m", [_series("up", BLACKBOX, "1 0x5")], [(BLACKBOX, "0")]),
        "quiet": ("1m", "5m", [_series("up", BLACKBOX, "1x6"), _series("up", AMS, "0x6")], []),
    },
}


def _fill(template: str, labels: dict[str, str], value: str) -> str:
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), template)
    return text.replace("{{ $value }}", value)


def _expected(rule: dict[str, Any], labels: dict[str, str], value: str) -> dict[str, Any]:
    return {"exp_labels": labels | rule["labels"],
            "exp_annotations": {k: _fill(v, labels, value) for k, v in rule["annotations"].items()}}


def _run_promtool(tmp_path: Path, rules: dict[str, Any], tests: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules, sort_keys=False, width=1000))
    doc = {"rule_files": ["alerts.yml"], "evaluation_interval": "1m", "tests": tests}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(doc, sort_keys=False, width=1000))
    return subprocess.run([PROMTOOL, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, check=False)


def _rules(min_announcing: int | None = None) -> dict[str, Any]:
    return rules_document(load_outputs(OUTPUTS), min_announcing)


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    names = [a.name for a in alerts(load_outputs(OUTPUTS))]
    assert sorted(CASES) == sorted(names) and len(names) == len(set(names))
    for rule in _rules()["groups"][0]["rules"]:
        assert rule["annotations"]["runbook"] and rule["annotations"]["summary"], rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical")


@needs_promtool
@pytest.mark.parametrize("case", ["firing", "quiet"])
@pytest.mark.parametrize("alert", sorted(CASES))
def test_alert_under_promtool(tmp_path: Path, alert: str, case: str) -> None:
    # Two announcing PoPs needed in the fleet case (the fixture's default is 9 of 18: every case would fire).
    rules = _rules(min_announcing=2)
    rule = next(r for r in rules["groups"][0]["rules"] if r["alert"] == alert)
    interval, eval_time, series, expected = CASES[alert][case]
    assert (case == "firing") == bool(expected)
    test = {"interval": interval, "input_series": series,
            "alert_rule_test": [{"eval_time": eval_time, "alertname": alert,
                                 "exp_alerts": [_expected(rule, labels, value) for labels, value in expected]}]}
    proc = _run_promtool(tmp_path, rules, [test])
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_promtool
def test_promtool_catches_a_wrong_expectation(tmp_path: Path) -> None:
    # The harness can fail: the firing case of AnycastPopWithdrawn evaluated before `for` has passed.
    interval, _, series, expected = CASES["AnycastPopWithdrawn"]["firing"]
    rules = _rules(min_announcing=2)
    rule = rules["groups"][0]["rules"][0]
    test = {"interval": interval, "input_series": series,
            "alert_rule_test": [{"eval_time": "2m", "alertname": "AnycastPopWithdrawn",
                                 "exp_alerts": [_expected(rule, *expected[0])]}]}
    proc = _run_promtool(tmp_path, rules, [test])
    assert proc.returncode != 0 and "AnycastPopWithdrawn" in proc.stdout + proc.stderr


@needs_promtool
def test_generated_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    write_targets(load_outputs(OUTPUTS), tmp_path)
    assert PROMTOOL is not None
    proc = subprocess.run([PROMTOOL, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "10 rules found" in proc.stdout + proc.stderr
    config = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    assert config == prometheus_config(tmp_path)
    assert [j["job_name"] for j in config["scrape_configs"]] == [
        "anycast-http", "anycast-https", "anycast-dns", "anycast-bird", "anycast-health", "blackbox-exporter"]


def test_min_announcing_is_checked() -> None:
    outputs = load_outputs(OUTPUTS)
    assert "< 9" in next(a.expr for a in alerts(outputs) if a.name == "AnycastTooFewPopsAnnouncing")  # 18 anycast PoPs
    with pytest.raises(ConfigError, match=r"--min-announcing: 19 is outside 1\.\.18"):
        alerts(outputs, 19)
    with pytest.raises(ConfigError, match=r"--min-announcing: 0 is outside"):
        alerts(outputs, 0)


def test_docs_list_every_alert_with_its_expression_and_runbook() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "monitoring.md").read_text(encoding="utf-8")
    for a in alerts(load_outputs(OUTPUTS)):
        row = next((line for line in doc.splitlines() if line.startswith(f"| `{a.name}` |")), None)
        assert row is not None, f"docs/monitoring.md lacks {a.name}"
        assert f"| {a.severity} | {a.for_} |" in row, a.name
        assert a.expr.replace("|", "\\|") in row, a.name
        assert a.runbook.split(".")[0] in row, a.name
