"""Stack files are read as the Pulumi CLI reads them (Go's gopkg.in/yaml.v3), or refused with one line naming the
file, line and key: checked against answers recorded from yaml.v3 itself and against generated hostile inputs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.cli.main import main
from infra.model import ConfigError, stack_yaml
from infra.model.stack import NETWORK_KEY, read_stack_config
from infra.model.stack_yaml import StackYAMLError, go_resolve, parse

ROOT = Path(__file__).resolve().parents[2]
CASES = json.loads((ROOT / "tests" / "data" / "yamlv3_cases.json").read_text(encoding="utf-8"))["cases"]
# where this reader refuses what yaml.v3 reads, and why that is the safer side
REFUSED_ON_PURPOSE = (
    "found unexpected ':'",  # libyaml refuses a plain scalar ending in ':' inside [ ] or { }; yaml.v3 reads it: quote it
    "expected a single document",  # yaml.v3 reads the first document and ignores the rest
    "accepts only string keys",  # yaml.v3 turns a non-string key merged in by << into its text
    "is a timestamp",  # 2001-13-14T... is no date to Go, a timestamp to this reader's looser test
)


def _same(a: Any, b: Any) -> bool:
    """Equal, and of the same type (True is not 1, 1.0 is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _unpassable(value: Any) -> bool:
    """What yaml.v3 read but Pulumi refuses or changes on the way to the program (marked by the oracle)."""
    if isinstance(value, dict):
        return bool(set(value) & {"$time", "$float", "$nonstring_keys"}) or any(map(_unpassable, value.values()))
    if isinstance(value, list):
        return any(map(_unpassable, value))
    return False


def _refusal(text: str) -> StackYAMLError | None:
    try:
        parse(text, "Pulumi.x.yaml")
    except StackYAMLError as exc:
        line = str(exc)
        assert "\n" not in line and line.startswith("Pulumi.x.yaml: ") and len(line) < 300, line
        return exc
    return None


@pytest.mark.parametrize("start", range(0, len(CASES), 250))
def test_reads_as_go_yaml_v3_or_refuses(start: int) -> None:
    for case in CASES[start:start + 250]:
        text = case["yaml"]
        refused = _refusal(text)
        if "err" in case or _unpassable(case["ok"]):
            assert refused is not None, f"yaml.v3/Pulumi refuse or change this; we read it:\n{text}"
        elif refused is not None:
            assert any(reason in refused.message for reason in REFUSED_ON_PURPOSE), (str(refused), text)
        else:
            assert _same(parse(text), case["ok"]), text


def test_the_corpus_covers_the_project_files_and_both_outcomes() -> None:
    texts = {c["yaml"] for c in CASES}
    for f in sorted(ROOT.glob("Pulumi*.yaml")):
        assert f.read_text(encoding="utf-8") in texts, f"{f.name} changed: regenerate tests/data/yamlv3_cases.json"
    same = [c for c in CASES if "ok" in c and not _unpassable(c["ok"]) and _refusal(c["yaml"]) is None]
    assert len(same) > 400 and sum("err" in c for c in CASES) > 400


@pytest.mark.parametrize("text, value", [
    ("NO", "NO"), ("yes", "yes"), ("on", "on"), ("Off", "Off"), ("y", "y"), ("True", True), ("FALSE", False),
    ("tRue", "tRue"), ("1:30", "1:30"), ("190:20:30", "190:20:30"), ("0777", 511), ("0o17", 15), ("0x1F", 31),
    ("0b101", 5), ("1_000", 1000), ("08", 8), ("1.0", 1), ("1.5", 1.5), ("-0", 0), ("~", None), ("", None),
    ("Null", None), ("nUll", "nUll"), ("1e400", "1e400"), ("99999999999999999999", 100000000000000000000),
    ("18446744073709551616", 18446744073709552000), ("1e21", 1e21), ("0o-10", -8), ("+.5", 0.5), ("inf", "inf"),
    ("2001-13-14", "2001-13-14"), ("0x", "0x"), ("0xG", "0xG"),
])
def test_plain_scalars(text: str, value: Any) -> None:
    assert _same(parse(f"v: {text}" if text else "v:")["v"], value)


@pytest.mark.parametrize("text, line, key, says", [
    ("pops:\n  - ams\nasn: 1\npops:\n  - ewr\n", 4, "", "key 'pops' is already defined at line 1"),
    ("a:\n  b: 1\n  'b': 2\n", 3, "a", "key 'b' is already defined at line 2"),
    ("a: {x: 2001-12-14}\n", 1, "a.x", "'2001-12-14' is a timestamp"),
    ("a: [1, .nan]\n", 1, "a[1]", "not a number Pulumi can pass"),
    ("a:\n  1: x\n", 2, "a", "key 1 is a int"),
    ("a:\n  yes: 1\n  true: 2\n", 3, "a", "key true is a bool"),
    ("a: !!binary aGk=\n", 1, None, "explicit tag !!binary"),
    ("a: &x [1, *x]\n", 1, "a[1]", "alias inside the value of its own anchor"),
    ("a: {<<: 1}\n", 1, "a", "a << merge needs a mapping"),
    ("l: &l [{a: 1}]\nm: {<<: *l}\n", 2, "m", "a << merge of an alias needs a mapping"),  # decode.go merge()
])
def test_refusals_name_line_and_key(text: str, line: int, key: str | None, says: str) -> None:
    refused = _refusal(text)
    assert refused is not None and refused.line == line and refused.key == (key or None) and says in refused.message


def test_merge_keys_as_yaml_v3() -> None:
    doc = parse("b: &b {x: 1, y: 2}\nd: &d {x: 9, z: 3}\nc: {w: 0, <<: [*b, *d], x: 5}\n")
    assert doc["c"] == {"w": 0, "x": 5, "y": 2, "z": 3}  # own keys first, then merged maps in order


def _bomb(levels: int, width: int) -> str:
    lines = ["a0: &a0 [" + ", ".join(["x"] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text, says", [
    (_bomb(10, 10), "more than 100000 values once aliases are expanded"),
    (_bomb(30, 2), "more than 100000 values once aliases are expanded"),
    ("a: " + "[" * 65 + "]" * 65, "nested too deeply"),
    ("a: " + "{a: " * 200 + "1" + "}" * 200, "nested too deeply"),
    ("a: " + "[" * 5000 + "]" * 5000, "exceeded maximum nesting depth"),
    ("a:\n" + "".join("  " * i + "- \n" for i in range(1, 300)), "nested too deeply"),
])
def test_bombs_and_depth_are_refused_quickly(text: str, says: str) -> None:
    start = time.monotonic()
    refused = _refusal(text)
    assert refused is not None and says in refused.message
    assert time.monotonic() - start < 5


def test_a_big_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.big.yaml"
    path.write_text("a: [" + "1, " * stack_yaml.MAX_BYTES + "]\n", encoding="utf-8")
    with pytest.raises(StackYAMLError, match="larger than 128 KiB"):
        stack_yaml.load(path)


# --- generated input ------------------------------------------------------------------------------------------------

_plain = st.text(st.sampled_from("0123456789+-._:eExob yYnNtTfFoO~<abc"), min_size=1, max_size=12)
_scalar = st.one_of(_plain, _plain.map(json.dumps), st.sampled_from(["yes", "NO", "1:30", "0777", "&a x", "*a",
                                                                       "!!str x", "2001-12-14", ".inf", "<<"]))
_node = st.recursive(_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
    st.lists(st.tuples(_scalar, inner), max_size=4).map(lambda kv: "{" + ", ".join(f"{k}: {v}" for k, v in kv) + "}")),
    max_leaves=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_scalar, _node), min_size=1, max_size=6))
