"""Hostile files and answers (issue 20): FIFOs and devices, huge and deep documents, NaN, other charsets, wrong types
at every level of each schema, control characters, hostile countries and URLs. Each must be refused with one line
or handled correctly: no traceback, no hang, nothing injected into the terminal, the map or the stack file."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.catchment.advice import advise
from infra.catchment.analysis import ProbeInfo, analyse, probes_from_atlas
from infra.catchment.atlas import AtlasClient, _detail
from infra.catchment.output import write_outputs
from infra.catchment.results import Observation, ResultsError, parse_results
from infra.catchment.worldmap import render_svg
from infra.model import ConfigError, Network
from infra.model.stack import load_network
from infra.monitoring.targets import file_sd, load_outputs
from infra.ripe.errors import RipeRefused, error_messages
from infra.ripe.rpsl import from_json
from infra.ripe.transport import Reply, RetryPolicy
from infra.untrusted.bodies import BodyTooLarge, json_body, read_bounded
from infra.untrusted.errors import UntrustedInput
from infra.untrusted.files import read_json
from infra.untrusted.jsontext import dumps, parse_json
from infra.untrusted.text import printable
from infra.untrusted.urls import probe_url
from tests.atlas_data import FIXTURES, dns_result, probe, world_probes, world_results
from tests.atlas_fake_server import AtlasState, FakeAtlas, Fault
from tests.conftest import ROOT

OUTPUTS = ROOT / "tests" / "fixtures" / "stack-outputs-prod.json"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
# ESC, CSI, OSC and the C1 forms: none may reach a terminal, a message or the map.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
HOSTILE_TEXT = ["\x1b[2J\x1b[31mred", "\x1b]8;;http://evil/\x07link\x1b]8;;\x07", "\x9b31m", "a\rb", "\u202eevil",
                "<script>x</script>", "]]>&amp;", "\ud800", "\x00"]


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess with a deadline: a hang (a FIFO without writer, /dev/zero) fails the test."""
    return subprocess.run([sys.executable, "-m", "infra.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=ENV, check=False)


def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in this process (for inputs that cannot hang), shaped like :func:`cli`'s result."""
    from infra.cli.main import main
    code = main(list(args))
    out = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out.out, out.err)


def one_line_refusal(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: ")
    assert proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr


# --- files -----------------------------------------------------------------------------------------------------

@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "results.fifo"
    os.mkfifo(path)
    yield path


def test_fifo_device_directory_are_refused_without_waiting(fifo: Path, tmp_path: Path) -> None:
    for path, kind in ((fifo, r"a FIFO \(named pipe\)"), (Path("/dev/zero"), "a character device"), (tmp_path, "a directory")):
        with pytest.raises(UntrustedInput, match=f"is {kind}; give a regular file"):
            read_json(path, "--results")
    line = one_line_refusal(cli("catchment", "--stack", "prod", "--results", str(fifo), timeout=20))
    assert "is a FIFO (named pipe)" in line
    line = one_line_refusal(cli("catchment", "--stack", "prod", "--results", "/dev/zero", timeout=20))
    assert "is a character device" in line
    line = one_line_refusal(cli("monitoring", "targets", "--outputs", str(fifo), "--out", str(tmp_path / "o"), timeout=20))
    assert "is a FIFO" in line and not (tmp_path / "o").exists()


def test_huge_files_are_refused_by_size_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    with big.open("wb") as f:  # sparse: 33 MiB that take no disk
        f.truncate(33 * 2**20)
    with pytest.raises(UntrustedInput, match=r"is 34603008 bytes, more than the 32 MiB allowed"):
        read_json(big, "--results")
    with pytest.raises(ConfigError, match=r"more than the 4 MiB allowed"):
        load_outputs(big)
    small = tmp_path / "small.json"
    small.write_text("[" + ",".join(["1"] * 2000) + "]")
    with pytest.raises(UntrustedInput, match="more than the 1000 bytes allowed"):
        read_json(small, "--results", max_bytes=1000)


@pytest.mark.parametrize(("data", "message"), [
    (b"\xff\xfe[\x00]\x00", "is UTF-16LE (byte order mark); save it as UTF-8"),
    (b"\xfe\xff\x00[\x00]", "is UTF-16BE"),
    (b"\x00\x00\xfe\xff", "is UTF-32BE"),
    (b'["caf\xe9"]', "not UTF-8 (byte 0xe9 at offset 5)"),
    (b"[" * 100_000 + b"]" * 100_000, "nested deeper than 64 levels"),
    (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "nested deeper than 64 levels"),
    (b"[" * 65 + b"]" * 65, "nested deeper than 64 levels"),
    (b"[NaN]", "NaN is not a JSON number"), (b"[Infinity]", "Infinity is not a JSON number"),
    (b"[-Infinity]", "-Infinity is not a JSON number"), (b"[1e400]", "out of the range of a double"),
    (b'{"a": 1, "a": 2}', "duplicate key 'a'"), (b"[" + b"9" * 5000 + b"]", "is not strict JSON"),
    (b"[1,]", "is not JSON (line 1 column 4"),
])
def test_bad_json_files_one_line(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(data)
    with pytest.raises(UntrustedInput) as exc:
        read_json(path, "--results")
    assert message in str(exc.value) and "\n" not in str(exc.value) and str(exc.value).startswith("--results: ")


def test_utf8_bom_is_accepted_and_depth_64_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(b"\xef\xbb\xbf" + b"[" * 64 + b"]" * 64)
    assert read_json(path, "--results") is not None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_are_refused_in_one_line(data: bytes) -> None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    try:
        parse_json(text, "x")
    except UntrustedInput as exc:
        assert "\n" not in str(exc) and not CONTROL.search(str(exc))


@settings(max_examples=100, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(max_size=5), lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
                    max_leaves=20))
def test_strict_json_round_trip(doc: Any) -> None:
    assert parse_json(dumps(doc), "x") == doc


# --- HTTP bodies -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "ctype", "expect"), [
    (b'{"a": "\xe9"}', "application/json; charset=ISO-8859-1", {"a": "é"}),
    ('{"a": "é"}'.encode(), "application/json", {"a": "é"}),
    ('{"a": "é"}'.encode("utf-16"), "application/json; charset=utf-16", {"a": "é"}),
])
def test_bodies_follow_the_declared_charset(raw: bytes, ctype: str, expect: Any) -> None:
    assert json_body(raw, ctype, "the answer") == expect


