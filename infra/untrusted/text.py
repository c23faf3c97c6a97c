"""Text from others made safe to print on a terminal or place in a one-line message.

A server's error text or a value from a results file may carry ANSI escape sequences (``ESC [ 2 J`` clears the
screen, OSC 8 forges links, OSC 52 writes the clipboard) or a carriage return that overwrites what was printed
before. :func:`printable` drops C0 and C1 control characters and DEL (ECMA-48 5.2: ESC, CSI and OSC are in
those sets, so no sequence survives without its introducer) and, in a one-line context, turns line breaks into
spaces; everything else, including non-ASCII letters, is kept.
"""

from __future__ import annotations

import re
import unicodedata

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_BREAKS = re.compile(r"[\t\n\r\u2028\u2029]+")


def printable(text: object, limit: int | None = None, *, one_line: bool = True) -> str:
    """``str(text)`` without control characters (and without line breaks when ``one_line``), cut to ``limit``.

    Format characters go too (bidirectional overrides U+202A-202E and U+2066-2069 reorder what the reader sees;
    the zero-width joiner stays for emoji), and so do lone surrogates (JSON's ``"\\ud800"`` decodes to one; UTF-8
    cannot encode it, so printing or writing it would fail) and the non-characters U+FFFE/U+FFFF (not allowed in
    XML)."""
    s = str(text)
    if one_line:
        s = _BREAKS.sub(" ", s)
    s = _CONTROL.sub("", s)
    if not s.isascii():
        s = "".join(ch for ch in s if ch == "\u200d" or (unicodedata.category(ch) not in ("Cf", "Cs")
                                                          and ch not in "\ufffe\uffff"))
    if limit is not None and len(s) > limit:
        s = s[:limit] + "..."
    return s