def test_generated_documents_read_or_refuse_in_one_line(pairs: list[tuple[str, str]]) -> None:
    text = "".join(f"{k}: {v}\n" for k, v in pairs)
    start = time.monotonic()
    refused = _refusal(text)
    assert time.monotonic() - start < 2
    if refused is None:
        json.dumps(parse(text), allow_nan=False)  # plain data a program could receive: no dates, NaN, odd keys


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_reads_or_refuses_in_one_line(text: str) -> None:
    _refusal(text)


@settings(max_examples=500, deadline=None)
@given(_plain)
def test_scalars_that_pyyaml_and_go_agree_on(text: str) -> None:
    """Where PyYAML's YAML 1.1 reading is a plain string or a small decimal, yaml.v3 reads the same."""
    try:
        old = yaml.safe_load(f"v: {text}")["v"]
        new = parse(f"v: {text}")["v"]
    except (yaml.YAMLError, StackYAMLError, TypeError, ValueError):
        return
    if isinstance(old, str) and go_resolve(old)[0] == "str":
        assert new == old
    if type(old) is int and text.strip().isdigit() and not text.strip().startswith("0"):
        assert _same(new, old)


# --- where the stack files are read ---------------------------------------------------------------------------------


def test_the_project_stacks_read_as_before() -> None:
    """The project's own stack files mean the same under yaml.v3's rules as under PyYAML's (golden files unchanged)."""
    for f in sorted(ROOT.glob("Pulumi.*.yaml")):
        stack = f.name.split(".")[1]
        assert read_stack_config(stack, ROOT) == yaml.safe_load(f.read_text(encoding="utf-8"))["config"]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "Pulumi.yaml").write_text("name: anycast\nruntime: python\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


def test_cli_names_a_duplicate_key(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "Pulumi.prod.yaml").read_text(encoding="utf-8")
    text = text.replace("    pops:\n", "    pops: []\n    pops:\n", 1)
    (project / "Pulumi.dup.yaml").write_text(text, encoding="utf-8")
    err = _error(capsys, ["render", "--stack", "dup", "--out", str(project / "out")])
    line = text.splitlines().index("    pops:") + 1
    assert err == (f"error: Pulumi.dup.yaml: line {line}: config.anycast:network: key 'pops' is already defined at line "
                   f"{line - 1}; Pulumi refuses a file with duplicate keys (PyYAML used to keep the last)")
    assert not (project / "out").exists()


def test_cli_without_pulumi_yaml_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    err = _error(capsys, ["render", "--stack", "dev", "--out", str(tmp_path / "out")])
    assert err == (f"error: no Pulumi.yaml in {tmp_path} or above it: run this in the project's folder (the one with "
                   "Pulumi.yaml and the Pulumi.<stack>.yaml files)")


def test_the_project_is_found_from_a_subfolder(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "Pulumi.s.yaml").write_text("config:\n  anycast:x: 1\n", encoding="utf-8")
    (project / "docs").mkdir()
    monkeypatch.chdir(project / "docs")
    assert read_stack_config("s") == {"anycast:x": 1}


def test_config_keys_without_a_project_are_this_projects(project: Path) -> None:
    (project / "Pulumi.s.yaml").write_text("config:\n  network: {asn: 1}\n  aws:region: x\n", encoding="utf-8")
    assert read_stack_config("s") == {NETWORK_KEY: {"asn": 1}, "aws:region": "x"}
    (project / "Pulumi.s.yaml").write_text("config:\n  network: 1\n  anycast:network: 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="config has both 'network' and 'anycast:network', the same key to Pulumi"):
        read_stack_config("s")
