"""Machine mode's pure parts: cache keys, the package list and units read from the user data, the mirror address,
systemd time spans. (Booting containers is tests/lab/test_lab_machines.py.)"""

from __future__ import annotations

import json

import pytest
import yaml

from infra.model.stack import load_network
from lab.boot.machines import mirror_address, mirror_url, packages_of, user_data
from lab.boot.up import _links
from lab.checks.machine import rendered_units
from lab.cloud import mirror
from lab.drivers import image
from lab.drivers.machine import seconds as systemd_seconds
from lab.drivers.machines import MachineSpec, cgroup_dirs, meta_data
from lab.plan.topology import build_plan


@pytest.fixture(scope="module")
def dev() -> tuple[object, dict[str, bytes]]:
    plan = build_plan("dev", load_network("dev"))
    return plan, user_data(plan, "lab-password")


def test_image_key_follows_every_input(monkeypatch: pytest.MonkeyPatch) -> None:
    key = image.image_key()
    assert key == image.image_key()  # stable
    monkeypatch.setattr(image, "INCLUDE", (*image.INCLUDE, "vim"))
    assert image.image_key() != key
    monkeypatch.undo()
    monkeypatch.setattr(image, "CLOUD_CFG", image.CLOUD_CFG + "# changed\n")
    assert image.image_key() != key


def test_mirror_key_follows_the_package_list_not_its_order() -> None:
    assert mirror.mirror_key(["nsd", "bird2"]) == mirror.mirror_key(["bird2", "nsd", "nsd"])
    assert mirror.mirror_key(["nsd", "bird2"]) != mirror.mirror_key(["nsd", "bird3"])


def test_unknown_package_names_are_read_from_apt() -> None:
    err = "W: something\nE: Unable to locate package bird3x\nE: Package 'nsd-foo' has no installation candidate\n"
    assert mirror.UNKNOWN.findall(err) == ["bird3x", "nsd-foo"]


def test_timer_started_oneshots_must_have_run_daemons_must_be_active(dev: tuple[object, dict[str, bytes]]) -> None:
    from lab.checks.machine import rendered_unit_kinds

    _, data = dev
    ams = rendered_unit_kinds(data["ams"].decode())
    assert ams["anycast-tls-fetch.service"] == "ran" and ams["anycast-tls-fetch.timer"] == "active"
    assert ams["caddy.service"] == ams["anycast-health.service"] == "active"
    assert ams["anycast-addresses.service"] == "active"  # oneshot with RemainAfterExit=yes


def test_a_oneshot_skipped_by_its_condition_ran_one_never_started_did_not(monkeypatch: pytest.MonkeyPatch) -> None:
    """anycast-status-peers.service has nothing to load before the first peer list: started (at boot, after each
    fetch), its ConditionPathExists= skips it; that is not "never ran". A unit never started at all still is."""
    import subprocess

    from lab.checks import machine

    blocks = {
        "skipped.service": "ActiveState=inactive\nResult=success\nExecMainStartTimestampMonotonic=0\n"
                           "ConditionResult=no\nConditionTimestampMonotonic=123456",
        "never.service": "ActiveState=inactive\nResult=success\nExecMainStartTimestampMonotonic=0\n"
                         "ConditionResult=no\nConditionTimestampMonotonic=0",
        "ran.service": "ActiveState=inactive\nResult=success\nExecMainStartTimestampMonotonic=99\n"
                       "ConditionResult=yes\nConditionTimestampMonotonic=98",
    }
    monkeypatch.setattr(machine, "nsexec", lambda pid, cmd, **kw: subprocess.CompletedProcess(
        cmd, 0, "\n\n".join(f"Id={u}\n{b}" for u, b in blocks.items()) + "\n", ""))
    assert machine.unit_problems(1, dict.fromkeys(blocks, "ran")) == ["never.service never ran"]


def test_packages_and_units_come_from_the_user_data(dev: tuple[object, dict[str, bytes]]) -> None:
    _, data = dev
    pkgs = packages_of(data)
    assert {"bird2", "caddy", "nftables", "nsd", "python3"} <= set(pkgs)
    ams = rendered_units(data["ams"].decode())
    assert {"anycast-addresses.service", "anycast-health.service", "bird.service", "caddy.service",
            "nsd.service"} <= set(ams)
    assert "nftables.service" not in ams  # only enabled by runcmd (for the next boot); nft -f loads the ruleset
    sao = rendered_units(data["sao"].decode())
    assert "anycast-local-addresses.service" in sao and "anycast-health.service" not in sao


def test_user_data_is_the_render_byte_for_byte(dev: tuple[object, dict[str, bytes]]) -> None:
    """What the Pulumi program renders for Vultr, with the lab's access key where the program passes the PoP's own."""
    from lab.cloud.tls import LAB_CREDENTIALS
    from userdata.render import render_pop
    from userdata.tls import CREDENTIALS_FILE, TlsCredentials

    _, data = dev
    net = load_network("dev")
    creds = TlsCredentials(**LAB_CREDENTIALS)
    for code, text in data.items():
        assert text == render_pop(net, net.pop(code), "lab-password", tls_credentials=creds).files[
            "user-data.yaml"].encode()
        written = {f["path"]: f for f in yaml.safe_load(text)["write_files"]}
        assert json.loads(written[CREDENTIALS_FILE]["content"]) == LAB_CREDENTIALS
        assert written[CREDENTIALS_FILE]["permissions"] == "0600"


def test_mirror_is_on_the_upstreams_end_of_each_link(dev: tuple[object, dict[str, bytes]]) -> None:
    plan = build_plan("dev", load_network("dev"))
    for p in plan.pops:
        s = p.session(4) or p.session(6)
        assert s is not None
        assert mirror_address(p) == str(s.link_gateway)
        assert mirror_url(p).startswith("http://") and mirror_url(p).endswith(":8080/")


def test_machine_mode_leaves_the_service_addresses_to_the_pop() -> None:
    plan = build_plan("dev", load_network("dev"))
    _, per = _links(plan, machines=True)
    _, per_proc = _links(plan, machines=False)
    ns = plan.pop("ams").namespace
    assert not any("192.0.2.1/32" in line for line in per[ns])
    assert any("192.0.2.1/32 dev lo" in line for line in per_proc[ns])


def test_meta_data_and_cgroups_are_per_container() -> None:
    spec = MachineSpec("ams", "acl-dev-p-ams", "acl-dev-p-ams", b"#cloud-config\n", "http://198.51.100.129:8080/")
    assert meta_data(spec, "dev") == "instance-id: anycast-lab-dev-ams\nlocal-hostname: acl-dev-p-ams\n"
    assert all(d.name == "acl-dev-p-ams" for d in cgroup_dirs("acl-dev-p-ams"))


@pytest.mark.parametrize(("text", "seconds"), [("2s", 2.0), ("500ms", 0.5), ("1min 30s", 90.0), ("0", 0.0),
                                                ("infinity", 0.0)])
def test_systemd_time_spans(text: str, seconds: float) -> None:
    assert systemd_seconds(text) == seconds
