"""A RIPE server that hangs, is not there, or drips its answer: `anycast ripe` says what it is doing and stays within
its time bound (issue 14, part 7). Elapsed times are asserted with generous bounds; figures belong in `make bench`."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from infra.cli import main as cli
from infra.cli import ripe as ripe_cli
from infra.ripe.client import RipeDbClient
from infra.ripe.errors import RipeUnavailable
from infra.ripe.transport import RetryPolicy
from tests.ripe_fake_server import FakeRipe, Fault, SilentServer, refused_port

KEY = "TESTKEYID:s3cr3t-Test-Key"
LOOKUP = "look up route 192.0.2.0/24AS64500"
RETRY_RE = re.compile(rf"^retry: {re.escape(LOOKUP)}: attempt (\d) of (\d) failed with (.+); next attempt in ([\d.]+) s$")


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIPE_API_KEY", KEY)


@pytest.fixture
def short_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped policy, with short attempts and waits so that several retries fit in a second or two."""
    monkeypatch.setattr(ripe_cli, "RUNTIME", ripe_cli.Runtime(RetryPolicy(backoff=0.1, read_timeout=0.4)))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str, float]:
    t0 = time.monotonic()
    rc = cli.main(["ripe", *args])
    elapsed = time.monotonic() - t0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "s3cr3t" not in out + err
    return rc, out, err, elapsed


def retry_lines(err: str) -> list[tuple[int, int, str, float]]:
    lines = [line for line in err.splitlines() if line.startswith("retry: ")]
    parsed = [RETRY_RE.match(line) for line in lines]
    assert all(parsed), lines
    return [(int(m[1]), int(m[2]), m[3], float(m[4])) for m in parsed if m]


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    with SilentServer() as server:
        yield server


def test_silent_server_prints_one_line_per_retry_and_ends_within_the_timeout(silent: SilentServer, short_reads: None,
                                                                               capsys: Any) -> None:
    rc, _, err, elapsed = run(capsys, "plan", "--stack", "prod", "--base-url", silent.url, "--timeout", "2.5")
    assert rc == 1
    # attempts of 0.4 s with waits 0.1, 0.2, 0.4 between them: three retries, then the last attempt fails
    assert retry_lines(err) == [(1, 4, "no answer within 0.4 s", 0.1), (2, 4, "no answer within 0.4 s", 0.2),
                                (3, 4, "no answer within 0.4 s", 0.4)]
    assert re.fullmatch(rf"error: {re.escape(LOOKUP)}: gave up after 4 attempt\(s\) in \d\.\d s; the last one ended with "
                        r"no answer within 0\.4 s; run the command again later", err.splitlines()[-1]), err
    assert silent.connections == 4
    assert 1.5 < elapsed < 2.5 + 2.0


def test_timeout_bounds_a_silent_server_with_the_shipped_policy(silent: SilentServer, capsys: Any) -> None:
    """No test knobs: the default 20 s attempt is cut to the --timeout budget, so the command ends after ~1.5 s."""
    rc, _, err, elapsed = run(capsys, "plan", "--stack", "prod", "--base-url", silent.url, "--timeout", "1.5")
    assert rc == 1 and retry_lines(err) == []
    assert re.fullmatch(rf"error: {re.escape(LOOKUP)}: gave up after 1 attempt\(s\) in \d\.\d s; the last one ended with "
                        r"no answer within 1\.5 s; run the command again later", err.splitlines()[-1]), err
    assert 1.4 < elapsed < 1.5 + 2.0


def test_nothing_listening_fails_at_once_without_retries(capsys: Any) -> None:
    sock, port = refused_port()
    with sock:
        rc, _, err, elapsed = run(capsys, "apply", "--stack", "prod", "--base-url", f"http://127.0.0.1:{port}")
    assert rc == 1 and retry_lines(err) == []
    assert err.splitlines() == [f"error: {LOOKUP}: nothing is listening at http://127.0.0.1:{port} (connection refused); "
                                "check --base-url, or try again later"]
    assert elapsed < 2.0


def test_a_dripping_answer_is_cut_at_the_deadline(short_reads: None, capsys: Any) -> None:
    """Every read gets a byte well within the read timeout, but the whole answer would take 20 s."""
    with FakeRipe() as fake:
        fake.faults.append(Fault("GET", "", 404, body=json.dumps({"padding": "x" * 400}), drip=0.05, times=99))
        rc, _, err, elapsed = run(capsys, "plan", "--stack", "prod", "--base-url", fake.url, "--timeout", "1.5")
    assert rc == 1 and retry_lines(err) == []
    assert re.fullmatch(rf"error: {re.escape(LOOKUP)}: gave up after 1 attempt\(s\) in \d\.\d s; the last one ended with an "
                        r"answer still incomplete after \d\.\d s; run the command again later", err.splitlines()[-1]), err
    assert 1.4 < elapsed < 1.5 + 2.0


def test_a_slow_but_complete_answer_inside_the_budget_is_read(short_reads: None, capsys: Any) -> None:
    with FakeRipe() as fake:
        fake.faults.append(Fault("GET", "", 404, body=json.dumps({"errormessages": {"errormessage": []}}), drip=0.005,
                                 times=2))
        rc, out, err, _ = run(capsys, "plan", "--stack", "prod", "--base-url", fake.url, "--timeout", "5")
    assert rc == 0 and retry_lines(err) == [] and "plan: 2 to create" in out


def test_retry_lines_for_server_errors_come_through_the_callback(capsys: Any) -> None:
    lines: list[str] = []
    sleeps: list[float] = []
    with FakeRipe() as fake:
        fake.faults.append(Fault("GET", "", 503, times=2))
        c = RipeDbClient("ripe", None, fake.url, RetryPolicy(backoff=0.5), sleeps.append, on_retry=lines.append)
        assert c.lookup("route", "192.0.2.0/24AS64500") is None
    assert lines == [f"{LOOKUP}: attempt 1 of 4 failed with HTTP 503; next attempt in 0.5 s",
                     f"{LOOKUP}: attempt 2 of 4 failed with HTTP 503; next attempt in 1.0 s"]
    assert sleeps == [0.5, 1.0]
    assert capsys.readouterr() == ("", "")  # library code does not print


def test_library_without_callback_is_silent_and_refused_is_immediate(capsys: Any) -> None:
    sock, port = refused_port()
    with sock, pytest.raises(RipeUnavailable, match="nothing is listening"):
        RipeDbClient("ripe", None, f"http://127.0.0.1:{port}").lookup("route", "192.0.2.0/24AS64500")
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("value, message", [
    ("0", "0 is not between 0 and 3600 seconds"), ("-5", "-5 is not between 0 and 3600 seconds"),
    ("nan", "nan is not between 0 and 3600 seconds"), ("1e9", "1e9 is not between 0 and 3600 seconds"),
    ("ten", "'ten' is not a number of seconds"),
])
def test_bad_timeout_is_one_usage_line(value: str, message: str, capsys: Any) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["ripe", "plan", "--stack", "prod", "--timeout", value])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err
    assert err.splitlines()[-1].endswith(f"argument --timeout: {message}")
