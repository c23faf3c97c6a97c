"""Text for the user's terminal: control characters from outside made visible instead of obeyed.

A server's error body, a file name, a stack value or an Atlas probe's NSID may carry ESC sequences (clear the screen,
retitle the window, OSC 8 hyperlinks that hide their target), ``\\r`` or ``\\b`` that overwrite what was printed, a
C1 CSI (0x9b, ESC [ on terminals that read 8-bit controls) or bidi overrides that reorder a line. ``anycast`` prints
through :class:`PrintableStream`, so every byte it prints passes :func:`printable`.

Decision: escape, don't strip: the user sees that something was there, and nothing reaches the terminal as a control.
Shown as ``\\xNN`` / ``\\uNNNN``: every C0 control except newline and tab, DEL, every C1 control (ECMA-48 5.2: ESC,
CSI and OSC are in those sets, so no sequence survives as one); format characters (bidi overrides such as U+202E,
zero-width characters; the zero-width joiner of emoji sequences is kept); lone surrogates (printing one would raise
UnicodeEncodeError) and U+FFFE/U+FFFF. ``one_line=True`` also escapes newline, tab and U+2028/U+2029, for a value
inside a one-line message. A backslash is left alone (a literal ``\\x1b`` in the text is harmless).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, TextIO

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
_KEEP = "\u200d"  # zero-width joiner: part of emoji sequences


def _escape(c: str) -> str:
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def _hidden(c: str) -> bool:
    return c != _KEEP and (c in "\ufffe\uffff" or unicodedata.category(c) in ("Cf", "Cs"))


def printable(text: str, one_line: bool = False) -> str:
    """``text`` with every terminal control, format and surrogate character escaped (newline and tab kept unless
    ``one_line``)."""
    s = (_CONTROL_ONE_LINE if one_line else _CONTROL).sub(lambda m: _escape(m.group()), text)
    if not s.isascii():
        s = "".join(_escape(c) if _hidden(c) else c for c in s)
    return s


class PrintableStream:
    """A text stream that passes everything written through :func:`printable` (``sys.stdout``/``stderr`` wrapper)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(printable(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:  # flush, fileno, isatty, encoding, ...
        return getattr(self._stream, name)
