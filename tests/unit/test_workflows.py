"""The GitHub workflows validate against the GitHub workflow schema (offline) and do what docs/deploy.md says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


def load(name: str) -> dict[Any, Any]:
    return dict(yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8")))


def pulumi_step(doc: dict[Any, Any]) -> dict[str, Any]:
    (job,) = doc["jobs"].values()
    (step,) = [s for s in job["steps"] if str(s.get("uses", "")).startswith("pulumi/actions@")]
    return dict(step)


def test_workflows_validate_offline_with_the_builtin_schema() -> None:
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    assert [Path(f).name for f in files] == ["deploy.yml", "preview.yml"]
    # A dead proxy proves the check needs no network: the schema ships inside check-jsonschema.
    env = dict(os.environ, HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9", NO_PROXY="")
    proc = subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", *files],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok -- validation done" in proc.stdout


def test_the_schema_check_rejects_a_broken_workflow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps: {uses: oops}\n")
    proc = subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", str(bad)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1


def test_preview_on_pull_requests_with_policy_pack_and_comment() -> None:
    doc = load("preview.yml")
    assert "pull_request" in doc[True]  # YAML 1.1 reads the key `on` as True
    assert doc["permissions"]["pull-requests"] == "write"
    (job,) = doc["jobs"].values()
    assert any(str(s.get("uses", "")).startswith("actions/setup-python@") for s in job["steps"])
    assert any("pip install -e" in str(s.get("run", "")) for s in job["steps"])
    step = pulumi_step(doc)
    assert step["uses"] == "pulumi/actions@v6"
    assert step["with"]["command"] == "preview" and step["with"]["comment-on-pr"] is True
    assert step["with"]["policyPacks"] == "policies"
    assert "PULUMI_ACCESS_TOKEN" in step["env"]


def test_deploy_runs_up_for_prod_on_main() -> None:
    doc = load("deploy.yml")
    assert doc[True]["push"]["branches"] == ["main"]
    step = pulumi_step(doc)
    assert step["with"]["command"] == "up" and step["with"]["stack-name"].endswith("/prod")
    assert step["with"]["policyPacks"] == "policies"
    assert doc["concurrency"]["cancel-in-progress"] is False
