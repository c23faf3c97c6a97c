"""The weekly catchment workflow: valid against GitHub's workflow schema (offline), scheduled, the Atlas key only as
a secret in the one step that needs it, creation confirmed with --yes, report and map uploaded, actions pinned."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from infra.catchment.atlas import CREDITS_PER_RESULT, DEFAULT_AREAS
from infra.cli.main import build_parser
from tests.helpers.workflows import CHECK_JSONSCHEMA, PINNED_ACTIONS, USES_LINE, WORKFLOWS

WORKFLOW = WORKFLOWS / "catchment.yml"
UPLOAD_ARTIFACT = ("ea165f8d65b6e75b540449e92b4886f43607fa02", "v4.6.2")  # actions/upload-artifact tag v4.6.2


def _doc() -> dict[Any, Any]:
    return dict(yaml.safe_load(WORKFLOW.read_text(encoding="utf-8")))


def test_validates_with_the_builtin_schema() -> None:
    proc = subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_weekly_with_the_key_as_a_secret_and_artifacts() -> None:
    doc = _doc()
    (cron,) = doc[True]["schedule"]  # YAML 1.1 reads `on` as True
    _minute, _hour, dom, month, dow = cron["cron"].split()
    assert (dom, month) == ("*", "*") and dow.isdigit()  # once a week
    assert doc["permissions"] == {"contents": "read"}
    (job,) = doc["jobs"].values()
    steps = job["steps"]
    (run,) = [s for s in steps if "anycast catchment" in str(s.get("run", ""))]
    assert run["env"] == {"RIPE_ATLAS_KEY": "${{ secrets.RIPE_ATLAS_KEY }}"}
    assert sum("RIPE_ATLAS_KEY" in str(s) for s in steps) == 1  # no other step sees the key
    argv = run["run"].split()[1:]
    args = build_parser().parse_args(argv)  # the command line is one the CLI accepts
    assert args.stack == "prod" and args.yes and args.wait > 0 and str(args.out) == "catchment"
    (upload,) = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    assert upload["if"] == "always()" and upload["with"]["path"] == "catchment/"


def test_actions_are_pinned_by_commit() -> None:
    pins = {**PINNED_ACTIONS, "actions/upload-artifact": UPLOAD_ARTIFACT}
    lines = [m for line in WORKFLOW.read_text(encoding="utf-8").splitlines() if (m := USES_LINE.match(line))]
    assert len(lines) == 3
    for m in lines:
        assert (m["ref"], m["comment"]) == pins[m["action"]], m.group(0)


def test_the_documented_credit_estimate_matches_the_command() -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    # 5 default areas x --per-source 10 x 2 families x 20 credits
    assert len(DEFAULT_AREAS) * 10 * 2 * CREDITS_PER_RESULT == 2000 and "about 2,000 credits" in text
    assert Path(WORKFLOW).name == "catchment.yml"
