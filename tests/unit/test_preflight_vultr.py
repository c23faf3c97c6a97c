"""``anycast preflight``'s Vultr checks against a local fake speaking govultr's recorded formats: every failure class
gives one FAIL row with a fix, secrets never appear, and a silent or dead API ends in bounded time."""

from __future__ import annotations

import re
import time

import pytest

from infra.model import Network
from infra.model.stack import load_network
from infra.preflight.http import Timeouts
from infra.preflight.rows import Row, Status
from infra.preflight.vultr import vultr_api, vultr_rows
from tests.ripe_fake_server import SilentServer, refused_port
from tests.vultr_fake_server import GOOD_KEY, FakeVultr

PASSWORD = "12345"  # govultr's fixture password
FAST = Timeouts(connect=0.5, read=0.5, total=1.0)


@pytest.fixture(scope="module")
def dev() -> Network:
    return load_network("dev")


def run(network: Network, url: str, key: str | None = GOOD_KEY, password: str | None = PASSWORD,
        timeouts: Timeouts = FAST) -> list[Row]:
    env = {"VULTR_API_URL": url}
    if key is not None:
        env["VULTR_API_KEY"] = key
    if password is not None:
        env["ANYCAST_BGP_PASSWORD"] = password
    api, found = vultr_api(env, timeouts)
    return vultr_rows(network, "dev", env, api, found)


def by_check(rows: list[Row]) -> dict[str, Row]:
    return {r.check: r for r in rows}


def assert_no_secret(rows: list[Row], *secrets: str) -> None:
    text = "\n".join(r.line() for r in rows)
    for secret in secrets:
        assert secret not in text


def test_a_ready_account_passes_every_check_with_gets_only(dev: Network) -> None:
    with FakeVultr(page_size=1) as fake:  # one item per page: the cursor is followed
        rows = run(dev, fake.url)
    assert [r.status for r in rows] == [Status.PASS] * len(rows), "\n".join(r.line() for r in rows)
    checks = by_check(rows)
    assert set(checks) == {"account BGP", "account ASN", "BGP password", "plans", "OS image", "SSH keys"}
    assert "2136 is 'Debian 12 x64 (bookworm)'" in checks["OS image"].detail
    assert {m for m, _, _ in fake.log} == {"GET"}
    assert {p for _, p, _ in fake.log} >= {"/v2/account/bgp", "/v2/regions/ams/availability", "/v2/regions/ewr/availability",
                                           "/v2/regions/sao/availability", "/v2/os", "/v2/ssh-keys"}
    assert_no_secret(rows, GOOD_KEY, PASSWORD)


def test_a_refused_key_is_one_fail_and_never_printed(dev: Network) -> None:
    with FakeVultr() as fake:
        rows = run(dev, fake.url, key="WRONG-KEY-SHOULD-NOT-PRINT")
    fails = [r for r in rows if r.status is Status.FAIL]
    assert len(fails) == 1 and fails[0].check == "account BGP"
    assert "refused VULTR_API_KEY (HTTP 401: Invalid API token.)" in fails[0].detail
    assert "Access Control" in fails[0].fix
    assert by_check(rows)["SSH keys"].status is Status.SKIP
    assert by_check(rows)["plans"].status is Status.PASS  # public GETs still answer, without the refused key
    assert_no_secret(rows, "WRONG-KEY-SHOULD-NOT-PRINT")


def test_a_missing_key_fails_and_says_which_variable(dev: Network) -> None:
    with FakeVultr() as fake:
        rows = run(dev, fake.url, key=None)
    row = by_check(rows)["API key"]
    assert row.status is Status.FAIL and "VULTR_API_KEY is not set" in row.detail


def test_bgp_not_enabled(dev: Network) -> None:
    with FakeVultr(bgp={"enabled": False, "asn": 0, "password": ""}) as fake:
        rows = run(dev, fake.url)
    row = by_check(rows)["account BGP"]
    assert row.status is Status.FAIL and row.detail == "BGP is not enabled on this Vultr account"
    assert "Network -> BGP" in row.fix


