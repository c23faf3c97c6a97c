"""Output writing never follows links (infra/safe_write.py): the writer alone, with generated plantings, and every
command that writes (render, monitoring targets, catchment --out, infra.docs), run as a user runs it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from infra import docs
from infra.cli.main import main
from infra.safe_write import OutputRefused, plain_name, write_file, write_tree
from tests.atlas_data import world_probes, world_results
from tests.conftest import ROOT, TEST_PASSWORD

OUTPUTS = ROOT / "tests" / "fixtures" / "stack-outputs-prod.json"
SENTINEL_TEXT = "sentinel: must never change\n"

# What an attacker (or an accident) can leave at a name the writer is about to write.
PLANTS = ("symlink-to-file", "symlink-to-dir", "dangling-symlink", "symlink-to-dev-null", "hard-link", "fifo",
          "directory")


def snapshot(root: Path) -> dict[str, tuple[str, int, float, str]]:
    """Every entry below ``root`` (links not followed): kind, link count, mtime, content or link target."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            s = p.lstat()
            if stat.S_ISLNK(s.st_mode):
                body = "-> " + os.readlink(p)
            elif stat.S_ISREG(s.st_mode):
                body = p.read_text(errors="replace")
            else:
                body = ""
            out[str(p.relative_to(root))] = (stat.filemode(s.st_mode), s.st_nlink if not stat.S_ISDIR(s.st_mode) else 0,
                                             s.st_mtime, body)
    return out


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    """A folder outside every --out with a file and a sub-folder a planted link points at."""
    d = tmp_path / "sentinel"
    (d / "dir").mkdir(parents=True)
    (d / "secret").write_text(SENTINEL_TEXT)
    os.utime(d / "secret", (1_000_000, 1_000_000))
    return d


def plant(at: Path, kind: str, sentinel: Path) -> None:
    if kind == "symlink-to-file":
        at.symlink_to(sentinel / "secret")
    elif kind == "symlink-to-dir":
        at.symlink_to(sentinel / "dir")
    elif kind == "dangling-symlink":
        at.symlink_to(sentinel / "does-not-exist-yet")
    elif kind == "symlink-to-dev-null":
        at.symlink_to("/dev/null")
    elif kind == "hard-link":
        os.link(sentinel / "secret", at)
    elif kind == "fifo":
        os.mkfifo(at)
    else:
        at.mkdir()


FILES = {"a.json": "{}\n", "pop1/bird.conf": "router id 192.0.2.1;\n", "pop1/zone": "z\n", "pop2/x": "x\n",
         "summary.json": "[]\n"}


# ---- the writer alone -------------------------------------------------------------------------------------------

def test_writes_new_and_replaces_old_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert write_tree(out, FILES, {"pop1/bird.conf": 0o600}) == [out / r for r in FILES]
    (out / "a.json").write_text("old")
    inode = (out / "a.json").stat().st_ino
    write_tree(out, {**FILES, "a.json": "new\n"})
    assert (out / "a.json").read_text() == "new\n"
    assert (out / "a.json").stat().st_ino != inode  # a new file renamed into place, not the old one rewritten
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["a.json", "pop1", "pop1/bird.conf", "pop1/zone",
                                                                         "pop2", "pop2/x", "summary.json"]  # no temps
    write_tree(out, {"pop1/bird.conf": "s"}, {"pop1/bird.conf": 0o600})
    assert (out / "pop1" / "bird.conf").stat().st_mode & 0o777 == 0o600


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.sampled_from([*sorted(FILES), "pop1", "pop2"]), kind=st.sampled_from(PLANTS),
       before=st.booleans())
def test_a_planted_entry_is_refused_and_nothing_changes(tmp_path_factory: pytest.TempPathFactory, target: str,
                                                        kind: str, before: bool) -> None:
    assume(not (kind == "directory" and target in ("pop1", "pop2")))  # a real folder where a folder belongs is fine
    base = tmp_path_factory.mktemp("case")
    sentinel = base / "sentinel"
    (sentinel / "dir").mkdir(parents=True)
    (sentinel / "secret").write_text(SENTINEL_TEXT)
    out = base / "out"
    if before:  # a previous complete set is there: it must survive untouched
        write_tree(out, FILES)
    else:
        out.mkdir()
    if target in ("pop1", "pop2") or "/" in target:
        (out / target.split("/")[0]).mkdir(exist_ok=True)
    at = out / target
    if target in ("pop1", "pop2"):
        for child in at.iterdir():
            child.unlink()
        at.rmdir()
    elif at.exists():
        at.unlink()
    plant(at, kind, sentinel)
    outside, inside = snapshot(sentinel), snapshot(out)
    with pytest.raises(OutputRefused) as exc:
        write_tree(out, FILES)
    assert snapshot(sentinel) == outside
    assert snapshot(out) == inside  # nothing half-applied: not one file of the set was written
    assert len(exc.value.problems) == 1 and str(at) in exc.value.problems[0] and "remove it" in exc.value.problems[0]
    assert "\n" not in exc.value.problems[0]


