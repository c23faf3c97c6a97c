"""A local stand-in for the RIPE Database REST API and the RPKI management API, with fault injection.

It listens on 127.0.0.1 (ephemeral port, ``http.server`` in a thread) and answers in the recorded formats: bodies are
built from the fixtures in tests/fixtures/ripe-db (lookup and error shapes, the "no entries found" 404, the
"Authorisation for [%s] %s failed" 401), with the object and arguments swapped in. It enforces what the tests rely
on: API-key Basic auth, ``mnt-by`` of the object, ``mnt-routes`` of protected address space (the lessor case),
409 for an object that exists, ``?dry-run``. Every request is logged; ``writes`` lists the writes that changed state.

Faults (``Fault``) match by method and path fragment and answer instead of the real handler ``times`` times: any
status and body (a 500, a 429 with ``Retry-After``, malformed JSON), optionally after a ``hang`` longer than the
client's timeout, and optionally after really applying the request (``apply_first``: the write happened, the answer
was lost, the hard case for a client); ``drip`` sends the body one byte at a time (each read of the client succeeds,
the whole answer never arrives in time). :class:`SilentServer` accepts connections and never answers;
:func:`refused_port` gives a loopback port where nothing listens.
"""

from __future__ import annotations

import base64
import copy
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.helpers.loopback_server import LoopbackServer

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ripe-db"
AUTH_TEXT = 'Authorisation for [%s] %s failed\nusing "%s:"\nnot authenticated by: %s'


