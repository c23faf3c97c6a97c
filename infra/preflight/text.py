"""Text from an API answer, made safe to print: one line, no control characters, cut short, secrets removed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def api_message(body: Any, text: str, keys: tuple[str, ...] = ("error", "message", "detail")) -> str:
    """The error text of a JSON answer (``{"error": "..."}`` for Vultr), else the raw body, cleaned."""
    if isinstance(body, dict):
        for key in keys:
            if isinstance(body.get(key), str) and body[key].strip():
                return clean(body[key])
    return clean(text) or "an empty answer"


def clean(text: str, limit: int = 120) -> str:
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every secret replaced: an API that echoes the request (a proxy's error page) cannot leak one."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "<redacted>")
    return text
