"""The reboot peer list (docs/security.md#security-updates-and-reboots), end to end without a cloud: the Pulumi program
publishes it under mocks once the instances exist, the IAM policies let the PoPs read it and nobody but Pulumi write
it, the Vultr firewall and the rendered nftables.conf open the status port to those addresses only, and
``anycast-tls fetch`` (the PoP side) installs it from an S3 stand-in on loopback, refusing hostile lists with one line
and leaving what it had installed in place."""

from __future__ import annotations

import copy
import hashlib
import http.server
import importlib.util
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from ipaddress import ip_address, ip_network
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from infra.contracts import (
    HEALTH_STATUS_PORT,
    REBOOT_PEERS_FILE,
    REBOOT_PEERS_MAX,
    REBOOT_PEERS_STORE_KEY,
    STATUS_PEER_SETS,
    STATUS_PEERS_NFT,
    STATUS_PEERS_UNIT,
    TLS_FETCH_UNIT,
)
from infra.derived.tls_iam import issuer_policy, policy_problems, reader_policy
from infra.model import Network
from infra.model.stack import NETWORK_KEY, load_network, read_stack_config
from tests.conftest import TEST_PASSWORD
from tests.helpers.moto_s3 import moto_server
from tests.helpers.program import mock_run, schema_problems
from tests.pulumi_mocks import SECRET_MARK, TEST_BGP_PASSWORD, TEST_TLS_SECRET, run_in_subprocess
from userdata import reboots
from userdata import tls as tls_files
from userdata.render import render_pop

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "userdata" / "files" / "anycast-tls.py"
REBOOT_SCRIPT = ROOT / "userdata" / "files" / "anycast-reboot.py"
OBJECT = "aws:s3/bucketObjectv2:BucketObjectv2"
RULE = "vultr:index/firewallRule:FirewallRule"


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tls_agent() -> ModuleType:
    return _load(SCRIPT, "anycast_tls_under_test")


@pytest.fixture(scope="module")
def reboot_agent() -> ModuleType:
    return _load(REBOOT_SCRIPT, "anycast_reboot_peers_under_test")


# --- the program publishes it (prod under mocks) -------------------------------------------------------------------

def _peer_object(run: dict[str, Any]) -> dict[str, Any]:
    (obj,) = [r for r in run["resources"] if r["type"] == OBJECT]
    return obj


def test_prod_publishes_every_pops_address_once_the_instances_exist(prod_network: Network) -> None:
    run = mock_run("prod")
    obj = _peer_object(run)
    inputs = obj["inputs"]
    assert inputs["key"] == REBOOT_PEERS_STORE_KEY and inputs["region"] == "us-east-1"
    assert inputs["contentType"] == "application/json" and inputs["bucket"] == "tls-store-id"
    assert schema_problems(OBJECT, inputs) == []
    assert obj["secretInputs"] == [] and SECRET_MARK not in inputs["content"]
    instances = {r["name"].removesuffix("-instance"): r for r in run["resources"]
                 if r["type"] == "vultr:index/instance:Instance"}
    # created after every instance: its content comes from their mainIp/v6MainIp outputs
    assert {d.rsplit("::", 1)[1].removesuffix("-instance") for d in obj["dependencies"] if "-instance" in d} == set(instances)
    doc = json.loads(inputs["content"])
    assert sorted(doc) == ["addresses", "peers"]
    assert set(doc["addresses"]) == {p.code for p in prod_network.pops}  # unicast PoPs ask too
    assert set(doc["peers"]) == {p.code for p in prod_network.pops if p.is_anycast}  # only anycast PoPs answer
    assert doc["peers"]["hkg"] == f"http://198.51.100.10:{HEALTH_STATUS_PORT}/status"  # configured (external)
    assert doc["addresses"]["maa"] == ["203.0.113.10", "2001:db8:ffff:2::10"]
    for code in instances:  # the mocks' instance addresses (tests/pulumi_mocks.py)
        v4, v6 = doc["addresses"][code]
        assert v4.startswith("203.0.113.1") and ip_address(v6) in ip_network("2001:db8:5000::/48")
        if prod_network.pop(code).is_anycast:
            assert doc["peers"][code] == f"http://{v4}:{HEALTH_STATUS_PORT}/status"
    for secret in (TEST_BGP_PASSWORD, TEST_TLS_SECRET):
        assert secret not in inputs["content"]


