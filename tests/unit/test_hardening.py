"""Host hardening (issue 21 part 2) checked with the real tools: systemd-analyze (verify and the security score),
sshd -t/-T, nsd-checkconf, caddy adapt, and the kernel's own sysctl names."""

from __future__ import annotations

import base64
import gzip
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.hardening import DEBIAN_UNITS, GOAL, OURS, every_unit, exposure, issuer_user_data, unicast_user_data
from infra.model.stack import load_network
from tests.conftest import TEST_PASSWORD
from userdata import hardening
from userdata.render import render_pop


@pytest.fixture(scope="module")
def user_data() -> str:
    return issuer_user_data()


def _doc(text: str) -> dict[str, Any]:
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict)
    return doc


def _files(text: str) -> dict[str, str]:
    """path -> content of every file the user data writes, gzip-compressed ones decoded as cloud-init does."""
    return {f["path"]: gzip.decompress(base64.b64decode(f["content"])).decode() if f.get("encoding") == "gz+b64"
            else f["content"] for f in _doc(text)["write_files"]}


def test_every_unit_we_ship_scores_at_or_below_the_goal() -> None:
    assert shutil.which("systemd-analyze"), "make deps installs systemd"
    scores = every_unit()
    assert set(scores) == {*DEBIAN_UNITS, *OURS}, scores  # the issuer and a unicast PoP carry all of them
    for unit in OURS:
        assert (scores[unit]["ours"] or 99) <= GOAL, (unit, scores[unit])
    for unit in DEBIAN_UNITS:  # the drop-ins lower Debian's stock exposure (9.6, 5.0, 9.0)
        assert (scores[unit]["ours"] or 99) < (scores[unit]["stock"] or 0), (unit, scores[unit])
    assert max(scores[u]["ours"] or 99 for u in DEBIAN_UNITS) <= GOAL, scores


def test_the_score_sees_the_drop_ins(user_data: str) -> None:
    """Without its drop-ins BIRD scores Debian's stock value, with only the shared sandbox it is in between: the
    score reads what the user data writes (the shared one through its YAML alias)."""
    doc = _doc(user_data)
    assert user_data.count("&sandbox") == 1 and user_data.count("*sandbox") == 3  # once: ours by prefix, then Debian's three
    full = exposure(user_data)["bird.service"]
    doc["write_files"] = [f for f in doc["write_files"] if f["path"] != hardening.BIRD_DROPIN]
    shared_only = exposure(yaml.safe_dump(doc))["bird.service"]
    doc["write_files"] = [f for f in doc["write_files"] if not f["path"].startswith("/etc/systemd/system/bird.service.d/")]
    none = exposure(yaml.safe_dump(doc))["bird.service"]
    assert none["ours"] == none["stock"] and (none["ours"] or 0) > 9
    assert (full["ours"] or 99) < (shared_only["ours"] or 99) < (none["ours"] or 0), (full, shared_only, none)


def test_units_and_drop_ins_pass_systemd_analyze_verify(user_data: str, tmp_path: Path) -> None:
    files = {**_files(unicast_user_data()), **_files(user_data)}  # the issuer's, and the oneshots only sao has
    for unit in DEBIAN_UNITS:
        shutil.copy(f"/lib/systemd/system/{unit}", tmp_path / unit)
    for path, text in files.items():
        if path.startswith("/etc/systemd/system/") and (".service.d/" in path or Path(path).name in OURS):
            dest = tmp_path / path.removeprefix("/etc/systemd/system/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            # our agents are not installed here: verify checks that ExecStart's program exists
            dest.write_text(text.replace("/usr/bin/python3 /usr/local/sbin/", "/bin/true /"), encoding="utf-8")
    units = [*DEBIAN_UNITS, *OURS]
    res = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / u) for u in units)], capture_output=True,
                         text=True, timeout=60, env={"SYSTEMD_UNIT_PATH": f"{tmp_path}:", "PATH": "/usr/bin:/bin:/usr/sbin"},
                         check=False)
    out = res.stdout + res.stderr
    assert "hardening.conf" not in out and "anycast-" not in out, out
    health = files["/etc/systemd/system/anycast-health.service"].splitlines()
    assert {"DynamicUser=yes", "SupplementaryGroups=bird", "CapabilityBoundingSet="} <= set(health)
    bird = files[hardening.BIRD_DROPIN].splitlines()
    assert "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE CAP_NET_RAW" in bird and "User=bird" in bird
    for unit, caps in (("anycast-addresses", "CAP_NET_ADMIN"), ("anycast-neighbor-route", "CAP_NET_ADMIN"),
                       ("anycast-local-addresses", "")):
        lines = files[f"/etc/systemd/system/{unit}.service"].splitlines()
        assert f"CapabilityBoundingSet={caps}" in lines and "RestrictAddressFamilies=AF_NETLINK" in lines, unit
        assert hardening.OURS_SANDBOX in files, unit  # anycast-.service.d: every anycast-*.service


