"""RIPE checks (read-only): the route/route6 objects that exist, the maintainer and API key (a RIPE dry run, so
nothing is written), the ROAs (RPKI management API, when its key is set) and the RPKI validity of each announcement
as RIPE's public validator sees it (RIPEstat ``rpki-validation``: https://stat.ripe.net/docs/data-api/api-endpoints/rpki-validation,
states valid / invalid_asn / invalid_length / unknown).

Every request goes through the RIPE clients' transport (infra/ripe/transport.py: timeouts, retries, a time budget).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network

from infra.model import Network
from infra.preflight.rows import Row, fail, passed, skip, warn
from infra.preflight.text import clean
from infra.ripe import routes
from infra.ripe.client import RipeDbClient
from infra.ripe.credentials import ripe_api_key, rpki_api_key
from infra.ripe.desired import managing_stack, route_specs
from infra.ripe.errors import CredentialError, RipeError, RipeRefused
from infra.ripe.rpki import RpkiClient, plan_roas, wanted_roas
from infra.ripe.transport import RetryPolicy, Transport, base_url

SECTION = "ripe"
RIPESTAT = "https://stat.ripe.net"


@dataclass(frozen=True)
class RipeUrls:
    """Base URLs (scheme and host); None = RIPE's own."""

    database: str | None = None
    rpki: str | None = None
    ripestat: str | None = None


def ripe_rows(network: Network, stack: str, env: Mapping[str, str], urls: RipeUrls, policy: RetryPolicy) -> list[Row]:
    rows = _route_objects(network, stack, env, urls, policy)
    rows += _roas(network, stack, env, urls, policy)
    rows += _validity(network, urls, policy)
    return rows


def _first_line(exc: RipeError) -> str:
    """The error's message and RIPE's reasons on one line (the CLI prints one line per row)."""
    return clean(" ".join(line.strip() for line in str(exc).splitlines() if not line.startswith("hint:")), 200)


def _route_objects(network: Network, stack: str, env: Mapping[str, str], urls: RipeUrls, policy: RetryPolicy) -> list[Row]:
    mnt = network.ripe.maintainer
    if not mnt:
        return [skip(SECTION, "route objects", "ripe.maintainer is not set; route objects are not checked",
                     "set ripe.maintainer (and ripe.manage: true) to let the project keep them (docs/ripe.md)")]
    key_row: Row | None = None
    try:
        key = ripe_api_key(env) if env.get("RIPE_API_KEY") or network.ripe.manage else None
    except CredentialError as exc:
        key, key_row = None, fail(SECTION, "API key", str(exc), "export RIPE_API_KEY=KEYID:SECRET (docs/ripe.md)")
    client = RipeDbClient(network.ripe.database, key, urls.database, policy, maintainer=mnt)
    specs = route_specs(network, stack, mnt)
    try:
        changes = routes.plan(client, specs, stack, mnt)
    except RipeError as exc:
        return [fail(SECTION, "route objects", _first_line(exc), "try again later; check --ripe-url if set")]
    rows = [_objects_row(network, stack, changes)]
    if key_row is not None:
        return [*rows, key_row]
    if key is None:
        return [*rows, skip(SECTION, "API key", "RIPE_API_KEY is not set and ripe.manage is false: not needed")]
    return [*rows, _dry_run(client, changes, mnt)]


def _objects_row(network: Network, stack: str, changes: list[routes.Change]) -> Row:
    what = "route objects"
    missing = [c for c in changes if c.action is routes.Action.CREATE]
    present = [c for c in changes if c.action is not routes.Action.CREATE and c.action is not routes.Action.STALE]
    found = f"{len(present)} of {len(present) + len(missing)} exist"
    if not missing:
        return passed(SECTION, what, f"{found} ({', '.join(c.key for c in present)})")
    keys = ", ".join(c.key for c in missing)
    if network.ripe.manage:
        return passed(SECTION, what, f"{found}; pulumi up creates {keys}")
    return warn(SECTION, what, f"{found}; missing {keys}: IRR-filtering networks may drop the announcement",
                f"anycast ripe apply --stack {stack} (or ripe.manage: true)")