def test_the_vultr_firewall_opens_the_status_port_to_each_pop_only(prod_network: Network) -> None:
    run = mock_run("prod")
    doc = json.loads(_peer_object(run)["inputs"]["content"])
    status = [r for r in run["resources"] if r["type"] == RULE and r["inputs"].get("port") == str(HEALTH_STATUS_PORT)]
    assert {(r["inputs"]["ipType"], r["inputs"]["subnet"], r["inputs"]["subnetSize"]) for r in status} == {
        ("v4", addrs[0], 32) for addrs in doc["addresses"].values()}
    assert len(status) == len(prod_network.pops)
    for rule in status:
        assert rule["inputs"]["protocol"] == "tcp" and schema_problems(RULE, rule["inputs"]) == []


def test_an_external_pop_with_ipv6_only_is_asked_and_allowed_over_ipv6() -> None:
    doc = copy.deepcopy(read_stack_config("prod")[NETWORK_KEY])
    hkg = next(p for p in doc["pops"] if p["code"] == "hkg")
    hkg["unicast"], hkg["neighbor"] = {"ipv6": "2001:db8:ffff:1::10"}, {"asn": 64501, "ipv6": "2001:db8:ffff:1::1"}
    run = run_in_subprocess("prod", network=doc)
    peers = json.loads(_peer_object(run)["inputs"]["content"])
    assert peers["peers"]["hkg"] == "http://[2001:db8:ffff:1::10]:9325/status"
    assert peers["addresses"]["hkg"] == ["2001:db8:ffff:1::10"]
    (rule,) = [r["inputs"] for r in run["resources"] if r["type"] == RULE and r["name"] == "vultr-status-hkg"]
    assert (rule["ipType"], rule["subnet"], rule["subnetSize"]) == ("v6", "2001:db8:ffff:1::10", 128)


def test_readers_and_the_issuer_may_read_it_and_nobody_may_write_it() -> None:
    for text in (reader_policy("b", "tls/bundle.json", (REBOOT_PEERS_STORE_KEY,)),
                 issuer_policy("Z1", ["x.acme.example.com"], "b", "tls/bundle.json", (REBOOT_PEERS_STORE_KEY,))):
        assert policy_problems(text) == []
        doc = json.loads(text)
        peers_arn = f"arn:aws:s3:::b/{REBOOT_PEERS_STORE_KEY}"
        grants = [st for st in doc["Statement"] if peers_arn in json.dumps(st["Resource"])]
        assert [st["Action"] for st in grants] == [["s3:GetObject"]]
    run = mock_run("prod")
    policies = [r["inputs"]["policy"] for r in run["resources"] if r["type"] == "aws:iam/userPolicy:UserPolicy"]
    assert len(policies) == 2 and all(REBOOT_PEERS_STORE_KEY in p and policy_problems(p) == [] for p in policies)


def test_a_bad_instance_address_names_the_pop(prod_network: Network) -> None:
    addresses: dict[str, tuple[str | None, str | None]] = {p.code: ("192.0.2.1", None) for p in prod_network.pops}
    assert json.loads(reboots.peer_document(prod_network, addresses))["addresses"]["ams"] == ["192.0.2.1"]
    addresses["ams"] = ("192.0.2.1@evil.example", None)
    with pytest.raises(ValueError, match=r"^pops\.ams: its address for the reboot peer list: '192\.0\.2\.1@evil"):
        reboots.peer_document(prod_network, addresses)
    addresses["ams"] = ("fe80::1%eth0", None)
    with pytest.raises(ValueError, match=r"^pops\.ams: .* carries an IPv6 zone"):
        reboots.peer_document(prod_network, addresses)


