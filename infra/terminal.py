"""Text for the user's terminal: control characters from outside made visible instead of obeyed.

A server's error body, a file name, a stack value or an Atlas probe's NSID may carry ESC sequences (clear the screen,
retitle the window, OSC 8 hyperlinks that hide their target), ``\\r`` or ``\\b`` that overwrite what was printed, a
C1 CSI (0x9b, ESC [ on terminals that read 8-bit controls) or bidi overrides that reorder a line. ``anycast`` prints
through :class:`PrintableStream`, so every byte it prints passes :func:`printable`.

Decision: escape, don't strip. Every C0 control except newline and tab, DEL, every C1 control, the bidi controls
(U+061C, U+200E/F, U+202A-E, U+2066-9) and the line/paragraph separators U+2028/9 are shown as ``\\xNN`` /
``\\uNNNN``: the user sees that something was there, and nothing reaches the terminal as a control. A backslash is
left alone (escaping it would garble Windows paths and regexes in messages; a literal ``\\x1b`` is harmless text).
``one_line=True`` also escapes newline and tab, for a value inside a one-line message.
"""

from __future__ import annotations

import re
from typing import Any, TextIO

_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_CONTROL = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}\u2028\u2029]")
_CONTROL_ONE_LINE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}\u2028\u2029]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    c = match.group()
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def printable(text: str, one_line: bool = False) -> str:
    """``text`` with every terminal control character escaped (newline and tab kept unless ``one_line``)."""
    return (_CONTROL_ONE_LINE if one_line else _CONTROL).sub(_escape, text)


class PrintableStream:
    """A text stream that passes everything written through :func:`printable` (``sys.stdout``/``stderr`` wrapper)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(printable(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:  # flush, fileno, isatty, encoding, ...
        return getattr(self._stream, name)
