"""Writing a set of files under an output folder without following links.

Every command that writes (``anycast render``, ``monitoring targets``, ``catchment --out``, ``python -m infra.docs``)
goes through :func:`write_tree`. A symlink or hard link planted in the output folder, or the folder itself a symlink,
would otherwise make a plain ``open(path, "w")`` write wherever the link points (a file of another user when run as
root, ``~/.ssh/authorized_keys``, ...).

How: the folder is opened with ``O_DIRECTORY|O_NOFOLLOW`` and every later step is relative to that descriptor
(``dir_fd``), so no path is resolved twice. Sub-folders are created and opened the same way. Each file is written to
a fresh temporary name (``O_CREAT|O_EXCL|O_NOFOLLOW``) and renamed onto its name: ``rename`` replaces a directory
entry and never writes through whatever the old entry pointed to.

Refused, with one line per path naming the fix: ``--out`` that is a symlink or not a folder; a sub-folder that is a
symlink or not a folder; a target name that exists as a symlink (dangling or not), a hard link (more than one name),
or anything but a regular file (folder, FIFO, socket, device); a name from data that is not a plain name.

Nothing half-applied: every refusal is found before the first byte is written, and every file is written to its
temporary name before the first rename, so a refused command or a full disk leaves the previous set untouched. Only an
error between two renames (rare: the checks already passed) could leave some files new and some old, each complete.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class OutputRefused(ValueError):
    """An output path the writer will not touch; ``problems`` holds one line per path (each names the fix)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))

    def __str__(self) -> str:
        return "\n".join(self.problems)


def plain_name(name: str) -> str:
    """``name`` if it can be one path component (a PoP code, a zone file name); OutputRefused otherwise.

    The model already validates PoP codes and zone names; this is the writer's own check, so that a name from data
    can never climb out of the output folder or into a sub-folder.
    """
    if not name or name in (".", "..") or "/" in name or "\\" in name or any(ord(c) < 0x20 or c == "\x7f" for c in name):
        raise OutputRefused([f"{name!r}: not a plain file name (no '/', '..' or control characters); "
                             "rename it in the input"])
    return name


def _split(rel: str) -> tuple[str, ...]:
    parts = tuple(PurePosixPath(rel).parts) if rel else ()
    # PurePosixPath drops '.' and collapses '//': compare with the raw split so "a//b" or "./a" are refused too.
    if not parts or parts != tuple(rel.split("/")):
        raise OutputRefused([f"{rel!r}: not a relative path of plain names; rename it in the input"])
    for part in parts:
        plain_name(part)
    return parts


def _lstat(name: str, dir_fd: int | None) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None


def _kind(st: os.stat_result) -> str:
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a regular file" if stat.S_ISREG(mode) else "a special file"