@pytest.mark.parametrize("kind", PLANTS)
def test_out_itself_must_be_a_real_folder(tmp_path: Path, sentinel: Path, kind: str) -> None:
    out = tmp_path / "out"
    plant(out, kind, sentinel)
    if kind == "directory":
        write_tree(out, FILES)
        return
    outside = snapshot(sentinel)
    with pytest.raises(OutputRefused, match="output folder is") as exc:
        write_tree(out, FILES)
    if kind != "dangling-symlink":
        assert snapshot(sentinel) == outside
    else:  # a dangling link is neither followed nor its target created
        assert not (sentinel / "does-not-exist-yet").exists()
    assert str(out) in str(exc.value)


def test_trailing_slash_does_not_resolve_a_symlinked_out(tmp_path: Path, sentinel: Path) -> None:
    (tmp_path / "out").symlink_to(sentinel / "dir")
    for spelling in ("out/", "out/.", "out//"):
        with pytest.raises(OutputRefused, match="is a symlink"):
            write_tree(str(tmp_path / spelling), FILES)
    assert list((sentinel / "dir").iterdir()) == []


def test_out_on_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("keep")
    with pytest.raises(OutputRefused, match="is a regular file; name a folder"):
        write_tree(tmp_path / "file", FILES)
    assert (tmp_path / "file").read_text() == "keep"


@given(name=st.one_of(st.just(""), st.just("."), st.just(".."),
                      st.text(min_size=1).filter(lambda s: "/" in s or any(ord(c) < 0x20 for c in s))))
def test_names_from_data_must_be_plain(name: str) -> None:
    with pytest.raises(OutputRefused):
        plain_name(name)


@pytest.mark.parametrize("rel", ["../escape", "pop/../../escape", "/etc/passwd", "a//b", "./a", "a/", "pop/..", ""])
def test_paths_that_climb_out_are_refused_before_the_disk_is_touched(tmp_path: Path, rel: str) -> None:
    out = tmp_path / "out"
    with pytest.raises(OutputRefused, match="plain"):
        write_tree(out, {"ok": "x", rel: "x"})
    assert not out.exists()


def test_write_file_refuses_a_link_at_the_file(tmp_path: Path, sentinel: Path) -> None:
    (tmp_path / "doc.md").symlink_to(sentinel / "secret")
    with pytest.raises(OutputRefused, match="is a symlink"):
        write_file(tmp_path / "doc.md", "x")
    assert (sentinel / "secret").read_text() == SENTINEL_TEXT


# ---- every command that writes ------------------------------------------------------------------------------------

def _render(out: Path) -> list[str]:
    return ["render", "--stack", "dev", "--out", str(out)]


def _monitoring(out: Path) -> list[str]:
    return ["monitoring", "targets", "--outputs", str(OUTPUTS), "--out", str(out)]


def _catchment(out: Path) -> list[str]:
    results, probes = out.parent / "results.json", out.parent / "probes.json"
    results.write_text(json.dumps(world_results()))
    probes.write_text(json.dumps(world_probes()))
    return ["catchment", "--stack", "prod", "--results", str(results), "--probes", str(probes), "--out", str(out)]


COMMANDS: dict[str, tuple[Callable[[Path], list[str]], str, str]] = {
    # command -> (argv for an --out, a file it writes, a sub-folder it writes into or "")
    "render": (_render, "ams/bird.conf", "ams"),
    "monitoring": (_monitoring, "prometheus.yml", ""),
    "catchment": (_catchment, "catchment.svg", ""),
}


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("ANYCAST_BGP_PASSWORD", TEST_PASSWORD)


CASES = [(command, kind, where) for command in sorted(COMMANDS) for kind in PLANTS
         for where in ("out", "file", "subfolder")
         if (where != "subfolder" or COMMANDS[command][2])  # only render writes into sub-folders
         and not (where != "file" and kind == "directory")]  # a real folder where a folder belongs is fine