@pytest.mark.parametrize(("raw", "ctype", "message"), [
    (b"{}", "application/json; charset=x-klingon", "unknown charset 'x-klingon'"),
    (b'{"a": "\xe9"}', "application/json", "not valid utf-8 (byte 0xe9"),
    (b"[" * 100_000, "application/json", "nested deeper"),
    (b'{"rt": NaN}', "application/json", "NaN is not a JSON number"),
    (b" " * (4 * 2**20 + 1), "application/json", "larger than 4 MiB"),
])
def test_bad_bodies_one_line(raw: bytes, ctype: str, message: str) -> None:
    with pytest.raises(UntrustedInput, match=re.escape(message)):
        json_body(raw, ctype, "the answer")


# --- schemas: wrong types at every level --------------------------------------------------------------------------

def _paths(doc: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:3]):
            yield from _paths(v, (*path, i))


def _replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    out = json.loads(json.dumps(doc))
    if not path:
        return value
    node = out
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return out


def _json_path(path: tuple[Any, ...]) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def _wrong(value: Any) -> list[Any]:
    """Values of other JSON types than ``value``'s (a number stays a number only as a string)."""
    kinds: list[Any] = [{"x": 1}, ["x"], "x", 1.5, -7, True, None]
    return [w for w in kinds if type(w) is not type(value) and not (isinstance(value, float) and type(w) is int)]


ATLAS_USED = {"prb_id", "type", "af", "dst_addr", "result", "rt", "abuf", "error", "resultset"}


