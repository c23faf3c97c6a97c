"""The lab's stack outputs (built from lab addresses with infra/derived/outputs.py) and the probe plan, without root."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra.cli.main import main
from infra.derived.outputs import OUTPUT_KEYS
from infra.model.stack import load_network
from infra.monitoring.targets import blackbox_modules, file_sd
from lab.monitor.blackbox import lab_addresses, lab_outputs, parse_probe_success, probe_plan, write_lab_targets
from lab.plan.topology import LabPlan, build_plan

RECORDED = Path(__file__).resolve().parent.parent / "fixtures" / "stack-outputs-prod.json"
ALLOWED = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")]


def _state(plan: LabPlan, base: Path) -> dict[str, Any]:
    """The part of ``.lab/<stack>/state.json`` the builder reads (``lab.boot.up._state`` writes these keys)."""
    return {"dir": str(base), "pops": {p.code: {"unicast_ipv4": p.unicast_ipv4, "unicast_ipv6": p.unicast_ipv6}
                                       for p in plan.pops}}


@pytest.fixture(scope="module")
def prod() -> tuple[LabPlan, dict[str, Any]]:
    plan = build_plan("prod", load_network("prod"))
    return plan, lab_outputs(plan.network, _state(plan, Path("/nonexistent")), {})


def test_same_document_as_the_program_except_addresses(prod: tuple[LabPlan, dict[str, Any]]) -> None:
    """Compared with the recorded `pulumi stack output --json` of the prod stack: only what the lab cannot have
    differs (unicast addresses, instance ids, the Route53 zone id); everything else is the program's output."""
    plan, outputs = prod
    recorded = json.loads(RECORDED.read_text())
    assert set(outputs) == set(OUTPUT_KEYS) == set(recorded) - {"externalCloudConfig"}
    assert outputs["network"] == recorded["network"]
    assert outputs["cost"] == recorded["cost"]
    assert set(outputs["pops"]) == set(recorded["pops"])
    for code, pop in outputs["pops"].items():
        rec = recorded["pops"][code]
        assert set(pop) == set(rec)
        skip = {"ipv4", "ipv6", "instanceId"}
        assert {k: v for k, v in pop.items() if k not in skip} == {k: v for k, v in rec.items() if k not in skip}
        assert (pop["ipv4"], pop["ipv6"]) == (plan.pop(code).unicast_ipv4, plan.pop(code).unicast_ipv6)
        assert pop["instanceId"] is None  # no instances in the lab
    for kind in ("http", "dns"):
        strip = [{k: v for k, v in p.items() if k != "address"} for p in outputs["probes"][kind]]
        assert strip == [{k: v for k, v in p.items() if k != "address"} for p in recorded["probes"][kind]]
    assert set(outputs["geodns"]["names"]) == set(recorded["geodns"]["names"])


def test_probe_addresses_are_the_lab_addresses(prod: tuple[LabPlan, dict[str, Any]]) -> None:
    plan, outputs = prod
    service = {"192.0.2.1", "2001:db8:1000::1"}
    lab = {a for p in plan.pops for a in (p.unicast_ipv4, p.unicast_ipv6) if a}
    http = {p["address"] for p in outputs["probes"]["http"]}
    assert http == service | lab
    for p in outputs["probes"]["http"] + outputs["probes"]["dns"]:  # network safety: documentation space only
        assert any(ipaddress.ip_address(p["address"]) in n for n in ALLOWED), p
    unicast = [p for p in outputs["probes"]["dns"] if p["pop"]]
    assert {p["pop"] for p in unicast} == {"sao", "jnb"}
    for p in unicast:
        assert p["address"] in (plan.pop(p["pop"]).unicast_ipv4, plan.pop(p["pop"]).unicast_ipv6)
    sao_sets = [rs for rs in outputs["geodns"]["names"]["ns1.example.com"] if rs["pop"] == "sao"]
    assert {v for rs in sao_sets for v in rs["values"]} == {plan.pop("sao").unicast_ipv4, plan.pop("sao").unicast_ipv6}