def _dry_run(client: RipeDbClient, changes: list[routes.Change], mnt: str) -> Row:
    """RIPE checks the maintainer and the key on a write it does not apply (``?dry-run``)."""
    what = "maintainer and API key"
    writes = [c for c in changes if c.action in routes.WRITES]
    try:
        if writes:
            refusals = routes.dry_run(client, writes)
            if refusals:
                return _refused(refusals[0], what, mnt)
            return passed(SECTION, what, f"RIPE's dry run accepts all {len(writes)} write(s) for {mnt}")
        mine = [c for c in changes if c.action is routes.Action.OK and c.spec and c.actual and managing_stack(c.actual)]
        if not mine:
            return skip(SECTION, what, "nothing to write and no object of this stack to try an unchanged update on")
        change = mine[0]
        assert change.spec is not None and change.actual is not None
        client.update(change.spec.merged(change.actual, client.source), dry_run=True)
        return passed(SECTION, what, f"RIPE's dry run of an unchanged update of {change.key} accepts the key for {mnt}")
    except RipeRefused as exc:
        return _refused(exc, what, mnt)
    except RipeError as exc:
        return fail(SECTION, what, _first_line(exc), "try again later")


def _refused(exc: RipeRefused, what: str, mnt: str) -> Row:
    hint = exc.hints[0] if exc.hints else f"check that RIPE_API_KEY is valid, not expired and allowed for {mnt}"
    return fail(SECTION, what, f"RIPE refused the dry run: {clean(' '.join(exc.messages), 200) or exc.status}",
                clean(hint, 300))


def _roas(network: Network, stack: str, env: Mapping[str, str], urls: RipeUrls, policy: RetryPolicy) -> list[Row]:
    what = "ROAs"
    if not env.get("RIPE_RPKI_API_KEY"):
        return [skip(SECTION, what, "RIPE_RPKI_API_KEY is not set: the hosted-RPKI ROAs are not listed (validity "
                     "below still is)")]
    try:
        client = RpkiClient(rpki_api_key(env), urls.rpki, policy)
        plan = plan_roas(wanted_roas(network), client.roas())
    except RipeError as exc:
        return [fail(SECTION, what, _first_line(exc), "check RIPE_RPKI_API_KEY (LIR Portal -> API Keys)")]
    if plan.add:
        return [warn(SECTION, what, f"missing: {', '.join(str(r) for r in plan.add)}",
                     f"anycast ripe roa apply --stack {stack} (docs/ripe.md)")]
    extra = f"; {plan.warnings[0]}" if plan.warnings else ""
    return [passed(SECTION, what, f"{len(plan.ok)} exact ROA(s) present{extra}")]


def _validity(network: Network, urls: RipeUrls, policy: RetryPolicy) -> list[Row]:
    transport = Transport(base_url(urls.ripestat, "--ripestat-url") if urls.ripestat else RIPESTAT,
                          {"Accept": "application/json"}, policy)
    origin = network.roa_origin_asn
    rows = []
    for prefix in network.announced_prefixes:
        what = f"RPKI {prefix} AS{origin}"
        try:
            reply = transport.request("GET", "/data/rpki-validation/data.json",
                                      params={"resource": f"AS{origin}", "prefix": str(prefix)},
                                      what=f"RPKI validity of {prefix}")
        except RipeError as exc:
            rows.append(fail(SECTION, what, _first_line(exc), "try again later"))
            continue
        data = reply.body.get("data") if isinstance(reply.body, dict) else None
        state = data.get("status") if isinstance(data, dict) else None
        if reply.status != 200 or not isinstance(state, str):
            rows.append(fail(SECTION, what, f"RIPEstat answered HTTP {reply.status} without a status", "try again later"))
            continue
        rows.append(_validity_row(what, state, prefix, origin, network))
    return rows


def _validity_row(what: str, state: str, prefix: IPv4Network | IPv6Network, origin: int, network: Network) -> Row:
    roa_fix = (f"publish a ROA {prefix} origin AS{origin} maxLength {prefix.prefixlen} (anycast ripe roa apply; "
               + ("AS20473 because Vultr originates a Vultr-assigned ASN's routes)" if network.asn_source == "vultr-assigned"
                  else "or at your RIR)"))
    if state == "valid":
        return passed(SECTION, what, "RPKI-valid")
    if state == "unknown":
        return warn(SECTION, what, "no ROA covers it (RPKI not-found): Vultr's prefix onboarding requires one", roa_fix)
    reason = {"invalid_asn": "a covering ROA names another origin AS",
              "invalid_length": "the covering ROA's maxLength is shorter than the prefix"}.get(state, clean(state, 40))
    return warn(SECTION, what, f"the announcement would be RPKI-INVALID ({reason}): most networks drop it", roa_fix)