def test_wrong_types_in_atlas_results_name_the_path() -> None:
    doc = [json.loads((FIXTURES / "dns_tcp_resultset_with_timeout_msm2439409_fw4700.json").read_text()),
           dns_result(7, "fra", rt=3.25)]
    checked = 0
    for path in _paths(doc):
        if len(path) < 2:
            continue
        original = doc
        for p in path:
            original = original[p]
        for wrong in _wrong(original):
            try:
                parse_results(_replaced(doc, path, wrong), "r.json")
            except (UntrustedInput, ResultsError) as exc:
                msg = str(exc)
                assert "\n" not in msg
                if isinstance(exc, UntrustedInput):
                    # the first bad field is the one we replaced, or a container of it
                    assert msg.startswith("r.json: $") and _json_path(path).startswith(msg.split(": ")[1].split(" ")[0])
                    checked += 1
            else:
                # accepted: then the field is one we do not read, or the type is allowed (None, int for float)
                assert path[-1] not in ATLAS_USED or wrong is None or isinstance(path[-1], int) or (
                    path[-1] in ("rt",) and isinstance(wrong, int | float) and not isinstance(wrong, bool) and wrong >= 0)
    assert checked > 30


def test_wrong_types_in_probes_name_the_path() -> None:
    doc = world_probes()
    checked = 0
    for path in _paths(doc):
        if len(path) < 3:
            continue
        original = doc
        for p in path:
            original = original[p]
        for wrong in _wrong(original):
            try:
                probes_from_atlas(_replaced(doc, path, wrong), "p.json")
            except (UntrustedInput, ValueError) as exc:
                assert "\n" not in str(exc)
                if isinstance(exc, UntrustedInput):
                    assert str(exc).startswith("p.json: $.results[")
                    checked += 1
    assert checked > 10


def test_wrong_types_in_stack_outputs_name_the_path(tmp_path: Path) -> None:
    doc = json.loads(OUTPUTS.read_text())
    doc = {"network": doc["network"], "pops": {k: doc["pops"][k] for k in ("ams", "maa", "sao")},  # every PoP shape
           "probes": {k: v[:3] for k, v in doc["probes"].items()}}
    used = {"network": ("asn", "zone", "anycastPops", "unicastPops"), "pops": None, "probes": None}
    checked = 0
    path_file = tmp_path / "outputs.json"
    for path in _paths(doc):
        if len(path) < 2 or path[0] not in used or (used[path[0]] and path[1] not in used[path[0]]):  # type: ignore[operator]
            continue
        if path[0] == "pops" and len(path) > 2 and path[2] in ("instanceId", "plan", "geodns"):
            continue
        original = doc
        for p in path:
            original = original[p]
        if original is None:
            continue  # an optional field left out: other types may be what it holds elsewhere
        for wrong in _wrong(original):
            if wrong is None and path[-1] in ("ipv4", "ipv6", "pop", "provider", "region", "city", "country",
                                              "continent", "latitude", "longitude", "queryName", "queryType"):
                continue  # optional fields
            path_file.write_text(json.dumps(_replaced(doc, path, wrong)))
            with pytest.raises(ConfigError) as exc:
                load_outputs(path_file)
            (line,) = exc.value.errors
            reported = line.split(f"{path_file}: ", 1)[1].split(": ", 1)[0]
            expected = _json_path(path)
            # the replaced field, a container of it, or (a probe's family) the sibling that depends on it
            assert expected.startswith(reported) or reported.rsplit(".", 1)[0] == expected.rsplit(".", 1)[0], line
            assert "\n" not in line
            checked += 1
    assert checked > 100


@pytest.mark.parametrize("address", ["x@evil", "192.0.2.1@evil.example", "evil.example", "192.0.2.1:8080",
                                     "fe80::1%eth0@evil", "[2001:db8::1]", "192.0.2.1/healthz", "http://192.0.2.1",
                                     " 192.0.2.1", "2001:db8::1", "0x7f.1"])