def test_pops_not_booted_get_no_targets() -> None:
    network = load_network("prod")
    plan = build_plan("prod", network, only=["ams", "fra", "sao"])
    addresses = lab_addresses(network, _state(plan, Path("/nonexistent")))
    assert addresses["lhr"] == (None, None) and addresses["ams"][0] == plan.pop("ams").unicast_ipv4
    outputs = lab_outputs(network, _state(plan, Path("/nonexistent")))
    per_pop = {p["pop"] for p in outputs["probes"]["http"] if p["pop"]}
    assert per_pop == {"ams", "fra", "sao"}
    assert outputs["pops"]["lhr"]["ipv4"] is None


def test_written_targets_are_those_of_the_monitoring_command(tmp_path: Path) -> None:
    plan = build_plan("dev", load_network("dev"))
    path, out_dir, outputs = write_lab_targets("dev", plan.network, _state(plan, tmp_path))
    assert path == tmp_path / "outputs.json" and out_dir == tmp_path / "monitoring"
    assert main(["monitoring", "targets", "--outputs", str(path), "--out", str(tmp_path / "cli")]) == 0
    for name in ("http.json", "dns.json", "blackbox.yml"):
        assert (out_dir / name).read_text() == (tmp_path / "cli" / name).read_text(), name
    http = json.loads((out_dir / "http.json").read_text())
    assert {g["targets"][0] for g in http} >= {f"http://{plan.pop('sao').unicast_ipv4}:80/healthz",
                                               "http://192.0.2.1:80/healthz", "http://[2001:db8:1000::1]:80/healthz"}
    assert outputs == json.loads(path.read_text())


@pytest.mark.skipif(shutil.which("prometheus-blackbox-exporter") is None, reason="prometheus-blackbox-exporter not installed")
def test_the_exporter_accepts_the_lab_modules(tmp_path: Path) -> None:
    plan = build_plan("dev", load_network("dev"))
    _, out_dir, _ = write_lab_targets("dev", plan.network, _state(plan, tmp_path))
    proc = subprocess.run(["prometheus-blackbox-exporter", f"--config.file={out_dir / 'blackbox.yml'}", "--config.check"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr


def test_probe_plan() -> None:
    plan = build_plan("dev", load_network("dev"))
    outputs = lab_outputs(plan.network, _state(plan, Path("/nonexistent")))
    de = plan.client("de")
    nearest = plan.nearest_anycast(de)
    assert nearest == "ams"
    probes = probe_plan(outputs, nearest)
    groups = file_sd(outputs)
    generated = [p for p in probes if p.why.startswith("generated")]
    assert len(generated) == len(groups["http.json"]) + len(groups["dns.json"]) == 8 + 8
    assert all(p.expect_success for p in generated)
    modules = blackbox_modules(outputs)["modules"]
    assert all(p.module in modules for p in probes)  # only generated modules are used
    sharp = [p for p in probes if p.expect_success and p not in generated]
    assert [(p.target, p.module) for p in sharp] == [("http://192.0.2.1:80/healthz", "http_xpop_ams"),
                                                     ("http://[2001:db8:1000::1]:80/healthz", "http_xpop_ams")]
    (neg,) = [p for p in probes if not p.expect_success]
    assert neg.kind == "http" and neg.module == "http_xpop_ewr" and neg.target.startswith("http://198.51.100.")
    assert not [p for p in probe_plan(outputs, None) if p.module == "http_xpop_ams" and "192.0.2.1" in p.target]


def test_parse_probe_success() -> None:
    body = "# HELP probe_success x\n# TYPE probe_success gauge\nprobe_success 1\nprobe_duration_seconds 0.01\n"
    assert parse_probe_success(body) == 1
    assert parse_probe_success(body.replace("probe_success 1", "probe_success 0")) == 0
    assert parse_probe_success("nothing") is None
