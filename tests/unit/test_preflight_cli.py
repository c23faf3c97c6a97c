"""``anycast preflight`` end to end against local stand-ins for every provider (Vultr fake, moto via
AWS_ENDPOINT_URL, the RIPE fake, a DNS server on 127.0.0.1): the rows, the exit code, bounded time, and no credential
in anything printed. Plus the gate-reachability row on its own."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import boto3
import pytest
import requests

from infra.cli.main import main
from infra.model.stack import load_network
from infra.preflight.gates import gate_rows
from infra.preflight.rows import Status
from tests.dns_fake_server import FakeDns
from tests.helpers.moto_s3 import moto_server
from tests.ripe_fake_server import FakeRipe
from tests.vultr_fake_server import FakeVultr

MARKERS = {
    "VULTR_API_KEY": "MARKER-vultr-key-6b2e",
    "ANYCAST_BGP_PASSWORD": "MARKER-bgp-password-91c4",
    "AWS_SECRET_ACCESS_KEY": "MARKER-aws-secret-3f7a",
    "RIPE_API_KEY": "TESTKEYID:MARKER-ripe-secret-0d9b",
    "RIPE_RPKI_API_KEY": "MARKER-rpki-key-5e21",
}


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def accounts(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Every provider stood in for on 127.0.0.1, every credential set to a marker (the Vultr and RIPE fakes accept
    the markers, so the checks run their whole course)."""
    requests.post(f"{moto_url}/moto-api/reset", timeout=5)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "GITHUB_ACTIONS", "RUNNER_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAPREFLIGHTTEST001")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name, value in MARKERS.items():
        monkeypatch.setenv(name, value)
    zone = boto3.client("route53").create_hosted_zone(Name="example.com", CallerReference="cli")
    servers = zone["DelegationSet"]["NameServers"]
    records = {("example.com", "NS"): [s + "." for s in servers], **{(s, "A"): ["127.0.0.1"] for s in servers}}
    key_id, secret = MARKERS["RIPE_API_KEY"].split(":")
    with (FakeVultr(key=MARKERS["VULTR_API_KEY"], bgp={"enabled": True, "asn": 64500,
                                                       "password": MARKERS["ANYCAST_BGP_PASSWORD"]}) as vultr,
          FakeRipe(keys={key_id: secret}, rpki_keys={MARKERS["RIPE_RPKI_API_KEY"]}) as ripe,
          FakeDns(records) as dns):
        monkeypatch.setenv("VULTR_API_URL", vultr.url)
        yield {"ripe": ripe.url, "dns": f"127.0.0.1:{dns.port}"}


def preflight(accounts: dict[str, str], *extra: str) -> list[str]:
    return ["preflight", "--stack", "dev", "--timeout", "3", "--resolver", accounts["dns"], "--ripe-url", accounts["ripe"],
            "--rpki-url", accounts["ripe"], "--ripestat-url", accounts["ripe"], *extra]


