"""Files named on the command line, read as untrusted: a regular file only, bounded in size, strict UTF-8.

The file is opened with ``O_NONBLOCK`` and checked with ``fstat`` on the open descriptor before any read, so a FIFO
(whose open would wait for a writer), a terminal, ``/dev/zero`` (endless) or a directory is refused at once, and a
swap of the path between check and read cannot slip one in (open(2): O_NONBLOCK; fstat(2): S_ISREG).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from infra.untrusted.errors import UntrustedInput
from infra.untrusted.jsontext import MAX_DEPTH, parse_json
from infra.untrusted.text import printable

MAX_FILE = 32 * 1024 * 1024  # a catchment of 10 000 Atlas results is ~15 MiB (parsed, several times that in memory)

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
# Byte order marks of encodings JSON files are sometimes saved in (Windows PowerShell 5 `>` writes UTF-16LE).
_BOMS = ((b"\x00\x00\xfe\xff", "UTF-32BE"), (b"\xff\xfe\x00\x00", "UTF-32LE"), (b"\xfe\xff", "UTF-16BE"),
         (b"\xff\xfe", "UTF-16LE"))


def _name(path: Path) -> str:
    return printable(path, 200)


def read_bytes(path: Path, what: str, max_bytes: int = MAX_FILE) -> bytes:
    """The contents of the regular file ``path``; UntrustedInput ``"<what>: <path> is ..."`` otherwise."""
    shown = _name(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UntrustedInput(f"{what}: {shown} does not exist") from None
    except OSError as exc:
        raise UntrustedInput(f"{what}: cannot open {shown}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
            raise UntrustedInput(f"{what}: {shown} is {kind}; give a regular file")
        if st.st_size > max_bytes:
            raise UntrustedInput(f"{what}: {shown} is {st.st_size} bytes, more than the {_size(max_bytes)} allowed")
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 1 << 20):  # st_size may lie (a file still growing, /proc): bound the reads too
            size += len(chunk)
            if size > max_bytes:
                raise UntrustedInput(f"{what}: {shown} is more than the {_size(max_bytes)} allowed")
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise UntrustedInput(f"{what}: cannot read {shown}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _size(n: int) -> str:
    return f"{n // 2**20} MiB" if n >= 2**20 else f"{n} bytes"


def decode_utf8(data: bytes, source: str) -> str:
    """``data`` as UTF-8 (a leading UTF-8 BOM is dropped); UntrustedInput naming the encoding or the bad byte."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            raise UntrustedInput(f"{source}: the file is {name} (byte order mark); save it as UTF-8, e.g. "
                                 f"`iconv -f {name} -t UTF-8`")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UntrustedInput(f"{source}: not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); save it as "
                             "UTF-8") from None


def read_text(path: Path, what: str, max_bytes: int = MAX_FILE) -> str:
    return decode_utf8(read_bytes(path, what, max_bytes), f"{what}: {_name(path)}")


def read_json(path: Path, what: str, max_bytes: int = MAX_FILE, max_depth: int = MAX_DEPTH) -> Any:
    """The strict JSON in the regular file ``path`` (see :mod:`infra.untrusted.jsontext`)."""
    return parse_json(read_text(path, what, max_bytes), f"{what}: {_name(path)}", max_depth)
