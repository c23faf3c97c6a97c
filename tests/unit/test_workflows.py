"""The GitHub workflows validate against the GitHub workflow schema (offline) and do what docs/deploy.md says."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.workflows import CHECK_JSONSCHEMA, PINNED_ACTIONS, ROOT, USES_LINE, WORKFLOWS
from tests.pulumi_cli_rules import PROJECT_JSON_SHA256, PROJECT_JSON_URL, PULUMI_TAG


def load(name: str) -> dict[Any, Any]:
    return dict(yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8")))


def pulumi_job(doc: dict[Any, Any]) -> dict[str, Any]:
    (job,) = [j for j in doc["jobs"].values() if any(str(s.get("uses", "")).startswith("pulumi/actions@") for s in j["steps"])]
    return dict(job)


def pulumi_step(doc: dict[Any, Any]) -> dict[str, Any]:
    (step,) = [s for s in pulumi_job(doc)["steps"] if str(s.get("uses", "")).startswith("pulumi/actions@")]
    return dict(step)


def test_workflows_validate_offline_with_the_builtin_schema() -> None:
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    assert [Path(f).name for f in files] == ["catchment.yml", "deploy.yml", "preview.yml"]
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
    assert doc["permissions"] == {"contents": "read"}  # the PR-comment right only where the preview runs
    job = pulumi_job(doc)
    assert job["permissions"]["pull-requests"] == "write"
    assert any(str(s.get("uses", "")).startswith("actions/setup-python@") for s in job["steps"])
    step = pulumi_step(doc)
    assert step["uses"].startswith("pulumi/actions@")
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
    # weekly re-signing of a DNSSEC zone (docs/dnssec.md): after the signing period turns on Thursday 00:00 UTC
    assert doc[True]["schedule"] == [{"cron": "0 6 * * 4"}]
    assert step["env"]["ANYCAST_DNSSEC_KEY"] == "${{ secrets.ANYCAST_DNSSEC_KEY }}"


# --- what deploys is what was tested ---------------------------------------------------------------------------------

WORKFLOW_NAMES = ["deploy.yml", "preview.yml"]  # the ones that run Pulumi
ALL_WORKFLOWS = sorted(p.name for p in WORKFLOWS.glob("*.yml"))


def locked_versions() -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "requirements.lock").read_text(encoding="utf-8"), re.MULTILINE)
    return {name.lower().replace("_", "-"): version for name, version in pins}


@pytest.mark.parametrize("name", ALL_WORKFLOWS)
def test_every_action_is_pinned_by_commit_with_its_tag_in_a_comment(name: str) -> None:
    lines = [m for line in (WORKFLOWS / name).read_text(encoding="utf-8").splitlines() if (m := USES_LINE.match(line))]
    assert lines
    for m in lines:
        assert m["action"] in PINNED_ACTIONS, f"{name}: {m['action']} has no verified pin"
        assert (m["ref"], m["comment"]) == PINNED_ACTIONS[m["action"]], f"{name}: {m.group(0).strip()}"
    # Every `uses:` the YAML holds was seen by the line scan (no flow-style step escaped it).
    doc = load(name)
    uses = [s["uses"] for job in doc["jobs"].values() for s in job["steps"] if "uses" in s]
    assert sorted(uses) == sorted(f"{m['action']}@{m['ref']}" for m in lines)


def test_the_pin_scan_catches_a_moving_tag() -> None:
    m = USES_LINE.match("      - uses: actions/checkout@v4")
    assert m is not None and (m["ref"], m["comment"]) != PINNED_ACTIONS["actions/checkout"]
    m = USES_LINE.match("      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1  # v6.0.0")
    assert m is not None and (m["ref"], m["comment"]) != PINNED_ACTIONS["actions/checkout"]


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_real_validators_run_on_debian_12_before_any_pulumi_command(name: str) -> None:
    doc = load(name)
    jobs = doc["jobs"]
    assert pulumi_job(doc)["needs"] == ["validators", "lab"]
    validators = jobs["validators"]
    assert validators["container"]["image"] == "debian:12" and "--privileged" in validators["container"]["options"]
    runs = [str(s.get("run", "")) for s in validators["steps"]]
    assert "make deps" in runs  # Makefile DEBS: bird2, nsd, caddy, cloud-init, nftables, ... and .venv from the lock
    (test_step,) = [s for s in validators["steps"] if "pytest" in str(s.get("run", ""))]
    assert "tests/unit" in test_step["run"].split() and "tests/validators" in test_step["run"].split()
    assert test_step["env"]["ANYCAST_REQUIRE_VALIDATORS"] == "1"
    assert test_step["env"]["PULUMI_PROJECT_SCHEMA"] == "/tmp/project.json"
    fetch = next(s["run"] for s in validators["steps"] if "project.json" in str(s.get("run", "")))
    assert PROJECT_JSON_URL in fetch and f"{PROJECT_JSON_SHA256}  /tmp/project.json" in fetch and "sha256sum -c" in fetch
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    debs = re.search(r"^DEBS := (.*)$", makefile, re.MULTILINE)
    assert debs is not None and {"bird2", "nsd", "caddy", "cloud-init", "nftables"} <= set(debs[1].split())


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_the_lab_tests_run_as_root_before_any_pulumi_command(name: str) -> None:
    lab = load(name)["jobs"]["lab"]
    assert lab["container"]["image"] == "debian:12" and "--privileged" in lab["container"]["options"]
    assert "make deps" in [str(s.get("run", "")) for s in lab["steps"]]
    (test_step,) = [s for s in lab["steps"] if "pytest" in str(s.get("run", ""))]
    words = test_step["run"].split()
    assert "tests/lab" in words and "lab" in words  # -m lab
    # Only machine mode (two modules) is left out (no hybrid cgroup layout on GitHub's runners); every other lab module runs.
    ignored = {w.removeprefix("--ignore=") for w in words if w.startswith("--ignore=")}
    assert ignored == {"tests/lab/test_lab_machines.py", "tests/lab/test_lab_reboot.py"}
    assert {p.name for p in (ROOT / "tests" / "lab").glob("test_*.py")} - {Path(i).name for i in ignored} >= {
        "test_lab_dev.py", "test_lab_rollout.py", "test_lab_catchment.py"}


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_pulumi_cli_and_python_packages_are_pinned_to_the_checked_versions(name: str) -> None:
    doc = load(name)
    step = pulumi_step(doc)
    assert step["with"]["pulumi-version"] == PULUMI_TAG.removeprefix("v") == locked_versions()["pulumi"]
    install = next(s["run"] for s in pulumi_job(doc)["steps"] if "pip install" in str(s.get("run", "")))
    assert "pip install --require-hashes -r requirements.lock" in install
    assert "pip install --no-deps --no-build-isolation -e ." in install
    assert "'.[dev]'" not in install  # nothing resolved at deploy time
    setup = next(s for s in pulumi_job(doc)["steps"] if str(s.get("uses", "")).startswith("actions/setup-python@"))
    assert setup["with"]["python-version"] == "3.11" and setup["with"]["cache-dependency-path"] == "requirements.lock"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert f"PULUMI_VERSION := {locked_versions()['pulumi']}" in makefile


def test_preview_covers_every_stack() -> None:
    stacks = sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml"))
    assert pulumi_job(load("preview.yml"))["strategy"]["matrix"]["stack"] == stacks == ["dev", "free", "prod"]


# --- where `pulumi up` runs -----------------------------------------------------------------------------------------

DEPLOY_LABEL = "anycast-deploy"  # the self-hosted runner docs/deploy.md sets up inside admin.monitoringCidrs


def test_up_runs_where_the_gates_reach_the_pops() -> None:
    """The gates poll tcp/9325, open to admin.monitoringCidrs only (and free is IPv6-only): GitHub-hosted runners
    reach neither, so `pulumi up` runs on the self-hosted runner label that docs/deploy.md sets up."""
    doc = load("deploy.yml")
    job = pulumi_job(doc)
    assert job["runs-on"] == ["self-hosted", "linux", DEPLOY_LABEL]
    # push to main and the weekly DNSSEC re-signing (a schedule runs the default branch's code): never pull requests
    assert set(doc[True]) == {"push", "schedule"}, "a self-hosted runner must never run code from pull requests"
    # The job outlives the worst case of the rollout it runs (ceil(wave/4) gate timeouts per wave).
    from infra.derived.rollout import overlap_estimate
    from infra.model.stack import load_network

    assert job["timeout-minutes"] > overlap_estimate(load_network("prod"))["worstCaseMinutes"]
    docs = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert f"--labels {DEPLOY_LABEL}" in docs and "admin.monitoringCidrs" in docs


@pytest.mark.parametrize("name", ALL_WORKFLOWS)
def test_only_the_deploy_job_uses_the_self_hosted_runner(name: str) -> None:
    """Previews run on pull requests (code from anyone with a branch): never on the deploy runner."""
    for job_name, job in load(name)["jobs"].items():
        labels = job["runs-on"] if isinstance(job["runs-on"], list) else [job["runs-on"]]
        if name == "deploy.yml" and job_name == "up":
            continue
        assert "self-hosted" not in labels and DEPLOY_LABEL not in labels, f"{name}: {job_name}"
