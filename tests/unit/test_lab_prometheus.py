"""The lab's Prometheus plumbing that needs no root: namespace plan, exporter command, target accounting."""

from __future__ import annotations

import shutil
import subprocess
from ipaddress import ip_network
from pathlib import Path

import pytest

from infra.model.stack import load_network
from infra.monitoring.targets import exporter_file_sd, file_sd, prometheus_config
from lab.monitor.blackbox import lab_outputs
from lab.monitor.prometheus import (
    LAB_INTERVAL,
    MON_V4,
    MON_V6,
    Target,
    bird_exporter_command,
    expected_target_count,
    monitor_namespace,
    namespace_lines,
    summarize_targets,
)
from lab.plan.topology import BACKBONE_V4, BACKBONE_V6, build_plan


def _state(stack: str) -> dict[str, object]:
    plan = build_plan(stack, load_network(stack))
    return {"pops": {p.code: {"unicast_ipv4": p.unicast_ipv4, "unicast_ipv6": p.unicast_ipv6} for p in plan.pops}}


def test_monitoring_namespace_routes_every_pop_link_through_its_upstream() -> None:
    plan = build_plan("dev", load_network("dev"))
    root, backbone, inside = namespace_lines(plan)
    assert monitor_namespace("dev") == "acl-dev-mon"
    assert root == ["link add name eth0 netns acl-dev-mon type veth peer name mon0 netns acl-dev-bb"]
    assert "link set mon0 master br0" in backbone
    assert f"addr add {MON_V4}/16 dev eth0" in inside and f"addr add {MON_V6}/64 dev eth0 nodad" in inside
    for p in plan.pops:
        for s in p.sessions:
            via = p.backbone_v4 if s.version == 4 else p.backbone_v6
            assert f"route replace {s.link} via {via} dev eth0" in inside
            assert ip_network(f"{s.pop_address}/{s.link.prefixlen}", strict=False) == s.link  # the unicast address is routed
    # The monitoring address is on the backbone and collides with no upstream or client.
    taken = {p.backbone_v4 for p in plan.pops} | {c.backbone_v4 for c in plan.clients}
    taken6 = {p.backbone_v6 for p in plan.pops} | {c.backbone_v6 for c in plan.clients}
    assert MON_V4 in BACKBONE_V4 and MON_V4 not in taken and MON_V6 in BACKBONE_V6 and MON_V6 not in taken6


def test_bird_exporter_runs_with_the_rendered_flags() -> None:
    cmd = bird_exporter_command("/lab/pops/ams/bird.ctl")
    assert cmd == ["prometheus-bird-exporter", "-bird.v2", "-format.new", "-bird.socket", "/lab/pops/ams/bird.ctl",
                   "-web.listen-address", ":9324"]


@pytest.mark.skipif(shutil.which("prometheus-bird-exporter") is None, reason="make deps installs prometheus-bird-exporter")
def test_the_real_bird_exporter_knows_every_rendered_flag() -> None:
    # Go's flag package exits 2 with "flag provided but not defined" for an unknown flag; -h lists the real ones.
    proc = subprocess.run(["prometheus-bird-exporter", "-h"], capture_output=True, text=True, timeout=30, check=False)
    known = proc.stdout + proc.stderr
    for flag in (a for a in bird_exporter_command("/x") if a.startswith("-")):
        assert f"  {flag}" in known, flag


def test_expected_targets_and_summary(tmp_path: Path) -> None:
    with_tls = {**_state("dev"), "tls": {"ca_file": "/x/pebble-root.pem"}}
    outputs = lab_outputs(load_network("dev"), with_tls)
    files = file_sd(outputs) | exporter_file_sd(outputs)
    # dev: 8 HTTP, 8 HTTPS (tls.enabled) and 8 DNS probes, bird_exporter on 3 PoPs, health agent on 2 anycast PoPs,
    # the blackbox exporter.
    assert expected_target_count(files) == 8 + 8 + 8 + 3 + 2 + 1
    # A lab without its ACME stand-ins (machine mode) has no certificate to probe: no HTTPS targets.
    without_tls = lab_outputs(load_network("dev"), _state("dev"))
    assert expected_target_count(file_sd(without_tls) | exporter_file_sd(without_tls)) == 8 + 8 + 3 + 2 + 1
    config = prometheus_config(tmp_path, "100.64.2.5:9115", LAB_INTERVAL, LAB_INTERVAL)
    assert config["global"] == {"scrape_interval": "1s", "evaluation_interval": "1s"}
    assert config["scrape_configs"][-1]["static_configs"] == [{"targets": ["100.64.2.5:9115"]}]
    got = [Target("anycast-bird", "ams", "http://x/metrics", "up", ""),
           Target("anycast-bird", "sao", "http://y/metrics", "down", "connection refused"),
           Target("blackbox-exporter", "-", "http://z/metrics", "up", "")]
    assert summarize_targets(got) == {"anycast-bird": (1, 2), "blackbox-exporter": (1, 1)}
