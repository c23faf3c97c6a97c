"""HTTP with bounded retries, shared by the RIPE Database and RPKI clients.

Why not urllib3 ``Retry``: tests need an injectable ``sleep`` and clock, the whole exchange needs a time budget
(not only a count), and callers must learn that a write *may* have been applied by an earlier attempt that timed out
or got a 5xx, so they can check instead of writing twice. This loop does those three things and nothing else.

Time bounds: ``budget`` caps one request, all attempts and waits included (``anycast ripe ... --timeout``); every
attempt gets the smaller of its own timeouts and what is left of the budget, and the body is read in pieces against
the same deadline, so a server that drips a byte at a time cannot hold a request open past it. A refused connection
(nothing listening) or an unknown host ends the request at once: retrying cannot help. Each retry is reported through
``on_retry`` (one line: what failed, which attempt, when the next one starts); library code never prints.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from infra.ripe.errors import BadInput, RipeProtocolError, RipeUnavailable
from infra.untrusted.bodies import BodyTooLarge, json_body, read_bounded
from infra.untrusted.errors import UntrustedInput
from infra.untrusted.text import printable

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
MAX_BODY = 4 * 1024 * 1024  # route objects and ROA lists are small; more is not a RIPE answer (= bodies.MAX_BODY)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. Defaults suit RIPE: a few tries, at most a minute per request."""

    attempts: int = 4
    backoff: float = 1.0  # first wait in seconds; doubles each retry
    max_backoff: float = 20.0
    budget: float = 60.0  # seconds for all attempts and waits of one request (--timeout)
    connect_timeout: float = 3.0
    read_timeout: float = 20.0  # per attempt: the longest silence while waiting for the answer
    max_retry_after: float = 60.0  # a longer Retry-After means "come back later": give up with a message


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any  # parsed JSON, or None when the body was empty or not JSON
    text: str  # the raw body, cut short, for messages
    maybe_applied: bool  # a non-idempotent request failed ambiguously before this reply (timeout, 5xx)
    problem: str | None = None  # why ``body`` is None although the body was not empty (not strict JSON, charset...)

    @property
    def json_ok(self) -> bool:
        return self.body is not None


def base_url(url: str, option: str = "--base-url") -> str:
    """``scheme://host[:port]`` from ``url``; the API path is added by the clients, so a path here is refused.

    Plain http is accepted only for loopback hosts: writes carry the API key, and RIPE requires HTTPS for them.
    """
    shown = url if len(url) <= 80 else url[:80] + "..."
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # urlsplit checks the port only when asked
    except ValueError as exc:  # "Invalid IPv6 URL", "Port out of range 0-65535", "Port could not be cast..."
        raise BadInput(f"{option}: '{shown}' is not a valid URL ({exc})") from None
    if port == 0:
        raise BadInput(f"{option}: '{shown}' has port 0; give a port 1-65535 or none")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(f"{option}: '{shown}' is not an http(s) URL like https://rest.db.ripe.net")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise BadInput(f"{option}: give only scheme and host (like https://mirror.example.net:8443); "
                       f"the path /{{source}}/{{type}}/... is added for you")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise BadInput(f"{option}: plain http is allowed only for 127.0.0.1/localhost; the API key must travel over https")
    return f"{parts.scheme}://{parts.netloc}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def retry_after_seconds(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date (RFC 9110 10.2.3); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now())
    except (TypeError, ValueError):
        return None


class _Slow(Exception):
    """The answer did not arrive completely before the request's deadline."""


def _seconds(x: float) -> str:
    return f"{x:.0f}" if x >= 10 else f"{x:.1f}" if x >= 0.1 else f"{x:.2f}"


