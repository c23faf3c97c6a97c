"""A local stand-in for the RIPE Atlas REST API (measurements, results, probes, credits), with faults.

Listens on 127.0.0.1 (ephemeral port, ``http.server`` in a thread). Shapes follow the RIPE Atlas REST API
reference (https://atlas.ripe.net/docs/apis/rest-api-reference/): ``POST /api/v2/measurements/`` answers
``{"measurements": [ids]}``; errors are ``{"error": {"status", "code", "title", "detail", "errors": [...]}}``;
measurement documents carry ``status: {id, name}``; probe lists are paginated with ``next``. Not recorded: the error
texts are stand-ins in that shape. It checks ``Authorization: Key <key>``, charges ``per_result`` credits per
requested probe and definition, keeps a new measurement "Ongoing" for ``running_reads`` status reads, and answers
``faults`` (method, path fragment, status, times) instead of the real handler.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

STATUS = {"Ongoing": 2, "Stopped": 4, "Specified": 0, "Scheduled": 1}


@dataclass
class Fault:
    method: str
    path_contains: str
    status: int
    body: Any = None
    times: int = 1


@dataclass
class Measurement:
    id: int
    definition: dict[str, Any]
    results: list[Any]
    running_reads: int = 0


@dataclass
class AtlasState:
    key: str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    balance: int = 100_000
    per_result: int = 20
    probes: dict[int, dict[str, Any]] = field(default_factory=dict)
    measurements: dict[int, Measurement] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    # What a new measurement's results will be: called with (definition, sources), returns result objects.
    results_for: Any = None
    running_reads: int = 1
    max_page_size: int = 500  # Atlas caps page_size; a small cap exercises the client's following of ``next``
    next_id: int = 5_000_001
    log: list[tuple[str, str, Any, str | None]] = field(default_factory=list)  # method, path+query, body, auth header


def _error(status: int, title: str, detail: str) -> dict[str, Any]:
    return {"error": {"status": status, "code": 100 + status % 100, "title": title, "detail": detail, "errors": []}}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        return self.headers.get("Authorization") == f"Key {self.server.state.key}"

    def _handle(self, method: str) -> None:
        st = self.server.state
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body: Any = json.loads(raw) if raw else {}
        st.log.append((method, self.path, body, self.headers.get("Authorization")))
        for f in st.faults:
            if f.times > 0 and f.method == method and f.path_contains in url.path:
                f.times -= 1
                return self._send(f.status, f.body if f.body is not None else _error(f.status, "Fault", "injected"))
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        parts = [p for p in url.path.split("/") if p]
        if parts[:2] != ["api", "v2"]:
            return self._send(404, _error(404, "Not Found", "Not found."))
        rest = parts[2:]
        if rest == ["credits"] and method == "GET":
            if not self._authorized():
                return self._send(403, _error(403, "Forbidden", "The provided API key does not exist"))
            return self._send(200, {"current_balance": st.balance, "estimated_daily_income": 0})
        if rest == ["measurements"] and method == "POST":
            if not self._authorized():
                return self._send(403, _error(403, "Forbidden", "The provided API key does not exist"))
            defs, sources = body.get("definitions", []), body.get("probes", [])
            if not body.get("is_oneoff"):
                return self._send(400, _error(400, "Bad Request", "only one-off measurements in this stand-in"))
            cost = len(defs) * sum(int(s["requested"]) for s in sources) * st.per_result
            if cost > st.balance:
                return self._send(400, _error(400, "Bad Request",
                                              "You do not have enough credits to schedule this measurement."))
            st.balance -= cost
            ids = []
            for d in defs:
                mid = st.next_id
                st.next_id += 1
                res = st.results_for(d, sources) if st.results_for else []
                st.measurements[mid] = Measurement(mid, d, res, st.running_reads)
                ids.append(mid)
            return self._send(201, {"measurements": ids})
        if len(rest) >= 2 and rest[0] == "measurements" and rest[1].isdigit() and method == "GET":
            m = st.measurements.get(int(rest[1]))
            if m is None:
                return self._send(404, _error(404, "Not Found", "No measurement found with that id"))
            if len(rest) == 2:
                name = "Ongoing" if m.running_reads > 0 else "Stopped"
                m.running_reads -= 1
                return self._send(200, {"id": m.id, "type": "dns", "af": m.definition.get("af"),
                                        "status": {"id": STATUS[name], "name": name}, "is_oneoff": True})
            if rest[2:] == ["results"]:
                return self._send(200, m.results)
        if rest == ["probes"] and method == "GET":
            ids = [int(i) for i in q.get("id__in", "").split(",") if i]
            size, page = min(int(q.get("page_size", 50)), st.max_page_size), int(q.get("page", 1))
            found = [st.probes[i] for i in ids if i in st.probes]
            chunk = found[(page - 1) * size: page * size]
            nxt = None
            if page * size < len(found):
                nxt = f"http://127.0.0.1:{self.server.server_port}/api/v2/probes/?id__in={q['id__in']}&page_size={size}&page={page + 1}"
            return self._send(200, {"count": len(found), "next": nxt, "previous": None, "results": chunk})
        return self._send(404, _error(404, "Not Found", "Not found."))

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


class _Server(ThreadingHTTPServer):
    state: AtlasState


class FakeAtlas:
    def __init__(self, state: AtlasState | None = None) -> None:
        self.state = state or AtlasState()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> FakeAtlas:
        self._thread.start()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
