"""``anycast preflight``'s RIPE checks against tests/ripe_fake_server.py (RIPE Database, RPKI API and RIPEstat's
rpki-validation call in their recorded formats): objects, the key by dry run, ROAs, RPKI validity; nothing written."""

from __future__ import annotations

import time

import pytest

from infra.model import Network
from infra.model.stack import load_network
from infra.preflight.ripe import RipeUrls, ripe_rows
from infra.preflight.rows import Row, Status
from infra.ripe.transport import RetryPolicy
from tests.ripe_fake_server import FakeRipe, SilentServer

KEY = "TESTKEYID:s3cr3t-Test-Key"
RPKI_KEY = "rpki-Test-Key-0001"
FAST = RetryPolicy(attempts=2, backoff=0.01, budget=1.0, connect_timeout=0.5, read_timeout=0.5)


@pytest.fixture(scope="module")
def net() -> Network:
    dev = load_network("dev")
    return dev.model_copy(update={"ripe": dev.ripe.model_copy(update={"manage": True, "maintainer": "EXAMPLE-MNT",
                                                                      "database": "test"})})


def run(net: Network, fake_url: str, env: dict[str, str] | None = None) -> dict[str, Row]:
    env = {"RIPE_API_KEY": KEY} if env is None else env
    rows = ripe_rows(net, "dev", env, RipeUrls(fake_url, fake_url, fake_url), FAST)
    return {r.check: r for r in rows}


def roa(asn: str, prefix: str, max_length: int) -> dict[str, object]:
    return {"asn": asn, "prefix": prefix, "maximalLength": max_length}


def test_fresh_maintainer_passes_the_dry_run_and_writes_nothing(net: Network) -> None:
    with FakeRipe() as fake:
        fake.roas = [roa("AS64500", "192.0.2.0/24", 24), roa("AS64500", "2001:db8:1000::/48", 48)]
        rows = run(net, fake.url)
    assert rows["route objects"].status is Status.PASS and "pulumi up creates 192.0.2.0/24AS64500" in rows["route objects"].detail
    assert rows["maintainer and API key"].status is Status.PASS
    assert rows["RPKI 192.0.2.0/24 AS64500"].status is Status.PASS
    assert rows["RPKI 2001:db8:1000::/48 AS64500"].status is Status.PASS
    assert rows["ROAs"].status is Status.SKIP
    assert fake.writes == [] and all(r.dry_run for r in fake.log if r.method != "GET")
    assert "s3cr3t" not in "\n".join(r.line() for r in rows.values())


def test_a_refused_key_fails_with_the_hint(net: Network) -> None:
    with FakeRipe() as fake:
        row = run(net, fake.url, {"RIPE_API_KEY": "TESTKEYID:wrong-secret"})["maintainer and API key"]
    assert row.status is Status.FAIL and "Authorisation for [route] 192.0.2.0/24AS64500 failed" in row.detail
    assert "your API key is not accepted for EXAMPLE-MNT" in row.fix
    assert "wrong-secret" not in row.line()


def test_the_key_is_tried_on_an_unchanged_object_when_nothing_is_to_be_written(net: Network) -> None:
    from infra.ripe.desired import route_specs
    with FakeRipe() as fake:
        for spec in route_specs(net, "dev"):
            obj = spec.to_object("TEST")
            fake.put("test", [(a.name, a.value) for a in obj.attributes])
        rows = run(net, fake.url)
    assert rows["route objects"].detail.startswith("2 of 2 exist")
    row = rows["maintainer and API key"]
    assert row.status is Status.PASS and "unchanged update of 192.0.2.0/24AS64500" in row.detail
    assert fake.writes == [] and [r.method for r in fake.log if r.method != "GET"] == ["PUT"]


def test_missing_and_invalid_roas_warn(net: Network) -> None:
    with FakeRipe() as fake:
        fake.roas = [roa("AS64511", "192.0.2.0/24", 24), roa("AS64500", "2001:db8::/32", 32)]
        rows = run(net, fake.url, {"RIPE_API_KEY": KEY, "RIPE_RPKI_API_KEY": RPKI_KEY})
    v4, v6 = rows["RPKI 192.0.2.0/24 AS64500"], rows["RPKI 2001:db8:1000::/48 AS64500"]
    assert v4.status is Status.WARN and "RPKI-INVALID (a covering ROA names another origin AS)" in v4.detail
    assert v6.status is Status.WARN and "maxLength is shorter" in v6.detail
    assert "ROA 192.0.2.0/24 origin AS64500 maxLength 24" in v4.fix
    assert rows["ROAs"].status is Status.WARN and "missing: AS64500 192.0.2.0/24 maxLength 24" in rows["ROAs"].detail


def test_no_roa_at_all_is_not_found(net: Network) -> None:
    with FakeRipe() as fake:
        row = run(net, fake.url)["RPKI 192.0.2.0/24 AS64500"]
    assert row.status is Status.WARN and "no ROA covers it" in row.detail


def test_a_refused_rpki_key_fails(net: Network) -> None:
    with FakeRipe() as fake:
        row = run(net, fake.url, {"RIPE_API_KEY": KEY, "RIPE_RPKI_API_KEY": "wrong-rpki-key"})["ROAs"]
    assert row.status is Status.FAIL and "HTTP 401" in row.detail and "wrong-rpki-key" not in row.line()


def test_manage_without_a_key_fails_and_no_maintainer_skips(net: Network) -> None:
    with FakeRipe() as fake:
        rows = run(net, fake.url, {})
        assert rows["API key"].status is Status.FAIL and "RIPE_API_KEY" in rows["API key"].detail
        plain = load_network("dev")
        rows = run(plain, fake.url, {})
    assert rows["route objects"].status is Status.SKIP


def test_a_silent_ripe_ends_in_bounded_time(net: Network) -> None:
    with SilentServer() as silent:
        start = time.monotonic()
        rows = run(net, silent.url)
        elapsed = time.monotonic() - start
    assert elapsed < 6, f"{elapsed:.1f} s"
    assert rows["route objects"].status is Status.FAIL and "gave up after" in rows["route objects"].detail
