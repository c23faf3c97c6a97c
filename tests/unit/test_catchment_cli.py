"""``anycast catchment`` against a local stand-in of the RIPE Atlas REST API (never the real Atlas), and offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.cli import catchment as cli
from infra.cli.main import main
from infra.ripe.transport import RetryPolicy
from tests.atlas_data import FIXTURES, WORLD, dns_result, probe, world_probes, world_results
from tests.atlas_fake_server import AtlasState, FakeAtlas, Fault


def _world(definition: dict[str, Any], sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [dns_result(pid, pop, rt=10.0 + i, af=definition["af"], dst=definition["target"])
            for i, (pid, _c, _la, _lo, pop) in enumerate(WORLD)]


@pytest.fixture
def atlas(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(cli, "ATLAS_POLICY", RetryPolicy(attempts=3, backoff=0.01, budget=5, read_timeout=5))
    monkeypatch.setattr(cli, "POLL_SECONDS", 0.05)
    state = AtlasState(results_for=_world, probes={pid: probe(pid, c, la, lo) for pid, c, la, lo, _p in WORLD})
    monkeypatch.setenv("RIPE_ATLAS_KEY", state.key)
    with FakeAtlas(state) as server:
        yield server


def run(server: FakeAtlas, *args: str) -> int:
    return main(["catchment", "--stack", "prod", "--atlas-url", server.url, *args])


def test_estimate_first_nothing_created_without_yes(atlas: FakeAtlas, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(atlas, "--country", "DE", "--country", "BR", "--per-source", "5") == 0
    out = capsys.readouterr().out
    assert "to 192.0.2.1, 2001:db8:1000::1" in out
    assert "5 in country DE, 5 in country BR (10 in all)" in out
    assert "estimated cost: 400 credits (2 definition(s) x 10 probes x 20); balance: 100000" in out
    assert "nothing created: add --yes" in out
    assert [m for m, *_ in atlas.state.log] == ["GET"]  # only the balance was read


def test_create_wait_fetch_and_report(atlas: FakeAtlas, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(atlas, "--yes", "--wait", "5", "--per-source", "2", "--out", str(tmp_path)) == 0
    captured = capsys.readouterr()
    post = [(p, b, a) for m, p, b, a in atlas.state.log if m == "POST"]
    (_path, body, auth) = post[0]
    assert auth == f"Key {atlas.state.key}"
    assert body["is_oneoff"] is True and len(body["probes"]) == 5
    assert [(d["af"], d["target"], d["query_class"], d["query_argument"], d["set_nsid_bit"]) for d in body["definitions"]] == [
        (4, "192.0.2.1", "CHAOS", "id.server", True), (6, "2001:db8:1000::1", "CHAOS", "id.server", True)]
    assert all(d["include_abuf"] and not d["use_probe_resolver"] and not d["set_rd_bit"] for d in body["definitions"])
    assert "measurement 5000001 is Ongoing; waiting" in captured.err
    doc = json.loads((tmp_path / "catchment.json").read_text())
    assert len(doc["probes"]) == 2 * len(WORLD)
    gb = [p for p in doc["probes"] if p["id"] == "1004"]
    assert {p["af"] for p in gb} == {4, 6} and all(p["pop"] == "maa" and p["expected_pop"] == "lhr" for p in gb)
    assert "1004" in captured.out and "misrouted" in captured.out
    for f in tmp_path.iterdir():
        assert atlas.state.key not in f.read_text()


def test_wrong_key_is_refused_without_printing_it(atlas: FakeAtlas, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RIPE_ATLAS_KEY", "11111111-2222-3333-4444-555555555555")
    atlas.state.faults.append(Fault("GET", "/credits/", 200, {"current_balance": 100000}))
    assert run(atlas, "--yes") == 1
    err = capsys.readouterr().err
    assert "create the measurement: RIPE Atlas refused the key (HTTP 403: The provided API key does not exist)" in err
    assert "11111111" not in err


def test_missing_key_is_bad_input(atlas: FakeAtlas, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("RIPE_ATLAS_KEY")
    assert run(atlas) == 2
    assert "RIPE_ATLAS_KEY is not set" in capsys.readouterr().err
    assert atlas.state.log == []


def test_no_credits_refused_before_and_by_atlas(atlas: FakeAtlas, capsys: pytest.CaptureFixture[str]) -> None:
    atlas.state.balance = 100
    assert run(atlas, "--yes") == 2
    assert "not enough credits: the estimate 2000 exceeds the balance 100" in capsys.readouterr().err
    # A key that may not read the balance: Atlas itself refuses the creation.
    atlas.state.faults.append(Fault("GET", "/credits/", 403))
    assert run(atlas, "--yes") == 1
    err = capsys.readouterr().err
    assert "RIPE Atlas says the account lacks credits (You do not have enough credits" in err
    assert not atlas.state.measurements


def test_running_measurement_says_so(atlas: FakeAtlas, capsys: pytest.CaptureFixture[str]) -> None:
    atlas.state.running_reads = 100
    assert run(atlas, "--yes", "--af", "4", "--country", "DE", "--per-source", "1") == 0
    out = capsys.readouterr().out
    assert "note: measurement 5000001 is still running (status Ongoing): the report covers the 11 results so far" in out
    assert run(atlas, "--measurement", "5000001") == 0
    assert "still running" in capsys.readouterr().out
    assert run(atlas, "--measurement", "42") == 1
    assert "read measurement 42: not found (HTTP 404" in capsys.readouterr().err


def test_server_errors_are_retried_then_reported(atlas: FakeAtlas, capsys: pytest.CaptureFixture[str]) -> None:
    atlas.state.running_reads = 0
    assert run(atlas, "--yes", "--af", "6", "--per-source", "1") == 0
    capsys.readouterr()
    atlas.state.faults.append(Fault("GET", "/results/", 502, times=2))
    assert run(atlas, "--measurement", "5000001") == 0  # two 502s, then the answer
    assert "catchment (RIPE Atlas measurement 5000001)" in capsys.readouterr().out
    atlas.state.faults.append(Fault("GET", "/results/", 503, times=5))
    assert run(atlas, "--measurement", "5000001") == 1
    assert "read the results of 5000001: gave up after 3 attempt(s)" in capsys.readouterr().err


def test_offline_results_with_probe_metadata(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results.json"
    recorded = [json.loads((FIXTURES / n).read_text()) for n in
                ("dns_nsid_kroot_msm1004048_fw4610.json", "dns_error_timeout_msm1666006_fw4610.json")]
    results.write_text(json.dumps(world_results() + recorded))
    probes = tmp_path / "probes.json"
    probes.write_text(json.dumps(world_probes()))
    assert main(["catchment", "--stack", "prod", "--results", str(results), "--probes", str(probes),
                 "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "13 results; 9 ok, 1 mis-routed" in out
    assert "unknown NSID 'k3.ams-ix.k.ripe.net'" in out and "timeout after 5000 ms" in out
    assert (tmp_path / "out" / "catchment.svg").read_text().startswith("<svg")
    assert "advice (a diff of the stack file; nothing was applied):" in out
    assert "+        announce: {prepend: 3}" in (tmp_path / "out" / "advice.diff").read_text()
    assert main(["catchment", "--stack", "prod", "--results", str(results)]) == 0
    assert "nothing is judged" in capsys.readouterr().out


@pytest.mark.parametrize(("content", "message"), [
    (None, "does not exist"), ("{not json", "is not JSON (line 1"), ('[{"prb_id": 1, "type": "ping"}]', "DNS measurement")])
def test_offline_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str) -> None:
    f = tmp_path / "r.json"
    if content is not None:
        f.write_text(content)
    assert main(["catchment", "--stack", "prod", "--results", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_lab_mode_when_the_lab_is_not_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(__file__).resolve().parents[2]
    (tmp_path / "Pulumi.yaml").write_text((root / "Pulumi.yaml").read_text())
    (tmp_path / "Pulumi.nolab.yaml").write_text((root / "Pulumi.dev.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    assert main(["catchment", "--stack", "nolab", "--lab"]) == 1
    err = capsys.readouterr().err
    assert err == "error: the lab of stack nolab is not running: start it with `anycast lab up --stack nolab`\n"


def test_probe_locations_are_read_across_pages(atlas: FakeAtlas, capsys: pytest.CaptureFixture[str]) -> None:
    atlas.state.max_page_size = 3
    atlas.state.running_reads = 0
    assert run(atlas, "--yes", "--af", "4", "--country", "DE", "--per-source", "1") == 0
    out = capsys.readouterr().out
    assert "11 results; 9 ok, 1 mis-routed" in out and "1 without coordinates" in out
    pages = [p for m, p, *_ in atlas.state.log if m == "GET" and p.startswith("/api/v2/probes/")]
    assert len(pages) == 4 and "page=4" in pages[-1]