def _open_out(out: Path) -> int:
    """A descriptor of the output folder, created if missing; refuses a symlink or a non-folder at ``out``."""
    path = os.path.normpath(os.fspath(out))  # "link/" would make O_NOFOLLOW resolve the link
    st = _lstat(path, None)
    if st is None:
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)  # the ancestors are the user's own choice, links included
        with contextlib.suppress(FileExistsError):  # created meanwhile: checked by the open below
            os.mkdir(path, 0o777)
    elif not stat.S_ISDIR(st.st_mode):
        fix = "name the real folder, not a link to it" if stat.S_ISLNK(st.st_mode) else "name a folder"
        raise OutputRefused([f"{path}: output folder is {_kind(st)}; {fix} (links are never followed)"])
    try:
        return os.open(path, DIR_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # replaced by a link between the check and the open
            raise OutputRefused([f"{path}: output folder is not a plain folder (a symlink?); name the real folder "
                                 "(links are never followed)"]) from None
        raise


def _check(out_fd: int, out: Path, tree: list[tuple[tuple[str, ...], str]]) -> list[str]:
    """Every reason to refuse, one line per path, before anything is written."""
    problems: list[str] = []
    folders: dict[tuple[str, ...], str] = {}  # sub-folder -> "ok", "missing" (created later) or "refused"
    for parts, _ in tree:
        fd, opened, state = out_fd, [], "ok"
        try:
            for i, name in enumerate(parts[:-1]):
                key = parts[: i + 1]
                if folders.get(key, "ok") != "ok":
                    state = folders[key]
                    break
                st = _lstat(name, fd)
                if st is None:
                    state = folders[key] = "missing"
                    break
                if not stat.S_ISDIR(st.st_mode):
                    problems.append(f"{out / os.path.join(*key)}: is {_kind(st)}, not a folder; remove it "
                                    "(the writer never follows links)")
                    state = folders[key] = "refused"
                    break
                folders[key] = "ok"
                fd = os.open(name, DIR_FLAGS, dir_fd=fd)
                opened.append(fd)
            st = _lstat(parts[-1], fd) if state == "ok" else None
            path = out / os.path.join(*parts)
            if st is None:
                continue
            if not stat.S_ISREG(st.st_mode):
                problems.append(f"{path}: is {_kind(st)}, not a regular file; remove it (the writer never follows "
                                "links or writes into special files)")
            elif st.st_nlink > 1:
                problems.append(f"{path}: is a hard link ({st.st_nlink} names for one file); remove it "
                                "(the writer replaces only files that have no other name)")
        finally:
            for d in opened:
                os.close(d)
    return problems


def _subdir(parent_fd: int, name: str) -> int:
    with contextlib.suppress(FileExistsError):  # a link created meanwhile fails the O_NOFOLLOW open below
        os.mkdir(name, 0o777, dir_fd=parent_fd)
    return os.open(name, DIR_FLAGS, dir_fd=parent_fd)


def _write_temp(dir_fd: int, name: str, content: str | bytes, mode: int | None) -> tuple[int, str, str]:
    """``content`` in a new temporary file beside ``name``; returns (dir fd, temporary name, name)."""
    tmp = f".{name}.{secrets.token_hex(4)}.tmp"
    data = content.encode("utf-8") if isinstance(content, str) else content
    # A mode given is exact (owner-only until then); otherwise what open(path, "w") gives: 0o666 minus the umask.
    fd = os.open(tmp, NEW_FILE_FLAGS, 0o666 if mode is None else 0o600, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as fh:
            if mode is not None:
                os.fchmod(fh.fileno(), mode)
            fh.write(data)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    return dir_fd, tmp, name


def write_tree(out: Path | str, files: Mapping[str, str | bytes], modes: Mapping[str, int] | None = None) -> list[Path]:
    """Write ``files`` (relative POSIX path -> text or bytes) under ``out``; return the paths in the given order.

    ``modes``: exact permission bits by relative path (the temporary file is created owner-only and set to them
    before it gets its name, so a secret is never readable by others). Default 0o666 minus the umask.
    Raises :class:`OutputRefused` for a name that is not plain or a path the writer will not touch, before writing.
    """
    out = Path(out)
    tree = [(_split(rel), rel) for rel in files]  # bad names are refused before the disk is touched
    modes = modes or {}
    out_fd = _open_out(out)
    dir_fds: dict[tuple[str, ...], int] = {(): out_fd}
    temps: list[tuple[int, str, str]] = []  # (dir fd, temporary name, final name)
    try:
        problems = _check(out_fd, out, tree)
        if problems:
            raise OutputRefused(problems)
        for parts, rel in tree:
            try:
                for i in range(1, len(parts)):
                    if parts[:i] not in dir_fds:
                        dir_fds[parts[:i]] = _subdir(dir_fds[parts[: i - 1]], parts[i - 1])
                temps.append(_write_temp(dir_fds[parts[:-1]], parts[-1], files[rel], modes.get(rel)))
            except OSError as exc:  # name the file, not its temporary name
                raise OSError(exc.errno, exc.strerror, str(out / rel)) from None
        for (fd, tmp, name), (_, rel) in zip(temps, tree, strict=True):
            try:
                os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, str(out / rel)) from None
        temps.clear()
    finally:
        for fd, tmp, _ in temps:  # a failure before the renames: drop the temporary files, keep the old set
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=fd)
        for fd in dir_fds.values():
            os.close(fd)
    return [out / rel for _, rel in tree]


def write_file(path: Path | str, content: str | bytes, mode: int | None = None) -> Path:
    """One file by the same rules (its folder must not be a symlink); ``mode`` as in :func:`write_tree`."""
    path = Path(path)
    return write_tree(path.parent, {plain_name(path.name): content}, {} if mode is None else {path.name: mode})[0]
