"""Bad input outside the network document fails with one line, never a traceback, and nothing half-applied:
unreadable stack files, --out where nothing can be written, and under Pulumi a bad password or cost map."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from infra.cli.main import main
from tests.pulumi_mocks import ROOT, run_in_subprocess

DEV = (ROOT / "Pulumi.dev.yaml").read_text(encoding="utf-8")


def _one_error_line(capsys: pytest.CaptureFixture[str], rc: int) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert len(lines[0]) < 300
    return lines[0]


@pytest.mark.parametrize("content, expect", [
    (b"config:\n  anycast:network:\n    asn: \xff\xfe\n", "not UTF-8"),
    (("config:\n  anycast:network: " + "[" * 20000 + "]" * 20000 + "\n").encode(), "exceeded maximum nesting depth"),
    (("config:\n  anycast:network: " + "[" * 100 + "]" * 100 + "\n").encode(), "nested too deeply"),
    # Go's yaml.v3 reads digits past uint64 as a float and past float64 as a string; the program sees the same
    (DEV.replace("asn: 64500", "asn: " + "9" * 5000).encode(), "asn: '99999999999999999999999999999999999999"),
    (DEV.replace("asn: 64500", "asn: " + "9" * 30).encode(), "asn: 1e+30 is not a whole number"),
    (DEV.replace("asn: 64500", "asn: true").encode(), "asn: True is not a whole number"),
    (DEV.replace("code: ams,", "code: \"ams\\nprotocol\",").encode(), "pops[0].code: 'ams\\nprotocol' must be"),
])
def test_unreadable_stack_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                content: bytes, expect: str) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: anycast\n", encoding="utf-8")
    (tmp_path / "Pulumi.bad.yaml").write_bytes(content)
    monkeypatch.chdir(tmp_path)
    line = _one_error_line(capsys, main(["render", "--stack", "bad", "--out", str(tmp_path / "out")]))
    assert "Pulumi.bad.yaml" in line and expect in line


@pytest.mark.parametrize("target", ["file", "/dev/null", "/proc/anycast-cannot-write-here", "under-a-file"])
def test_render_out_where_nothing_can_be_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str], target: str) -> None:
    monkeypatch.setenv("ANYCAST_BGP_PASSWORD", "lab-password")
    (tmp_path / "file").write_text("x", encoding="utf-8")
    out = {"file": str(tmp_path / "file"), "under-a-file": str(tmp_path / "file" / "out")}.get(target, target)
    line = _one_error_line(capsys, main(["render", "--stack", "dev", "--out", out]))
    assert out.split("/")[1] in line or "file" in line


def test_monitoring_targets_out_on_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x", encoding="utf-8")
    outputs = ROOT / "tests" / "fixtures" / "stack-outputs-prod.json"
    _one_error_line(capsys, main(["monitoring", "targets", "--outputs", str(outputs), "--out", str(tmp_path / "file")]))


def test_the_installed_command_prints_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "infra.cli.main", "render", "--stack", "dev", "--out",
                           str(tmp_path / "file")], capture_output=True, text=True, cwd=ROOT,
                          env={"ANYCAST_BGP_PASSWORD": "lab-password", "PATH": "/usr/bin:/bin"}, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.startswith("error: "), proc.stderr


# --- under Pulumi (mocks): refused before any resource is registered ---------------------------------------------

@pytest.mark.parametrize("config, expect", [
    ({"anycast:bgpPassword": 'pass"word'}, "anycast:bgpPassword"),
    ({"anycast:bgpPassword": ""}, "anycast:bgpPassword"),
    ({"anycast:externalPopCosts": json.dumps({"hkg": "forty"})}, "anycast:externalPopCosts.hkg"),
    ({"anycast:externalPopCosts": json.dumps({"nope": 40})}, "anycast:externalPopCosts"),
    ({"anycast:externalPopCosts": "forty"}, "anycast:externalPopCosts"),
])
def test_program_refuses_bad_config_before_creating_anything(config: dict[str, str], expect: str) -> None:
    result = run_in_subprocess("prod", extra_config=config, expect_failure=True, timeout=120)
    assert result.get("errorType") == "RunError", result.get("error")
    assert expect in result["error"] and 'pass"word' not in result["error"]
    assert len(result["error"].splitlines()) <= 3
    assert result["resources"] == []


@pytest.mark.parametrize("url, expect", [
    ("http://127.0.0.1:99999", "Port out of range"), ("http://127.0.0.1:abc", "Port could not be cast"),
    ("http://[::1", "Invalid IPv6 URL"), ("http://127.0.0.1:0", "port 0"), ("ftp://x" + "y" * 500, "..."),
])
def test_ripe_base_url_is_checked(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                  url: str, expect: str) -> None:
    monkeypatch.setenv("RIPE_API_KEY", "keyid:secret")
    line = _one_error_line(capsys, main(["ripe", "plan", "--stack", "prod", "--base-url", url]))
    assert line.startswith("error: --base-url: ") and expect in line


@pytest.mark.parametrize("content, expect", [
    (b"\xff\xfe", "UTF-16LE"), (b"\xff", "not UTF-8"), (b"[" * 100000 + b"]" * 100000, "nested deeper than 64 levels"),
    (b"[1, 2]", "no stack outputs"),
    (b'{"network": 5}', "lacks the stack output"), (b"{", "not JSON"),
])
def test_monitoring_targets_refuse_malformed_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     content: bytes, expect: str) -> None:
    (tmp_path / "outputs.json").write_bytes(content)
    line = _one_error_line(capsys, main(["monitoring", "targets", "--outputs", str(tmp_path / "outputs.json"),
                                         "--out", str(tmp_path / "out")]))
    assert line.startswith("error: --outputs: ") and expect in line
