"""`anycast monitoring targets` on the recorded prod outputs (tests/fixtures/stack-outputs-prod.json)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.cli.main import main
from infra.model import ConfigError
from infra.monitoring.targets import blackbox_modules, exporter_file_sd, file_sd, load_outputs

OUTPUTS = Path(__file__).resolve().parent.parent / "fixtures" / "stack-outputs-prod.json"


def test_command_writes_file_sd_and_modules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitoring", "targets", "--outputs", str(OUTPUTS), "--out", str(tmp_path)]) == 0
    assert "wrote 42 HTTP, 42 HTTPS and 12 DNS targets for 20 PoPs" in capsys.readouterr().out
    http = json.loads((tmp_path / "http.json").read_text())
    dns = json.loads((tmp_path / "dns.json").read_text())
    modules = yaml.safe_load((tmp_path / "blackbox.yml").read_text())["modules"]
    prometheus = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    for group in http + dns:  # the file_sd format: a list of {targets: [str], labels: {str: str}}
        assert set(group) == {"targets", "labels"} and len(group["targets"]) == 1
        assert all(isinstance(v, str) for v in group["labels"].values())
        assert group["labels"]["module"] in modules, group
    assert [j["job_name"] for j in prometheus["scrape_configs"]] == [
        "anycast-http", "anycast-https", "anycast-dns", "anycast-bird", "anycast-health", "blackbox-exporter"]
    assert prometheus["rule_files"] == [str(tmp_path / "alerts.yml")]
    relabels = prometheus["scrape_configs"][0]["relabel_configs"]
    assert {"source_labels": ["module"], "target_label": "__param_module"} in relabels


def test_http_targets_expect_the_pop_in_x_pop() -> None:
    outputs = load_outputs(OUTPUTS)
    http = {g["labels"]["probe"]: g for g in file_sd(outputs)["http.json"]}
    assert http["sao-ipv4"]["targets"] == [f"http://{outputs['pops']['sao']['ipv4']}:80/healthz"]
    assert http["sao-ipv6"]["targets"] == [f"http://[{outputs['pops']['sao']['ipv6']}]:80/healthz"]
    assert http["anycast-ipv4"]["targets"] == ["http://192.0.2.1:80/healthz"]
    modules = blackbox_modules(outputs)["modules"]
    (sao,) = modules["http_xpop_sao"]["http"]["fail_if_header_not_matches"]
    assert sao["header"] == "X-PoP" and re.fullmatch(sao["regexp"], "sao") and not re.fullmatch(sao["regexp"], "jnb")
    (anycast,) = modules["http_xpop_anycast"]["http"]["fail_if_header_not_matches"]
    for code in outputs["network"]["anycastPops"]:
        assert re.fullmatch(anycast["regexp"], code)
    assert not re.fullmatch(anycast["regexp"], "sao")  # a unicast PoP must never answer on the anycast address


def test_dns_targets_expect_the_pop_identity() -> None:
    outputs = load_outputs(OUTPUTS)
    dns = file_sd(outputs)["dns.json"]
    assert {g["labels"]["pop"] for g in dns} == {"anycast", "sao", "jnb"}
    assert "[2001:db8:1000::1]:53" in {g["targets"][0] for g in dns}
    modules = blackbox_modules(outputs)["modules"]
    jnb = modules["dns_id_jnb"]["dns"]
    assert (jnb["query_name"], jnb["query_type"], jnb["query_class"]) == ("id.server", "TXT", "CH")
    (pattern,) = jnb["validate_answer_rrs"]["fail_if_none_matches_regexp"]
    assert re.fullmatch(pattern, 'id.server.\t0\tCH\tTXT\t"jnb"')
    assert not re.fullmatch(pattern, 'id.server.\t0\tCH\tTXT\t"sao"')
    assert modules["dns_zone"]["dns"]["query_name"] == outputs["network"]["zone"]


def test_no_secrets_reach_monitoring(tmp_path: Path) -> None:
    assert json.loads(OUTPUTS.read_text())["externalCloudConfig"] == "[secret]"
    main(["monitoring", "targets", "--outputs", str(OUTPUTS), "--out", str(tmp_path)])
    text = "".join(p.read_text() for p in tmp_path.iterdir())
    assert "password" not in text.lower() and "[secret]" not in text


def test_exporter_targets_on_the_unicast_address() -> None:
    outputs = load_outputs(OUTPUTS)
    sd = exporter_file_sd(outputs)
    bird = {g["labels"]["pop"]: g for g in sd["bird.json"]}
    health = {g["labels"]["pop"]: g for g in sd["health.json"]}
    assert sorted(bird) == sorted(outputs["pops"])  # every PoP runs BIRD
    assert sorted(health) == sorted(outputs["network"]["anycastPops"])  # the health agent runs on anycast PoPs
    assert bird["ams"]["targets"] == [f"{outputs['pops']['ams']['ipv4']}:9324"]
    assert health["ams"]["targets"] == [f"{outputs['pops']['ams']['ipv4']}:9325"]
    assert bird["sao"]["labels"] == {"pop": "sao", "mode": "unicast", "provider": "vultr", "region": "sao",
                                     "city": "São Paulo", "country": "BR", "continent": "SA", "asn": "64500",
                                     "latitude": "-23.55", "longitude": "-46.63"}
    service = set(outputs["network"]["service"].values())
    assert not any(g["targets"][0].rsplit(":", 1)[0] in service for g in sd["bird.json"])  # never the anycast address


def test_exporter_targets_ipv6_only_and_undeployed() -> None:
    outputs = load_outputs(OUTPUTS)
    outputs["pops"]["ams"] = outputs["pops"]["ams"] | {"ipv4": None}
    outputs["pops"]["fra"] = outputs["pops"]["fra"] | {"ipv4": None, "ipv6": None}
    sd = exporter_file_sd(outputs)
    bird = {g["labels"]["pop"]: g["targets"][0] for g in sd["bird.json"]}
    assert bird["ams"] == f"[{outputs['pops']['ams']['ipv6']}]:9324"
    assert "fra" not in bird  # no address yet: no target (the command says so)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["pops"]["ams"].update(mode="edge"), "$.pops.ams.mode: Input should be 'anycast' or 'unicast'"),
    (lambda d: d["pops"]["ams"].update(ipv4="ams.example.com"), "$.pops.ams.ipv4: 'ams.example.com' is not an IP address"),
    (lambda d: d["probes"]["http"][0].pop("expectXPop"), "$.probes.http[0].expectXPop: Field required"),
    (lambda d: d["network"].update(anycastPops="ams"), "$.network.anycastPops: Input should be a valid list"),
    (lambda d: d.update(pops={"vpc": "vpc-123"}), "$.pops.vpc: Input should be a valid dictionary"),
])
def test_outputs_of_the_wrong_shape(tmp_path: Path, change: Any, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(OUTPUTS.read_text())
    change(data)
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(data))
    assert main(["monitoring", "targets", "--outputs", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_outputs_of_another_project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({"vpcId": "vpc-123", "bucketName": "logs"}))
    assert main(["monitoring", "targets", "--outputs", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --outputs: {path} lacks the stack output(s) network, pops, probes; is this the anycast stack?\n"


@pytest.mark.parametrize(("content", "message"), [
    ("not json", "is not JSON"), ("[]", "holds no stack outputs object"), ('{"network": {}}', "lacks the stack output(s) pops, probes"),
])
def test_bad_outputs_file(tmp_path: Path, content: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_outputs(path)
    assert main(["monitoring", "targets", "--outputs", str(path), "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err
    assert main(["monitoring", "targets", "--outputs", str(tmp_path / "missing.json")]) == 2


@pytest.mark.skipif(shutil.which("prometheus-blackbox-exporter") is None, reason="Debian prometheus-blackbox-exporter not installed")
def test_the_real_blackbox_exporter_accepts_the_modules(tmp_path: Path) -> None:
    main(["monitoring", "targets", "--outputs", str(OUTPUTS), "--out", str(tmp_path)])
    proc = subprocess.run(["prometheus-blackbox-exporter", f"--config.file={tmp_path / 'blackbox.yml'}", "--config.check"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Config file is ok" in proc.stderr and "level=warn" not in proc.stderr
