"""A local stand-in for the Vultr API v2 endpoints ``anycast preflight`` reads, on 127.0.0.1 (ephemeral port).

Bodies follow vultr/govultr's test fixtures: ``/v2/account/bgp`` ``{"enabled": true, "asn": 20473, "password":
"12345"}`` (account_test.go ``TestAccountServiceHandler_GetBGP``), ``/v2/regions/ewr/availability``
``{"available_plans": ["vc2-1c-1gb", ...]}`` (regions_test.go), ``/v2/os`` and ``/v2/ssh-keys`` lists with
``meta.links`` (os_test.go, ssh_key_test.go); errors as Vultr sends them, ``{"error": "...", "status": 401}``.
It checks the Bearer key, pages with ``per_page``/``cursor``, and logs every request (method, path, headers) so a
test can assert that nothing but GET was sent. ``hang`` delays every answer (a silent API); ``status`` overrides.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.helpers.loopback_server import LoopbackServer

GOOD_KEY = "VULTR-TEST-KEY-0123456789ABCDEF"
DEBIAN_12 = {"id": 2136, "name": "Debian 12 x64 (bookworm)", "arch": "x64", "family": "debian"}
WINDOWS = {"id": 124, "name": "Windows 2012 R2 x64", "arch": "x64", "family": "windows"}  # govultr os_test.go
PLANS = ["vc2-1c-1gb", "vc2-1c-2gb", "vc2-2c-4gb"]  # govultr regions_test.go


@dataclass
class FakeVultr(LoopbackServer):
    key: str = GOOD_KEY
    bgp: dict[str, Any] = field(default_factory=lambda: {"enabled": True, "asn": 64500, "password": "12345"})
    availability: dict[str, list[str]] = field(default_factory=dict)  # region -> plans; others get PLANS
    os: list[dict[str, Any]] = field(default_factory=lambda: [dict(WINDOWS), dict(DEBIAN_12)])
    ssh_keys: list[dict[str, Any]] = field(default_factory=list)
    hang: float = 0.0
    status: dict[str, int] = field(default_factory=dict)  # path -> forced status
    page_size: int | None = None  # force small pages to exercise the cursor
    log: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def __enter__(self) -> FakeVultr:
        self.serve(_Handler)
        return self

    def handle(self, method: str, raw_path: str, headers: dict[str, str]) -> tuple[int, Any]:
        parts = urlsplit(raw_path)
        path, query = parts.path, parse_qs(parts.query)
        self.log.append((method, path, headers))
        if self.hang:
            time.sleep(self.hang)
        if path in self.status:
            return self.status[path], {"error": f"forced {self.status[path]}", "status": self.status[path]}
        if method != "GET":
            return 405, {"error": "Method not allowed", "status": 405}
        public = path == "/v2/os" or path.startswith("/v2/regions/")
        if not public and headers.get("authorization") != f"Bearer {self.key}":
            return 401, {"error": "Invalid API token.", "status": 401}
        if path == "/v2/account/bgp":
            return 200, self.bgp
        if path.startswith("/v2/regions/") and path.endswith("/availability"):
            region = path.split("/")[3]
            if region == "nowhere":
                return 404, {"error": "Invalid region.", "status": 404}
            return 200, {"available_plans": self.availability.get(region, PLANS)}
        if path == "/v2/os":
            return 200, self._page("os", self.os, query)
        if path == "/v2/ssh-keys":
            return 200, self._page("ssh_keys", self.ssh_keys, query)
        return 404, {"error": "Not found", "status": 404}

    def _page(self, name: str, items: list[dict[str, Any]], query: dict[str, list[str]]) -> dict[str, Any]:
        size = self.page_size or int(query.get("per_page", ["100"])[0])
        start = int(query.get("cursor", ["0"])[0])
        nxt = str(start + size) if start + size < len(items) else ""
        return {name: items[start:start + size], "meta": {"total": len(items), "links": {"next": nxt, "prev": ""}}}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeVultr
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, body = self.fake.handle(self.command, self.path, headers)
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass
