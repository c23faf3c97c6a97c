"""URLs and ``host:port`` targets built from data (stack outputs), which must point where the data says and nowhere
else: the host is an IP address literal (no name to resolve elsewhere, no userinfo ``x@evil``, no IPv6 zone
``fe80::1%x@evil``, which Python's ipaddress accepts), IPv6 bracketed (RFC 3986 3.2.2), an integer port, a plain
path, scheme http or https. The result is parsed back and compared, so a refusal is one ValueError line, never a
probe of a foreign host."""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any
from urllib.parse import urlsplit

from infra.untrusted.text import printable

_PATH = re.compile(r"/(?:[A-Za-z0-9._~-][A-Za-z0-9._~/-]{0,199})?")  # not "//host/...": that reads as an authority


def ip_literal(value: Any) -> str:
    """``value`` as the canonical text of an IPv4 or IPv6 address without a zone; ValueError otherwise."""
    if isinstance(value, IPv4Address | IPv6Address):
        address = value
    elif isinstance(value, str):
        try:
            address = ip_address(value)
        except ValueError:
            raise ValueError(f"{printable(value, 60)!r} is not an IP address") from None
    else:
        raise ValueError(f"expected an IP address string, got {type(value).__name__}")
    if isinstance(address, IPv6Address) and address.scope_id is not None:
        raise ValueError(f"{printable(value, 60)!r} carries an IPv6 zone (%...); give the address alone")
    return str(address)


def host(address: Any) -> str:
    text = ip_literal(address)
    return f"[{text}]" if ":" in text else text


def host_port(address: Any, port: Any) -> str:
    """``192.0.2.1:53`` / ``[2001:db8::1]:53``."""
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise ValueError(f"port {printable(port, 20)!r} is not an integer 1-65535")
    return f"{host(address)}:{port}"


def probe_url(scheme: str, address: Any, port: Any, path: str) -> str:
    """``scheme://host:port/path`` for a probe target, checked by parsing it back."""
    if scheme not in ("http", "https"):
        raise ValueError(f"scheme {printable(scheme, 20)!r} is not http or https")
    if not isinstance(path, str) or not _PATH.fullmatch(path):
        raise ValueError(f"path {printable(path, 60)!r} is not a plain path like /healthz")
    url = f"{scheme}://{host_port(address, port)}{path}"
    parts = urlsplit(url)
    if (parts.hostname != ip_literal(address).lower() or parts.username is not None or parts.port != port
            or parts.path != path or parts.query or parts.fragment):
        raise ValueError(f"{printable(url, 100)!r} does not parse back to the address it was built from")
    return url
