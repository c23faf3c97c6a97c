"""The dev stack in machine mode: every PoP a Debian 12 container booted by systemd-nspawn from its own rendered
user-data.yaml (cloud-init NoCloud), packages from the lab's mirror; then every `lab check` row, the machine-only
rows and the real systemd watchdog. Builds the image on first use (about 1.5 minutes, cached under
/var/cache/anycast-lab). Needs root, network namespaces, systemd-nspawn, debootstrap and Debian's mirror; skipped,
with the reason, only where those are missing.

Replaces a running dev lab (same namespaces); tears everything down afterwards, also on failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.model.stack import load_network
from lab.boot import machines as machine_lab
from lab.boot.up import down, lab_password, up
from lab.checks import run_checks
from lab.drivers.machines import CGROUP_FS, lab_cgroups, lab_mounts
from lab.net.netns import LabError, list_namespaces
from lab.plan.topology import build_plan
from lab.state import LabState
from tests.helpers.environment import lab_unavailable

pytestmark = [pytest.mark.lab, pytest.mark.slow]
STACK = "dev"
TOOLS = ("ip", "bird", "nsd", "caddy", "gobgpd", "gobgp", "dig", "curl", "systemd-nspawn", "nsenter", "debootstrap",
         "apt-ftparchive")


def _cgroup_layout() -> str | None:
    if not (CGROUP_FS / "systemd").is_dir():
        return "machine mode needs the hybrid cgroup layout (/sys/fs/cgroup/systemd); this host has none"
    return None


REASON = lab_unavailable(TOOLS, "machine mode (network namespaces, cgroups, systemd-nspawn)", _cgroup_layout)


@pytest.fixture(scope="module")
def lab() -> Iterator[LabState]:
    if REASON:
        pytest.skip(REASON)
    try:
        yield up(STACK, load_network(STACK), quiet=True, timeout=120, machines=True)
    finally:
        down(STACK)


@pytest.fixture(scope="module")
def report(lab: dict[str, Any]) -> dict[str, Any]:
    return run_checks(STACK, failover=True, freeze=False, progress=False)


def test_every_pop_is_a_container_booted_from_its_user_data(lab: dict[str, Any]) -> None:
    assert lab["mode"] == "machines"
    data = machine_lab.user_data(build_plan(STACK, load_network(STACK)), lab_password())
    for code, pst in lab["pops"].items():
        root = Path(f"/proc/{pst['pids']['leader']}/root")
        # byte for byte: the seed cloud-init read is the rendered user data
        assert (root / "var/lib/cloud/seed/nocloud/user-data").read_bytes() == data[code]
        assert pst["machine"]["cloud_init"] == "done"
        assert (root / "usr/sbin/bird").exists(), f"{code}: bird2 was not installed by cloud-init"


def test_every_row_passes(report: dict[str, Any]) -> None:
    """Every row, the process mode's and the machine-only ones, HTTPS included."""
    failed = [f"{c['group']}: {c['name']}: {c['detail']}" for c in report["checks"] if not c["ok"]]
    assert not failed, "\n".join(failed)


def test_https_from_the_user_datas_own_units(lab: dict[str, Any], report: dict[str, Any]) -> None:
    """tls.enabled: the issuer's anycast-tls-issue.service ordered through the lab's ACME cloud (Pebble behind the
    rendered directory URL, moto as Route53/S3), every PoP's anycast-tls-fetch.service installed the certificate,
    and the process mode's HTTPS rows (every client, the renewal under load) pass against the containers."""
    if not load_network(STACK).tls.enabled:
        pytest.skip("tls.enabled is off in this stack: no HTTPS units")
    from lab.cloud.tls import MACHINE_FILES

    issuer = lab["tls"]["issuer"]
    # The issuer's timer may have ordered during the boot already (the containers' timers see the host's uptime,
    # docs/lab.md): then the lab's run of its unit finds the stored certificate valid.
    assert lab["tls"]["fetch"][issuer].startswith(("issued and stored a certificate", "nothing to do: the stored"))
    for code, line in lab["tls"]["fetch"].items():
        if code != issuer:
            assert line.startswith(("installed certificate for", "unchanged: certificate for")), (code, line)
    for pst in lab["pops"].values():
        root = Path(f"/proc/{pst['pids']['leader']}/root")
        for path in MACHINE_FILES:  # the lab's substitutions, and nothing of the certificate's key among them
            assert (root / path.lstrip("/")).exists(), path
        assert "acme-v02.api.letsencrypt.org" in (root / "etc/hosts").read_text(encoding="ascii")
    groups = {c["group"] for c in report["checks"]}
    assert "tls" in groups
    rows = [c for c in report["checks"] if c["group"] == "tls" or c["name"].startswith("HTTPS units from the user data")]
    assert len(rows) >= 5 and all(c["ok"] for c in rows), [c for c in rows if not c["ok"]]
    renewal = report["measurements"]["tls_renewal"]
    assert renewal["handshakes"] > 0 and renewal["handshakes_failed_outside_reload"] == 0


