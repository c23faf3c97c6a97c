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

from typing import Any, TextIO

from infra.untrusted import text as _text


def printable(text: str, one_line: bool = False) -> str:
    """``text`` with every terminal control, format and surrogate character escaped (newline and tab kept unless
    ``one_line``): the one filter of infra/untrusted/text.py, multi-line by default for whole streams."""
    return _text.printable(text, one_line=one_line)


class PrintableStream:
    """A text stream that passes everything written through :func:`printable` (``sys.stdout``/``stderr`` wrapper)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(printable(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:  # flush, fileno, isatty, encoding, ...
        return getattr(self._stream, name)
