"""`anycast render` as a user runs it: files on disk, one clear line per problem, exit codes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from infra.cli.main import main
from tests.conftest import ROOT, TEST_PASSWORD


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path)
    shutil.copy(ROOT / "Pulumi.dev.yaml", tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANYCAST_BGP_PASSWORD", TEST_PASSWORD)
    return tmp_path


def test_render_writes_every_pop(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--stack", "dev", "--out", "out"]) == 0
    out = project / "out"
    assert sorted(p.name for p in out.iterdir()) == ["ams", "ewr", "sao", "summary.json"]
    assert sorted(p.name for p in (out / "ams").iterdir()) == [
        "Caddyfile", "bird.conf", "cdn.example.com.zone", "health.json", "nftables.conf", "nsd.conf", "reboot.json", "tls.json",
        "user-data.yaml"]
    assert (out / "ams" / "user-data.yaml").stat().st_mode & 0o777 == 0o600
    summary = (out / "summary.json").read_text()
    assert TEST_PASSWORD not in summary
    assert json.loads(summary)["pops"]["sao"]["mode"] == "unicast"
    assert "rendered 3 PoPs" in capsys.readouterr().err


def test_missing_password_is_one_clear_line(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    del os.environ["ANYCAST_BGP_PASSWORD"]
    assert main(["render", "--stack", "dev", "--out", "out"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ANYCAST_BGP_PASSWORD: not set; export ANYCAST_BGP_PASSWORD=")
    assert len(err.splitlines()) == 1
    assert not (project / "out").exists()  # nothing half-written


def test_bad_stack_names_the_file_and_field(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (project / "Pulumi.dev.yaml").read_text().replace("region: ewr", "region: ewrr")
    (project / "Pulumi.broken.yaml").write_text(text)
    assert main(["render", "--stack", "broken", "--out", "out"]) == 2
    assert capsys.readouterr().err == (
        "error: Pulumi.broken.yaml: pops[1].region: 'ewrr' is not a Vultr region "
        "(ams, atl, blr, ... 33 in all, see infra/data/regions.json)\n")
    assert not (project / "out").exists()


def test_unknown_stack_lists_the_known_ones(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--stack", "nope", "--out", "out"]) == 2
    assert capsys.readouterr().err == "error: --stack: no stack file Pulumi.nope.yaml (stacks here: dev)\n"


def test_yaml_syntax_error(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "Pulumi.bad.yaml").write_text("config:\n  anycast:network: {asn: [\n")
    assert main(["render", "--stack", "bad", "--out", "out"]) == 2
    assert capsys.readouterr().err == (
        "error: Pulumi.bad.yaml: line 3, column 1: not valid YAML: while parsing a flow node, did not find expected node content\n")
