"""The policy's tokenizer agrees with the real BIRD about where the BGP password string ends and what it holds.

A sample of generated hostile passwords goes through ``bird -p`` (the rendered bird.conf, good and with ``export all``)
and through a running BIRD (``birdc eval`` reads each string back), so the reader in policies/bird.py is checked
against BIRD itself, not against our reading of conf/cf-lex.l.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.model import ConfigError
from infra.model.stack import load_network
from policies.bird import export_problems, tokenize
from tests.helpers.bird_conf import INJECTION, variants, with_password
from userdata.render import check_password, render_bird

NETWORK = load_network("prod")
POP = NETWORK.pop("ams")
ALLOWED = [NETWORK.prefixes.ipv4, NETWORK.prefixes.ipv6]
ROOT_OK = os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("birdc") is not None
pytestmark = pytest.mark.skipif(shutil.which("bird") is None, reason="bird2 not installed; `make deps` installs it")

SPECIAL = "}{#;/*\\'=[]()!~ \t"
EDGE = ["}", "#", "/*", "*/", "\\", "\\\\", "a\\", "}}};;;{{{", "# x", "/* x */", "'", "x'y", " lead", "trail ", "\t",
        "é", "字符", "p}#{;/*x" * 10]


def _sample(alphabet: str, n: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    return ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 80))) for _ in range(n)]


def _model_ok(pw: str) -> bool:
    try:
        check_password(pw)
    except ConfigError:
        return False
    return True


ASCII = "".join(chr(c) for c in range(32, 127) if chr(c) != '"')
CARRIABLE = EDGE + _sample(SPECIAL * 4 + ASCII + "éü字", 40, 14)  # what BIRD's strings can hold
PRINTABLE = "".join(chr(c) for c in range(33, 127) if chr(c) not in '"\\')
MODEL = [p for p in EDGE + _sample("}{#;/*'=[]()!~" * 4 + PRINTABLE, 40, 15) if _model_ok(p)]  # what the model lets through


def _bird_p(tmp_path: Path, conf: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "bird.conf"
    path.write_text(conf, encoding="utf-8")
    return subprocess.run(["bird", "-p", "-c", str(path)], capture_output=True, text=True, timeout=30, check=False)


def test_sample_is_hostile() -> None:
    assert len(MODEL) >= 30 and len(CARRIABLE) >= 50
    assert all(any(c in p for p in MODEL) for c in "}{#;/*'")
    assert all(any(c in p for p in CARRIABLE) for c in "}{#;/*'\\ \t")


def test_bird_and_the_policy_agree_on_rendered_configs(tmp_path: Path) -> None:
    for pw in MODEL:
        conf = render_bird(NETWORK, POP, pw)
        r = _bird_p(tmp_path, conf)
        assert r.returncode == 0, (pw, r.stderr)
        assert export_problems(conf, ALLOWED) == []
        leaking = variants(conf)["export all"]
        r = _bird_p(tmp_path, leaking)
        assert r.returncode == 0, (pw, r.stderr)  # BIRD would run it ...
        assert export_problems(leaking, ALLOWED), pw  # ... and the policy refuses it


def test_a_quote_injection_that_bird_accepts_is_flagged(tmp_path: Path) -> None:
    conf = with_password(INJECTION)
    r = _bird_p(tmp_path, conf)
    assert r.returncode == 0, r.stderr
    assert "channel ipv4 multicast: 'export all'" in "\n".join(export_problems(conf, ALLOWED))


@pytest.fixture
def netns() -> Iterator[str]:
    if not ROOT_OK:
        pytest.skip("needs root, iproute2 and birdc to run BIRD in a network namespace")
    name = f"acu-birdpw-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_bird_reads_back_what_the_tokenizer_reads(netns: str, tmp_path: Path) -> None:
    """Every sample password as ``define Pn = "..."`` (and each rendered ``password "..."`` literal as ``Rn``):
    BIRD's ``eval`` of each constant equals the password, and so does the tokenizer's string."""
    lines = ["router id 192.0.2.1;", "protocol device { }"]
    lines += [f'define P{i} = "{pw}";' for i, pw in enumerate(CARRIABLE)]
    for i, pw in enumerate(MODEL):
        rendered = render_bird(NETWORK, POP, pw)
        literal = rendered.split("\n  password ", 1)[1].split(";\n", 1)[0]  # exactly what the renderer wrote
        lines.append(f"define R{i} = {literal};")
    conf = "\n".join(lines) + "\n"
    assert [t.text for t in tokenize(conf) if t.kind == "string"] == CARRIABLE + MODEL
    path = tmp_path / "bird.conf"
    path.write_text(conf, encoding="utf-8")
    sock = tmp_path / "bird.ctl"
    proc = subprocess.Popen(["ip", "netns", "exec", netns, "bird", "-f", "-c", str(path), "-s", str(sock)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def evaluate(name: str) -> str:
            r = subprocess.run(["ip", "netns", "exec", netns, "birdc", "-s", str(sock), "eval", name],
                               capture_output=True, text=True, timeout=10, check=False)
            banner, _, value = r.stdout.partition("\n")
            assert banner.startswith("BIRD "), r.stdout + r.stderr
            return value.removesuffix("\n")

        deadline = time.monotonic() + 10
        while not (sock.exists() and subprocess.run(["ip", "netns", "exec", netns, "birdc", "-s", str(sock), "show", "status"],
                                                    capture_output=True, timeout=10, check=False).returncode == 0):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.05)

        for i, pw in enumerate(CARRIABLE):
            assert evaluate(f"P{i}") == pw
        for i, pw in enumerate(MODEL):
            assert evaluate(f"R{i}") == pw, "the renderer's quoting changed the password"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
