"""A security update that needs a reboot, under client load, in machine mode (lab/scenarios/reboot.py): ewr drains,
reboots and announces again, losing at most a probe per client whose connection was open when its route moved; sao,
which backs it up (same rollout wave), waits for its own slot.
Needs what tests/lab/test_lab_machines.py needs; replaces a running dev lab and tears it down afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.derived.reboots import backup_groups, reboot_slots
from infra.model.stack import load_network
from lab.boot.up import down, up
from lab.drivers.machines import CGROUP_FS
from lab.scenarios.reboot import security_reboot
from lab.state import LabState
from tests.helpers.environment import lab_unavailable

pytestmark = [pytest.mark.lab, pytest.mark.slow]
STACK = "dev"
TOOLS = ("ip", "bird", "nsd", "caddy", "gobgpd", "gobgp", "systemd-nspawn", "nsenter", "debootstrap", "apt-ftparchive")
REASON = lab_unavailable(TOOLS, "machine mode (network namespaces, cgroups, systemd-nspawn)",
                         lambda: None if (CGROUP_FS / "systemd").is_dir() else "machine mode needs /sys/fs/cgroup/systemd")


@pytest.fixture(scope="module")
def lab() -> Iterator[LabState]:
    if REASON:
        pytest.skip(REASON)
    try:
        yield up(STACK, load_network(STACK), quiet=True, timeout=120, machines=True)
    finally:
        down(STACK)


def test_a_security_reboot_drains_and_loses_nothing(lab: LabState) -> None:
    network = load_network(STACK)
    assert "sao" in backup_groups(network)["ewr"] and reboot_slots(network)["ewr"] != reboot_slots(network)["sao"]
    out = security_reboot(lab, network.dns.zone, "ewr", "sao")
    assert out["rebooted_after_s"] is not None and out.get("announced_after_s") is not None, out
    assert out["lost"]["dns"][0] == 0 and out["lost"]["http"][1] > 1000, out["lost_at"]
    # Issue 21's goal is 0 HTTP lost. What is lost (0-2 of ~6,000 measured) is a probe whose TCP connection was open
    # at the instant its client's route moved off ewr (the drain's graceful-shutdown announcement) or back: the new
    # PoP resets it. A client sends one request at a time, so a move costs it at most one; a loss anywhere else (two
    # in a row, or not between answers from two PoPs) would be a blackhole or a PoP that stopped answering.
    assert out["lost_elsewhere"] == 0, out["lost_at"]
    assert all("ewr" in (before, after) for _c, _k, _t, before, after in out["lost_at_switch"]), out["lost_at_switch"]
    assert out["unchanged"] == ["ams", "sao"], out  # sao needs a reboot too, but it is not its slot
    assert "waiting for this PoP's slot" in out["other_said"][0], out
    assert out["drain_left"] == "[]", out  # the boot run removed the drain file and its marker
