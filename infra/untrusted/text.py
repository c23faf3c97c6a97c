"""Text from others made safe to print on a terminal, place in a one-line message or draw in the SVG map.

A server's error text or a value from a results file may carry ANSI escape sequences (``ESC [ 2 J`` clears the
screen, OSC 8 forges links, OSC 52 writes the clipboard) or a carriage return that overwrites what was printed
before. :func:`printable` shows every C0 and C1 control character and DEL as ``\\xNN`` (ECMA-48 5.2: ESC, CSI and
OSC are in those sets, so no sequence survives as one), the same as the CLI's output stream does, so the user sees
that something was there and nothing is obeyed. Beyond that it also escapes format characters (bidirectional
overrides reorder what the reader sees; zero-width characters hide), lone surrogates (JSON's ``"\\ud800"`` decodes
to one; UTF-8 cannot encode it, so printing or writing it would fail) and the non-characters U+FFFE/U+FFFF (not
allowed in XML 1.0). In a one-line context line breaks and tabs are escaped too.
"""

from __future__ import annotations

import re
import unicodedata

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
_KEEP = "\u200d"  # zero-width joiner: part of emoji sequences


def _escape(c: str) -> str:
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def _hidden(c: str) -> bool:
    return c != _KEEP and (c in "\ufffe\uffff" or unicodedata.category(c) in ("Cf", "Cs"))


def printable(text: object, limit: int | None = None, *, one_line: bool = True) -> str:
    """``str(text)`` with control, format and surrogate characters escaped (``\\x1b``, ``\\u202e``), line breaks
    too when ``one_line``; cut to ``limit`` characters (before escaping) with ``...``."""
    s = str(text)
    cut = limit is not None and len(s) > limit
    if cut:
        s = s[:limit]
    s = (_CONTROL_ONE_LINE if one_line else _CONTROL).sub(lambda m: _escape(m.group()), s)
    if not s.isascii():
        s = "".join(_escape(c) if _hidden(c) else c for c in s)
    return s + "..." if cut else s
