"""Bounded GETs for the Vultr API: (connect, read) timeouts per attempt, a deadline for the whole request (body
included, read in pieces so a server that drips bytes cannot hold it open), one retry of a 429/5xx, and a breaker:
after one request found the API silent or unreachable, the next ones fail at once with the same reason instead of
waiting again (a dead API costs one timeout, not one per PoP).

The RIPE checks use the RIPE clients' own transport (infra/ripe/transport.py); this is the Vultr side only.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from infra.preflight.rows import Unreachable
from infra.untrusted.bodies import BodyTooLarge, json_body, read_bounded
from infra.untrusted.errors import UntrustedInput
from infra.untrusted.text import printable

MAX_BODY = 8 * 1024 * 1024
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Timeouts:
    connect: float = 3.0
    read: float = 10.0  # the longest silence within one attempt
    total: float = 20.0  # one request, retry and body included


class BadUrl(ValueError):
    """A base URL from the environment or an option that cannot be used; the message names where it came from."""


def base_url(url: str, where: str) -> str:
    """``scheme://host[:port]`` of ``url`` (a trailing ``/`` or ``/v2`` is dropped); plain http only to loopback,
    since the request carries the API key."""
    shown = url if len(url) <= 80 else url[:80] + "..."
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 (urlsplit checks the port only when asked)
    except ValueError as exc:
        raise BadUrl(f"{where}: '{shown}' is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment \
            or parts.username or parts.password or parts.path.rstrip("/") not in ("", "/v2"):
        raise BadUrl(f"{where}: '{shown}' is not a base URL like https://api.vultr.com")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise BadUrl(f"{where}: plain http is allowed only for 127.0.0.1/localhost; the API key must travel over https")
    return f"{parts.scheme}://{parts.netloc}"


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any  # parsed JSON, or None
    text: str  # the body, cut short, for messages


class Api:
    """GET JSON from one base URL with fixed headers. ``name`` names the API in messages (``Vultr API``)."""

    def __init__(self, name: str, base: str, headers: Mapping[str, str], timeouts: Timeouts | None = None,
                 session: requests.Session | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.name, self.base = name, base.rstrip("/")
        self.timeouts = timeouts or Timeouts()
        self._headers = dict(headers)
        self._session = session or requests.Session()
        self._session.trust_env = False  # ~/.netrc would replace the Authorization header
        self._clock, self._sleep = clock, sleep
        self._broken: str | None = None

    def drop_header(self, name: str) -> None:
        self._headers.pop(name, None)

    def get(self, path: str, params: Mapping[str, str] | None = None) -> Answer:
        """One GET; raises :class:`Unreachable` when the API does not answer in time (or an earlier call found it so)."""
        if self._broken:
            raise Unreachable(self._broken)
        t = self.timeouts
        start = self._clock()
        deadline = start + t.total
        for attempt in (1, 2):
            left = deadline - self._clock()
            try:
                resp = self._session.get(self.base + path, params=params, headers=self._headers, stream=True,
                                         allow_redirects=False, timeout=(min(t.connect, left), min(t.read, left)))
                raw = self._read(resp, deadline)
            except requests.ConnectTimeout:
                self._broken = f"{self.name} at {self.base}: no connection within {min(t.connect, left):.3g} s"
            except (requests.Timeout, urllib3.exceptions.ReadTimeoutError, TimeoutError):
                self._broken = f"{self.name} at {self.base}: no complete answer within {self._clock() - start:.3g} s"
            except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
                self._broken = f"{self.name} at {self.base}: cannot connect ({_reason(exc)})"
            else:
                if resp.status_code in RETRY_STATUSES and attempt == 1 and deadline - self._clock() > 1.5:
                    self._sleep(1.0)
                    continue
                return _answer(resp.status_code, raw)
            break
        assert self._broken is not None
        raise Unreachable(self._broken)

    def _read(self, resp: requests.Response, deadline: float) -> bytes:
        try:
            return read_bounded(resp.raw, deadline, self._clock, MAX_BODY)
        except BodyTooLarge as exc:
            raise requests.RequestException(str(exc)) from None
        finally:
            resp.close()


def _reason(exc: BaseException) -> str:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ConnectionRefusedError):
            return "connection refused: nothing listening"
        if isinstance(e, urllib3.exceptions.NameResolutionError):
            return "cannot resolve the host name"
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None)]
        todo += [a for a in e.args if isinstance(a, BaseException)]
    return type(exc).__name__


def _answer(status: int, raw: bytes) -> Answer:
    """Strict JSON (infra.untrusted: bounded depth, no NaN, strict UTF-8) or None; the text made printable."""
    text = printable(raw[:2000].decode("utf-8", errors="replace"), 500, one_line=False)
    try:
        body = json_body(raw, None, "the answer") if raw.strip() else None
    except UntrustedInput:
        body = None
    return Answer(status, body, text)
