"""bgp.ipv6NeighborRoute: the /128 route to a multihop IPv6 BGP neighbour via the router-advertised gateway, in the
kernel (a boot unit and script in the user data) and in BIRD (a kernel protocol learning it into its own table).
The script runs here for real, with a stand-in ``ip`` on PATH that answers like iproute2 and records what it was asked."""

from __future__ import annotations

import base64
import gzip
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.model import ConfigError, Network, parse_network
from infra.model.stack import load_network, read_stack_config
from tests.conftest import TEST_PASSWORD
from userdata.render import NEIGHBOR_ROUTE_SCRIPT, neighbor_route6, render_pop

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = ROOT / "userdata" / "files" / "anycast-neighbor-route.sh"
UNIT = "/etc/systemd/system/anycast-neighbor-route.service"


def with_route(stack: str, value: str | None) -> Network:
    doc = dict(read_stack_config(stack)["anycast:network"])
    bgp = {k: v for k, v in dict(doc.get("bgp") or {}).items() if k != "ipv6NeighborRoute"}
    doc["bgp"] = bgp if value is None else {**bgp, "ipv6NeighborRoute": value}
    return parse_network(doc, source=f"Pulumi.{stack}.yaml anycast:network")


def paths(user_data: str) -> dict[str, Any]:
    doc = yaml.safe_load(user_data)
    return {"files": {f["path"]: gzip.decompress(base64.b64decode(f["content"])).decode()
                      if f.get("encoding") == "gz+b64" else f["content"] for f in doc["write_files"]}, "runcmd": doc["runcmd"]}


def test_default_is_none_and_the_stacks_choose() -> None:
    assert with_route("prod", None).bgp.ipv6_neighbor_route == "none"
    assert {s: load_network(s).bgp.ipv6_neighbor_route for s in ("prod", "free", "dev")} == {
        "prod": "auto", "free": "auto", "dev": "none"}
    with pytest.raises(ConfigError) as err:
        with_route("dev", "yes")
    assert "bgp.ipv6NeighborRoute" in str(err.value)


def test_auto_routes_the_vultr_neighbour_in_the_kernel_and_shows_it_in_bird() -> None:
    network = with_route("prod", "auto")
    rendered = render_pop(network, network.pop("ams"), TEST_PASSWORD)
    bird = rendered.files["bird.conf"]
    assert "ipv6 table neighbor6;" in bird and "protocol kernel neighbor6_kernel {" in bird
    assert "import where net = 2001:19f0:ffff::1/128;" in bird and bird.count("export none;") == 1
    ud = paths(rendered.user_data)
    assert ud["files"][NEIGHBOR_ROUTE_SCRIPT] == SCRIPT.read_text(encoding="utf-8")
    unit = ud["files"][UNIT]
    assert "Before=bird.service" in unit and f"ExecStart=/bin/sh {NEIGHBOR_ROUTE_SCRIPT} 2001:19f0:ffff::1" in unit
    enable = next(c for c in ud["runcmd"] if c[:3] == ["systemctl", "enable", "--now"])
    restart = ["systemctl", "restart", "nsd.service", "caddy.service", "bird.service"]
    assert "anycast-neighbor-route.service" in enable and ud["runcmd"].index(enable) < ud["runcmd"].index(restart)


def test_none_and_pops_without_a_multihop_ipv6_neighbour_render_nothing() -> None:
    none = with_route("prod", "none")
    rendered = render_pop(none, none.pop("ams"), TEST_PASSWORD)
    assert "neighbor6" not in rendered.files["bird.conf"] and UNIT not in paths(rendered.user_data)["files"]
    auto = with_route("prod", "auto")
    for pop in auto.pops:
        expect = pop.is_vultr  # Vultr: 2001:19f0:ffff::1, multihop 2; the external PoPs of prod peer directly
        assert (neighbor_route6(auto, pop) is not None) == expect, pop.code
        assert ("neighbor6" in render_pop(auto, pop, TEST_PASSWORD).files["bird.conf"]) == expect, pop.code


# --- the script, with a stand-in `ip` -----------------------------------------------------------------------------

FAKE_IP = """#!/bin/sh
echo "$*" >> "$IP_LOG"
case "$*" in
  "-6 route show default proto ra") printf '%s' "$RA_ROUTE" ;;
  "-6 route show default") printf '%s' "$ANY_ROUTE" ;;
  "-6 route replace "*) exit "${REPLACE_RC:-0}" ;;
esac
"""


def run_script(tmp_path: Path, ra: str = "", any_route: str = "", tries: int = 2, replace_rc: int = 0) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "ip").write_text(FAKE_IP)
    (bin_dir / "ip").chmod(0o755)
    log = tmp_path / "ip.log"
    log.write_text("")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "IP_LOG": str(log), "RA_ROUTE": ra,
           "ANY_ROUTE": any_route, "ANYCAST_NEIGHBOR_ROUTE_TRIES": str(tries), "REPLACE_RC": str(replace_rc)}
    done = subprocess.run(["/bin/sh", str(SCRIPT), "2001:19f0:ffff::1"], env=env, capture_output=True, text=True, timeout=30)
    return done, log.read_text().splitlines()


def test_the_script_routes_via_the_ra_gateway(tmp_path: Path) -> None:
    ra = "default via fe80::fc00:4ff:fe5d:f2b6 dev enp1s0 proto ra metric 1024 expires 1798sec hoplimit 64 pref medium\n"
    done, calls = run_script(tmp_path, ra=ra, any_route="default via 2001:db8::1 dev enp1s0 proto static metric 1\n")
    assert done.returncode == 0, done.stderr
    assert calls[-1] == "-6 route replace 2001:19f0:ffff::1/128 via fe80::fc00:4ff:fe5d:f2b6 dev enp1s0 proto static"
    assert done.stdout.strip() == "anycast-neighbor-route: 2001:19f0:ffff::1/128 via fe80::fc00:4ff:fe5d:f2b6 dev enp1s0"


def test_the_script_takes_another_default_route_without_an_ra_one(tmp_path: Path) -> None:
    done, calls = run_script(tmp_path, any_route="default via fe80::1 dev eth0 metric 1024 pref medium\n")
    assert done.returncode == 0 and calls[-1] == "-6 route replace 2001:19f0:ffff::1/128 via fe80::1 dev eth0 proto static"


def test_the_script_never_fails_the_boot(tmp_path: Path) -> None:
    done, calls = run_script(tmp_path, any_route="default dev eth0 metric 1024\n", tries=2)  # no gateway: nothing to do
    assert done.returncode == 0 and not any("replace" in c for c in calls)
    assert calls.count("-6 route show default proto ra") == 2  # waited for a router, once per try
    assert "no IPv6 default router in time; 2001:19f0:ffff::1 stays on the default route" in done.stderr
    done, calls = run_script(tmp_path, ra="default via fe80::1 dev eth0 proto ra\n", replace_rc=2)
    assert done.returncode == 0 and "replace" in calls[-1]
