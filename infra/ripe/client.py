"""A small typed client for route/route6 objects in the RIPE Database REST API
(RIPE-NCC/ripe-database-documentation ``docs/06.Update-Methods/01.RESTful-API.md``, ``docs/03.RIPE-Database-Structure/11.REST-API-Data-model.md``).

Paths are ``/{source}/{type}/{key}`` under the database's host; ``base_url`` replaces only scheme and host. JSON in
and out. Lookups are anonymous (route objects are public); writes send the API key with HTTP Basic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from infra.ripe.credentials import ApiKey
from infra.ripe.errors import (
    BadInput,
    ErrorMessage,
    RipeProtocolError,
    RipeRefused,
    authorisation_hints,
    error_messages,
)
from infra.ripe.rpsl import RpslObject, from_json
from infra.ripe.transport import Reply, RetryPolicy, Transport, base_url

Database = Literal["ripe", "test"]
HOSTS: dict[str, str] = {"ripe": "https://rest.db.ripe.net", "test": "https://rest-test.db.ripe.net"}
ROUTE_TYPES = ("route", "route6")


@dataclass(frozen=True)
class WriteResult:
    obj: RpslObject | None  # the stored object RIPE returned (None after a dry run that returns none)
    messages: list[ErrorMessage]  # warnings and infos RIPE attached


class RipeDbClient:
    """lookup / create / update / delete of route(6) objects. Raises RipeRefused, RipeUnavailable, RipeProtocolError.

    Args:
        database: ``ripe`` (production) or ``test`` (source TEST, wiped nightly).
        api_key: needed for writes only; None gives a read-only client.
        base_url: replaces scheme and host (a mirror, or the test server); the path stays ``/{source}/...``.
        maintainer: named in authorisation hints.
        on_retry: receives one line per retry (what failed, when the next attempt starts); the CLI prints it.
    """

    def __init__(self, database: Database = "ripe", api_key: ApiKey | None = None, base_url_: str | None = None,
                 policy: RetryPolicy | None = None, sleep: Callable[[float], None] | None = None,
                 maintainer: str | None = None, on_retry: Callable[[str], None] | None = None) -> None:
        if database not in HOSTS:
            raise BadInput(f"--database: '{database}' is not one of ripe, test")
        self.database = database
        self.source = database.upper()  # the source attribute; the path uses the lowercase form
        self.maintainer = maintainer
        self._key = api_key
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        self._anon = Transport(base_url(base_url_) if base_url_ else HOSTS[database], headers, policy, sleep,
                               on_retry=on_retry)
        self._auth = None
        if api_key is not None:
            self._auth = Transport(self._anon.base, {**headers, "Authorization": api_key.authorization()}, policy, sleep,
                                   on_retry=on_retry)

    def _path(self, obj_type: str, key: str | None = None) -> str:
        if obj_type not in ROUTE_TYPES:
            raise BadInput(f"object type '{obj_type}' is not route or route6")
        # The slash in the key stays literal, as RIPE documents (ripe-database-documentation docs/06.Update-Methods/01.RESTful-API.md).
        return f"/{self.database}/{obj_type}" + (f"/{key}" if key else "")

    def _writer(self, what: str) -> Transport:
        if self._auth is None:
            raise BadInput(f"{what}: a write needs the RIPE API key (RIPE_API_KEY)")
        return self._auth

    def lookup(self, obj_type: str, key: str) -> RpslObject | None:
        """The stored object, or None if there is none (404).

        ``unfiltered`` keeps ``notify`` and e-mail attributes: an update is a full PUT built from this answer, and a
        filtered copy would silently drop them.
        """
        what = f"look up {obj_type} {key}"
        reply = self._anon.request("GET", self._path(obj_type, key), params={"unfiltered": "true"}, what=what)
        if reply.status == 404:
            return None
        objects = self._objects(reply, what)
        if len(objects) != 1 or objects[0].type != obj_type:
            raise RipeProtocolError(f"{what}: RIPE returned {len(objects)} object(s), expected one {obj_type}")
        return objects[0].without_generated()

    def search_by_maintainer(self, maintainer: str) -> list[RpslObject]:
        """route and route6 objects whose ``mnt-by`` is ``maintainer`` (inverse query); [] when there are none."""
        what = f"search route objects maintained by {maintainer}"
        # type-filter repeats rather than taking a comma list, like the other multi-valued search parameters.
        params: dict[str, str | list[str]] = {"source": self.source, "query-string": maintainer,
                                              "inverse-attribute": "mnt-by", "type-filter": ["route", "route6"],
                                              "flags": "r"}
        reply = self._anon.request("GET", "/search", params=params, what=what)
        if reply.status == 404:
            return []
        return [o.without_generated() for o in self._objects(reply, what) if o.type in ROUTE_TYPES]

    def create(self, obj: RpslObject, dry_run: bool = False) -> WriteResult:
        what = f"create {obj.type} {obj.key}"
        reply = self._writer(what).request("POST", self._path(obj.type), params=_dry(dry_run),
                                           body=obj.to_json(self.source), what=what)
        return self._written(reply, what, dry_run)

    def update(self, obj: RpslObject, dry_run: bool = False) -> WriteResult:
        """Replace the stored object with ``obj`` (a full PUT: attributes left out are removed)."""
        what = f"update {obj.type} {obj.key}"
        reply = self._writer(what).request("PUT", self._path(obj.type, obj.key), params=_dry(dry_run),
                                           body=obj.to_json(self.source), what=what)
        return self._written(reply, what, dry_run)

    def delete(self, obj_type: str, key: str, reason: str, dry_run: bool = False) -> WriteResult:
        what = f"delete {obj_type} {key}"
        params: dict[str, str | list[str]] = {"reason": reason, **_dry(dry_run)}
        reply = self._writer(what).request("DELETE", self._path(obj_type, key), params=params, what=what)
        return self._written(reply, what, dry_run)

    def _objects(self, reply: Reply, what: str) -> list[RpslObject]:
        if reply.status >= 400:
            raise self._refused(reply, what)
        if not reply.json_ok:
            raise RipeProtocolError(f"{what}: RIPE answered HTTP {reply.status} with a body that is not JSON "
                                    f"({_why(reply)})")
        return from_json(reply.body)

    def _written(self, reply: Reply, what: str, dry_run: bool) -> WriteResult:
        if reply.status >= 400:
            raise self._refused(reply, what)
        if not reply.json_ok:
            raise RipeProtocolError(f"{what}: RIPE answered HTTP {reply.status} with a body that is not JSON "
                                    f"({_why(reply)}); the write may have been applied")
        messages = error_messages(reply.body)
        # A dry run can answer 200 and still carry errors (fixture route_delete_dryrun_errormessages.json).
        errors = [m for m in messages if m.severity.lower() == "error"]
        if errors:
            raise RipeRefused(reply.status, what, [m.text for m in errors], authorisation_hints(errors, self.maintainer))
        objects = from_json(reply.body)
        return WriteResult(objects[0].without_generated() if objects else None,
                           [m for m in messages if m.severity.lower() != "error"])

    def _refused(self, reply: Reply, what: str) -> RipeRefused:
        messages = [m for m in error_messages(reply.body) if m.severity.lower() == "error"]
        texts = [m.text + (f" (attribute {m.attribute})" if m.attribute else "") for m in messages]
        if not texts:
            texts = [f"no error message in the answer ({_snippet(reply.text)})"]
        return RipeRefused(reply.status, what, texts, authorisation_hints(messages, self.maintainer))


def _dry(dry_run: bool) -> dict[str, str]:
    return {"dry-run": "true"} if dry_run else {}


def _why(reply: Reply) -> str:
    """The body's start, and why it was not read when it looks like JSON (too deep, NaN, a charset)."""
    problem = reply.problem if reply.problem and " is not JSON " not in reply.problem else None
    return _snippet(reply.text) + (f"; {problem}" if problem else "")


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return repr(flat[:80] + ("..." if len(flat) > 80 else "")) if flat else "empty"
