"""`make bench` writes its figures to one generated file (docs/figures.md) with the date, commit and machine."""

from __future__ import annotations

import re

import pytest

from bench.__main__ import FIGURES, figures_markdown, main


def test_the_figures_file_names_date_commit_machine_and_every_row() -> None:
    rows = [("render prod", 1.25, "s for 20 PoPs"), ("lab: withdrawn | upstream", 0.0047, "s, median of 10")]
    text = figures_markdown(rows, ["render", "lab"], "abc123def456", "Linux 6.1, 2 cores", "2026-12-06 03:00 UTC")
    assert "- date: 2026-12-06 03:00 UTC" in text and "- commit: abc123def456" in text
    assert "- machine: Linux 6.1, 2 cores" in text and "- modules: render, lab" in text
    assert "- not run this time (BENCH=..., or absent): program, health, machines, rollout" in text
    assert "| render prod | 1.250 | s for 20 PoPs |" in text
    assert "| lab: withdrawn / upstream | 0.005 | s, median of 10 |" in text  # a '|' would break the table


def test_the_readme_points_to_the_generated_file() -> None:
    readme = (FIGURES.parent.parent / "README.md").read_text(encoding="utf-8")
    assert "docs/figures.md" in readme


def test_an_unknown_module_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BENCH", "render,nosuch")
    assert main() == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"BENCH: unknown module\(s\) nosuch; known: render, program, lab, health, machines, rollout, hardening, audit, convergence, damping\n", err)