def test_wrong_asn_names_both_and_the_fix_for_the_asn_source(dev: Network) -> None:
    with FakeVultr(bgp={"enabled": True, "asn": 20473, "password": PASSWORD}) as fake:
        rows = run(dev, fake.url)
    row = by_check(rows)["account ASN"]
    assert row.status is Status.FAIL
    assert "Vultr has AS20473 on file, the stack says AS64500" in row.detail
    free = load_network("free")  # asnSource vultr-assigned: the fix is to copy Vultr's ASN
    with FakeVultr(bgp={"enabled": True, "asn": 4200000001, "password": PASSWORD}) as fake:
        row = by_check(run(free, fake.url))["account ASN"]
    assert row.status is Status.FAIL and "set asn: 4200000001" in row.fix


def test_password_mismatch_fails_without_printing_either_password(dev: Network) -> None:
    held = "held-by-Vultr-7f3a"
    with FakeVultr(bgp={"enabled": True, "asn": 64500, "password": held}) as fake:
        rows = run(dev, fake.url, password="configured-9c1e")
    row = by_check(rows)["BGP password"]
    assert row.status is Status.FAIL and "differs" in row.detail
    assert_no_secret(rows, held, "configured-9c1e")


def test_password_not_given_is_a_warning_with_the_command(dev: Network) -> None:
    with FakeVultr() as fake:
        row = by_check(run(dev, fake.url, password=None))["BGP password"]
    assert row.status is Status.WARN and "pulumi config get anycast:bgpPassword" in row.fix


def test_plan_not_in_region_names_the_pop_and_the_field(dev: Network) -> None:
    with FakeVultr(availability={"ewr": ["vc2-2c-4gb", "vhf-1c-1gb"]}) as fake:
        rows = run(dev, fake.url)
    row = by_check(rows)["plan of ewr"]
    assert row.status is Status.FAIL
    assert row.detail == "vc2-1c-1gb is not available in ewr now (available there: vc2-2c-4gb)"
    assert "pops[1].plan" in row.fix
    assert "plans" not in by_check(rows)


def test_unknown_os_id_fails(dev: Network) -> None:
    with FakeVultr(os=[{"id": 124, "name": "Windows 2012 R2 x64"}]) as fake:
        row = by_check(run(dev, fake.url))["OS image"]
    assert row.status is Status.FAIL and "OS id 2136 is not offered (of 1 images)" in row.detail


def test_a_server_error_is_reported_not_raised(dev: Network) -> None:
    with FakeVultr(status={"/v2/os": 503}) as fake:
        row = by_check(run(dev, fake.url, timeouts=Timeouts(total=5.0)))["OS image"]
    assert row.status is Status.FAIL and "HTTP 503" in row.detail
    assert [p for _, p, _ in fake.log].count("/v2/os") == 2  # one retry


def test_a_silent_api_ends_in_bounded_time(dev: Network) -> None:
    with SilentServer() as silent:
        start = time.monotonic()
        rows = run(dev, silent.url)
        elapsed = time.monotonic() - start
    assert elapsed < 2.5, f"{elapsed:.1f} s: each check waited again"
    assert [(r.check, r.status) for r in rows] == [("Vultr API", Status.FAIL)]
    assert re.search(r"no complete answer within 0\.[5-9]\d* s; the remaining Vultr checks did not run$", rows[0].detail)
    assert silent.connections == 1  # the breaker: the first timeout ends the others at once


def test_a_slow_api_is_cut_at_the_deadline(dev: Network) -> None:
    with FakeVultr(hang=3.0) as fake:
        start = time.monotonic()
        rows = run(dev, fake.url)
        elapsed = time.monotonic() - start
    assert elapsed < 2.5
    assert [(r.check, r.status) for r in rows] == [("Vultr API", Status.FAIL)]


def test_nothing_listening_fails_at_once(dev: Network) -> None:
    sock, port = refused_port()
    with sock:
        start = time.monotonic()
        rows = run(dev, f"http://127.0.0.1:{port}")
    assert time.monotonic() - start < 1.0
    assert "connection refused" in rows[0].detail


@pytest.mark.parametrize("url", ["ftp://api.vultr.com", "http://api.vultr.com", "https://api.vultr.com/v3/x", "https://[::1"])
def test_a_bad_api_url_is_refused_with_the_variable(url: str) -> None:
    from infra.preflight.http import BadUrl
    with pytest.raises(BadUrl, match=r"^VULTR_API_URL: "):
        vultr_api({"VULTR_API_URL": url})