def test_machine_rows_ran(report: dict[str, Any]) -> None:
    groups = {c["group"] for c in report["checks"]}
    assert {"bgp", "routes", "leak", "clients", "logs", "machines", "monitoring", "failover", "health"} <= groups
    names = " | ".join(c["name"] for c in report["checks"])
    for want in ("cloud-init status done", "is-system-running", "every rendered unit", "nftables enforced",
                 "health agent runs under systemd", "systemd watchdog withdraws", "journals"):
        assert want in names, f"missing row: {want}"


def test_health_faults_under_real_systemd(report: dict[str, Any]) -> None:
    """The process mode's health fault rows against the PoP's own systemd (lab/scenarios/faults.py): every row ran and passed,
    and the figures say what systemd did: NSD, BIRD and Caddy restarted by their units' Restart=, the watchdog's restart
    counted, the drain run with the installed CLI lost nothing."""
    rows = [c for c in report["checks"] if c["group"] == "health"]
    names = " | ".join(c["name"] for c in rows)
    for part in ("status:", "NSD killed", "systemd watchdog withdraws", "BIRD killed", "drain"):
        assert part in names, names
    assert len(rows) == 5 and all(c["ok"] for c in rows), rows
    status = next(c for c in rows if c["name"].startswith("status:"))
    assert "127.0.0.1:9325" in status["detail"] and ":9325 from de: no answer" in status["detail"]
    h = report["measurements"]["health"]
    nsd = h["nsd killed"]
    assert nsd["withdraw_s"] < 1 and nsd["extra"]["restart"] == "always"
    assert 0 < nsd["extra"]["systemd_restart_s"] < 5  # systemd, not the lab, brought NSD back
    frozen = h["agent frozen, Caddy killed"]
    assert frozen["withdraw_s"] <= 2.5 and frozen["extra"]["nrestarts"][1] > frozen["extra"]["nrestarts"][0]
    bird = h["BIRD restarted while Caddy is down"]
    assert bird["extra"]["announced"] == [] and bird["extra"]["systemd_restart_s"] is not None
    assert h["drain"]["lost"] == 0 and h["drain"]["probes"] > 0
    (kill,) = [c for c in report["checks"] if c["group"] == "failover" and c["name"].startswith("Caddy killed")]
    assert "systemd: caddy.service Restart=on-failure (RestartSec=2s) restarted it by itself" in kill["detail"], kill
    # The user data's drop-in, not the lab, brought Caddy back (after RestartSec=2s); the agent re-announced after it.
    first = report["measurements"]["kill_caddy"][0]
    assert 2 <= first["systemd_restart_s"] < 5 and first["recover_s"] is not None, first
    assert 2 <= frozen["extra"]["caddy_systemd_restart_s"] < 5, frozen


def test_wrong_package_name_fails_naming_it(lab: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A package Debian does not have, in one PoP's user data: cloud-init's apt fails and so does the lab, naming it."""
    real = machine_lab.user_data

    def broken(plan: Any, password: str) -> dict[str, bytes]:
        return {code: text.replace(b"\n- nsd\n", b"\n- nsd-no-such-package\n") for code, text in real(plan, password).items()}

    monkeypatch.setattr(machine_lab, "user_data", broken)
    with pytest.raises(LabError, match="nsd-no-such-package"):
        up(STACK, load_network(STACK), only=["sao"], quiet=True, timeout=60, machines=True)


def test_down_removes_everything(lab: dict[str, Any]) -> None:
    down(STACK)
    assert not list_namespaces(f"acl-{STACK}-")
    assert not lab_cgroups(f"acl-{STACK}-")
    assert not lab_mounts(Path(lab["dir"]))


def test_auditors_rows(report: dict[str, Any]) -> None:
    """Issue 21's auditors against the booted PoPs (lab/checks/audit.py, in the same check run as every other row):
    exposure of our units at or below 2.0 with Debian's stock units beside, the rendered sysctls in effect, nmap
    finding only the public ports from a client, BGP only from the peer, the exporters from admin.monitoringCidrs,
    and Lynis' index of a PoP (its goal, or every finding left explained)."""
    from lab.checks.audit import EXPOSURE_GOAL, LYNIS_GOAL

    rows = [c for c in report["checks"] if c["group"] == "audit"]
    assert len(rows) == 6 and all(c["ok"] for c in rows), [c for c in rows if not c["ok"]] or rows
    detail = {c["name"].split()[0]: c["detail"] for c in rows}
    exposure = detail["systemd-analyze"]
    for unit in ("anycast-health ", "bird ", "nsd ", "caddy "):
        assert unit in exposure, exposure
    assert "(Debian's unit 9.6)" in exposure and f"<= {EXPOSURE_GOAL}" in rows[0]["name"], exposure
    scan = next(c["detail"] for c in rows if "only 53/udp" in c["name"])
    assert "53/tcp 53/udp 80/tcp 443/tcp" in scan and "every other port silent" in scan, scan
    assert "values read back" in detail["kernel"]
    lynis = report["measurements"]["lynis"]
    assert lynis["tests"] > 100 and (lynis["index"] >= LYNIS_GOAL or not lynis["unexplained"]), lynis
