"""`anycast monitoring targets` on the recorded prod outputs (tests/fixtures/stack-outputs-prod.json)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from infra.cli.main import main
from infra.model import ConfigError
from infra.monitoring import blackbox_modules, file_sd, load_outputs

OUTPUTS = Path(__file__).resolve().parent.parent / "fixtures" / "stack-outputs-prod.json"


def test_command_writes_file_sd_and_modules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitoring", "targets", "--outputs", str(OUTPUTS), "--out", str(tmp_path)]) == 0
    assert "wrote 42 HTTP and 12 DNS targets for 20 PoPs" in capsys.readouterr().out
    http = json.loads((tmp_path / "http.json").read_text())
    dns = json.loads((tmp_path / "dns.json").read_text())
    modules = yaml.safe_load((tmp_path / "blackbox.yml").read_text())["modules"]
    prometheus = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    for group in http + dns:  # the file_sd format: a list of {targets: [str], labels: {str: str}}
        assert set(group) == {"targets", "labels"} and len(group["targets"]) == 1
        assert all(isinstance(v, str) for v in group["labels"].values())
        assert group["labels"]["module"] in modules, group
    assert [j["job_name"] for j in prometheus["scrape_configs"]] == ["anycast-http", "anycast-dns"]
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
