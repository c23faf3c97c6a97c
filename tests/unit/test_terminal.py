"""Control characters from outside (server error bodies, file names, stack values) never reach the terminal as controls
(infra/terminal.py): generated strings, and the CLI's printing end to end."""

from __future__ import annotations

import io
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.cli import catchment as cli
from infra.cli.main import main
from infra.ripe.transport import RetryPolicy
from infra.terminal import PrintableStream, printable
from tests.atlas_fake_server import AtlasState, FakeAtlas, Fault
from tests.conftest import ROOT, TEST_PASSWORD

HOSTILE = [
    "\x1b[2J\x1b[H",                                   # clear the screen, cursor home
    "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\",  # OSC 8 hyperlink hiding its target
    "\x1b]0;new window title\x07",                     # OSC 0 retitles the window (BEL-terminated)
    "ok\rerror",                                       # carriage return overwrites the line
    "abc\b\b\bxyz",                                    # backspaces
    "\x9b31mred",                                      # C1 CSI (8-bit ESC [)
    "\x9d8;;https://evil.example/\x9c",                # C1 OSC / ST
    "user\u202etxt.exe",                               # right-to-left override
    "line\u2028separator", "\x00nul\x7fdel", "zero\u200bwidth", "lone \ud800 surrogate",
]


def dangerous(c: str, one_line: bool) -> bool:
    if c in "\n\t\u2028\u2029":
        return one_line
    if c == "\u200d":  # zero-width joiner: part of emoji sequences
        return False
    return unicodedata.category(c) in ("Cc", "Cf", "Cs") or c in "\ufffe\uffff"


def as_file_name(evil: str) -> str:
    # A file name holds no '/' or NUL; a name that is not UTF-8 arrives as surrogate escapes (byte 0xff -> U+DCFF).
    return evil.replace("/", "_").replace("\x00", "").replace("\ud800", "\udcff")


@given(st.text(alphabet=st.one_of(st.characters(), st.sampled_from("\x1b\x9b\r\b\n\t\u202e\x07\ud800\u2028\ufeff"))))
def test_nothing_dangerous_survives(text: str) -> None:
    assert not any(dangerous(c, False) for c in printable(text))
    assert not any(dangerous(c, True) for c in printable(text, one_line=True))


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Cf", "Zl", "Zp"),
                                      blacklist_characters="\ufffe\uffff")))
def test_ordinary_text_is_unchanged(text: str) -> None:
    assert printable(text) == text == printable(text, one_line=True)


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_examples_are_shown_escaped(text: str) -> None:
    shown = printable(text, one_line=True)
    assert not any(dangerous(c, True) for c in shown)
    assert "\\x" in shown or "\\u" in shown or "\\r" in shown  # visible, not silently dropped


def test_escapes_read_as_their_code_points() -> None:
    assert printable("a\x1b[31mb\x9bc\u202ed\re\n") == "a\\x1b[31mb\\x9bc\\u202ed\\re\n"
    assert printable("one\ntwo\tthree", one_line=True) == "one\\ntwo\\tthree"


def test_stream_wrapper_escapes_every_write() -> None:
    buf = io.StringIO()
    stream = PrintableStream(buf)
    print("title\x1b]0;pwned\x07", file=stream)
    assert buf.getvalue() == "title\\x1b]0;pwned\\x07\n"


# ---- end to end: what `anycast` prints ------------------------------------------------------------------------------

@pytest.mark.parametrize("evil", HOSTILE)
def test_a_file_name_is_printed_escaped(tmp_path: Path, evil: str, capsys: pytest.CaptureFixture[str]) -> None:
    name = tmp_path / ("results" + as_file_name(evil) + ".json")
    assert main(["catchment", "--stack", "prod", "--results", str(name)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --results: ") and err.endswith("does not exist\n")
    assert not any(dangerous(c, False) for c in err)


@pytest.mark.parametrize("evil", HOSTILE)
def test_a_server_error_body_is_printed_escaped(monkeypatch: pytest.MonkeyPatch, evil: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "ATLAS_POLICY", RetryPolicy(attempts=1, backoff=0.01, budget=5, read_timeout=5))
    state = AtlasState(faults=[Fault("POST", "measurements", 400, {"error": {"status": 400, "title": "Bad Request",
                                                                         "detail": f"denied {evil}\nnext line"}})])
    monkeypatch.setenv("RIPE_ATLAS_KEY", state.key)
    with FakeAtlas(state) as server:
        rc = main(["catchment", "--stack", "prod", "--yes", "--atlas-url", server.url])
    captured = capsys.readouterr()
    assert rc == 1
    assert captured.err.startswith("error: create the measurement: ") and "denied" in captured.err
    assert not any(dangerous(c, False) for c in captured.err + captured.out)


@pytest.mark.parametrize("evil", HOSTILE)
def test_progress_lines_print_escaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, evil: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    # `render` echoes --out in its plain progress line: only the stream wrapper in main() stands in the way.
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("ANYCAST_BGP_PASSWORD", TEST_PASSWORD)
    out = tmp_path / ("out" + as_file_name(evil))
    assert main(["render", "--stack", "dev", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("rendered 3 PoPs") and (out / "summary.json").is_file()
    assert not any(dangerous(c, False) for c in err)
