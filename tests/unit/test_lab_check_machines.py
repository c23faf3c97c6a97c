"""`anycast lab check --machines`: refuses a process-mode lab with how to boot a machine-mode one; runs the rows
(the same run_checks) when the lab was booted with --machines. No namespaces: the state and the checks are stood in."""

from __future__ import annotations

from typing import Any

import pytest

import lab.checks
import lab.state
from infra.cli.main import main


def _lab(monkeypatch: pytest.MonkeyPatch, mode: str) -> list[str]:
    ran: list[str] = []
    monkeypatch.setattr(lab.state, "load_state", lambda stack, root=None: {"mode": mode})

    def run_checks(stack: str, **_: Any) -> dict[str, Any]:
        ran.append(stack)
        return {"stack": stack, "ok": True, "measurements": {},
                "checks": [{"group": "machines", "name": "cloud-init done", "ok": True, "detail": "3 PoPs"}]}

    monkeypatch.setattr(lab.checks, "run_checks", run_checks)
    return ran


def test_a_process_mode_lab_is_refused_with_the_way_to_boot_machines(monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    ran = _lab(monkeypatch, "processes")
    assert main(["lab", "check", "--stack", "dev", "--machines"]) == 1
    err = capsys.readouterr().err
    assert "runs its PoPs as processes" in err and "anycast lab up --stack dev --machines" in err, err
    assert "Traceback" not in err and ran == []


def test_a_machine_mode_lab_runs_its_rows(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ran = _lab(monkeypatch, "machines")
    assert main(["lab", "check", "--stack", "dev", "--machines"]) == 0
    assert ran == ["dev"] and "cloud-init done" in capsys.readouterr().out


def test_without_the_flag_a_process_mode_lab_is_checked_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    ran = _lab(monkeypatch, "processes")
    assert main(["lab", "check", "--stack", "dev"]) == 0 and ran == ["dev"]