def test_hostile_probe_addresses_are_refused(tmp_path: Path, address: str, capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads(OUTPUTS.read_text())
    doc["probes"]["http"][0]["address"] = address  # an IPv4 probe: an IPv6 address is the wrong family
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(doc))
    proc = (cli if address == "x@evil" else lambda *a: in_process(capsys, *a))(
        "monitoring", "targets", "--outputs", str(path), "--out", str(tmp_path / "o"))
    line = one_line_refusal(proc)
    assert "$.probes.http[0].address" in line and not (tmp_path / "o").exists()


@pytest.mark.parametrize(("field", "value"), [("port", "80@evil"), ("port", 0), ("port", 70000), ("port", True),
                                              ("path", "/x?target=evil"), ("path", "@evil/"), ("path", "//evil/x"),
                                              ("path", "/a#b"), ("serverName", "evil\nx"), ("expectXPop", ["a|.*"])])
def test_hostile_probe_fields_are_refused(tmp_path: Path, field: str, value: Any) -> None:
    doc = json.loads(OUTPUTS.read_text())
    doc["probes"]["https"][0][field] = value
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=re.escape(f"$.probes.https[0].{field}")):
        load_outputs(path)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40), st.integers(min_value=-5, max_value=70000), st.text(max_size=20))
def test_probe_urls_point_only_at_the_address(address: str, port: int, path: str) -> None:
    try:
        url = probe_url("http", address, port, path)
    except ValueError as exc:
        assert "\n" not in str(exc) and not CONTROL.search(str(exc))
        return
    from ipaddress import ip_address
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    assert parts.hostname == str(ip_address(address)) and parts.username is None and parts.port == port


def test_generated_targets_are_ip_literals() -> None:
    sd = file_sd(load_outputs(OUTPUTS))
    for group in sd["http.json"] + sd["https.json"]:
        assert re.fullmatch(r"https?://(\d+\.\d+\.\d+\.\d+|\[[0-9a-f:]+\]):\d+/healthz", group["targets"][0])


# --- RIPE DB answers ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "message"), [
    ({"objects": {"object": [{"attributes": {"attribute": [{"name": 5, "value": "x"}]}}]}},
     "$.objects.object[0].attributes.attribute[0].name"),
    ({"objects": {"object": [{"attributes": {"attribute": [{"name": "route", "value": ["x"]}]}}]}},
     "$.objects.object[0].attributes.attribute[0].value"),
    ({"objects": {"object": [{"attributes": {"attribute": []}}]}}, "$.objects.object[0].attributes.attribute"),
    ({"objects": {"object": {"x": 1}}}, "$.objects.object"),
    ({"objects": []}, "$.objects"),
    ({"objects": {"object": [{"attributes": {"attribute": [{"name": "route\x1b[2J", "value": "x"}]}}]}},
     "$.objects.object[0].attributes.attribute[0].name"),
])
def test_ripe_objects_of_the_wrong_shape(body: Any, message: str) -> None:
    from infra.ripe.errors import RipeProtocolError
    with pytest.raises(RipeProtocolError) as exc:
        from_json(body)
    assert message in str(exc.value) and "\n" not in str(exc.value) and "\x1b" not in str(exc.value)


def test_ripe_values_with_escapes_are_made_printable() -> None:
    body = {"objects": {"object": [{"attributes": {"attribute": [
        {"name": "route", "value": "192.0.2.0/24"}, {"name": "descr", "value": "\x1b]52;c;ZXZpbA==\x07evil\r\n"}]}}]}}
    (obj,) = from_json(body)
    assert obj.first("descr") == "\\x1b]52;c;ZXZpbA==\\x07evil\\r\\n"  # shown, not obeyed
    assert not CONTROL.search(obj.to_text().replace("\n", ""))


