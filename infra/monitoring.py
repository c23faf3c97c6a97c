"""Stack outputs -> Prometheus blackbox-exporter file_sd targets and modules.

Input: ``pulumi stack output --json > outputs.json`` (keys ``network``, ``pops``, ``probes``; see infra/outputs.py).
Output directory (written by ``anycast monitoring targets``, ``infra/cli/monitoring.py``):

* ``http.json``, ``dns.json``: file_sd target groups, one per probe, labelled ``module``, ``pop``, ``mode``,
  ``family``, ``probe`` (the scrape config copies ``module`` into ``__param_module``);
* ``blackbox.yml``: the modules: ``http_xpop_<pop>`` checks ``X-PoP`` (``http_xpop_anycast`` accepts any anycast
  PoP); ``dns_zone`` asks the zone's SOA; ``dns_id_<pop>`` asks ``CH TXT id.server``, which NSD answers with its
  ``identity``, the same PoP code as its NSID (blackbox cannot read the EDNS NSID option; ``dig +nsid`` can);
* ``prometheus.yml``: the two scrape jobs reading those files through a blackbox exporter.
"""

from __future__ import annotations

import json
import re
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import yaml

from infra.model import ConfigError

REQUIRED_KEYS = ("network", "pops", "probes")
BLACKBOX_ADDRESS = "127.0.0.1:9115"


def load_outputs(path: Path) -> dict[str, Any]:
    """The JSON of ``pulumi stack output --json``; ConfigError if it is not that."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"--outputs: no such file {path}"]) from None
    except json.JSONDecodeError as exc:
        raise ConfigError([f"--outputs: {path} is not JSON ({exc}); write it with `pulumi stack output --json`"]) from None
    if not isinstance(data, dict):
        raise ConfigError([f"--outputs: {path} holds no stack outputs object"])
    missing = [k for k in REQUIRED_KEYS if not isinstance(data.get(k), dict)]
    if missing:
        raise ConfigError([f"--outputs: {path} lacks the stack output(s) {', '.join(missing)}; is this the anycast stack?"])
    return data


def _host(address: str) -> str:
    return f"[{address}]" if ip_address(address).version == 6 else address


def _suffix(probe: dict[str, Any]) -> str:
    return str(probe["pop"]) if probe.get("pop") else "anycast"


def _alternation(codes: list[str]) -> str:
    return "^(" + "|".join(re.escape(c) for c in codes) + ")$"


def _labels(probe: dict[str, Any], module: str, network: dict[str, Any]) -> dict[str, str]:
    return {"module": module, "probe": str(probe["name"]), "pop": _suffix(probe), "mode": str(probe["mode"]),
            "family": str(probe["family"]), "asn": str(network.get("asn", ""))}


def file_sd(outputs: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """``{"http.json": [...], "dns.json": [...]}``: file_sd target groups, one per probe and check."""
    network, probes = outputs["network"], outputs["probes"]
    http = [{"targets": [f"http://{_host(p['address'])}:{p['port']}{p['path']}"],
             "labels": _labels(p, f"http_xpop_{_suffix(p)}", network)} for p in probes.get("http", [])]
    dns: list[dict[str, Any]] = []
    for p in probes.get("dns", []):
        target = f"{_host(p['address'])}:{p['port']}"
        dns.append({"targets": [target], "labels": _labels(p, "dns_zone", network)})
        dns.append({"targets": [target], "labels": _labels(p, f"dns_id_{_suffix(p)}", network)})
    return {"http.json": http, "dns.json": dns}


def blackbox_modules(outputs: dict[str, Any]) -> dict[str, Any]:
    """The blackbox-exporter ``modules:`` every target of :func:`file_sd` refers to."""
    probes = outputs["probes"]
    zone = str(outputs["network"]["zone"])
    modules: dict[str, Any] = {}
    for p in probes.get("http", []):
        modules[f"http_xpop_{_suffix(p)}"] = {
            "prober": "http", "timeout": "5s",
            "http": {"method": "GET", "valid_status_codes": [200], "follow_redirects": False,
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


def prometheus_jobs(out_dir: Path, blackbox: str = BLACKBOX_ADDRESS) -> dict[str, Any]:
    """Scrape jobs that read the file_sd files and probe through the blackbox exporter at ``blackbox``."""
    relabel = [
        {"source_labels": ["__address__"], "target_label": "__param_target"},
        {"source_labels": ["module"], "target_label": "__param_module"},
        {"source_labels": ["__param_target"], "target_label": "instance"},
        {"target_label": "__address__", "replacement": blackbox},
    ]
    return {"scrape_configs": [
        {"job_name": f"anycast-{kind}", "metrics_path": "/probe",
         "file_sd_configs": [{"files": [str(out_dir / f"{kind}.json")]}], "relabel_configs": relabel}
        for kind in ("http", "dns")]}


def write_targets(outputs: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write http.json, dns.json, blackbox.yml and prometheus.yml into ``out_dir``; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, groups in file_sd(outputs).items():
        path = out_dir / name
        path.write_text(json.dumps(groups, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    for name, doc in (("blackbox.yml", blackbox_modules(outputs)), ("prometheus.yml", prometheus_jobs(out_dir))):
        path = out_dir / name
        path.write_text(yaml.safe_dump(doc, sort_keys=False, width=1000), encoding="utf-8")
        written.append(path)
    return written