def test_a_ready_stack_exits_0_and_prints_no_secret(accounts: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code = main(preflight(accounts, "--from", "203.0.113.70"))
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "FAIL" not in out
    for section in ("stack", "vultr", "aws", "ripe", "dns", "gates"):
        assert f"  {section} " in out
    assert "WARN  stack  numbers: documentation numbers AS64500, 192.0.2.0/24, 2001:db8:1000::/48" in out
    assert "PASS  vultr  BGP password: ANYCAST_BGP_PASSWORD matches the account's (not shown)" in out
    assert "PASS  gates  gate reachability: 203.0.113.70 is inside admin.monitoringCidrs" in out
    assert "PASS  dns    delegation of example.com: delegated to the Route53 zone" in out
    assert out.splitlines()[-1].startswith("preflight: ") and " 0 fail" in out.splitlines()[-1]
    for marker in MARKERS.values():
        assert marker.split(":")[-1] not in out + err


def test_any_fail_exits_1_and_still_prints_no_secret(accounts: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ANYCAST_BGP_PASSWORD", "MARKER-other-password-77aa")
    monkeypatch.setenv("RIPE_RPKI_API_KEY", "MARKER-refused-rpki-key-1c3d")
    code = main(preflight(accounts, "--from", "198.51.100.9"))
    out, err = capsys.readouterr()
    assert code == 1
    assert "FAIL  vultr  BGP password: the password in ANYCAST_BGP_PASSWORD differs" in out
    assert "FAIL  gates  gate reachability: 198.51.100.9 is outside admin.monitoringCidrs" in out
    assert "fix every FAIL before pulumi up" in out
    for marker in [*MARKERS.values(), "MARKER-other-password-77aa", "MARKER-refused-rpki-key-1c3d"]:
        assert marker.split(":")[-1] not in out + err


def test_only_and_bad_input(accounts: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(preflight(accounts, "--only", "gates")) == 0
    out = capsys.readouterr().out
    assert "WARN  gates" in out and "vultr" not in out
    monkeypatch.setenv("VULTR_API_URL", "http://vultr.example.net")
    assert main(preflight(accounts, "--only", "vultr")) == 2
    assert "error: VULTR_API_URL: plain http is allowed only for 127.0.0.1" in capsys.readouterr().err
    capsys.readouterr()
    assert main(preflight(accounts, "--ripe-url", "http://rest.db.example.net")) == 2
    out, err = capsys.readouterr()
    assert out == "" and "error: --ripe-url: plain http is allowed only for 127.0.0.1/localhost" in err
    with pytest.raises(SystemExit):
        main(["preflight", "--stack", "dev", "--from", "not-an-address"])


def test_gate_reachability_row() -> None:
    dev, free = load_network("dev"), load_network("free")
    inside, outside = ipaddress.ip_address("203.0.113.66"), ipaddress.ip_address("192.0.2.200")
    assert gate_rows(dev, "dev", [inside], {})[0].status is Status.PASS
    assert gate_rows(dev, "dev", [outside], {})[0].status is Status.FAIL
    row = gate_rows(free, "free", [inside], {})[0]  # IPv6-only network: the gates poll IPv6
    assert row.status is Status.FAIL and "IPv6" in row.detail
    hosted = gate_rows(dev, "dev", [], {"GITHUB_ACTIONS": "true", "RUNNER_ENVIRONMENT": "github-hosted"})[0]
    assert hosted.status is Status.FAIL and "self-hosted runner" in hosted.fix
    assert gate_rows(dev, "dev", [], {"GITHUB_ACTIONS": "true", "RUNNER_ENVIRONMENT": "self-hosted"})[0].status is Status.WARN
    assert gate_rows(dev, "dev", [], {})[0].status is Status.WARN


def test_every_provider_silent_ends_in_bounded_time(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Vultr, AWS, RIPE and DNS all accept connections (or datagrams) and never answer: each section ends with a
    FAIL row within its timeouts, and the whole run stays within a few multiples of --timeout."""
    import time

    from tests.ripe_fake_server import SilentServer
    for name, value in MARKERS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAPREFLIGHTTEST001")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    with SilentServer() as silent, FakeDns(silent=True) as dns:
        monkeypatch.setenv("VULTR_API_URL", silent.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL", silent.url)
        start = time.monotonic()
        code = main(["preflight", "--stack", "dev", "--timeout", "1", "--resolver", f"127.0.0.1:{dns.port}",
                     "--ripe-url", silent.url, "--rpki-url", silent.url, "--ripestat-url", silent.url])
        elapsed = time.monotonic() - start
    out = capsys.readouterr().out
    assert code == 1
    for section in ("vultr", "aws", "ripe", "dns"):
        assert f"FAIL  {section}" in out, out
    assert elapsed < 15, f"{elapsed:.1f} s"


def test_existing_pops_status_port_is_asked_as_the_gates_do(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    """With --outputs (a deployed stack), each Vultr PoP's status port is asked from here; a PoP that does not answer
    (127.0.0.2: nothing listens there) is a FAIL naming it."""
    import json
    from pathlib import Path

    from infra.monitoring.targets import load_outputs
    from tests.fake_pop import FakePop, FakePopState
    fixture = Path(__file__).resolve().parent.parent / "fixtures" / "stack-outputs-prod.json"
    data = json.loads(fixture.read_text(encoding="utf-8"))
    dev = load_network("dev")
    with FakePop(FakePopState(pop="ams")) as pop:
        for code, entry in data["pops"].items():
            entry["ipv4"] = "127.0.0.2" if code == "fra" else "127.0.0.1"
        out = Path(str(tmp_path)) / "outputs.json"
        out.write_text(json.dumps(data), encoding="utf-8")
        rows = gate_rows(dev, "dev", [], {}, load_outputs(out), timeout=3.0, status_port=pop.http_port)
    vultr = [c for c, p in data["pops"].items() if p["provider"] == "vultr"]
    probe = rows[0]
    assert probe.status is Status.FAIL and probe.check == f"status port of the PoPs (tcp/{pop.http_port})"
    assert probe.detail.startswith(f"1 of {len(vultr)} do not answer from here: fra (127.0.0.2: ")
    for entry in data["pops"].values():
        entry["ipv4"] = "127.0.0.1"
    out.write_text(json.dumps(data), encoding="utf-8")
    with FakePop(FakePopState(pop="ams")) as pop:
        rows = gate_rows(dev, "dev", [], {}, load_outputs(out), timeout=3.0, status_port=pop.http_port)
    assert rows[0].status is Status.PASS and rows[0].detail == f"all {len(vultr)} Vultr PoPs answer from here"