@pytest.mark.parametrize(("command", "kind", "where"), CASES)
def test_every_command_refuses_planted_links(tmp_path: Path, sentinel: Path, cli_env: None, capsys: pytest.CaptureFixture[str],
                                             command: str, kind: str, where: str) -> None:
    argv, target, subfolder = COMMANDS[command]
    out = tmp_path / "out"
    args = argv(out)
    assert main(args) == 0  # a first complete set
    capsys.readouterr()
    at = {"out": out, "file": out / target, "subfolder": out / subfolder}[where]
    if at.is_dir() and not at.is_symlink():
        for p in sorted(at.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        at.rmdir()
    else:
        at.unlink()
    plant(at, kind, sentinel)
    outside, inside = snapshot(sentinel), snapshot(out) if where != "out" else {}
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {at}: ") and err.count("\n") == 1 and "Traceback" not in err
    assert snapshot(sentinel) == outside
    if where != "out":
        assert snapshot(out) == inside  # the previous complete set is left as it was


def test_docs_generator_refuses_a_link_at_its_file(tmp_path: Path, sentinel: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "config.md").symlink_to(sentinel / "secret")
    monkeypatch.setattr(docs, "DOC", tmp_path / "docs" / "config.md")
    with pytest.raises(OutputRefused):
        docs.main()
    assert (sentinel / "secret").read_text() == SENTINEL_TEXT


def test_installed_command_prints_one_line_for_a_symlinked_out(tmp_path: Path, sentinel: Path) -> None:
    (tmp_path / "out").symlink_to(sentinel / "dir")
    proc = subprocess.run([sys.executable, "-m", "infra.cli.main", "render", "--stack", "dev", "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT,
                          env={"ANYCAST_BGP_PASSWORD": TEST_PASSWORD, "PATH": "/usr/bin:/bin"}, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == (f"error: {tmp_path / 'out'}: output folder is a symlink; name the real folder, not a link "
                           "to it (links are never followed)\n")
    assert list((sentinel / "dir").iterdir()) == []


@pytest.mark.parametrize("kind", ["symlink-to-file", "hard-link", "fifo", "symlink-to-dev-null"])
def test_lab_build_only_refuses_a_planted_link(tmp_path: Path, sentinel: Path, kind: str) -> None:
    # `anycast lab up --build-only` writes into an existing .lab/<stack>/ (as root when the lab runs).
    from infra.model.stack import load_network
    from lab.boot.up import build
    from lab.plan.topology import build_plan

    plan = build_plan("dev", load_network("dev", ROOT))
    base = tmp_path / "lab"
    build(plan, "lab-password", base)
    target = next(base.glob("upstreams/*/gobgpd.toml"))
    assert target.stat().st_mode & 0o777 == 0o600
    target.unlink()
    plant(target, kind, sentinel)
    outside = snapshot(sentinel)
    with pytest.raises(OutputRefused, match="remove it"):
        build(plan, "lab-password", base)
    assert snapshot(sentinel) == outside


def test_a_given_mode_is_exact_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        write_tree(tmp_path, {"public": "p", "secret": "s", "default": "d"}, {"public": 0o644, "secret": 0o600})
    finally:
        os.umask(old)
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {
        "public": 0o644, "secret": 0o600, "default": 0o600}


def test_a_write_failing_midway_leaves_the_previous_set_and_no_temporary_files(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from infra import safe_write

    out = tmp_path / "out"
    write_tree(out, FILES)
    before = snapshot(out)
    real, calls = safe_write._write_temp, []

    def disk_full_at_the_third(dir_fd: int, name: str, content: str | bytes, mode: int | None) -> tuple[int, str, str]:
        calls.append(name)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(dir_fd, name, content, mode)

    monkeypatch.setattr(safe_write, "_write_temp", disk_full_at_the_third)
    with pytest.raises(OSError, match="No space left") as exc:
        write_tree(out, {rel: "new\n" for rel in FILES})
    assert exc.value.filename == str(out / list(FILES)[2])  # the file, not its temporary name
    def files_only(snap: dict[str, tuple[str, int, float, str]]) -> dict[str, tuple[str, int, float, str]]:
        return {k: v if v[0][0] != "d" else (*v[:2], 0.0, v[3]) for k, v in snap.items()}  # a folder's mtime moved: a temp came and went

    assert files_only(snapshot(out)) == files_only(before)  # old files untouched, no .tmp file left behind


def test_write_file_without_a_mode_follows_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_file(tmp_path / "doc.md", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "doc.md").stat().st_mode & 0o777 == 0o644


def test_every_problem_once_one_line_each(tmp_path: Path, sentinel: Path) -> None:
    out = tmp_path / "out"
    write_tree(out, FILES)
    for p in (out / "pop1").iterdir():
        p.unlink()
    (out / "pop1").rmdir()
    (out / "pop1").symlink_to(sentinel / "dir")  # holds two of the files: reported once
    (out / "pop2" / "x").unlink()
    os.mkfifo(out / "pop2" / "x")
    with pytest.raises(OutputRefused) as exc:
        write_tree(out, FILES)
    assert exc.value.problems == [
        f"{out / 'pop1'}: is a symlink, not a folder; remove it (the writer never follows links)",
        f"{out / 'pop2' / 'x'}: is a FIFO, not a regular file; remove it (the writer never follows links or writes "
        "into special files)"]


@pytest.mark.parametrize("linked", [".lab", ".lab/dev"])
def test_lab_up_refuses_a_symlinked_lab_folder_before_touching_it(tmp_path: Path, sentinel: Path, linked: str) -> None:
    # `lab up` (as root) empties .lab/<stack>/ with rmtree: through a link that would delete the link's target.
    from infra.model.stack import load_network
    from lab.boot.up import up
    from lab.net.netns import LabError

    (sentinel / "dir" / "dev").mkdir()
    (sentinel / "dir" / "dev" / "keep").write_text("keep")
    lab_root = tmp_path / ".lab"
    if linked == ".lab":
        lab_root.symlink_to(sentinel / "dir")
    else:
        lab_root.mkdir()
        (lab_root / "dev").symlink_to(sentinel / "dir" / "dev")
    outside = snapshot(sentinel)
    with pytest.raises(LabError, match="is a symlink; make it a real folder"):
        up("dev", load_network("dev", ROOT), root=lab_root, quiet=True)
    assert snapshot(sentinel) == outside