def test_a_provider_answering_a_non_address_stops_the_run_with_one_line() -> None:
    result = run_in_subprocess("dev", main_ips={"ewr": {"mainIp": "203.0.113.5/24"}}, expect_failure=True)
    assert result["errorType"] == "RunError", result["error"]
    assert result["error"] == "pops.ewr: its address for the reboot peer list: '203.0.113.5/24' is not an IP address"
    assert not [r for r in result["resources"] if r["type"] == OBJECT]  # nothing written


# --- what the PoPs boot with ---------------------------------------------------------------------------------------

def test_tls_pops_fetch_it_and_load_the_sets_after_each_fetch_and_at_boot() -> None:
    net = load_network("prod")
    for code in ("ewr", "sao", "hkg"):
        rendered = render_pop(net, net.pop(code), TEST_PASSWORD)
        cfg = json.loads(rendered.files["tls.json"])
        assert cfg["peers"] == {"url": f"https://anycast-tls-cdn-example-com.s3.us-east-1.amazonaws.com/{REBOOT_PEERS_STORE_KEY}",
                                "file": REBOOT_PEERS_FILE}
        units = tls_files.units(net, net.pop(code))
        assert f"Wants=network-online.target {STATUS_PEERS_UNIT}" in units[TLS_FETCH_UNIT].splitlines()
        assert "ReadWritePaths=/etc/anycast" in units[TLS_FETCH_UNIT].splitlines()
        assert "CAP_NET_ADMIN" not in units[TLS_FETCH_UNIT]  # the fetch never touches the firewall itself
        peers_unit = units[STATUS_PEERS_UNIT].splitlines()
        assert f"After=nftables.service {TLS_FETCH_UNIT}" in peers_unit
        assert f"ExecStart=/usr/sbin/nft -f {STATUS_PEERS_NFT}" in peers_unit
        assert "CapabilityBoundingSet=CAP_NET_ADMIN" in peers_unit and "WantedBy=multi-user.target" in peers_unit
        doc = yaml.safe_load(rendered.user_data)
        assert any(c[:3] == ["systemctl", "enable", "--now"] and STATUS_PEERS_UNIT in c for c in doc["runcmd"])
        # the nft file's name beside the peers file is what the agent writes
        assert Path(STATUS_PEERS_NFT).parent == Path(REBOOT_PEERS_FILE).parent


def test_without_tls_the_manual_path_stays() -> None:
    net = load_network("free")
    assert not net.tls.enabled
    for pop in net.pops:
        rendered = render_pop(net, pop, TEST_PASSWORD)
        assert "status4" not in rendered.files["nftables.conf"] and STATUS_PEERS_UNIT not in rendered.user_data
        assert json.loads(rendered.files["reboot.json"])["peers_file"] == REBOOT_PEERS_FILE  # written by hand


def test_the_script_keeps_the_contracts(tls_agent: ModuleType) -> None:
    assert tls_agent.MAX_PEERS == REBOOT_PEERS_MAX and tls_agent.STATUS_PORT == HEALTH_STATUS_PORT
    assert Path(STATUS_PEERS_NFT).name == tls_agent.NFT_FILE
    assert STATUS_PEER_SETS == ("status4", "status6")
    assert [line.split()[-1] for line in tls_agent.nft_commands([]).splitlines()] == list(STATUS_PEER_SETS)


# --- the PoP side: anycast-tls fetch against an S3 stand-in on loopback ---------------------------------------------

BUCKET = "certs"


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    with moto_server(BUCKET) as url:
        yield url


def _put(s3: str, key: str, body: bytes) -> None:
    import boto3

    boto3.client("s3", endpoint_url=s3, region_name="us-east-1", aws_access_key_id="k",
                 aws_secret_access_key="s").put_object(Bucket=BUCKET, Key=key, Body=body)


