"""The RIPE REST client against the local fake: paths, auth, retries with backoff, and every fault ending cleanly."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.ripe.client import RipeDbClient
from infra.ripe.credentials import ApiKey
from infra.ripe.errors import BadInput, RipeProtocolError, RipeRefused, RipeUnavailable
from infra.ripe.rpsl import make
from infra.ripe.transport import RetryPolicy, base_url, retry_after_seconds
from tests.ripe_fake_server import FakeRipe, Fault

KEY = ApiKey("TESTKEYID", "s3cr3t-Test-Key")
FAST = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05, budget=5.0, connect_timeout=0.5, read_timeout=0.3,
                   max_retry_after=2.0)
ROUTE = make([("route", "192.0.2.0/24"), ("descr", "test"), ("origin", "AS64500"), ("mnt-by", "EXAMPLE-MNT"),
              ("source", "RIPE")])


@pytest.fixture
def fake() -> Iterator[FakeRipe]:
    with FakeRipe() as server:
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    return []


def client(fake: FakeRipe, sleeps: list[float], key: ApiKey | None = KEY, database: str = "ripe") -> RipeDbClient:
    return RipeDbClient(database, key, fake.url, FAST, sleeps.append, maintainer="EXAMPLE-MNT")  # type: ignore[arg-type]


def test_create_then_lookup_uses_documented_paths_and_basic_auth(fake: FakeRipe, sleeps: list[float]) -> None:
    c = client(fake, sleeps)
    result = c.create(ROUTE)
    assert result.obj is not None and result.obj.key == "192.0.2.0/24AS64500"
    assert c.lookup("route", "192.0.2.0/24AS64500") == ROUTE
    post, get = fake.requests("POST")[0], fake.requests("GET")[0]
    assert post.path == "/ripe/route" and post.headers["authorization"].startswith("Basic ")
    assert post.body["objects"]["object"][0]["source"] == {"id": "RIPE"}
    assert get.path == "/ripe/route/192.0.2.0/24AS64500"
    assert "authorization" not in get.headers  # lookups are anonymous: the key travels only with writes
    assert sleeps == []


def test_test_database_uses_lowercase_path_and_uppercase_source(fake: FakeRipe, sleeps: list[float]) -> None:
    c = client(fake, sleeps, database="test")
    c.create(make([(a.name, a.value) for a in ROUTE.attributes[:-1]] + [("source", "TEST")]))
    assert fake.requests("POST")[0].path == "/test/route"
    assert fake.get("test", "route", "192.0.2.0/24AS64500") is not None


def test_lookup_missing_is_none_and_reads_recorded_objects(fake: FakeRipe, sleeps: list[float]) -> None:
    c = client(fake, sleeps)
    assert c.lookup("route6", "2001:db8::/48AS64500") is None
    fake.put("ripe", [("route6", "2a09:4c2::/32"), ("descr", "***"), ("origin", "AS58057"), ("mnt-by", "TEST49-MNT"),
                      ("created", "2020-11-11T11:11:12Z"), ("source", "RIPE")])
    got = c.lookup("route6", "2a09:4c2::/32AS58057")
    assert got is not None and got.values("mnt-by") == ["TEST49-MNT"] and got.values("created") == []


def test_500_then_success_retries_once_with_backoff(fake: FakeRipe, sleeps: list[float]) -> None:
    fake.faults.append(Fault("POST", "/ripe/route", 500))
    client(fake, sleeps).create(ROUTE)
    assert [r.status for r in fake.requests("POST")] == [500, 200]
    assert len(fake.writes) == 1 and sleeps == [0.01]


def test_500_after_the_write_was_applied_surfaces_as_409_not_a_second_object(fake: FakeRipe, sleeps: list[float]) -> None:
    fake.faults.append(Fault("POST", "/ripe/route", 500, apply_first=True))
    with pytest.raises(RipeRefused) as info:
        client(fake, sleeps).create(ROUTE)
    assert info.value.status == 409  # the plan/apply layer turns this into "checked: stored as wanted"
    assert len(fake.writes) == 1


def test_429_honours_retry_after(fake: FakeRipe, sleeps: list[float]) -> None:
    fake.faults.append(Fault("GET", "", 429, headers={"Retry-After": "1"}, times=2))
    assert client(fake, sleeps).lookup("route", "192.0.2.0/24AS64500") is None
    assert sleeps == [1.0, 1.0]


def test_429_with_a_long_retry_after_gives_up_at_once(fake: FakeRipe, sleeps: list[float]) -> None:
    fake.faults.append(Fault("GET", "", 429, headers={"Retry-After": "3600"}))
    with pytest.raises(RipeUnavailable, match="asks to wait 3600 s"):
        client(fake, sleeps).lookup("route", "192.0.2.0/24AS64500")
    assert sleeps == []


def test_retries_are_bounded_in_count(fake: FakeRipe, sleeps: list[float]) -> None:
    fake.faults.append(Fault("GET", "", 503, times=99))
    with pytest.raises(RipeUnavailable, match=r"gave up after 3 attempt\(s\).*HTTP 503"):
        client(fake, sleeps).lookup("route", "192.0.2.0/24AS64500")
    assert len(fake.log) == 3 and sleeps == [0.01, 0.02]


def test_retries_are_bounded_in_time(fake: FakeRipe) -> None:
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    fake.faults.append(Fault("GET", "", 503, times=99))
    policy = RetryPolicy(attempts=10, backoff=2.0, max_backoff=100, budget=7.0)
    c = RipeDbClient("ripe", None, fake.url, policy, sleep)
    c._anon._clock = lambda: now[0]  # a fake clock: the budget, not the count, must stop this
    with pytest.raises(RipeUnavailable):
        c.lookup("route", "192.0.2.0/24AS64500")
    assert now[0] <= 7.0 and len(fake.log) == 3  # waits 2 + 4, the next 8 would overrun


def test_hang_past_timeout_is_retried(fake: FakeRipe, sleeps: list[float]) -> None:
    fake.faults.append(Fault("GET", "", 200, body="{}", hang=1.0))
    assert client(fake, sleeps).lookup("route", "192.0.2.0/24AS64500") is None
    assert len(fake.log) == 2 and len(sleeps) == 1


def test_a_hang_on_every_attempt_ends_in_one_message(fake: FakeRipe, sleeps: list[float]) -> None:
    fake.faults.append(Fault("POST", "", 200, body="{}", hang=1.0, times=3))
    with pytest.raises(RipeUnavailable, match=r"no answer within 0\.3 s.*may or may not have been applied"):
        client(fake, sleeps).create(ROUTE)
    assert fake.writes == []


def test_malformed_json_is_a_protocol_error_not_a_traceback(fake: FakeRipe, sleeps: list[float]) -> None:
    fake.faults.append(Fault("GET", "", 200, body="<html>proxy error"))
    with pytest.raises(RipeProtocolError, match=r"not JSON.*proxy error"):
        client(fake, sleeps).lookup("route", "192.0.2.0/24AS64500")


def test_401_lessor_case_names_the_maintainer_that_must_authorise(fake: FakeRipe, sleeps: list[float]) -> None:
    from ipaddress import ip_network

    from tests.ripe_fake_server import Protection

    fake.protections.append(Protection(ip_network("192.0.2.0/24"), "inetnum", "192.0.2.0 - 192.0.2.255",
                                       "mnt-routes", ["LESSOR-MNT"]))
    with pytest.raises(RipeRefused) as info:
        client(fake, sleeps).create(ROUTE)
    text = str(info.value)
    assert info.value.status == 401
    assert "Authorisation for [inetnum] 192.0.2.0 - 192.0.2.255 failed" in text
    assert "not authenticated by: LESSOR-MNT" in text and "%s" not in text
    assert "lessor" in text and "adding EXAMPLE-MNT to mnt-routes of 192.0.2.0 - 192.0.2.255" in text
    assert fake.writes == []


def test_409_already_exists(fake: FakeRipe, sleeps: list[float]) -> None:
    fake.put("ripe", [(a.name, a.value) for a in ROUTE.attributes])
    with pytest.raises(RipeRefused) as info:
        client(fake, sleeps).create(ROUTE)
    assert info.value.status == 409 and "already exists" in str(info.value)


def test_writes_need_a_key(fake: FakeRipe, sleeps: list[float]) -> None:
    with pytest.raises(BadInput, match="RIPE_API_KEY"):
        client(fake, sleeps, key=None).create(ROUTE)
    assert fake.log == []


def test_update_is_a_full_put_and_delete_sends_a_reason(fake: FakeRipe, sleeps: list[float]) -> None:
    c = client(fake, sleeps)
    c.create(ROUTE)
    changed = make([(a.name, "new descr" if a.name == "descr" else a.value) for a in ROUTE.attributes])
    c.update(changed)
    assert fake.requests("PUT")[0].path == "/ripe/route/192.0.2.0/24AS64500"
    assert c.lookup("route", ROUTE.key) == changed
    c.delete("route", ROUTE.key, reason="test")
    assert fake.requests("DELETE")[0].query["reason"] == ["test"]
    assert c.lookup("route", ROUTE.key) is None


def test_dry_run_writes_nothing(fake: FakeRipe, sleeps: list[float]) -> None:
    result = client(fake, sleeps).create(ROUTE, dry_run=True)
    assert fake.requests("POST")[0].query["dry-run"] == ["true"] and fake.writes == []
    assert any("Dry-run performed" in m.text for m in result.messages)


@pytest.mark.parametrize("url, ok", [
    ("https://rest.db.ripe.net", "https://rest.db.ripe.net"),
    ("https://mirror.example.net:8443/", "https://mirror.example.net:8443"),
    ("http://127.0.0.1:9999", "http://127.0.0.1:9999"),
    ("http://[::1]:9999", "http://[::1]:9999"),
    ("https://rest.db.ripe.net/ripe", None),
    ("http://mirror.example.net", None),
    ("ftp://x", None),
    ("https://user:pw@rest.db.ripe.net", None),
])
def test_base_url_replaces_scheme_and_host_only(url: str, ok: str | None) -> None:
    if ok:
        assert base_url(url) == ok
    else:
        with pytest.raises(BadInput, match="--base-url"):
            base_url(url)


def test_retry_after_forms() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=lambda: 1445412480.0) == 10.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
