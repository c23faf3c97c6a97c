"""Stack outputs -> Prometheus blackbox-exporter file_sd targets and modules.

Input: ``pulumi stack output --json > outputs.json`` (keys ``network``, ``pops``, ``probes``; see infra/derived/outputs.py).
Output directory (written by ``anycast monitoring targets``, ``infra/cli/monitoring.py``):

* ``http.json``, ``https.json`` (tls.enabled), ``dns.json``: file_sd target groups, one per probe, labelled ``module``, ``pop``, ``mode``,
  ``family``, ``probe`` (the scrape config copies ``module`` into ``__param_module``);
* ``blackbox.yml``: the modules: ``http_xpop_<pop>`` checks ``X-PoP`` (``http_xpop_anycast`` accepts any anycast
  PoP); ``dns_zone`` asks the zone's SOA; ``dns_id_<pop>`` asks ``CH TXT id.server``, which NSD answers with its
  ``identity``, the same PoP code as its NSID (blackbox cannot read the EDNS NSID option; ``dig +nsid`` can);
* ``bird.json``, ``health.json``: file_sd targets of each PoP's exporters on its unicast address (IPv4 if it has
  one): Debian's prometheus-bird-exporter on every PoP, the health agent's ``/metrics`` on anycast PoPs; labelled
  ``pop``, ``mode``, ``provider``, ``region``, ``city``, ``country``, ``continent``, ``latitude``, ``longitude``,
  ``asn``;
* ``alerts.yml``: the alerting rules of ``infra/monitoring/alerts.py``;
* ``grafana-dashboard.json``: the dashboard of ``infra/monitoring/dashboard.py`` (PoP table and map, sessions, announcements,
  probe latency);
* ``prometheus.yml``: a whole Prometheus config: the probe jobs through the blackbox exporter, the exporter jobs,
  the blackbox exporter's own metrics (so a dead exporter is a target down) and ``rule_files: [alerts.yml]``.

Exporters that are down are targets down in Prometheus (``up == 0``, alert ``AnycastPopNoMetrics``), never errors
here: this reads only the outputs file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from infra.contracts import BIRD_EXPORTER_PORT, BLACKBOX_EXPORTER_PORT, HEALTH_STATUS_PORT
from infra.model import ConfigError
from infra.monitoring.alerts import BIRD_JOB, BLACKBOX_JOB, HEALTH_JOB, rules_document
from infra.monitoring.dashboard import dashboard
from infra.monitoring.stack_outputs import StackOutputs
from infra.safe_write import write_tree
from infra.untrusted.errors import UntrustedInput
from infra.untrusted.files import read_json
from infra.untrusted.jsontext import dumps
from infra.untrusted.schema import validate
from infra.untrusted.text import printable
from infra.untrusted.urls import host_port, probe_url

REQUIRED_KEYS = ("network", "pops", "probes")
MAX_OUTPUTS = 4 * 1024 * 1024  # prod's outputs are 45 KiB (tests/fixtures/stack-outputs-prod.json)
BLACKBOX_ADDRESS = f"127.0.0.1:{BLACKBOX_EXPORTER_PORT}"
SCRAPE_INTERVAL = "15s"
EXPORTER_LABELS = ("provider", "region", "city", "country", "continent", "latitude", "longitude", "mode")


def load_outputs(path: Path) -> dict[str, Any]:
    """The JSON of ``pulumi stack output --json``, read as untrusted (infra/untrusted: a regular file, bounded, strict
    UTF-8 JSON) and checked against infra/stack_outputs.py; ConfigError (one line naming the JSON path) if it is not."""
    try:
        data = read_json(path, "--outputs", MAX_OUTPUTS)
    except UntrustedInput as exc:
        raise ConfigError([f"{exc}; write it with `pulumi stack output --json`"]) from None
    if not isinstance(data, dict):
        raise ConfigError([f"--outputs: {printable(path, 200)} holds no stack outputs object"])
    missing = [k for k in REQUIRED_KEYS if not isinstance(data.get(k), dict)]
    if missing:
        raise ConfigError([f"--outputs: {printable(path, 200)} lacks the stack output(s) {', '.join(missing)}; is this "
                           "the anycast stack?"])
    try:
        validate(StackOutputs, data, f"--outputs: {printable(path, 200)}")
    except UntrustedInput as exc:
        raise ConfigError([f"{exc}; write it with `pulumi stack output --json` of this project"]) from None
    return data


def _suffix(probe: dict[str, Any]) -> str:
    return str(probe["pop"]) if probe.get("pop") else "anycast"


def _alternation(codes: list[str]) -> str:
    return "^(" + "|".join(re.escape(c) for c in codes) + ")$"


def _labels(probe: dict[str, Any], module: str, network: dict[str, Any]) -> dict[str, str]:
    return {"module": module, "probe": str(probe["name"]), "pop": _suffix(probe), "mode": str(probe["mode"]),
            "family": str(probe["family"]), "asn": str(network.get("asn", ""))}


def file_sd(outputs: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """``{"http.json": [...], "https.json": [...], "dns.json": [...]}``: file_sd target groups, one per probe and check."""
    network, probes = outputs["network"], outputs["probes"]
    http = [{"targets": [probe_url("http", p["address"], p["port"], p["path"])],
             "labels": _labels(p, f"http_xpop_{_suffix(p)}", network)} for p in probes.get("http", [])]
    dns: list[dict[str, Any]] = []
    for p in probes.get("dns", []):
        target = host_port(p["address"], p["port"])
        dns.append({"targets": [target], "labels": _labels(p, "dns_zone", network)})
        dns.append({"targets": [target], "labels": _labels(p, f"dns_id_{_suffix(p)}", network)})
    https = [{"targets": [probe_url("https", p["address"], p["port"], p["path"])],
              "labels": _labels(p, f"https_xpop_{_suffix(p)}", network)} for p in probes.get("https", [])]
    return {"http.json": http, "https.json": https, "dns.json": dns}


def blackbox_modules(outputs: dict[str, Any], ca_file: str | None = None) -> dict[str, Any]:
    """The blackbox-exporter ``modules:`` every target of :func:`file_sd` refers to.

    HTTPS modules verify the chain (against ``ca_file`` if given, e.g. the lab's Pebble root; else the system store)
    for the probe's ``serverName``; every successful HTTPS probe exports ``probe_ssl_earliest_cert_expiry``."""
    probes = outputs["probes"]
    zone = str(outputs["network"]["zone"])
    modules: dict[str, Any] = {}
    for p in probes.get("http", []):
        modules[f"http_xpop_{_suffix(p)}"] = {
            "prober": "http", "timeout": "5s",
            "http": {"method": "GET", "valid_status_codes": [200], "follow_redirects": False,
                     "fail_if_header_not_matches": [{"header": "X-PoP", "regexp": _alternation(p["expectXPop"]),
                                                     "allow_missing": False}]}}
    for p in probes.get("https", []):
        tls_config: dict[str, Any] = {"server_name": str(p["serverName"]), "min_version": "TLS12"}
        if ca_file:
            tls_config["ca_file"] = ca_file
        modules[f"https_xpop_{_suffix(p)}"] = {
            "prober": "http", "timeout": "5s",
            "http": {"method": "GET", "valid_status_codes": [200], "follow_redirects": False, "fail_if_not_ssl": True,
                     "tls_config": tls_config,
                     "fail_if_header_not_matches": [{"header": "X-PoP", "regexp": _alternation(p["expectXPop"]),
                                                     "allow_missing": False}]}}
    for p in probes.get("dns", []):
        codes = "|".join(re.escape(c) for c in p["expectNsid"])
        modules[f"dns_id_{_suffix(p)}"] = {
            "prober": "dns", "timeout": "5s",
            "dns": {"transport_protocol": "udp", "query_name": "id.server", "query_type": "TXT", "query_class": "CH",
                    "valid_rcodes": ["NOERROR"],
                    "validate_answer_rrs": {"fail_if_none_matches_regexp": [f'.*"({codes})"$']}}}
    if probes.get("dns"):
        modules["dns_zone"] = {
            "prober": "dns", "timeout": "5s",
            "dns": {"transport_protocol": "udp", "query_name": zone, "query_type": "SOA", "valid_rcodes": ["NOERROR"],
                    "validate_answer_rrs": {"fail_if_not_matches_regexp": [r".*\bSOA\b.*"]}}}
    return {"modules": dict(sorted(modules.items()))}


def _unicast_address(pop: dict[str, Any]) -> str | None:
    address = pop.get("ipv4") or pop.get("ipv6")
    return str(address) if address else None


def exporter_file_sd(outputs: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """``{"bird.json": [...], "health.json": [...]}``: one target group per PoP and exporter, on the unicast address.

    PoPs without an address in the outputs (not deployed yet) get no target."""
    asn = str(outputs["network"].get("asn", ""))
    bird: list[dict[str, Any]] = []
    health: list[dict[str, Any]] = []
    for code, pop in sorted(outputs["pops"].items()):
        address = _unicast_address(pop)
        if address is None:
            continue
        labels = {"pop": code, "asn": asn} | {k: str(pop[k]) for k in EXPORTER_LABELS if pop.get(k) is not None}
        bird.append({"targets": [host_port(address, BIRD_EXPORTER_PORT)], "labels": labels})
        if pop["mode"] == "anycast":
            health.append({"targets": [host_port(address, HEALTH_STATUS_PORT)], "labels": labels})
    return {"bird.json": bird, "health.json": health}


def prometheus_config(out_dir: Path, blackbox: str = BLACKBOX_ADDRESS, scrape_interval: str = SCRAPE_INTERVAL,
                      evaluation_interval: str = SCRAPE_INTERVAL) -> dict[str, Any]:
    """A Prometheus config: probe jobs through the blackbox exporter at ``blackbox``, the PoPs' exporters, the
    blackbox exporter itself, and the rules in ``out_dir/alerts.yml``."""
    relabel: list[dict[str, Any]] = [
        {"source_labels": ["__address__"], "target_label": "__param_target"},
        {"source_labels": ["module"], "target_label": "__param_module"},
        {"source_labels": ["__param_target"], "target_label": "instance"},
        {"target_label": "__address__", "replacement": blackbox},
    ]
    probes = [{"job_name": f"anycast-{kind}", "metrics_path": "/probe",
               "file_sd_configs": [{"files": [str(out_dir / f"{kind}.json")]}],
               "relabel_configs": [dict(r) for r in relabel]}
              for kind in ("http", "https", "dns")]
    exporters = [{"job_name": job, "file_sd_configs": [{"files": [str(out_dir / name)]}]}
                 for job, name in ((BIRD_JOB, "bird.json"), (HEALTH_JOB, "health.json"))]
    return {"global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval},
            "rule_files": [str(out_dir / "alerts.yml")],
            "scrape_configs": [*probes, *exporters,
                               {"job_name": BLACKBOX_JOB, "static_configs": [{"targets": [blackbox]}]}]}


def write_targets(outputs: dict[str, Any], out_dir: Path, min_announcing: int | None = None,
                  blackbox: str = BLACKBOX_ADDRESS, scrape_interval: str = SCRAPE_INTERVAL,
                  hold: str | None = None, ca_file: str | None = None) -> list[Path]:
    """Write the file_sd files, blackbox.yml, alerts.yml and prometheus.yml into ``out_dir``; return the paths.

    ``blackbox``, ``scrape_interval`` and ``hold`` (every alert's ``for``) are for the lab; defaults suit production.
    """
    rules = rules_document(outputs, min_announcing, hold)  # refuses a bad threshold before anything is written
    documents: dict[str, Any] = file_sd(outputs) | exporter_file_sd(outputs) | {"grafana-dashboard.json": dashboard(outputs)}
    files = {name: dumps(doc, indent=2, sort_keys=True) + "\n" for name, doc in documents.items()}
    config = prometheus_config(out_dir, blackbox, scrape_interval, scrape_interval)
    for name, doc in (("blackbox.yml", blackbox_modules(outputs, ca_file)), ("alerts.yml", rules), ("prometheus.yml", config)):
        files[name] = yaml.safe_dump(doc, sort_keys=False, width=1000)
    return write_tree(out_dir, files)  # never follows a link planted in out_dir (infra/safe_write.py)