def _config(tmp_path: Path, store: str, key: str) -> Path:
    """A PoP's tls.json, as rendered but in tmp_path: no bundle in the store (fetch exits 75 for the certificate)."""
    (tmp_path / "creds.json").write_text(json.dumps({"access_key_id": "AKIATEST", "secret_access_key": "s3cr3t"}))
    cfg = {"names": ["cdn.example.com"], "cert_file": str(tmp_path / "tls" / "cert.pem"),
           "key_file": str(tmp_path / "tls" / "key.pem"), "group": None, "reload": ["true"],
           "credentials_file": str(tmp_path / "creds.json"), "ca_file": None,
           "store": {"url": f"{store}/{BUCKET}/{key}.bundle", "region": "us-east-1"},
           "peers": {"url": f"{store}/{BUCKET}/{key}", "file": str(tmp_path / "anycast" / "reboot-peers.json")}}
    path = tmp_path / "tls.json"
    path.write_text(json.dumps(cfg))
    return path


def _fetch(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "fetch", "--config", str(config)], capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin"}, check=False)


def _nft_check(pop: str, nft_file: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The rendered nftables.conf of ``pop`` followed by the fetched nft file, checked by nft itself (no change)."""
    net = load_network("prod")
    combined = tmp_path / f"{pop}-combined.nft"
    combined.write_text(render_pop(net, net.pop(pop), TEST_PASSWORD).files["nftables.conf"] + nft_file.read_text())
    return subprocess.run(["nft", "-c", "-f", str(combined)], capture_output=True, text=True, timeout=60, check=False)


def _prod_document() -> bytes:
    return str(_peer_object(mock_run("prod"))["inputs"]["content"]).encode()


@pytest.mark.skipif(shutil.which("nft") is None, reason="make deps installs nftables")
def test_fetch_installs_prods_list_for_the_coordinator_and_the_firewall(tmp_path: Path, s3: str,
                                                                          reboot_agent: ModuleType) -> None:
    config = _config(tmp_path, s3, "good/peers.json")
    missing = _fetch(config)
    assert missing.returncode == 75  # neither object yet: not a failure (the certificate's EX_TEMPFAIL)
    assert "no peer list in the store yet" in missing.stdout and not (tmp_path / "anycast").exists()
    body = _prod_document()
    _put(s3, "good/peers.json", body)
    res = _fetch(config)
    assert res.returncode == 75, res.stderr  # the certificate is still missing; the peer list went in regardless
    assert "peer list: 18 status URLs, 40 addresses" in res.stdout
    peers_file, nft_file = tmp_path / "anycast" / "reboot-peers.json", tmp_path / "anycast" / "status-peers.nft"
    doc = json.loads(body)
    assert json.loads(peers_file.read_text()) == doc["peers"]
    assert oct(peers_file.stat().st_mode)[-3:] == "644"
    nft = nft_file.read_text().splitlines()
    assert nft[0] == "flush set inet anycast status4" and nft[2] == "flush set inet anycast status6"
    assert nft[1].startswith("add element inet anycast status4 { ") and "198.51.100.10" in nft[1]
    assert "2001:db8:ffff:2::10" in nft[3] and len(nft) == 4
    for pop in ("ewr", "sao"):  # an anycast PoP (status port rules) and a unicast one (sets only)
        checked = _nft_check(pop, nft_file, tmp_path)
        assert checked.returncode == 0, checked.stderr
    wrong = tmp_path / "wrong.nft"  # the check is not vacuous: a set the firewall lacks, an address in the wrong family
    for broken in (nft_file.read_text().replace("status6", "status7"), "add element inet anycast status4 { 2001:db8::1 }\n"):
        wrong.write_text(broken)
        assert _nft_check("ewr", wrong, tmp_path).returncode != 0
    # the reboot coordinator reads what the fetch wrote, over its rendered (external-only) peers
    net = load_network("prod")
    rendered = json.loads(render_pop(net, net.pop("ewr"), TEST_PASSWORD).files["reboot.json"])
    rendered["peers_file"] = str(peers_file)
    cfg = reboot_agent.load_config(rendered)
    peers = reboot_agent.all_peers(cfg)
    assert set(peers) == set(doc["peers"]) - {"ewr"} and len(peers) == 17
    assert len(rendered["peers"]) == 2  # before: hkg and maa only, which could never make a quorum of 9
    assert rendered["min_announcing"] <= len(peers)


def test_an_empty_list_empties_the_sets(tmp_path: Path, s3: str) -> None:
    config = _config(tmp_path, s3, "empty/peers.json")
    _put(s3, "empty/peers.json", b'{"peers": {}, "addresses": {}}')
    assert _fetch(config).returncode == 75
    assert (tmp_path / "anycast" / "status-peers.nft").read_text() == (
        "flush set inet anycast status4\nflush set inet anycast status6\n")


GOOD = {"peers": {"ams": "http://192.0.2.10:9325/status", "fra": "http://[2001:db8::10]:9325/status"},
        "addresses": {"ams": ["192.0.2.10", "2001:db8::1"], "fra": ["2001:db8::10"]}}


def _with(path: str, value: Any) -> bytes:
    doc = json.loads(json.dumps(GOOD))
    section, _, code = path.partition(".")
    if code:
        doc[section][code] = value
    else:
        doc[section] = value
    return json.dumps(doc).encode()


HOSTILE = [
    (b"\xff\xfe{}", "peer list: not strict JSON"),
    (b'{"peers": {}, "addresses": {}', "peer list: not strict JSON"),
    (b'{"peers": {"ams": NaN}, "addresses": {}}', "peer list: not strict JSON"),
    (b'{"peers": {}, "addresses": {}, "peers": {"ams": "http://192.0.2.66:9325/status"}}', "peer list: not strict JSON"),
    (b'{"peers": {}, "addresses": {"ams": ["192.0.2.1"], "ams": ["192.0.2.66"]}}', "peer list: not strict JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "longer than 65536 bytes"),
    (b"[" * 30_000 + b"]" * 30_000, "peer list: not strict JSON"),  # deeper than the parser's recursion
    (b"[]", "peer list: not an object of exactly addresses and peers"),
    (json.dumps({**GOOD, "nft": "flush ruleset"}).encode(), "peer list: not an object of exactly addresses and peers"),
    (json.dumps({"peers": {}}).encode(), "peer list: not an object of exactly addresses and peers"),
    (_with("peers", []), "peer list: peers: not an object of at most 256 PoPs"),
    (_with("addresses", {f"p{i:03d}": ["192.0.2.1"] for i in range(257)}), "peer list: addresses: not an object of at most 256"),
    (_with("peers.AMS", "http://192.0.2.10:9325/status"), "peer list: peers.'AMS': not a PoP code"),
    (_with("peers.a", "http://192.0.2.10:9325/status"), "peer list: peers.'a': not a PoP code"),
    (_with("peers.ams", "file:///etc/shadow"), "peer list: peers.'ams': not a PoP code with its status URL or 1-2 addresses"),
    (_with("peers.ams", "http://x@192.0.2.10:9325/status"), "peer list: peers.'ams'"),
    (_with("peers.ams", "http://evil.example:9325/status"), "peer list: peers.'ams'"),
    (_with("peers.ams", "http://192.0.2.10:22/status"), "peer list: peers.'ams'"),
    (_with("peers.ams", "http://192.0.2.10:9325/status?x=1"), "peer list: peers.'ams'"),
    (_with("peers.ams", "http://192.0.2.10:9325/status\n"), "peer list: peers.'ams'"),
    (_with("peers.ams", "http://127.0.0.1:9325/status"), "peer list: peers.'ams'"),  # would ask itself: a fake quorum
    (_with("peers.ams", "http://999.0.2.10:9325/status"), "peer list: peers.'ams'"),
    (_with("peers.ams", ["http://192.0.2.10:9325/status"]), "peer list: peers.'ams'"),
    (_with("addresses.ams", "192.0.2.10"), "peer list: addresses.'ams'"),
    (_with("addresses.ams", []), "peer list: addresses.'ams'"),
    (_with("addresses.ams", ["192.0.2.1", "192.0.2.2", "192.0.2.3"]), "peer list: addresses.'ams'"),
    (_with("addresses.ams", ["192.0.2.0/24"]), "peer list: addresses.'ams'"),
    (_with("addresses.ams", ["fe80::1%eth0"]), "peer list: addresses.'ams'"),
    (_with("addresses.ams", ["192.0.2.10 } ; flush ruleset ; add element inet anycast status4 { 10.0.0.1"]),
     "peer list: addresses.'ams'"),
    (_with("addresses.ams", ["0.0.0.0"]), "peer list: addresses.'ams'"),
    (_with("addresses.ams", ["224.0.0.1"]), "peer list: addresses.'ams'"),
    (_with("addresses.ams", ["2001:DB8::1"]), "peer list: addresses.'ams'"),  # not canonical: refused, not guessed
    (_with("addresses.ams", [192]), "peer list: addresses.'ams'"),
    (_with("addresses.x", ["192.0.2.1"]), "peer list: addresses.'x'"),
]


@pytest.mark.parametrize(("body", "message"), HOSTILE, ids=[f"hostile{i}" for i in range(len(HOSTILE))])
def test_a_hostile_list_changes_nothing_and_says_why_in_one_line(tmp_path: Path, s3: str, body: bytes,
                                                                  message: str) -> None:
    key = f"hostile/{hashlib.sha256(body).hexdigest()}.json"
    config = _config(tmp_path, s3, key)
    _put(s3, key, json.dumps(GOOD).encode())
    assert _fetch(config).returncode == 75
    peers_file, nft_file = tmp_path / "anycast" / "reboot-peers.json", tmp_path / "anycast" / "status-peers.nft"
    before = (peers_file.read_text(), nft_file.read_text())
    _put(s3, key, body)
    res = _fetch(config)
    assert res.returncode == 1, res  # the unit fails: visible in systemctl --failed and the journal
    lines = res.stderr.strip().splitlines()
    assert lines[0].startswith("anycast-tls fetch: ") and message in lines[0], lines
    assert "Traceback" not in res.stderr and len(lines) == 2  # and the certificate's own line (no bundle yet)
    assert (peers_file.read_text(), nft_file.read_text()) == before


def test_a_peer_list_it_cannot_write_does_not_stop_the_certificate(tmp_path: Path, s3: str) -> None:
    config = _config(tmp_path, s3, "unwritable/peers.json")
    cfg = json.loads(config.read_text())
    (tmp_path / "a-file").write_text("")
    cfg["peers"]["file"] = str(tmp_path / "a-file" / "reboot-peers.json")  # its directory is a file
    config.write_text(json.dumps(cfg))
    _put(s3, "unwritable/peers.json", json.dumps(GOOD).encode())
    res = _fetch(config)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith("anycast-tls fetch: peer list: FileExistsError: ") or \
        lines[0].startswith("anycast-tls fetch: peer list: NotADirectoryError: "), lines
    assert "no certificate in the store yet" in lines[1]  # the certificate's turn came all the same
    assert (tmp_path / "tls" / "cert.pem").exists()  # its bootstrap ran


class _Endless(http.server.BaseHTTPRequestHandler):
    """Answers every GET with 200 and an endless body (no Content-Length): the fetch must stop reading."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        chunk = b"{" * 65536
        try:
            for _ in range(1000):  # 64 MB at most, should the client read on
                self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args: Any) -> None:
        pass


def test_an_endless_answer_is_cut_at_the_bound(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Endless)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        config = _config(tmp_path, f"http://127.0.0.1:{server.server_address[1]}", "endless/peers.json")
        res = _fetch(config)
    finally:
        server.shutdown()
        server.server_close()
    assert res.returncode == 1
    assert res.stderr.splitlines()[0].endswith("longer than 65536 bytes"), res.stderr
    assert not (tmp_path / "anycast").exists()