def test_sshd_accepts_the_drop_in_and_it_wins(user_data: str, tmp_path: Path) -> None:
    """sshd -t validates; sshd -T shows the effective values even when the main file says otherwise after the
    Include (first value wins, as in Debian's sshd_config, which includes sshd_config.d/*.conf first)."""
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    assert Path(sshd).exists(), "make deps installs openssh-server"
    drop_in = tmp_path / "10-anycast.conf"
    drop_in.write_text(_files(user_data)[hardening.SSHD_DROPIN], encoding="utf-8")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "hostkey")], check=True)
    main = tmp_path / "sshd_config"
    main.write_text(f"Include {drop_in}\nHostKey {tmp_path / 'hostkey'}\nPasswordAuthentication yes\n"
                    "KbdInteractiveAuthentication yes\nCiphers aes128-cbc\n", encoding="utf-8")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd -t wants its privilege-separation directory
    check = subprocess.run([sshd, "-t", "-f", str(main)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    effective = subprocess.run([sshd, "-T", "-f", str(main), "-C", "user=root,host=client,addr=192.0.2.1"],
                               capture_output=True, text=True, check=True).stdout.splitlines()
    conf = dict(line.split(" ", 1) for line in effective if " " in line)
    assert conf["passwordauthentication"] == "no" and conf["kbdinteractiveauthentication"] == "no"
    assert conf["authenticationmethods"] == "publickey" and conf["permitrootlogin"] == "without-password"
    assert conf["ciphers"] == "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com"
    assert all(m.endswith("-etm@openssh.com") for m in conf["macs"].split(","))
    bad = tmp_path / "bad"
    bad.write_text(main.read_text(encoding="utf-8").replace(str(drop_in), str(tmp_path / "typo.conf")), encoding="utf-8")
    (tmp_path / "typo.conf").write_text("Ciphers aes256-gcm@openssh.com,rot13\n", encoding="utf-8")
    assert subprocess.run([sshd, "-t", "-f", str(bad)], capture_output=True, check=False).returncode != 0


def test_every_sysctl_is_a_network_namespace_key_this_kernel_knows(user_data: str) -> None:
    lines = [ln for ln in _files(user_data)[hardening.SYSCTL_FILE].splitlines() if ln and not ln.startswith("#")]
    settings = {k.strip(): v.strip() for k, v in (ln.split("=", 1) for ln in lines)}
    assert settings["net.ipv4.conf.all.rp_filter"] == "2" and settings["net.ipv4.tcp_syncookies"] == "1"
    for key in settings:
        assert key.startswith("net."), key
        assert Path("/proc/sys", *key.split(".")).exists(), f"{key}: no such kernel setting"
    assert ["/lib/systemd/systemd-sysctl", hardening.SYSCTL_FILE, hardening.KERNEL_SYSCTL_FILE] in _doc(user_data)["runcmd"]


def test_the_host_wide_kernel_keys_exist_and_stay_out_of_the_per_namespace_file(user_data: str) -> None:
    """The lab reads SYSCTL_FILE back in every container; the host-wide keys (KRNL-6000) live in a file of their own,
    every one a key this kernel has, none per network namespace."""
    lines = [ln for ln in _files(user_data)[hardening.KERNEL_SYSCTL_FILE].splitlines() if ln and not ln.startswith("#")]
    settings = {k.strip(): v.strip() for k, v in (ln.split("=", 1) for ln in lines)}
    assert settings["kernel.kptr_restrict"] == "2" and settings["kernel.unprivileged_bpf_disabled"] == "1"
    for key in settings:
        assert not key.startswith("net."), key
        assert Path("/proc/sys", *key.split(".")).exists(), f"{key}: no such kernel setting"


def test_nsd_rate_limits_are_explicit_and_positive_answers_whitelisted(tmp_path: Path) -> None:
    network = load_network("dev")
    conf = tmp_path / "nsd.conf"
    conf.write_text(render_pop(network, network.pops[0], TEST_PASSWORD).files["nsd.conf"], encoding="utf-8")
    assert shutil.which("nsd-checkconf"), "make deps installs nsd"

    def option(*args: str) -> str:
        res = subprocess.run(["nsd-checkconf", *args, str(conf)], capture_output=True, text=True, check=False)
        assert res.returncode == 0, res.stderr
        return res.stdout.strip()

    assert option("-o", "rrl-ratelimit") == "200" and option("-o", "rrl-whitelist-ratelimit") == "2000"
    assert option("-o", "rrl-ipv4-prefix-length") == "24" and option("-o", "rrl-slip") == "2"
    assert option("-z", network.dns.zone, "-o", "rrl-whitelist") == "positive"
    # systemd starts NSD as user nsd (NSD_DROPIN): NSD itself must neither switch users nor chroot
    assert option("-o", "username") == "" and option("-o", "chroot") == ""


def test_nsd_starts_as_nsd_with_only_the_port_capability() -> None:
    lines = hardening.NSD_DROPIN_TEXT.splitlines()
    assert {"User=nsd", "AmbientCapabilities=CAP_NET_BIND_SERVICE"} <= set(lines)
    # the reset comes first, then the one capability: Debian's list (SETUID, CHOWN, NET_ADMIN, ...) is gone
    caps = [line for line in lines if line.startswith("CapabilityBoundingSet=")]
    assert caps == ["CapabilityBoundingSet=", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE"]
    # Debian's deny list is emptied before the allow list, else systemd would keep it a deny list
    filters = [line for line in lines if line.startswith("SystemCallFilter=")]
    assert filters[:2] == ["SystemCallFilter=", "SystemCallFilter=@system-service"], filters


def test_caddy_limits_reach_its_json_config(tmp_path: Path) -> None:
    network = load_network("dev")
    pop = next(p for p in network.pops if p.code != network.tls_issuer) if network.tls.enabled else network.pops[0]
    conf = tmp_path / "Caddyfile"
    text = render_pop(network, pop, TEST_PASSWORD).files["Caddyfile"]
    conf.write_text(text.replace("/etc/caddy/tls/", f"{tmp_path}/"), encoding="utf-8")
    res = subprocess.run(["caddy", "adapt", "--config", str(conf), "--adapter", "caddyfile"], capture_output=True,
                         text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    servers = list(json.loads(res.stdout)["apps"]["http"]["servers"].values())
    assert len(servers) == 2, servers  # HTTP and HTTPS
    for server in servers:  # Caddy's JSON holds durations in nanoseconds
        assert server["idle_timeout"] == 120_000_000_000 and server["max_header_bytes"] == 16_000, server
        https = server["listen"] == [":443"]
        # Port 80 has no read timeout: the health agent's idle watch connection must stay open (Go closes a
        # connection without a request after ReadHeaderTimeout, or ReadTimeout when that is unset).
        assert server.get("read_header_timeout") == (5_000_000_000 if https else None), server
        assert server.get("read_timeout") == (10_000_000_000 if https else None), server