def _caused_by(exc: BaseException, kind: type[BaseException] | tuple[type[BaseException], ...]) -> bool:
    """Whether ``kind`` is somewhere in the chain requests/urllib3 wrap a socket error in."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, kind):
            return True
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None)]
        todo += [a for a in e.args if isinstance(a, BaseException)]
    return False


class Transport:
    """One base URL, fixed headers, and the retry loop. ``sleep`` and ``clock`` are injectable for tests;
    ``on_retry`` receives one line per retry (the CLI prints it)."""

    def __init__(self, base: str, headers: Mapping[str, str], policy: RetryPolicy | None = None,
                 sleep: Callable[[float], None] | None = None, clock: Callable[[], float] = time.monotonic,
                 session: requests.Session | None = None, on_retry: Callable[[str], None] | None = None) -> None:
        self.base = base.rstrip("/")
        self.policy = policy or RetryPolicy()
        self._headers = dict(headers)
        self._sleep = sleep or time.sleep
        self._clock = clock
        self._session = session or requests.Session()
        self._on_retry = on_retry
        # requests would otherwise pick up ~/.netrc and proxy settings, which could replace our auth header.
        self._session.trust_env = False

    def request(self, method: str, path: str, *, params: Mapping[str, str | list[str]] | None = None,
                body: Any = None, what: str) -> Reply:
        """Send with retries; ``what`` names the operation in messages (``create route 192.0.2.0/24AS64500``).

        Retries 429 (waiting ``Retry-After``), 5xx, timeouts and connection errors until ``attempts`` or ``budget``
        runs out, then raises RipeUnavailable. Any other status is returned for the caller to judge.
        """
        p = self.policy
        start = self._clock()
        deadline = start + p.budget
        maybe_applied = False
        last = ""
        for attempt in range(1, p.attempts + 1):
            left = max(deadline - self._clock(), 0.05)
            read_timeout = min(p.read_timeout, left)
            try:
                resp = self._session.request(
                    method, self.base + path, params=params, headers=self._headers,
                    data=None if body is None else json.dumps(body, allow_nan=False),
                    timeout=(min(p.connect_timeout, left), read_timeout), allow_redirects=False, stream=True)
                raw = self._read(resp, deadline)
            except requests.ConnectTimeout:
                last = f"no connection within {_seconds(min(p.connect_timeout, left))} s"
                wait = self._backoff(attempt)
            except (requests.Timeout, urllib3.exceptions.ReadTimeoutError):
                last = f"no answer within {_seconds(read_timeout)} s"
                maybe_applied |= method not in IDEMPOTENT
                wait = self._backoff(attempt)
            except _Slow:
                last = f"an answer still incomplete after {_seconds(self._clock() - start)} s"
                maybe_applied |= method not in IDEMPOTENT
                wait = self._backoff(attempt)
            except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:  # connection errors and the rest
                if _caused_by(exc, ConnectionRefusedError):  # nothing was sent: retrying cannot help
                    raise RipeUnavailable(f"{what}: nothing is listening at {self.base} (connection refused); check "
                                          "--base-url, or try again later") from None
                if _caused_by(exc, urllib3.exceptions.NameResolutionError):
                    raise RipeUnavailable(f"{what}: cannot resolve the host of {self.base}; check --base-url and "
                                          "DNS") from None
                last = "a connection error"
                maybe_applied |= method not in IDEMPOTENT
                wait = self._backoff(attempt)
            else:
                if resp.status_code not in RETRY_STATUSES:
                    return _reply(resp, raw, maybe_applied)
                last = f"HTTP {resp.status_code}"
                hinted = retry_after_seconds(resp.headers.get("Retry-After"))
                if resp.status_code == 429:
                    if hinted is not None and hinted > p.max_retry_after:
                        raise RipeUnavailable(f"{what}: RIPE is rate-limiting (HTTP 429) and asks to wait "
                                              f"{hinted:.0f} s; try again later")
                else:  # a 5xx may have happened after the write was applied
                    maybe_applied |= method not in IDEMPOTENT
                wait = min(hinted, p.max_retry_after) if hinted is not None else self._backoff(attempt)
            if attempt == p.attempts or self._clock() - start + wait > p.budget:
                break
            if self._on_retry is not None:
                self._on_retry(f"{what}: attempt {attempt} of {p.attempts} failed with {last}; "
                               f"next attempt in {_seconds(wait)} s")
            self._sleep(wait)
        elapsed = self._clock() - start
        raise RipeUnavailable(f"{what}: gave up after {attempt} attempt(s) in {_seconds(elapsed)} s; the last one ended "
                              f"with {last}; run the command again later"
                              + (" (the last write may or may not have been applied: the next run checks)"
                                 if maybe_applied else ""))

    def _backoff(self, attempt: int) -> float:
        return min(self.policy.backoff * 2 ** (attempt - 1), self.policy.max_backoff)

    def _read(self, resp: requests.Response, deadline: float) -> bytes:
        """The whole body, read piece by piece (each read bounded by the read timeout) until ``deadline``."""
        try:
            return read_bounded(resp.raw, deadline, self._clock, MAX_BODY)
        except TimeoutError:
            raise _Slow() from None
        except BodyTooLarge:
            raise RipeProtocolError(f"the answer is larger than {MAX_BODY // 2**20} MiB; this is not a RIPE "
                                    "API answer (check --base-url)") from None
        finally:
            resp.close()


def _reply(resp: requests.Response, raw: bytes, maybe_applied: bool) -> Reply:
    """The answer as strict JSON (infra.untrusted.bodies: declared charset, bounded depth, no NaN) when it is one;
    ``text`` keeps a printable cut of the raw body for messages (it may end up on the user's terminal)."""
    ctype = resp.headers.get("Content-Type")
    text = printable(raw[:4000].decode("utf-8", errors="replace"), 2000, one_line=False)
    body: Any = None
    problem = None
    if raw.strip():
        try:
            body = json_body(raw, ctype, "the answer")
        except UntrustedInput as exc:
            problem = str(exc)
    return Reply(resp.status_code, body, text, maybe_applied, problem)