@pytest.mark.parametrize("text", HOSTILE_TEXT)
def test_server_error_text_reaches_the_user_printable(text: str) -> None:
    body = {"errormessages": {"errormessage": [{"severity": "Error", "text": f"bad %s {text}",
                                                "args": [{"value": text}]}]}}
    refused = RipeRefused(400, "create route 192.0.2.0/24AS64500", [m.text for m in error_messages(body)])
    shown = str(refused)
    assert not CONTROL.search(shown.replace("\n", "")) and "\ud800" not in shown and "\u202e" not in shown
    shown.encode("utf-8")  # printable on a UTF-8 terminal: no lone surrogate
    reply = Reply(400, {"error": {"detail": text, "errors": [{"detail": text}]}}, text, False)
    assert not CONTROL.search(_detail(reply))
    assert not CONTROL.search(_detail(Reply(502, None, text * 3, False)))
    assert error_messages({"errormessages": ["x"]}) == [] and error_messages({"errormessages": {"errormessage": 5}}) == []


def test_atlas_error_with_escape_sequences_prints_none(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from infra.cli import catchment as cmd
    from infra.cli.main import main
    monkeypatch.setattr(cmd, "ATLAS_POLICY", RetryPolicy(attempts=1, budget=5))
    state = AtlasState(results_for=lambda d, s: [], probes={})
    monkeypatch.setenv("RIPE_ATLAS_KEY", state.key)
    evil = {"error": {"status": 400, "detail": "\x1b[2J\x1b]0;owned\x07credit \x9b31m", "errors": []}}
    state.faults.append(Fault("GET", "/measurements/", 400, body=evil))
    with FakeAtlas(state) as server:
        assert main(["catchment", "--stack", "prod", "--atlas-url", server.url, "--measurement", "5000001"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and not CONTROL.search(err.rstrip("\n")) and "owned" in err


def test_atlas_probe_pages_stay_on_the_atlas_host(monkeypatch: pytest.MonkeyPatch) -> None:
    state = AtlasState(results_for=lambda d, s: [], probes={1: probe(1, "DE", 50.1, 8.7)})
    page = {"count": 2, "next": "http://evil.example/steal?x=1", "results": [probe(1, "DE", 50.1, 8.7)]}
    state.faults.append(Fault("GET", "/probes/", 200, body=page))
    from infra.ripe.errors import RipeProtocolError
    with FakeAtlas(state) as server:
        client = AtlasClient(None, server.url, RetryPolicy(attempts=1, budget=5))
        with pytest.raises(RipeProtocolError, match="a 'next' link that is not a probes page"):
            client.probes(["1"])
        assert all(path.startswith("/api/v2/probes/") for _m, path, _b, _a in state.log)


# --- catchment: NaN, the map, the advice -----------------------------------------------------------------------

def test_no_nan_reaches_catchment_json(prod_network: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    obs = [Observation("1", 4, "192.0.2.1", math.nan, "fra", "nsid")]
    report = analyse(prod_network, obs, {"1": ProbeInfo("1", "DE", None, 50.1, 8.7)}, source="t")
    with pytest.raises(ValueError, match=r"refusing to write a non-finite number at \$\.\w+\[0\]\.\w*rtt_ms"):
        write_outputs(report, tmp_path / "out", "t")
    assert not (tmp_path / "out" / "catchment.json").exists()
    for bad in ("nan", "inf", "-1"):
        assert one_line_refusal(in_process(capsys, "catchment", "--stack", "prod", "--results", str(OUTPUTS),
                                           "--tolerance-km", bad)).startswith("error: --tolerance-km")


def test_nan_and_huge_numbers_in_results_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for text in ('[{"prb_id": 1, "result": {"rt": NaN}}]', '[{"prb_id": 1, "result": {"rt": 1e999}}]',
                 '[{"prb_id": 1, "result": {"rt": -1}}]', '[{"prb_id": 1, "result": {"rt": "3"}}]'):
        path = tmp_path / "r.json"
        path.write_text(text)
        line = one_line_refusal(in_process(capsys, "catchment", "--stack", "prod", "--results", str(path)))
        assert "--results: " in line and ("NaN" in line or "double" in line or "$[0].result.rt" in line)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(max_size=30) | st.sampled_from(HOSTILE_TEXT), min_size=1, max_size=4))
def test_the_map_is_well_formed_xml_whatever_the_texts(prod_network: Network, texts: list[str]) -> None:
    obs = [Observation(str(i), 4, "192.0.2.1", 5.0, t, "nsid") for i, t in enumerate(texts)]
    obs.append(Observation("99", 4, "192.0.2.1", 5.0, "fra", "nsid"))
    probes = {str(i): ProbeInfo(str(i), "DE", None, 50.0, 8.0, label=t) for i, t in enumerate(texts)}
    probes["99"] = ProbeInfo("99", "DE", None, 50.0, 8.0, label=texts[0])
    report = analyse(prod_network, obs, probes, source="t")
    svg = render_svg(report, f"anycast catchment: {texts[0]}")
    svg.encode("utf-8")
    root = ET.fromstring(svg)  # well-formed XML 1.0: no raw control characters, everything escaped
    assert root.tag.endswith("svg") and not CONTROL.search(svg.replace("\n", ""))
    assert all(el.tag.split("}")[1] in {"svg", "title", "defs", "clipPath", "rect", "polygon", "g", "line", "circle",
                                        "path", "text"} for el in root.iter())


def test_nsid_or_file_name_with_markup_cannot_inject_svg(prod_network: Network, tmp_path: Path) -> None:
    results = tmp_path / "<script>alert(1)<!--.json"
    results.write_text(json.dumps([dns_result(1, "fra")]))
    probes = tmp_path / "p.json"
    probes.write_text(json.dumps({"results": [probe(1, "DE", 50.1, 8.7)]}))
    proc = cli("catchment", "--stack", "prod", "--results", str(results), "--probes", str(probes),
               "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    svg = (tmp_path / "out" / "catchment.svg").read_text()
    assert "<script" not in svg and "&lt;script&gt;" in svg
    ET.fromstring(svg)


@pytest.mark.parametrize("identity", ["ams.other-operator.example", "AMS", "ams ", "ams\x00", "fra.cdn.example.com"])
def test_other_operators_nsids_are_not_our_pops(prod_network: Network, identity: str) -> None:
    obs = [Observation("1", 4, "192.0.2.1", 5.0, identity, "nsid")]
    (row,) = analyse(prod_network, obs, {"1": ProbeInfo("1", "NL", None, 52.4, 4.9)}, source="t").probes
    assert row.pop is None and row.status == "unknown-pop"


HOSTILE_COUNTRIES = ["K\\1", "\\g<0>", "KE]", "KE, evil: 1", ".*", "(", "KE\n      - {code: evil}", "ke", "ZZ",
                     "[A-Z]", "K$", "KE}"]


@pytest.mark.parametrize("country", HOSTILE_COUNTRIES)
def test_hostile_countries_never_reach_the_stack_file(tmp_path: Path, country: str) -> None:
    text = (ROOT / "Pulumi.dev.yaml").read_text().replace(
        "      - {code: sao, region: sao, mode: unicast, geodns: [SA]}",
        "      - {code: sao, region: sao, mode: unicast, geodns: [SA]}\n      - {code: jnb, region: jnb, mode: unicast, geodns: [ZA]}")
    stack = tmp_path / "Pulumi.geo.yaml"
    stack.write_text(text)
    network = load_network("geo", tmp_path)
    obs = [Observation(str(i), 4, "192.0.2.1", 5.0, "ams", "nsid") for i in range(3)]
    located = {str(i): ProbeInfo(str(i), country, None, -1.29 + i / 10, 36.82) for i in range(3)}
    items, diff = advise(network, analyse(network, obs, located, source="t"), stack)
    assert all(i.kind != "geodns" for i in items)
    assert diff is None or country not in diff
    assert stack.read_text() == text


@pytest.mark.parametrize("country", HOSTILE_COUNTRIES)
def test_hostile_countries_in_a_probes_file_are_refused(tmp_path: Path, country: str) -> None:
    doc = world_probes()
    doc["results"][0]["country_code"] = country
    if re.fullmatch(r"[A-Za-z]{2}", country):
        probes_from_atlas(doc)  # two letters: read (and upper-cased); advice checks the ISO list itself
        return
    with pytest.raises(UntrustedInput, match=re.escape("$.results[0].country_code")):
        probes_from_atlas(doc)


def test_offline_results_still_work_end_to_end(tmp_path: Path) -> None:
    results = tmp_path / "r.json"
    results.write_text(json.dumps(world_results()))
    probes = tmp_path / "p.json"
    probes.write_text(json.dumps(world_probes()))
    proc = cli("catchment", "--stack", "prod", "--results", str(results), "--probes", str(probes),
               "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    json.loads((tmp_path / "out" / "catchment.json").read_text(), parse_constant=lambda c: pytest.fail(c))


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_printable_drops_every_control_character(text: str) -> None:
    out = printable(text)
    assert not CONTROL.search(out) and "\n" not in out
    out.encode("utf-8")
    multi = printable(text, one_line=False)
    assert not CONTROL.search(multi.replace("\n", "").replace("\t", ""))


@pytest.mark.parametrize(("body", "why"), [("[" * 100_000 + "]" * 100_000, "nested deeper than 64 levels"),
                                           ('{"status": {"name": NaN}}', "NaN is not a JSON number"),
                                           ('{"a": 1, "a": 2}', "duplicate key 'a'")])
def test_atlas_answers_that_are_not_strict_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                                body: str, why: str) -> None:
    from infra.cli import catchment as cmd
    monkeypatch.setattr(cmd, "ATLAS_POLICY", RetryPolicy(attempts=1, budget=5))
    state = AtlasState(results_for=lambda d, s: [], probes={})
    monkeypatch.setenv("RIPE_ATLAS_KEY", state.key)
    state.faults.append(Fault("GET", "/measurements/", 200, body=body))
    with FakeAtlas(state) as server:
        proc = in_process(capsys, "catchment", "--stack", "prod", "--atlas-url", server.url, "--measurement", "7")
    line = one_line_refusal(proc, code=1)
    assert "read measurement 7: RIPE Atlas answered HTTP 200 without JSON" in line and why in line


def test_preflight_answers_nested_deep_or_with_nan_are_not_json() -> None:
    from infra.preflight.http import _answer
    assert _answer(200, b"[" * 100_000 + b"]" * 100_000).body is None  # was a RecursionError past `except ValueError`
    assert _answer(200, b'{"a": NaN}').body is None
    assert _answer(200, b'{"a": 1}').body == {"a": 1}
    assert "\x1b" not in _answer(500, b"\x1b[2Jproxy error").text


class _Drip:
    """A urllib3-like body that hands out fixed pieces and advances a fake clock per read."""

    def __init__(self, pieces: list[bytes], clock: list[float], step: float) -> None:
        self.pieces, self.clock, self.step = list(pieces), clock, step

    def read1(self, amt: int, decode_content: bool = True) -> bytes:
        self.clock[0] += self.step
        return self.pieces.pop(0)[:amt] if self.pieces else b""


def test_read_bounded_joins_the_pieces() -> None:
    now = [0.0]
    assert read_bounded(_Drip([b"ab", b"cd"], now, 0.1), 10.0, lambda: now[0]) == b"abcd"


def test_read_bounded_stops_a_dripping_server_at_the_deadline() -> None:
    now = [0.0]
    with pytest.raises(TimeoutError):
        read_bounded(_Drip([b"x"] * 1000, now, 1.0), 5.0, lambda: now[0])
    assert now[0] <= 7.0  # it stopped reading right after the deadline, not after the 1,000 pieces


def test_read_bounded_refuses_an_endless_body() -> None:
    now = [0.0]
    with pytest.raises(BodyTooLarge) as err:
        read_bounded(_Drip([b"x" * 1024] * 100, now, 0.0), 10.0, lambda: now[0], limit=4096)
    assert err.value.limit == 4096 and "larger than" in str(err.value)
