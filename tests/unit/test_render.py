"""What the renderers put in each PoP's files, asserted on content rather than bytes (golden files do bytes)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from infra.model import ConfigError, Network, parse_network
from tests.conftest import TEST_PASSWORD
from userdata.render import HOST_PATHS, check_password, render_network, render_pop, summary


def _cloud_config(text: str) -> dict[str, Any]:
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict)
    return doc


def _file(doc: dict[str, Any], path: str) -> dict[str, Any]:
    matches = [f for f in doc["write_files"] if f["path"] == path]
    assert len(matches) == 1, path
    return matches[0]


def _content(doc: dict[str, Any], path: str) -> str:
    """What cloud-init writes at ``path``: gzip-compressed entries (encoding gz+b64) decoded as cloud-init does."""
    import base64
    import gzip

    entry = _file(doc, path)
    if entry.get("encoding") == "gz+b64":
        return gzip.decompress(base64.b64decode(entry["content"])).decode()
    return str(entry["content"])


def test_anycast_vultr_pop_bird(prod_network: Network) -> None:
    bird = render_pop(prod_network, prod_network.pop("ams"), TEST_PASSWORD).files["bird.conf"]
    assert "neighbor 169.254.169.254 as 64515;" in bird
    assert "neighbor 2001:19f0:ffff::1 as 64515;" in bird
    assert bird.count("multihop 2;") == 2
    assert bird.count(f'password "{TEST_PASSWORD}";') == 2
    assert bird.count("import none;") == 2
    assert "graceful restart off;" in bird
    assert bird.count("error wait time 5, 120;") == 2
    assert "hold time 9;" in bird and "keepalive time 3;" in bird
    assert "route 192.0.2.0/24 blackhole;" in bird and "route 2001:db8:1000::/48 blackhole;" in bird
    assert "if net = 192.0.2.1/32 then bgp_community.add((20473, 6000));" in bird
    # The only prepends are the graceful-shutdown ones (below); a normal announcement has none.
    assert "bgp_path.prepend" not in re.sub(r'if proto = "gshut\d" then \{.*?\n  \}', "", bird, flags=re.S)
    assert "protocol static anycast4" in bird and "protocol static anycast6" in bird


def test_graceful_shutdown_twins_carry_65535_0_and_prepends(prod_network: Network) -> None:
    """RFC 8326: --drain enables gshutN (disabled at boot, preferred over anycastN); export_upstreamN adds 65535:0,
    bgp.gracefulShutdownPrepend own-AS prepends and, on Vultr, which may not honour the community, 20473:600N."""
    bird = render_pop(prod_network, prod_network.pop("ams"), TEST_PASSWORD).files["bird.conf"]
    for v in (4, 6):
        static = re.search(rf"protocol static gshut{v} \{{\n(.*?)\n\}}", bird, re.S)
        assert static is not None
        assert static.group(1).splitlines()[:2] == ["  disabled;", f"  ipv{v} {{ preference 250; }};"]
        block = re.search(rf'if proto = "gshut{v}" then \{{\n(.*?)\n  \}}', bird, re.S)
        assert block is not None
        assert block.group(1).split("\n") == ["    bgp_community.add((65535, 0));", *["    bgp_path.prepend(OWN_ASN);"] * 3,
                                              "    bgp_community.add((20473, 6003));"]
    none = prod_network.model_copy(update={"bgp": prod_network.bgp.model_copy(update={"graceful_shutdown_prepend": 0})})
    bird = render_pop(none, none.pop("ams"), TEST_PASSWORD).files["bird.conf"]
    assert "bgp_path.prepend" not in bird and "(20473, 6003)" not in bird and bird.count("(65535, 0)") == 2


def test_unicast_pop_announces_nothing(prod_network: Network) -> None:
    bird = render_pop(prod_network, prod_network.pop("sao"), TEST_PASSWORD).files["bird.conf"]
    assert "protocol static" not in bird
    assert "blackhole" not in bird
    # Sessions stay up (monitoring sees them) but the export filters reject everything.
    assert re.findall(r"filter export_upstream\d \{\n(.*?)\n\}", bird, re.S) == [
        "  # Unicast PoP: reached through GeoDNS on its own address; it announces nothing.\n  reject;"] * 2


def test_external_pop_peers_with_its_own_neighbour_and_prepends(prod_network: Network) -> None:
    rendered = render_pop(prod_network, prod_network.pop("maa"), TEST_PASSWORD)
    bird = rendered.files["bird.conf"]
    assert "neighbor 203.0.113.1 as 64502;" in bird and "neighbor 2001:db8:ffff:2::1 as 64502;" in bird
    assert "169.254.169.254" not in bird and "multihop" not in bird
    assert TEST_PASSWORD not in rendered.user_data  # the Vultr password is not sent to another provider
    assert bird.count("bgp_path.prepend(OWN_ASN);") == 4 + 6  # 2x in each family, 3x more in its gshut phase
    assert "20473" not in bird  # Vultr's prepend community only on Vultr
    assert "if net = 192.0.2.1/32 then reject;" in bird
    assert "20473" not in bird


def test_vultr_communities_and_only_to(dev_doc: dict[str, Any]) -> None:
    dev_doc["pops"][0]["announce"] = {"communities": ["20473:6002", "64600:174"], "onlyTo": [3356]}
    network = parse_network(dev_doc)
    bird = render_pop(network, network.pops[0], TEST_PASSWORD).files["bird.conf"]
    adds = re.findall(r"^  bgp_community.add\(\((\d+), (\d+)\)\);$", bird, re.M)
    assert adds == [("20473", "6002"), ("64600", "174"), ("20473", "6000"), ("64699", "3356")] * 2
    assert summary(network)["pops"]["ams"]["communities"] == ["20473:6002", "64600:174", "20473:6000", "64699:3356"]


def test_ipv6_only_network_has_no_ipv4(free_network: Network) -> None:
    rendered = render_pop(free_network, free_network.pop("ams"), TEST_PASSWORD)
    bird = rendered.files["bird.conf"]
    assert "upstream4" not in bird and "anycast4" not in bird and "ipv4" not in bird
    assert "neighbor 2001:19f0:ffff::1 as 64515;" in bird
    assert "local as OWN_ASN;" in bird and "define OWN_ASN = 65534;" in bird
    assert "ip-address: 2001:db8:2000::1" in rendered.files["nsd.conf"]
    assert " A " not in rendered.files["cdn.example.org.zone"]
    health = json.loads(rendered.files["health.json"])
    assert health["http"]["host"] == "2001:db8:2000::1" and health["bird"]["protocols"] == ["anycast6"]


def test_caddy_and_nsd_identify_the_pop(prod_network: Network) -> None:
    files = render_pop(prod_network, prod_network.pop("syd"), TEST_PASSWORD).files
    assert 'header X-PoP "syd"' in files["Caddyfile"]
    assert "respond /healthz" in files["Caddyfile"]
    assert 'identity: "syd"' in files["nsd.conf"] and 'nsid: "ascii_syd"' in files["nsd.conf"]
    zone = files["cdn.example.com.zone"]
    assert "www IN A 192.0.2.1" in zone and "@ IN AAAA 2001:db8:1000::1" in zone and 'pop IN TXT "syd"' in zone


def test_vultr_unicast_pop_fills_its_address_at_boot(prod_network: Network) -> None:
    rendered = render_pop(prod_network, prod_network.pop("jnb"), TEST_PASSWORD)
    assert "ip-address" not in rendered.files["nsd.conf"]
    assert "$INCLUDE /etc/nsd/zones/local-addresses.inc" in rendered.files["cdn.example.com.zone"]
    doc = _cloud_config(rendered.user_data)
    assert _file(doc, "/usr/local/sbin/anycast-local-addresses")["permissions"] == "0755"
    assert "health.json" not in rendered.files  # no anycast route to withdraw: Route53 health checks cover it
    assert ["systemctl", "enable", "--now", "anycast-addresses.service", "anycast-local-addresses.service",
            "anycast-neighbor-route.service"] in doc["runcmd"]  # the last: prod's bgp.ipv6NeighborRoute is auto


def test_cloud_config_carries_every_file(prod_network: Network) -> None:
    rendered = render_pop(prod_network, prod_network.pop("fra"), TEST_PASSWORD)
    doc = _cloud_config(rendered.user_data)
    for name, path in HOST_PATHS.items():
        assert _content(doc, path) == rendered.files[name]
    assert _content(doc, "/etc/nsd/zones/cdn.example.com.zone") == rendered.files["cdn.example.com.zone"]
    bird = _file(doc, "/etc/bird/bird.conf")
    assert bird["permissions"] == "0640" and bird["owner"] == "root:bird" and bird["defer"] is True
    units = _content(doc, "/etc/systemd/system/anycast-addresses.service")
    assert "ip link add anycast0 type dummy" in units
    assert "ip addr replace 192.0.2.1/32 dev anycast0" in units and "ip addr replace 2001:db8:1000::1/128 dev anycast0" in units
    # + openssl for anycast-tls (tls.enabled; lego only on the issuer: tests/unit/test_tls.py)
    assert set(doc["packages"]) == {"bird2", "caddy", "nftables", "nsd", "prometheus-bird-exporter", "python3", "openssl",
                                    "unattended-upgrades"}
    assert doc["ssh_pwauth"] is False and doc["hostname"] == "anycast-fra"
    assert doc["runcmd"][-1] == ["systemctl", "enable", "--now", "anycast-health.service"]


def test_rendering_is_byte_stable(prod_network: Network) -> None:
    first = {code: r.files for code, r in render_network(prod_network, TEST_PASSWORD).items()}
    second = {code: r.files for code, r in render_network(prod_network, TEST_PASSWORD).items()}
    assert first == second
    assert len(first) == 20


def test_summary_has_no_secret_and_lists_announcements(prod_network: Network) -> None:
    data = summary(prod_network)
    text = json.dumps(data)
    assert TEST_PASSWORD not in text
    assert data["pops"]["sao"]["announces"] == [] and data["pops"]["ams"]["announces"] == ["192.0.2.0/24", "2001:db8:1000::/48"]
    assert data["pops"]["maa"]["prepend"] == 2
    assert sum(1 for p in data["pops"].values() if p["mode"] == "anycast") == 18


@pytest.mark.parametrize(("password", "message"), [
    ("", "ANYCAST_BGP_PASSWORD: the BGP password is empty; copy it from the BGP tab of the Vultr control panel"),
    ('pa"ss', "ANYCAST_BGP_PASSWORD: the BGP password may hold printable ASCII only, without spaces, quotes or backslashes"),
    ("pa ss", "ANYCAST_BGP_PASSWORD: the BGP password may hold printable ASCII only, without spaces, quotes or backslashes"),
    ("x" * 81, "ANYCAST_BGP_PASSWORD: the BGP password is longer than TCP-MD5's 80 bytes"),
])
def test_bad_passwords_are_refused(password: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_password(password)
    assert str(err.value) == message


def test_exporters_are_reachable_from_the_monitoring_networks_only(prod_network: Network) -> None:
    ams = render_pop(prod_network, prod_network.pop("ams"), TEST_PASSWORD).files["nftables.conf"]
    assert "elements = { 203.0.113.64/28 }" in ams and "elements = { 2001:db8:fffe::/64 }" in ams
    # Metrics on the unicast address only: never on the anycast service address.
    assert "tcp dport { 9324, 9325 } ip saddr @monitor4 ip daddr != 192.0.2.1 accept" in ams
    assert "tcp dport { 9324, 9325 } ip6 saddr @monitor6 ip6 daddr != 2001:db8:1000::1 accept" in ams
    sao = render_pop(prod_network, prod_network.pop("sao"), TEST_PASSWORD).files["nftables.conf"]
    assert "tcp dport { 9324 } ip saddr @monitor4" in sao and "9325" not in sao  # no health agent on unicast PoPs
    # Nothing else opens the exporter ports.
    assert [line for line in ams.splitlines() if "9324" in line and "@monitor" not in line] == []


def test_bird_exporter_speaks_bird2(prod_network: Network) -> None:
    rendered = render_pop(prod_network, prod_network.pop("ams"), TEST_PASSWORD)
    doc = _cloud_config(rendered.user_data)
    assert "prometheus-bird-exporter" in doc["packages"]
    dropin = _file(doc, "/etc/systemd/system/prometheus-bird-exporter.service.d/anycast.conf")
    assert dropin.get("defer") is None  # present before the package starts the service
    lines = dropin["content"].splitlines()
    assert lines[:2] == ["[Service]", "ExecStart="]  # reset the package's ExecStart, then ours
    assert lines[2].split() == ["ExecStart=/usr/bin/prometheus-bird-exporter", "-bird.v2", "-format.new",
                                "-bird.socket", "/run/bird/bird.ctl", "-web.listen-address", ":9324"]
    assert ["systemctl", "restart", "prometheus-bird-exporter.service"] in doc["runcmd"]
    # bird_exporter computes bird_protocol_uptime only from ISO protocol times.
    assert "timeformat protocol iso long;" in rendered.files["bird.conf"]


def _verify_caddy(tmp_path: Any, dropin: str) -> str:
    """systemd-analyze verify of Debian's caddy.service (package caddy, in the Makefile's DEBS) with ``dropin``."""
    import shutil
    import subprocess
    from pathlib import Path

    base = Path("/lib/systemd/system/caddy.service")
    assert base.is_file() and shutil.which("systemd-analyze"), "make deps installs caddy and systemd"
    (tmp_path / "caddy.service.d").mkdir(parents=True)
    shutil.copy(base, tmp_path / "caddy.service")
    (tmp_path / "caddy.service.d" / "restart.conf").write_text(dropin, encoding="utf-8")
    proc = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "caddy.service")], capture_output=True,
                          text=True, timeout=60, env={"SYSTEMD_UNIT_PATH": f"{tmp_path}:", "PATH": "/usr/bin:/bin"},
                          check=False)
    return proc.stdout + proc.stderr


def test_caddy_restarts_after_a_crash(prod_network: Network, tmp_path: Any) -> None:
    """Debian's caddy.service has no Restart=: the user data adds it, before the package's first start, and
    systemd-analyze accepts every line (a misspelt key or value is reported, naming the drop-in)."""
    doc = _cloud_config(render_pop(prod_network, prod_network.pop("ams"), TEST_PASSWORD).user_data)
    dropin = _file(doc, "/etc/systemd/system/caddy.service.d/restart.conf")
    assert dropin.get("defer") is None and "caddy" in doc["packages"]  # written in the init stage, before packages
    lines = dropin["content"].splitlines()
    assert {"Restart=on-failure", "RestartSec=2s", "StartLimitIntervalSec=60s", "StartLimitBurst=5"} <= set(lines)
    assert lines.index("[Unit]") < lines.index("StartLimitBurst=5") < lines.index("[Service]")  # [Unit] keys
    assert doc["runcmd"][0] == ["systemctl", "daemon-reload"]
    assert _verify_caddy(tmp_path / "good", dropin["content"]) == ""
    bad = _verify_caddy(tmp_path / "bad", dropin["content"].replace("on-failure", "on-crash").replace("RestartSec", "RestartSecs"))
    assert "restart.conf" in bad and "on-crash" in bad and "RestartSecs" in bad, bad


# --- user data size ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", ["prod", "dev", "free"])
def test_user_data_fits_the_budget_and_ships_the_agents_unchanged(stack: str) -> None:
    import base64
    import gzip
    from pathlib import Path

    from infra.model.stack import load_network
    from userdata.render import USER_DATA_BUDGET

    network = load_network(stack)
    source = Path(__file__).resolve().parents[2] / "userdata" / "files"
    for pop in network.pops:
        user_data = render_pop(network, pop, TEST_PASSWORD).user_data
        assert len(user_data.encode()) <= USER_DATA_BUDGET, (stack, pop.code, len(user_data))
        agents = [e for e in _cloud_config(user_data)["write_files"] if e.get("encoding") == "gz+b64"
                  and (source / (Path(e["path"]).name + ".py")).exists()]
        assert agents, "the agents ship gzip-compressed"
        for entry in agents:  # what cloud-init writes is the reviewed source's code: same parse tree, docstrings aside
            shipped = gzip.decompress(base64.b64decode(entry["content"])).decode()
            reviewed = (source / (Path(entry["path"]).name + ".py")).read_text(encoding="utf-8")
            assert shipped.splitlines()[0] == reviewed.splitlines()[0], "the shebang is kept"
            assert _code(shipped) == _code(reviewed), entry["path"]
            assert "\n    \"\"\"" not in shipped and len(shipped) < 0.9 * len(reviewed), "no docstrings or comments shipped"


def _code(source: str) -> str:
    """The parse tree without docstrings (the module's first line, argparse's description, compared apart)."""
    import ast

    tree = ast.parse(source)
    first = ast.get_docstring(tree, clean=False)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    for node in ast.walk(tree):  # annotations are for type checkers only (the agents import annotations from __future__)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            node.returns = None
        if isinstance(node, ast.arg):
            node.annotation = None
    for node in ast.walk(tree):  # x: T = v outside class bodies is x = v; a bare x: T is no code
        body = getattr(node, "body", None)
        if not isinstance(node, ast.ClassDef) and isinstance(body, list):
            setattr(node, "body", [  # noqa: B010 (any node with a body)
                ast.Assign(targets=[n.target], value=n.value, lineno=0) if isinstance(n, ast.AnnAssign) and n.value else n
                for n in body if not (isinstance(n, ast.AnnAssign) and n.value is None)] or [ast.Pass()])
    return (first or "").strip().splitlines()[0] + "\n" + ast.dump(tree)


def test_user_data_over_the_budget_is_refused(prod_network: Network, monkeypatch: pytest.MonkeyPatch) -> None:
    import userdata.render as render

    monkeypatch.setattr(render, "USER_DATA_BUDGET", 1000)
    with pytest.raises(ConfigError, match=r"pops.ams: the rendered user data is \d+ bytes, over the 1000-byte budget"):
        render_pop(prod_network, prod_network.pop("ams"), TEST_PASSWORD)
