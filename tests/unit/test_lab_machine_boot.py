"""Machine mode's boot shortcuts that must not change a verdict: cloud-init's status read from its own files, and the
image settings that only save CPU (lab/drivers/image.py). The boot itself: tests/lab/test_lab_machines.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.drivers import image
from lab.drivers.machines import finished_without_errors

DS = "DataSourceNoCloud [seed=/var/lib/cloud/seed/nocloud][dsmode=net]"


def _run_dir(tmp_path: Path, stage: str | None = None, errors: dict[str, list[str]] | None = None,
             result_errors: list[str] | None = None, unfinished: str | None = None, result: bool = True) -> Path:
    """/run/cloud-init as cloud-init 22.4 leaves it (status.json per stage, result.json at the end)."""
    errors = errors or {}
    v1: dict[str, object] = {"datasource": DS, "stage": stage}
    t = 1795693700.0
    for i, name in enumerate(("init-local", "init", "modules-config", "modules-final")):
        v1[name] = {"errors": errors.get(name, []), "start": t + i,
                    "finished": None if name == unfinished else t + i + 0.5}
    (tmp_path / "status.json").write_text(json.dumps({"v1": v1}), encoding="utf-8")
    if result:
        (tmp_path / "result.json").write_text(json.dumps({"v1": {"datasource": DS, "errors": result_errors or []}}),
                                              encoding="utf-8")
    return tmp_path


def test_done_without_errors_is_read_from_the_status_files(tmp_path: Path) -> None:
    assert finished_without_errors(_run_dir(tmp_path)) is True


@pytest.mark.parametrize("kwargs", [
    {"errors": {"modules-final": ["('package-update-upgrade-install', ProcessExecutionError(...))"]}},
    {"errors": {"init": ["bad user data"]}},
    {"result_errors": ["('scripts-user', RuntimeError('runcmd failed'))"]},
])
def test_any_error_is_not_done(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    assert finished_without_errors(_run_dir(tmp_path, **kwargs)) is False


@pytest.mark.parametrize("kwargs", [
    {"stage": "modules-final"},  # result.json written, stage not yet cleared
    {"unfinished": "modules-final"},
    {"result": False},
])
def test_still_running_or_incomplete_is_undecided(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    assert finished_without_errors(_run_dir(tmp_path, **kwargs)) is None


def test_unreadable_status_is_undecided(tmp_path: Path) -> None:
    _run_dir(tmp_path)
    (tmp_path / "status.json").write_text("{", encoding="utf-8")
    assert finished_without_errors(tmp_path) is None


def test_image_cloud_cfg_only_saves_cpu() -> None:
    cfg = yaml.safe_load(image.CLOUD_CFG)
    assert cfg["datasource_list"] == ["NoCloud", "None"]
    assert cfg["ssh_genkeytypes"] == ["ecdsa", "ed25519"]  # sshd still has host keys; no RSA/DSA generation
    assert cfg["grub_dpkg"] == {"enabled": False}


def test_image_has_no_resolver_of_the_host_and_its_key_follows_that(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not any(line.startswith("nameserver") for line in image.RESOLV_CONF.splitlines())
    key = image.image_key()
    monkeypatch.setattr(image, "RESOLV_CONF", "nameserver 192.0.2.53\n")
    assert image.image_key() != key


def test_a_second_builder_waits_for_the_first(tmp_path: Path) -> None:
    import threading

    d = tmp_path / "image-x"
    said: list[str] = []
    order: list[str] = []
    with image.build_lock(d, said.append):
        t = threading.Thread(target=lambda: _second(d, said, order))
        t.start()
        t.join(0.3)
        assert t.is_alive() and order == []  # blocked while the first one builds
        order.append("first done")
    t.join(5)
    assert order == ["first done", "second"]
    assert said == ["image-x: another process is building it; waiting"]


def _second(d: Path, said: list[str], order: list[str]) -> None:
    with image.build_lock(d, said.append):
        order.append("second")
