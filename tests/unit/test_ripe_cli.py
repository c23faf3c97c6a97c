"""``anycast ripe plan|apply`` and ``anycast ripe roa plan|apply`` end to end against the local fake server."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import ip_network
from typing import Any

import pytest

from infra.cli import main as cli
from infra.cli import ripe as ripe_cli
from infra.model import Network, parse_network
from infra.model.stack import NETWORK_KEY, read_stack_config
from infra.ripe.desired import managed_remark
from infra.ripe.transport import RetryPolicy
from tests.ripe_fake_server import FakeRipe, Fault, Protection

KEY = "TESTKEYID:s3cr3t-Test-Key"
SECRET = "s3cr3t-Test-Key"
RPKI_KEY = "rpki-Test-Key-0001"
V4, V6 = "192.0.2.0/24AS64500", "2001:db8:1000::/48AS64500"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRipe]:
    sleeps: list[float] = []
    monkeypatch.setattr(ripe_cli, "RUNTIME", ripe_cli.Runtime(
        RetryPolicy(attempts=3, backoff=0.01, budget=5.0, connect_timeout=0.5, read_timeout=0.3, max_retry_after=2.0),
        sleeps.append))
    monkeypatch.setenv("RIPE_API_KEY", KEY)
    monkeypatch.setenv("RIPE_RPKI_API_KEY", RPKI_KEY)
    with FakeRipe() as server:
        yield server


def run(fake: FakeRipe, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    argv = ["ripe", *args]
    if "--base-url" not in args:
        argv += ["--base-url", fake.url]
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    assert SECRET not in out + err and RPKI_KEY not in out + err
    assert "Traceback" not in out + err
    return rc, out, err


def ours(key: str, stack: str = "prod", descr: str = "Example anycast network") -> list[tuple[str, str]]:
    prefix, asn = key.split("AS")
    kind = "route6" if ":" in prefix else "route"
    return [(kind, prefix), ("descr", descr), ("origin", f"AS{asn}"), ("remarks", managed_remark(stack)),
            ("mnt-by", "EXAMPLE-MNT"), ("source", "RIPE")]


def test_apply_creates_exactly_two_objects_and_a_second_apply_writes_nothing(fake: FakeRipe, capsys: Any) -> None:
    rc, out, _ = run(fake, capsys, "plan", "--stack", "prod")
    assert rc == 0 and f"create  route {V4}" in out and f"create  route6 {V6}" in out
    assert "plan: 2 to create, 0 to update" in out and fake.writes == []

    rc, out, _ = run(fake, capsys, "apply", "--stack", "prod")
    assert rc == 0 and "apply: 2 write(s)" in out
    assert [(w.method, w.path) for w in fake.writes] == [("POST", "/ripe/route"), ("POST", "/ripe/route6")]
    stored = fake.get("ripe", "route", V4)
    assert stored is not None
    assert {a["name"]: a["value"] for a in stored}["remarks"] == managed_remark("prod")
    assert fake.get("ripe", "route6", V6) is not None
    # Every real write was preceded by a dry run of the same request.
    assert [r.dry_run for r in fake.requests("POST")] == [True, True, False, False]

    before = len(fake.log)
    rc, out, _ = run(fake, capsys, "apply", "--stack", "prod")
    assert rc == 0 and "apply: nothing to do (0 writes)" in out and "unchanged  route" in out
    assert all(r.method == "GET" for r in fake.log[before:])


def test_plan_dry_run_asks_ripe(fake: FakeRipe, capsys: Any) -> None:
    rc, out, _ = run(fake, capsys, "plan", "--stack", "prod", "--dry-run")
    assert rc == 0 and "RIPE dry run: every write above would be accepted" in out
    assert fake.writes == [] and all(r.dry_run for r in fake.requests("POST"))


def with_maintainer(stack: str) -> Network:
    doc = read_stack_config(stack)[NETWORK_KEY]
    return parse_network({**doc, "ripe": {"manage": True, "maintainer": "EXAMPLE-MNT"}})


def test_vultr_assigned_private_asn_registers_as20473(fake: FakeRipe, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ripe_cli, "load_network", with_maintainer)
    rc, out, _ = run(fake, capsys, "apply", "--stack", "free")
    assert rc == 0 and "route6 2001:db8:2000::/48AS20473" in out
    assert [w.path for w in fake.writes] == ["/ripe/route6"]  # IPv6-only network: one object


def test_test_database(fake: FakeRipe, capsys: Any) -> None:
    rc, out, _ = run(fake, capsys, "apply", "--stack", "prod", "--database", "test")
    assert rc == 0 and "RIPE database test" in out
    assert [w.path for w in fake.writes] == ["/test/route", "/test/route6"]
    assert fake.writes[0].body["objects"]["object"][0]["source"] == {"id": "TEST"}
    stored = fake.get("test", "route", V4)
    assert stored is not None and stored[-1] == {"name": "source", "value": "TEST"}


def test_foreign_object_is_left_untouched(fake: FakeRipe, capsys: Any) -> None:
    foreign = [("route", "192.0.2.0/24"), ("descr", "made by hand"), ("origin", "AS64500"), ("mnt-by", "EXAMPLE-MNT"),
               ("source", "RIPE")]
    fake.put("ripe", foreign)
    before = fake.get("ripe", "route", V4)
    rc, out, _ = run(fake, capsys, "apply", "--stack", "prod", "--prune")
    assert rc == 0 and f"left alone  route {V4}  (exists, not created by this project" in out
    assert [(w.method, w.path) for w in fake.writes] == [("POST", "/ripe/route6")]
    assert fake.get("ripe", "route", V4) == before


def test_managed_object_with_drift_is_updated_keeping_hand_added_attributes(fake: FakeRipe, capsys: Any) -> None:
    drifted = ours(V4, descr="old text")
    fake.put("ripe", [*drifted[:-1], ("notify", "noc@example.net"), drifted[-1]])
    fake.put("ripe", ours(V6))
    rc, out, _ = run(fake, capsys, "apply", "--stack", "prod")
    assert rc == 0 and "update  route 192.0.2.0/24AS64500  (descr ['old text'] -> ['Example anycast network'])" in out
    assert [(w.method, w.path) for w in fake.writes] == [("PUT", f"/ripe/route/{V4}")]
    stored = {a["name"]: a["value"] for a in fake.get("ripe", "route", V4) or []}
    assert stored["descr"] == "Example anycast network" and stored["notify"] == "noc@example.net"


def test_stale_managed_objects_are_deleted_only_with_prune(fake: FakeRipe, capsys: Any) -> None:
    old = "198.51.100.0/24AS64500"
    fake.put("ripe", ours(old))
    fake.put("ripe", ours("203.0.113.0/24AS64500", stack="dev"))  # another stack's: never touched
    fake.put("ripe", [("route", "203.0.113.0/25"), ("origin", "AS64500"), ("mnt-by", "EXAMPLE-MNT"), ("source", "RIPE")])
    rc, out, _ = run(fake, capsys, "apply", "--stack", "prod")
    assert rc == 0 and f"stale  route {old}" in out and fake.get("ripe", "route", old) is not None
    search = next(r for r in fake.log if r.path == "/search")
    assert search.query["inverse-attribute"] == ["mnt-by"] and search.query["type-filter"] == ["route", "route6"]
    assert "203.0.113" not in out
    rc, out, _ = run(fake, capsys, "apply", "--stack", "prod", "--prune")
    assert rc == 0 and f"deleted route {old}" in out
    assert [w.method for w in fake.writes].count("DELETE") == 1 and fake.get("ripe", "route", old) is None
    assert fake.get("ripe", "route", "203.0.113.0/24AS64500") is not None
    assert fake.get("ripe", "route", "203.0.113.0/25AS64500") is not None


def test_lessor_refusal_writes_nothing_and_says_who_must_authorise(fake: FakeRipe, capsys: Any) -> None:
    fake.protections.append(Protection(ip_network("2001:db8:1000::/40"), "inet6num", "2001:db8:1000::/40", "mnt-routes",
                                       ["LESSOR-MNT"]))
    rc, out, err = run(fake, capsys, "apply", "--stack", "prod")
    assert rc == 1 and fake.writes == []  # the IPv4 object would pass, but nothing is half-done
    assert f"create  route {V4}" in out
    assert "error: RIPE refused to create route6 2001:db8:1000::/48AS64500 (HTTP 401):" in err
    assert "not authenticated by: LESSOR-MNT" in err
    assert "hint: the address space inet6num 2001:db8:1000::/40 is protected by its mnt-routes: LESSOR-MNT" in err
    assert "Nothing was written" in err


def test_500_then_success(fake: FakeRipe, capsys: Any) -> None:
    fake.faults.append(Fault("POST", "/ripe/route6", 500, real_only=True))
    rc, _, _ = run(fake, capsys, "apply", "--stack", "prod")
    assert rc == 0 and len(fake.writes) == 2


def test_lost_answer_after_a_real_create_is_checked_not_repeated(fake: FakeRipe, capsys: Any) -> None:
    # The create is applied, the answer hangs past the timeout; the retry gets 409; the tool looks and is satisfied.
    fake.faults.append(Fault("POST", "/ripe/route", 200, body="{}", hang=1.0, apply_first=True, real_only=True))
    rc, out, _ = run(fake, capsys, "apply", "--stack", "prod")
    assert rc == 0 and "(it already existed (HTTP 409); checked: stored as wanted)" in out
    assert [w.path for w in fake.writes] == ["/ripe/route", "/ripe/route6"]


def test_malformed_json_after_the_write_is_checked(fake: FakeRipe, capsys: Any) -> None:
    fake.faults.append(Fault("POST", "/ripe/route", 200, body="<html>gateway", apply_first=True, real_only=True))
    rc, out, _ = run(fake, capsys, "apply", "--stack", "prod")
    assert rc == 0 and "RIPE's answer was unreadable; checked: stored as wanted" in out and len(fake.writes) == 2


def test_malformed_json_without_the_write_is_one_clear_error(fake: FakeRipe, capsys: Any) -> None:
    fake.faults.append(Fault("POST", "/ripe/route6", 200, body="not json", real_only=True))
    rc, out, err = run(fake, capsys, "apply", "--stack", "prod")
    assert rc == 1 and err.count("error:") == 1
    assert "RIPE's answer was unreadable, and the stored object is not as wanted" in err
    assert "created route 192.0.2.0/24AS64500" in out and [w.path for w in fake.writes] == ["/ripe/route"]
    rc, out, _ = run(fake, capsys, "apply", "--stack", "prod")  # the next run finishes the job
    assert rc == 0 and [w.path for w in fake.writes] == ["/ripe/route", "/ripe/route6"]


def test_429_with_retry_after(fake: FakeRipe, capsys: Any) -> None:
    fake.faults.append(Fault("GET", "", 429, headers={"Retry-After": "1"}))
    rc, _, _ = run(fake, capsys, "apply", "--stack", "prod")
    assert rc == 0 and ripe_cli.RUNTIME.sleep is not None and len(fake.writes) == 2


def test_409_race_with_a_foreign_object(fake: FakeRipe, capsys: Any) -> None:
    # Between plan and write someone else creates the route object: it is reported and left alone.
    foreign = [("route", "192.0.2.0/24"), ("origin", "AS64500"), ("mnt-by", "OTHER-MNT"), ("source", "RIPE")]
    original = fake._create

    def racing(*args: Any) -> Any:
        if not args[4] and fake.get("ripe", "route", V4) is None:  # the real (not dry-run) create
            fake.put("ripe", foreign)
        return original(*args)

    fake._create = racing  # type: ignore[method-assign,assignment]
    rc, out, _ = run(fake, capsys, "apply", "--stack", "prod")
    assert rc == 0 and "left alone route 192.0.2.0/24AS64500 (it already existed (HTTP 409); it was created by someone else)" in out
    assert [w.path for w in fake.writes] == ["/ripe/route6"]


def test_unreachable_server_is_one_message(fake: FakeRipe, capsys: Any) -> None:
    rc, _, err = run(fake, capsys, "plan", "--stack", "prod", "--base-url", "http://127.0.0.1:9")
    assert rc == 1 and err == ("error: look up route 192.0.2.0/24AS64500: nothing is listening at http://127.0.0.1:9 "
                               "(connection refused); check --base-url, or try again later\n")


@pytest.mark.parametrize("env, args, message", [
    ({"RIPE_API_KEY": ""}, ["apply", "--stack", "prod"], "error: no RIPE Database API key: set RIPE_API_KEY"),
    ({"RIPE_API_KEY": "no-colon-" + SECRET}, ["apply", "--stack", "prod"], "error: RIPE_API_KEY must be KEYID:SECRET"),
    ({}, ["apply", "--stack", "dev"], "error: ripe.maintainer is not set"),
    ({}, ["plan", "--stack", "prod", "--base-url", "https://rest.db.ripe.net/ripe"], "error: --base-url: give only"),
    ({}, ["apply", "--stack", "nosuch"], "error: --stack: no stack file Pulumi.nosuch.yaml"),
    ({"RIPE_RPKI_API_KEY": ""}, ["roa", "plan", "--stack", "prod"], "error: no RPKI API key"),
])
def test_bad_input_exits_2(fake: FakeRipe, capsys: Any, monkeypatch: pytest.MonkeyPatch,
                           env: dict[str, str], args: list[str], message: str) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    rc, _, err = run(fake, capsys, *args)
    assert rc == 2 and err.startswith(message) and fake.writes == []


def test_rejected_key_is_exit_1_without_the_secret(fake: FakeRipe, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIPE_API_KEY", "TESTKEYID:wrong-" + SECRET)
    rc, _, err = run(fake, capsys, "apply", "--stack", "prod")
    assert rc == 1 and "API key is not accepted for EXAMPLE-MNT" in err and fake.writes == []


# ---- ROAs -----------------------------------------------------------------------------------------------------

def test_roa_apply_publishes_missing_roas_once(fake: FakeRipe, capsys: Any) -> None:
    rc, out, _ = run(fake, capsys, "roa", "plan", "--stack", "prod")
    assert rc == 0 and "create  ROA AS64500 192.0.2.0/24 maxLength 24" in out and fake.writes == []
    rc, out, _ = run(fake, capsys, "roa", "apply", "--stack", "prod")
    assert rc == 0 and "published 2 new ROA(s)" in out
    assert fake.roas == [{"asn": "AS64500", "prefix": "192.0.2.0/24", "maximalLength": 24},
                         {"asn": "AS64500", "prefix": "2001:db8:1000::/48", "maximalLength": 48}]
    assert fake.writes[0].headers["ncc-api-authorization"] == RPKI_KEY
    rc, out, _ = run(fake, capsys, "roa", "apply", "--stack", "prod")
    assert rc == 0 and "nothing to do (0 writes)" in out and len(fake.writes) == 1


def test_roa_for_vultr_assigned_asn_names_as20473(fake: FakeRipe, capsys: Any) -> None:
    rc, _, _ = run(fake, capsys, "roa", "apply", "--stack", "free")
    assert rc == 0 and fake.roas == [{"asn": "AS20473", "prefix": "2001:db8:2000::/48", "maximalLength": 48}]


def test_roa_warns_on_permissive_and_covering_and_deletes_only_with_prune(fake: FakeRipe, capsys: Any) -> None:
    permissive = {"asn": "AS64500", "prefix": "2001:db8:1000::/48", "maximalLength": 64}
    covering = {"asn": "AS64999", "prefix": "192.0.0.0/16", "maximalLength": 24}
    unrelated = {"asn": "AS64500", "prefix": "198.51.100.0/24", "maximalLength": 24}
    fake.roas = [permissive, covering, unrelated]
    rc, out, _ = run(fake, capsys, "roa", "apply", "--stack", "prod")
    assert rc == 0
    assert "warning: ROA AS64500 2001:db8:1000::/48 maxLength 64 is too permissive" in out
    assert "warning: covering ROA AS64999 192.0.0.0/16 maxLength 24 also makes 192.0.2.0/24 valid" in out
    assert fake.writes[0].body["deleted"] == [] and permissive in fake.roas and covering in fake.roas
    rc, out, _ = run(fake, capsys, "roa", "apply", "--stack", "prod", "--prune")
    assert rc == 0 and fake.writes[1].body == {"added": [], "deleted": [permissive]}
    assert covering in fake.roas and unrelated in fake.roas and permissive not in fake.roas


def test_roa_bad_key_is_refused(fake: FakeRipe, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIPE_RPKI_API_KEY", "wrong-key")
    rc, _, err = run(fake, capsys, "roa", "plan", "--stack", "prod")
    assert rc == 1 and "RIPE refused to list ROAs (HTTP 401)" in err and "RIPE_RPKI_API_KEY" in err
    assert "wrong-key" not in err
