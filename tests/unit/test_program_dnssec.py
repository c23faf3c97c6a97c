"""The Pulumi program with dns.dnssec under mocks: the DS record in the parent zone, after every PoP's gate (so it is
created after the signed zone is served and deleted before the PoPs go), signed zones in every user data."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import pytest

from tests.dnssec_data import ENV, LAB_DS, NEXT_DS, signed_doc
from tests.pulumi_mocks import ZONE_ID, run_in_subprocess

RECORD = "aws:route53/record:Record"
GATE = "pulumi-python:dynamic:Resource"
TWO_KEYS: list[dict[str, Any]] = [{"env": "ANYCAST_DNSSEC_KEY", "ds": LAB_DS, "publishDs": False}, {"env": "ANYCAST_DNSSEC_KEY_NEXT", "ds": NEXT_DS}]


@cache
def _run(keys: tuple[tuple[tuple[str, Any], ...], ...] | None = None, env: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    saved = dict(os.environ)
    try:
        os.environ.update(dict(env))
        doc = signed_doc([dict(k) for k in keys] if keys is not None else None)
        return run_in_subprocess("signed", network=doc, expect_failure=True)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _keys(keys: list[dict[str, Any]]) -> tuple[tuple[tuple[str, Any], ...], ...]:
    return tuple(tuple(sorted(k.items())) for k in keys)


def _ds_records(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in run["resources"] if r["type"] == RECORD and r["inputs"].get("type") == "DS"]


def test_ds_record_after_every_gate() -> None:
    run = _run(env=tuple(ENV.items()))
    assert "error" not in run, run.get("error")
    (ds,) = _ds_records(run)
    assert ds["inputs"]["name"] == "cdn.example.com" and ds["inputs"]["records"] == [LAB_DS]
    assert ds["inputs"]["zoneId"] == ZONE_ID and ds["inputs"]["ttl"] == 3600
    gates = {r["name"] for r in run["resources"] if r["type"] == GATE and r["name"].endswith("-gate")}
    assert gates and all(any(dep.endswith(f"::{g}") for dep in ds["dependencies"]) for g in gates), ds["dependencies"]


def _zone_file(user_data: str) -> str:
    """The zone file cloud-init writes (a signed zone ships gzip-compressed, encoding gz+b64)."""
    import base64
    import gzip

    import yaml

    entry = next(f for f in yaml.safe_load(user_data)["write_files"] if f["path"].endswith("/cdn.example.com.zone"))
    assert entry.get("encoding") == "gz+b64", entry.get("encoding")
    return gzip.decompress(base64.b64decode(entry["content"])).decode()


def test_user_data_carries_a_signed_zone_and_no_key() -> None:
    run = _run(env=tuple(ENV.items()))
    instances = [r for r in run["resources"] if r["type"] == "vultr:index/instance:Instance"]
    assert len(instances) == 2
    for inst in instances:
        text = inst["inputs"]["userData"]
        zone = _zone_file(text)
        assert "RRSIG SOA 13 3 60" in zone and "DNSKEY 257 3 13" in zone
        assert "PRIVATE KEY" not in text and ENV["ANYCAST_DNSSEC_KEY"].splitlines()[1][:30] not in text


def test_rollover_step_two_publishes_only_the_new_ds() -> None:
    run = _run(_keys(TWO_KEYS), tuple(ENV.items()))
    (ds,) = _ds_records(run)
    assert ds["inputs"]["records"] == [NEXT_DS]


def test_no_ds_when_no_key_publishes() -> None:
    run = _run(_keys([{**TWO_KEYS[0]}]), tuple(ENV.items()))
    assert "error" not in run and _ds_records(run) == []


@pytest.mark.parametrize(("env", "message"), [
    ((), "dns.dnssec.keys[0].env: ANYCAST_DNSSEC_KEY is not set"),
    ((("ANYCAST_DNSSEC_KEY", ENV["ANYCAST_DNSSEC_KEY_NEXT"]),), "dns.dnssec.keys[0].ds: '" + LAB_DS + "' does not match"),
])
def test_bad_key_stops_before_any_resource(env: tuple[tuple[str, str], ...], message: str) -> None:
    run = _run(env=(("ANYCAST_DNSSEC_KEY", ""), *env))
    assert message in run["error"] and run["resources"] == []
