"""The lab's render-only mode (like arouteserver's BUILD_ONLY): every config the lab would run, checked by the
daemons' own validators, without namespaces or root."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from infra.model.stack import load_network
from lab.boot.up import build
from lab.plan.topology import build_plan


def _run(cmd: list[str]) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, f"{' '.join(cmd)}: {res.stderr or res.stdout}"


@pytest.fixture(scope="module", params=["dev", "prod", "free"])
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    stack = str(request.param)
    base = tmp_path_factory.mktemp(f"lab-{stack}")
    plan = build_plan(stack, load_network(stack))
    n = build(plan, "lab-password", base)
    assert n == len([f for f in base.rglob("*") if f.is_file()])
    return stack, base


@pytest.mark.skipif(shutil.which("bird") is None, reason="bird2 is not installed")
def test_every_bird_config_parses(built: tuple[str, Path]) -> None:
    _stack, base = built
    confs = sorted(base.glob("pops/*/bird.conf")) + sorted(base.glob("clients/*/bird.conf"))
    assert confs
    for conf in confs:
        _run(["bird", "-p", "-c", str(conf)])


@pytest.mark.skipif(shutil.which("nsd-checkconf") is None, reason="nsd is not installed")
def test_every_nsd_config_and_zone_checks(built: tuple[str, Path]) -> None:
    _stack, base = built
    for conf in sorted(base.glob("pops/*/nsd.conf")):
        _run(["nsd-checkconf", str(conf)])
        text = conf.read_text()
        assert 'username: ""' in text and str(conf.parent) in text
    for zone in sorted(base.glob("pops/*/zones/*.zone")):
        if "$INCLUDE" in zone.read_text():
            continue  # unicast PoPs: the include is written at boot by anycast-local-addresses
        _run(["nsd-checkzone", zone.name.removesuffix(".zone"), str(zone)])


@pytest.mark.skipif(shutil.which("gobgpd") is None, reason="gobgpd is not installed")
def test_every_gobgpd_config_passes_dry_run(built: tuple[str, Path]) -> None:
    _stack, base = built
    for conf in sorted(base.glob("upstreams/*/gobgpd.toml")):
        _run(["gobgpd", "--dry-run", "-f", str(conf), "-t", "toml", "--log-level", "error"])


@pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy is not installed")
def test_a_caddyfile_validates(built: tuple[str, Path]) -> None:
    _stack, base = built
    conf = sorted(base.glob("pops/*/Caddyfile"))[0]
    env = {"HOME": str(base), "XDG_CONFIG_HOME": str(base / "xdg"), "XDG_DATA_HOME": str(base / "xdg"), "PATH": "/usr/bin:/bin"}
    res = subprocess.run(["caddy", "validate", "--config", str(conf), "--adapter", "caddyfile"], capture_output=True,
                         text=True, env=env, timeout=30)
    assert res.returncode == 0, res.stderr
