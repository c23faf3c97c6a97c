"""API keys for the RIPE Database (HTTP Basic ``KEYID:SECRET``) and the RPKI API (``ncc-api-authorization``).

The secret lives only inside these objects: ``repr``/``str`` hide it and error messages name the variable, never the
value, so a key cannot leak into logs, Pulumi outputs or exception text.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping

from infra.ripe.errors import CredentialError

RIPE_API_KEY_ENV = "RIPE_API_KEY"
RIPE_RPKI_API_KEY_ENV = "RIPE_RPKI_API_KEY"
RIPE_API_KEY_CONFIG = "anycast:ripeApiKey"
# Printable ASCII without spaces: what a header value can carry without escaping.
_TOKEN_RE = re.compile(r"^[\x21-\x7e]+$")


class _Secret:
    """A string that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<redacted>"

    __str__ = __repr__


class ApiKey:
    """A RIPE Database API key: the key id is the Basic-auth user name, the secret its password.

    Source: RIPE-NCC/ripe-database-documentation ``docs/23.Appendices/11.Appendix-K--API-Keys.md``.
    """

    __slots__ = ("_secret", "key_id")

    def __init__(self, key_id: str, secret: str) -> None:
        self.key_id = key_id
        self._secret = _Secret(secret)

    @classmethod
    def parse(cls, raw: str, where: str) -> ApiKey:
        """``KEYID:SECRET`` from ``where`` (a variable or config name used in the message, never the value)."""
        key_id, sep, secret = raw.strip().partition(":")
        if not sep or not key_id or not secret:
            raise CredentialError(f"{where} must be KEYID:SECRET (the key id and the secret shown once when the "
                                  "key was created at https://apps.db.ripe.net/db-web-ui/api-keys)")
        if not _TOKEN_RE.match(key_id) or not _TOKEN_RE.match(secret):
            raise CredentialError(f"{where} contains spaces or non-ASCII characters; paste KEYID:SECRET exactly")
        return cls(key_id, secret)

    def authorization(self) -> str:
        token = base64.b64encode(f"{self.key_id}:{self._secret.reveal()}".encode()).decode()
        return f"Basic {token}"

    def __repr__(self) -> str:
        return f"ApiKey(key_id={self.key_id!r}, secret=<redacted>)"

    __str__ = __repr__


class RpkiKey:
    """A RIPE NCC RPKI management API key, sent as ``ncc-api-authorization`` (https://www.ripe.net/publications/documentation/developer-documentation/rpki-management-api/)."""

    __slots__ = ("_secret",)

    def __init__(self, value: str) -> None:
        self._secret = _Secret(value)

    @classmethod
    def parse(cls, raw: str, where: str) -> RpkiKey:
        value = raw.strip()
        if not value or not _TOKEN_RE.match(value):
            raise CredentialError(f"{where} must be the RPKI API key from the LIR Portal (API Keys), without spaces")
        return cls(value)

    def header(self) -> dict[str, str]:
        return {"ncc-api-authorization": self._secret.reveal()}

    def __repr__(self) -> str:
        return "RpkiKey(<redacted>)"

    __str__ = __repr__


def ripe_api_key(env: Mapping[str, str] | None = None, config_value: str | None = None) -> ApiKey:
    """The RIPE Database key from ``RIPE_API_KEY``, else from the ``anycast:ripeApiKey`` secret; CredentialError if none."""
    env = os.environ if env is None else env
    if env.get(RIPE_API_KEY_ENV):
        return ApiKey.parse(env[RIPE_API_KEY_ENV], RIPE_API_KEY_ENV)
    if config_value:
        return ApiKey.parse(config_value, RIPE_API_KEY_CONFIG)
    raise CredentialError(f"no RIPE Database API key: set {RIPE_API_KEY_ENV}=KEYID:SECRET (or, under Pulumi, "
                          f"`pulumi config set --secret {RIPE_API_KEY_CONFIG} KEYID:SECRET`); see docs/ripe.md")


def rpki_api_key(env: Mapping[str, str] | None = None) -> RpkiKey:
    env = os.environ if env is None else env
    if not env.get(RIPE_RPKI_API_KEY_ENV):
        raise CredentialError(f"no RPKI API key: set {RIPE_RPKI_API_KEY_ENV} (LIR Portal -> API Keys -> "
                              "Resource Certification (RPKI) API); see docs/ripe.md")
    return RpkiKey.parse(env[RIPE_RPKI_API_KEY_ENV], RIPE_RPKI_API_KEY_ENV)