def fixture(name: str) -> dict[str, Any]:
    """The response body (``data``) of a recorded exchange."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))["data"]


def _messages(*items: tuple[str, str, list[str]]) -> dict[str, Any]:
    return {"errormessage": [{"severity": sev, "text": text, **({"args": [{"value": a} for a in args]} if args else {})}
                             for sev, text, args in items]}


@dataclass
class Fault:
    method: str  # "GET", "POST", "PUT", "DELETE" or "*"
    path_contains: str = ""
    status: int = 500
    body: Any = None  # dict -> JSON; str -> sent as is (malformed JSON); None -> a short error text
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    hang: float = 0.0  # seconds to wait before answering (longer than the client's read timeout = a hang)
    apply_first: bool = False  # really process the request, then answer with the fault
    real_only: bool = False  # match only requests without ?dry-run
    drip: float = 0.0  # seconds between the body's bytes (0: send it at once)

    def matches(self, method: str, path: str, dry_run: bool) -> bool:
        return (self.times > 0 and self.method in ("*", method) and self.path_contains in path
                and not (self.real_only and dry_run))


@dataclass
class Logged:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    status: int = 0
    changed: bool = False
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def dry_run(self) -> bool:
        return "dry-run" in self.query


@dataclass
class Protection:
    """Address space whose route objects need ``maintainers`` (e.g. a lessor's inetnum with mnt-routes)."""

    network: IPv4Network | IPv6Network
    obj_type: str  # inetnum / inet6num
    key: str  # "192.0.2.0 - 192.0.2.255"
    attr: str  # mnt-routes / mnt-lower / mnt-by
    maintainers: list[str]


class FakeRipe(LoopbackServer):
    """The server and its state. Use as a context manager; ``url`` is the base URL for ``--base-url``."""

    def __init__(self, keys: dict[str, str] | None = None, key_maintainers: dict[str, set[str]] | None = None,
                 rpki_keys: set[str] | None = None) -> None:
        self.keys = keys if keys is not None else {"TESTKEYID": "s3cr3t-Test-Key"}
        self.key_maintainers = key_maintainers if key_maintainers is not None else {"TESTKEYID": {"EXAMPLE-MNT"}}
        self.objects: dict[tuple[str, str, str], list[dict[str, str]]] = {}
        self.protections: list[Protection] = []
        self.faults: list[Fault] = []
        self.log: list[Logged] = []
        self.rpki_keys = rpki_keys if rpki_keys is not None else {"rpki-Test-Key-0001"}
        self.roas: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def __enter__(self) -> FakeRipe:
        self.serve(_Handler)
        return self

    # -- state helpers -----------------------------------------------------------------------------------------
    def put(self, db: str, attributes: list[tuple[str, str]]) -> None:
        """Store an object (``[("route", "192.0.2.0/24"), ...]``) as if someone had created it."""
        attrs = [{"name": n, "value": v} for n, v in attributes]
        obj_type = attrs[0]["name"]
        self.objects[(db, obj_type, _key(attrs))] = attrs

    def get(self, db: str, obj_type: str, key: str) -> list[dict[str, str]] | None:
        return self.objects.get((db, obj_type, key))

    @property
    def writes(self) -> list[Logged]:
        """Requests that changed the database (not dry runs, not refused)."""
        return [r for r in self.log if r.changed]

    def requests(self, method: str) -> list[Logged]:
        return [r for r in self.log if r.method == method]

    # -- request handling (called from handler threads) ---------------------------------------------------------
    def handle(self, method: str, raw_path: str, headers: dict[str, str], raw_body: bytes) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(raw_path)
        path, query = unquote(parts.path), parse_qs(parts.query, keep_blank_values=True)
        try:
            body = json.loads(raw_body) if raw_body else None
        except ValueError:
            body = raw_body.decode(errors="replace")
        entry = Logged(method, path, query, body, headers=headers)
        with self._lock:
            self.log.append(entry)
            fault = next((f for f in self.faults if f.matches(method, path, entry.dry_run)), None)
            if fault:
                fault.times -= 1
        if fault is None or fault.apply_first:  # applied before any hang: the answer is what gets lost
            with self._lock:
                status, out, extra = self._route(method, path, query, headers, body, entry)
                entry.changed = entry.changed and status < 300
        if fault and fault.hang:
            time.sleep(fault.hang)
        if fault is not None:
            status = fault.status
            out = fault.body if fault.body is not None else f"fault {fault.status}"
            extra = {**fault.headers, **({DRIP_HEADER: str(fault.drip)} if fault.drip else {})}
        entry.status = status
        return status, out, extra

    def _route(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: Any,
               entry: Logged) -> tuple[int, Any, dict[str, str]]:
        if path.startswith("/api/rpki/"):
            return self._rpki(method, path, headers, body, entry)
        if path == "/data/rpki-validation/data.json" and method == "GET":
            return self._rpki_validation(query)
        if path == "/search" and method == "GET":
            return self._search(query)
        segments = path.strip("/").split("/", 2)
        if len(segments) < 2 or segments[0] not in ("ripe", "test"):
            return 400, {"errormessages": _messages(("Error", "Invalid source '%s'", [segments[0]]))}, {}
        db, obj_type = segments[0], segments[1]
        key = segments[2] if len(segments) == 3 else None
        dry = "dry-run" in query
        if method == "GET" and key:
            obj = self.get(db, obj_type, key)
            if obj is None:
                return 404, self._not_found(db), {}
            return 200, self._object_body(db, obj), {}
        if method == "POST" and key is None:
            return self._create(db, obj_type, headers, body, dry, entry)
        if method in ("PUT", "DELETE") and key:
            return self._modify(method, db, obj_type, key, headers, body, dry, entry)
        return 405, {"errormessages": _messages(("Error", "Method not allowed", []))}, {}

    def _not_found(self, db: str) -> dict[str, Any]:
        body = copy.deepcopy(fixture("search_404_no_entries.json"))
        body["errormessages"]["errormessage"][0]["args"] = [{"value": db.upper()}]
        return body

    def _object_body(self, db: str, attrs: list[dict[str, str]], extra_messages: dict[str, Any] | None = None) -> dict[str, Any]:
        body = copy.deepcopy(fixture("route6_lookup_2a09-4c2--_32AS58057.json"))
        obj = body["objects"]["object"][0]
        obj["type"] = attrs[0]["name"]
        obj["source"] = {"id": db}
        obj["link"]["href"] = f"https://rest.db.ripe.net/{db}/{obj['type']}/{_key(attrs)}"
        obj["primary-key"]["attribute"] = [a for a in attrs if a["name"] in (obj["type"], "origin")]
        obj["attributes"]["attribute"] = copy.deepcopy(attrs)
        if extra_messages:
            body["errormessages"] = extra_messages
        return body

    def _maintainers(self, headers: dict[str, str]) -> set[str] | None:
        """The maintainers the Basic-auth API key speaks for, or None if there is no valid key."""
        auth = headers.get("authorization", "")
        if not auth.startswith("Basic "):
            return None
        try:
            key_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            return None
        if self.keys.get(key_id) != secret:
            return None
        return self.key_maintainers.get(key_id, set())

    def _auth_failures(self, db: str, attrs: list[dict[str, str]], mnts: set[str] | None, creating: bool) -> list[tuple[str, str, list[str]]]:
        obj_type, key = attrs[0]["name"], _key(attrs)
        mnt_by = [a["value"] for a in attrs if a["name"] == "mnt-by"]
        failures = []
        if mnts is None or not set(mnt_by) & mnts:
            failures.append(("Error", AUTH_TEXT, [obj_type, key, "mnt-by", ", ".join(mnt_by)]))
        if creating:
            prefix = ip_network(attrs[0]["value"])
            for p in self.protections:
                if p.network.version == prefix.version and prefix.subnet_of(p.network) and not (mnts or set()) & set(p.maintainers):  # type: ignore[arg-type]
                    failures.append(("Error", AUTH_TEXT, [p.obj_type, p.key, p.attr, ", ".join(p.maintainers)]))
                    break
        return failures

    def _create(self, db: str, obj_type: str, headers: dict[str, str], body: Any, dry: bool,
                entry: Logged) -> tuple[int, Any, dict[str, str]]:
        try:
            obj = body["objects"]["object"][0]
            attrs = [{"name": a["name"], "value": a["value"]} for a in obj["attributes"]["attribute"]]
        except (KeyError, TypeError, IndexError):
            return 400, {"errormessages": _messages(("Error", "The validated collection is empty", []))}, {}
        if attrs[0]["name"] != obj_type:
            return 400, {"errormessages": _messages(("Error", "Object type specified in URI (%s) does not match the "
                                                     "WhoisResources contents", [obj_type]))}, {}
        key = _key(attrs)
        if self.get(db, obj_type, key) is not None:
            # Not recorded: the status (409, ripe-database-documentation REST-API-Data-model.md) is documented, this text is a stand-in.
            return 409, {"errormessages": _messages(("Error", "Enforced new keyword specified, but the object "
                                                     "already exists in the database", []))}, {}
        failures = self._auth_failures(db, attrs, self._maintainers(headers), creating=True)
        if failures:
            if dry:
                failures.append(("Info", "Dry-run performed, no changes to the database have been made", []))
            return 401, {"errormessages": _messages(*failures)}, {}
        stamp = "2026-01-01T00:00:00Z"  # generated attributes, as RIPE adds them before source
        stored = [*attrs[:-1], {"name": "created", "value": stamp}, {"name": "last-modified", "value": stamp}, *attrs[-1:]]
        if dry:
            return 200, self._object_body(db, stored, _messages(
                ("Info", "Dry-run performed, no changes to the database have been made", []))), {}
        self.objects[(db, obj_type, key)] = stored
        entry.changed = True
        return 200, self._object_body(db, stored), {}

    def _modify(self, method: str, db: str, obj_type: str, key: str, headers: dict[str, str], body: Any, dry: bool,
                entry: Logged) -> tuple[int, Any, dict[str, str]]:
        current = self.get(db, obj_type, key)
        if current is None:
            return 404, self._not_found(db), {}
        failures = self._auth_failures(db, current, self._maintainers(headers), creating=False)
        if failures:
            return 401, {"errormessages": _messages(*failures)}, {}
        if method == "DELETE":
            if not dry:
                del self.objects[(db, obj_type, key)]
                entry.changed = True
            return 200, self._object_body(db, current), {}
        try:
            attrs = [{"name": a["name"], "value": a["value"]} for a in body["objects"]["object"][0]["attributes"]["attribute"]]
        except (KeyError, TypeError, IndexError):
            return 400, {"errormessages": _messages(("Error", "The validated collection is empty", []))}, {}
        if _key(attrs) != key:
            return 400, {"errormessages": _messages(("Error", "Primary key cannot be changed", []))}, {}
        if not dry:
            self.objects[(db, obj_type, key)] = attrs
            entry.changed = True
        return 200, self._object_body(db, attrs), {}

    def _search(self, query: dict[str, list[str]]) -> tuple[int, Any, dict[str, str]]:
        db = query.get("source", ["RIPE"])[0].lower()
        needle = query.get("query-string", [""])[0]
        types = set(",".join(query.get("type-filter", [""])).split(","))
        found = [attrs for (d, t, _), attrs in self.objects.items()
                 if d == db and t in types and any(a["name"] == "mnt-by" and a["value"] == needle for a in attrs)]
        if not found:
            return 404, self._not_found(db), {}
        body = copy.deepcopy(fixture("search_typefilter_ROUTE_211.43.192.0.json"))
        template = body["objects"]["object"][0]
        body["objects"]["object"] = []
        for attrs in found:
            obj = copy.deepcopy(template)
            obj["type"] = attrs[0]["name"]
            obj["attributes"]["attribute"] = copy.deepcopy(attrs)
            body["objects"]["object"].append(obj)
        return 200, body, {}

    def _rpki(self, method: str, path: str, headers: dict[str, str], body: Any,
              entry: Logged) -> tuple[int, Any, dict[str, str]]:
        if headers.get("ncc-api-authorization") not in self.rpki_keys:
            return 401, {"error": "Invalid or missing API key"}, {}
        if method == "GET" and path == "/api/rpki/roas":
            return 200, copy.deepcopy(self.roas), {}
        if method == "POST" and path == "/api/rpki/roas/publish":
            deleted = [d for d in body.get("deleted", [])]
            missing = [d for d in deleted if d not in self.roas]
            if missing:
                return 400, {"error": f"cannot delete ROA that does not exist: {missing[0]}"}, {}
            self.roas = [r for r in self.roas if r not in deleted] + list(body.get("added", []))
            entry.changed = True
            return 200, {}, {}
        return 404, {"error": "not found"}, {}


    def _rpki_validation(self, query: dict[str, list[str]]) -> tuple[int, Any, dict[str, str]]:
        """RIPEstat's rpki-validation call (tests/fixtures/ripestat), judged against ``self.roas`` as RFC 6811 does:
        no covering ROA -> unknown; a covering ROA of the origin with maxLength >= the length -> valid; else invalid."""
        asn = query.get("resource", [""])[0].upper().removeprefix("AS")
        prefix = ip_network(query.get("prefix", ["0.0.0.0/0"])[0])
        body = json.loads((FIXTURES.parent / "ripestat" / "rpki-validation_2a02-7080--_48_AS398826.json").read_text())
        covering = []
        for roa in self.roas:
            net = ip_network(roa["prefix"])
            if net.version == prefix.version and prefix.subnet_of(net):  # type: ignore[arg-type]
                max_length = int(roa.get("maximalLength", net.prefixlen))
                origin = str(roa["asn"]).upper().removeprefix("AS")
                validity = ("valid" if origin == asn and prefix.prefixlen <= max_length else
                            "invalid_length" if origin == asn else "invalid_asn")
                covering.append({"origin": origin, "prefix": str(net), "validity": validity, "max_length": max_length})
        states = {r["validity"] for r in covering}
        status = "unknown" if not covering else "valid" if "valid" in states else \
            "invalid_length" if "invalid_length" in states else "invalid_asn"
        body["data"] = {"resource": asn, "prefix": str(prefix), "validating_roas": covering, "status": status,
                        "validator": "routinator"}
        return 200, body, {}


def _key(attrs: list[dict[str, str]]) -> str:
    first = attrs[0]
    if first["name"] in ("route", "route6"):
        origin = next((a["value"] for a in attrs if a["name"] == "origin"), "")
        return f"{first['value']}{origin.upper()}"
    return first["value"]


DRIP_HEADER = "X-Fake-Drip"  # internal: handle() tells the handler to drip; never sent


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte (a hung server behind a working TCP stack)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self.connections = 0

    def __enter__(self) -> SilentServer:
        self._sock.settimeout(0.05)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self._held.append(conn)
            self.connections += 1

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        for conn in self._held:
            conn.close()
        self._sock.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"


def refused_port() -> tuple[socket.socket, int]:
    """A loopback port bound but not listening: connections are refused (RST), and no one else can take it while
    the returned socket stays open."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


class _Handler(BaseHTTPRequestHandler):
    fake: FakeRipe
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes; Nagle + delayed ACK would add 40 ms each

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, out, extra = self.fake.handle(self.command, self.path, headers, raw)
        data = out.encode() if isinstance(out, str) else json.dumps(out).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            drip = float(extra.pop(DRIP_HEADER, 0))
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            if not drip:
                self.wfile.write(data)
            for i in range(len(data) if drip else 0):
                self.wfile.write(data[i:i + 1])
                self.wfile.flush()
                time.sleep(drip)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test): nothing to answer

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean; the fake's own log is self.fake.log
