"""A small RIPE Atlas REST client: create a one-off DNS catchment measurement, read its status, results and the
probes' locations, and the account's credit balance.

Why requests + dnspython and not ripe.atlas.cousteau / ripe.atlas.sagan: both are GPL-3.0 (this project is
Apache-2.0), and we need four endpoints and one decoder; the retry loop is the one the RIPE Database client already
has (``infra.ripe.transport``). API: RIPE Atlas REST API reference, https://atlas.ripe.net/docs/apis/rest-api-reference/
(measurements, results, probes, credits); authentication with the header ``Authorization: Key <key>``
(https://atlas.ripe.net/docs/apis/rest-api-manual/authentication/api-keys/). The key never appears in messages or
outputs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from infra.catchment.analysis import ProbeInfo, probes_from_atlas
from infra.ripe.errors import BadInput, CredentialError, RipeError, RipeProtocolError
from infra.ripe.transport import Reply, RetryPolicy, Transport, base_url
from infra.untrusted.text import printable

ATLAS_URL = "https://atlas.ripe.net"
ATLAS_KEY_ENV = "RIPE_ATLAS_KEY"
# Atlas's probe-selection areas (REST API reference, "participant selection": type "area").
AREAS = ("WW", "West", "North-Central", "South-Central", "North-East", "South-East")
DEFAULT_AREAS = ("West", "North-Central", "South-Central", "North-East", "South-East")
# Credits per result of a one-off DNS measurement. Atlas does not publish a price list in its API reference; this
# is the commonly quoted figure (10 per DNS result, doubled for one-off) and only an estimate: the Atlas UI shows
# the exact cost before a measurement made there. Override with --credits-per-result.
CREDITS_PER_RESULT = 20
RUNNING = frozenset({"Specified", "Scheduled", "Ongoing"})
_KEY_RE = re.compile(r"^[\x21-\x7e]{8,200}$")


class AtlasError(RipeError):
    """Atlas refused or failed a request (exit code 1); the message says which and why."""


class NotEnoughCredits(AtlasError):
    pass


def atlas_key(env: Mapping[str, str] | None = None) -> str:
    """The key from RIPE_ATLAS_KEY; CredentialError (exit 2) naming the variable, never the value."""
    raw = (env if env is not None else os.environ).get(ATLAS_KEY_ENV, "").strip()
    if not raw:
        raise CredentialError(f"{ATLAS_KEY_ENV} is not set: create a key allowed to create measurements ('My API "
                              "Keys' on the Atlas dashboard, https://atlas.ripe.net/docs/howtos/keys/) and export it")
    if not _KEY_RE.match(raw):
        raise CredentialError(f"{ATLAS_KEY_ENV} contains spaces or non-ASCII characters; paste the key exactly")
    return raw


@dataclass(frozen=True)
class Source:
    """A probe selection: ``type`` area/country/asn/prefix/probes and how many probes."""

    type: str
    value: str
    requested: int

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "value": self.value, "requested": self.requested}


def dns_definitions(targets: Iterable[tuple[int, str]], description: str) -> list[dict[str, Any]]:
    """One DNS definition per (af, address): CHAOS TXT id.server with the NSID bit (REST API reference, DNS type)."""
    return [{"type": "dns", "af": af, "target": addr, "query_class": "CHAOS", "query_type": "TXT",
             "query_argument": "id.server", "set_nsid_bit": True, "set_rd_bit": False, "include_abuf": True,
             "use_probe_resolver": False, "protocol": "UDP", "udp_payload_size": 1232,
             "description": f"{description} (IPv{af})"} for af, addr in targets]


def estimate_credits(definitions: list[dict[str, Any]], sources: list[Source], per_result: int = CREDITS_PER_RESULT) -> int:
    return len(definitions) * sum(s.requested for s in sources) * per_result


def _detail(reply: Reply) -> str:
    """Atlas's error text, made printable (it reaches the user's terminal): no control or escape sequences."""
    body = reply.body
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        err = body["error"]
        parts = [str(err.get("detail") or err.get("title") or "")]
        errors = err.get("errors")
        for e in errors if isinstance(errors, list) else []:
            if isinstance(e, Mapping):
                src = e.get("source", {}).get("pointer", "") if isinstance(e.get("source"), Mapping) else ""
                parts.append(f"{src} {e.get('detail', '')}".strip())
        return printable("; ".join(p for p in parts if p) or reply.text, 200)
    return printable(reply.text, 200).strip() or "no details"


class AtlasClient:
    def __init__(self, key: str | None, url: str = ATLAS_URL, policy: RetryPolicy | None = None,
                 sleep: Callable[[float], None] | None = None) -> None:
        headers = {"Accept": "application/json", "Content-Type": "application/json", "User-Agent": "anycast-catchment"}
        if key:
            headers["Authorization"] = f"Key {key}"
        self.has_key = bool(key)
        self._t = Transport(base_url(url, "--atlas-url"), headers, policy or RetryPolicy(attempts=3, budget=60), sleep)

    def _call(self, method: str, path: str, what: str, params: Mapping[str, str] | None = None, body: Any = None) -> Any:
        reply = self._t.request(method, path, params=params, body=body, what=what)
        if reply.status in (401, 403):
            raise AtlasError(f"{what}: RIPE Atlas refused the key (HTTP {reply.status}: {_detail(reply)}); check "
                             f"{ATLAS_KEY_ENV} and that the key has the needed permission ('My API Keys' on the dashboard)")
        if reply.status == 404:
            raise AtlasError(f"{what}: not found (HTTP 404: {_detail(reply)})")
        if reply.status >= 400:
            detail = _detail(reply)
            if "credit" in detail.lower():
                raise NotEnoughCredits(f"{what}: RIPE Atlas says the account lacks credits ({detail}); "
                                       "fewer probes (--per-source) or one address family (--af) cost less")
            raise AtlasError(f"{what}: RIPE Atlas answered HTTP {reply.status}: {detail}")
        if reply.body is None:
            why = f" ({reply.problem})" if reply.problem and " is not JSON " not in reply.problem else ""
            raise RipeProtocolError(f"{what}: RIPE Atlas answered HTTP {reply.status} without JSON{why}: "
                                    f"{printable(reply.text, 120)!r}")
        return reply.body

    def credits(self) -> int | None:
        """The account's balance (``/api/v2/credits/``), None when the key may not read it."""
        try:
            body = self._call("GET", "/api/v2/credits/", "read the credit balance")
        except AtlasError as exc:
            if "refused the key" in str(exc) and self.has_key:
                return None
            raise
        value = body.get("current_balance") if isinstance(body, Mapping) else None
        return int(value) if isinstance(value, int | float) else None

    def create(self, definitions: list[dict[str, Any]], sources: list[Source]) -> list[int]:
        if not self.has_key:
            raise CredentialError(f"{ATLAS_KEY_ENV} is not set: creating a measurement needs a key")
        body = {"definitions": definitions, "probes": [s.to_json() for s in sources], "is_oneoff": True}
        out = self._call("POST", "/api/v2/measurements/", "create the measurement", body=body)
        ids = out.get("measurements") if isinstance(out, Mapping) else None
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise RipeProtocolError(f"create the measurement: unexpected answer {printable(out, 200)!r}")
        return ids

    def status(self, msm_id: int) -> tuple[str, dict[str, Any]]:
        """(status name, measurement document); the name is ``Ongoing`` etc. as Atlas spells it."""
        body = self._call("GET", f"/api/v2/measurements/{msm_id}/", f"read measurement {msm_id}")
        status = body.get("status") if isinstance(body, Mapping) else None
        name = status.get("name") if isinstance(status, Mapping) else None
        if not isinstance(name, str):
            raise RipeProtocolError(f"read measurement {msm_id}: no status in the answer")
        if body.get("type") not in (None, "dns"):
            raise BadInput(f"--measurement {msm_id}: a {printable(body.get('type'), 40)} measurement; catchment needs "
                           "a DNS one")
        return name, dict(body)

    def results(self, msm_id: int) -> list[Any]:
        # The results endpoint takes none of the generic query parameters (REST API manual, "Results and Latest").
        body = self._call("GET", f"/api/v2/measurements/{msm_id}/results/", f"read the results of {msm_id}")
        if not isinstance(body, list):
            raise RipeProtocolError(f"read the results of {msm_id}: expected a list")
        return body

    def probes(self, ids: Iterable[str]) -> dict[str, ProbeInfo]:
        """Locations of the probes (``/api/v2/probes/?id__in=...``), 100 ids per request, following ``next``."""
        wanted = sorted({str(i) for i in ids}, key=lambda s: (len(s), s))
        out: dict[str, ProbeInfo] = {}
        for start in range(0, len(wanted), 100):
            chunk = wanted[start:start + 100]
            params: dict[str, str] | None = {"id__in": ",".join(chunk), "page_size": "100",
                                             "fields": "id,country_code,asn_v4,asn_v6,geometry"}
            path = "/api/v2/probes/"
            for _page in range(20):
                what = "read the probes' locations"
                body = self._call("GET", path, what, params=params)
                out.update(probes_from_atlas(body, f"{what}: RIPE Atlas answer"))
                nxt = body.get("next") if isinstance(body, Mapping) else None
                if not nxt:
                    break
                # Only the query of ``next`` is used: the host and path stay ours whatever the answer says.
                if not isinstance(nxt, str) or urlsplit(nxt).path.rstrip("/") != "/api/v2/probes":
                    raise RipeProtocolError(f"{what}: RIPE Atlas answered a 'next' link that is not a probes page: "
                                            f"{printable(nxt, 120)!r}")
                params = dict(parse_qsl(urlsplit(nxt).query))
        return out
