"""HTTP answers read as untrusted: the body is bounded in size and time while it is read (``read_bounded``, used
by the RIPE and Vultr clients), decoded by the charset the server declared, and parsed as strict JSON.

JSON is UTF-8 (RFC 8259 8.1); a declared ``charset`` is honoured when Python knows it and refused when it does not,
instead of guessing (``requests`` would fall back to ISO-8859-1 for text/* without a charset, RFC 2616 3.7.1).
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from email.message import Message
from typing import Any, Protocol

from infra.untrusted.errors import UntrustedInput
from infra.untrusted.jsontext import MAX_DEPTH, parse_json
from infra.untrusted.text import printable

MAX_BODY = 4 * 1024 * 1024


class BodyTooLarge(UntrustedInput):
    """The answer went on past the caller's size limit (the caller words the error for its API)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"an answer larger than {limit // 2**20} MiB")
        self.limit = limit


class _Chunked(Protocol):
    def read1(self, amt: int, decode_content: bool = ...) -> bytes: ...


def read_bounded(raw: _Chunked, deadline: float, clock: Callable[[], float], limit: int = MAX_BODY) -> bytes:
    """The whole body, read piece by piece (each read bounded by the connection's read timeout) until ``deadline``
    on ``clock``: a server that drips a byte at a time cannot hold a request open past the deadline (TimeoutError),
    and one that never stops cannot fill memory (BodyTooLarge). ``raw`` is urllib3's response (``resp.raw``)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        if clock() > deadline:
            raise TimeoutError("the answer did not arrive completely before the deadline")
        chunk = raw.read1(65536, decode_content=True)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)


def media_type(content_type: str | None) -> tuple[str, str | None]:
    """(``type/subtype`` lower-cased, charset or None) of a Content-Type header (RFC 9110 8.3)."""
    if not content_type:
        return "", None
    msg = Message()
    msg["content-type"] = content_type
    charset = msg.get_param("charset")
    return msg.get_content_type(), (str(charset).strip().lower() if isinstance(charset, str) else None)


def decode_body(raw: bytes, content_type: str | None, source: str) -> str:
    """The body as text: the declared charset (strictly), else UTF-8 (strictly); UntrustedInput otherwise."""
    _kind, charset = media_type(content_type)
    name = charset or "utf-8"
    try:
        codecs.lookup(name)
    except LookupError:
        raise UntrustedInput(f"{source}: the answer declares an unknown charset {printable(name, 40)!r}") from None
    try:
        return raw.decode(name)
    except UnicodeDecodeError as exc:
        raise UntrustedInput(f"{source}: the answer is not valid {name} (byte 0x{raw[exc.start]:02x} at offset "
                             f"{exc.start})") from None


def is_json_type(content_type: str | None) -> bool:
    kind, _ = media_type(content_type)
    return kind == "application/json" or kind.endswith("+json")


def json_body(raw: bytes, content_type: str | None, source: str, max_depth: int = MAX_DEPTH) -> Any:
    """The body as strict JSON (any content type: some servers label JSON text/plain); UntrustedInput if not."""
    if len(raw) > MAX_BODY:
        raise UntrustedInput(f"{source}: the answer is larger than {MAX_BODY // 2**20} MiB")
    return parse_json(decode_body(raw, content_type, source), source, max_depth)
