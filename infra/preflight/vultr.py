"""Vultr account checks (API v2, read-only GETs): BGP enabled with the stack's ASN and password, each PoP's plan
available in its region, the OS image, the SSH keys.

Formats: ``GET /v2/account/bgp`` -> ``{"enabled": bool, "asn": int, "password": str}`` (vultr/govultr
``account.go`` ``GetBGP`` and its test; Vultr's "Get Account BGP Info"); ``GET /v2/regions/{id}/availability`` ->
``{"available_plans": [...]}`` (govultr ``regions.go``); ``GET /v2/os`` -> ``{"os": [{"id", "name", ...}], "meta":
{"links": {"next": cursor}}}`` and ``GET /v2/ssh-keys`` -> ``{"ssh_keys": [...], "meta": ...}`` (govultr ``os.go``,
``ssh_key.go``); errors ``{"error": "...", "status": 401}``. The key is read from ``VULTR_API_KEY``, the variable the
Pulumi Vultr provider reads, and the base URL from ``VULTR_API_URL`` (default https://api.vultr.com).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from infra.model import Network
from infra.preflight.http import Answer, Api, Timeouts, base_url
from infra.preflight.rows import Row, Unreachable, fail, passed, skip, warn
from infra.preflight.text import api_message, redact

KEY_ENV = "VULTR_API_KEY"
URL_ENV = "VULTR_API_URL"
DEFAULT_URL = "https://api.vultr.com"
SECTION = "vultr"
MAX_PAGES = 20  # 500 per page: far more OS images and SSH keys than any account has
KEY_FIX = (f"create an API key at https://my.vultr.com/settings/#settingsapi, allow this machine's address in its "
           f"Access Control, and export {KEY_ENV}")


class _Refused(Exception):
    """The API key was refused: every later authenticated check says so instead of asking again."""


def vultr_api(env: Mapping[str, str], timeouts: Timeouts | None = None) -> tuple[Api, str | None]:
    """The client and the key (None if unset). BadUrl if ``VULTR_API_URL`` is unusable."""
    key = env.get(KEY_ENV) or None
    base = base_url(env[URL_ENV], URL_ENV) if env.get(URL_ENV) else DEFAULT_URL
    headers = {"Accept": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    return Api("the Vultr API", base, headers, timeouts), key


def vultr_rows(network: Network, stack: str, env: Mapping[str, str], api: Api, key: str | None) -> list[Row]:
    if not any(p.is_vultr for p in network.pops):
        return [skip(SECTION, "Vultr", "the stack has no Vultr PoP")]
    rows: list[Row] = []
    secrets = (key, env.get(network.bgp.password_env))
    checks = (_bgp, _plans, _os, _ssh_keys)
    for check in checks:
        try:
            found = check(network, stack, env, api, key)
            if key and any(r.detail.startswith(REFUSED) for r in found):
                key = None  # said once; the public GETs go on without the refused key
                api.drop_header("Authorization")
            rows += found
        except Unreachable as exc:
            rows.append(fail(SECTION, "Vultr API", f"{exc}; the remaining Vultr checks did not run",
                             f"check the network path to the API ({URL_ENV} if set) and run preflight again"))
            break
    return [Row(r.section, r.check, r.status, redact(r.detail, secrets), redact(r.fix, secrets)) for r in rows]


REFUSED = f"the Vultr API refused {KEY_ENV}"


def _refusal(answer: Answer, what: str) -> Row:
    return fail(SECTION, what, f"{REFUSED} (HTTP {answer.status}: "
                f"{api_message(answer.body, answer.text)})", KEY_FIX)


def _unexpected(answer: Answer, what: str) -> Row:
    return fail(SECTION, what, f"unexpected answer HTTP {answer.status}: {api_message(answer.body, answer.text)}",
                f"try again later; if it persists, check {URL_ENV} and https://status.vultr.com")


def _bgp(network: Network, stack: str, env: Mapping[str, str], api: Api, key: str | None) -> list[Row]:
    what = "account BGP"
    if not key:
        return [fail(SECTION, "API key", f"{KEY_ENV} is not set; BGP, ASN, password and SSH keys are not checked",
                     f"export {KEY_ENV}=<the key you gave `pulumi config set --secret vultr:apiKey`>")]
    answer = api.get("/v2/account/bgp")
    if answer.status in (401, 403):
        return [_refusal(answer, what)]
    if answer.status != 200 or not isinstance(answer.body, dict):
        return [_unexpected(answer, what)]
    body = answer.body
    if body.get("enabled") is not True:
        return [fail(SECTION, what, "BGP is not enabled on this Vultr account",
                     "request BGP in the control panel (Network -> BGP) with your ASN and prefixes, or ask for a "
                     "Vultr-assigned private ASN; wait for approval (docs/deploy.md)")]
    rows = [passed(SECTION, what, "enabled")]
    asn = body.get("asn")
    if not isinstance(asn, int) or isinstance(asn, bool):
        rows.append(_unexpected(answer, "account ASN"))
    elif asn != network.asn:
        fix = (f"set asn: {asn} in Pulumi.{stack}.yaml (the private ASN Vultr assigned to the account)"
               if network.asn_source == "vultr-assigned" else
               f"set asn in Pulumi.{stack}.yaml to the ASN Vultr approved, or ask Vultr support to correct AS{asn}")
        rows.append(fail(SECTION, "account ASN", f"Vultr has AS{asn} on file, the stack says AS{network.asn} "
                         f"(asnSource {network.asn_source}): the BGP sessions would never come up", fix))
    else:
        rows.append(passed(SECTION, "account ASN", f"AS{asn}, as in the stack (asnSource {network.asn_source})"))
    rows.append(_password(network, env, body.get("password")))
    return rows


def _password(network: Network, env: Mapping[str, str], held: Any) -> Row:
    what, var = "BGP password", network.bgp.password_env
    mine = env.get(var)
    if not isinstance(held, str) or not held:
        return warn(SECTION, what, "the Vultr API returned no password to compare with",
                    "copy the password from the BGP tab of an instance in the control panel")
    if not mine:
        return warn(SECTION, what, f"not compared: {var} is not set",
                    f"{var}=\"$(pulumi config get anycast:bgpPassword)\" anycast preflight ...")
    # Constant time: the comparison must not tell a timing observer how much of the password was right.
    if not hmac.compare_digest(mine.encode(), held.encode()):
        return fail(SECTION, what, f"the password in {var} differs from the one Vultr holds for the account",
                    "pulumi config set --secret anycast:bgpPassword <the password from Vultr's BGP tab>")
    return passed(SECTION, what, f"{var} matches the account's (not shown)")


def _plans(network: Network, stack: str, env: Mapping[str, str], api: Api, key: str | None) -> list[Row]:
    rows: list[Row] = []
    by_region: dict[str, list[tuple[int, str, str]]] = {}
    for i, pop in enumerate(network.pops):
        if pop.is_vultr:
            assert pop.region is not None and pop.plan is not None
            by_region.setdefault(pop.region, []).append((i, pop.code, pop.plan))
    for region, pops in sorted(by_region.items()):
        answer = api.get(f"/v2/regions/{region}/availability")
        what = f"plans in {region}"
        if answer.status in (401, 403):
            rows.append(_refusal(answer, what))
            continue
        if answer.status == 404:
            rows.append(fail(SECTION, what, f"Vultr does not know region {region}",
                             f"pick a region from GET /v2/regions for {', '.join(c for _, c, _ in pops)}"))
            continue
        plans = answer.body.get("available_plans") if isinstance(answer.body, dict) else None
        if answer.status != 200 or not isinstance(plans, list):
            rows.append(_unexpected(answer, what))
            continue
        for i, code, plan in pops:
            if plan in plans:
                continue
            others = ", ".join(p for p in plans if isinstance(p, str) and p.startswith(plan.split("-")[0] + "-"))[:100]
            rows.append(fail(SECTION, f"plan of {code}", f"{plan} is not available in {region} now"
                             + (f" (available there: {others})" if others else " (no plan of that family is)"),
                             f"set pops[{i}].plan (or defaults.plan) to a plan available in {region}, or move {code}"))
    if not any(r.status != "PASS" for r in rows):
        count = sum(len(p) for p in by_region.values())
        rows.append(passed(SECTION, "plans", f"every Vultr PoP's plan is available in its region ({count} PoPs, "
                           f"{len(by_region)} regions)"))
    return rows


def _pages(api: Api, path: str, field: str) -> tuple[Answer, list[Any]]:
    """Every item of a paginated list (``meta.links.next`` cursors), or the first answer that was not a 200."""
    items: list[Any] = []
    params = {"per_page": "500"}
    answer = api.get(path, params)
    for _ in range(MAX_PAGES):
        if answer.status != 200 or not isinstance(answer.body, dict) or not isinstance(answer.body.get(field), list):
            return answer, items
        items += answer.body[field]
        meta = answer.body.get("meta")
        cursor = ((meta or {}).get("links") or {}).get("next") if isinstance(meta, dict) else None
        if not cursor or not isinstance(cursor, str):
            break
        answer = api.get(path, {**params, "cursor": cursor})
    return Answer(200, None, ""), items


def _os(network: Network, stack: str, env: Mapping[str, str], api: Api, key: str | None) -> list[Row]:
    what, os_id = "OS image", network.defaults.os_id
    answer, items = _pages(api, "/v2/os", "os")
    if answer.status in (401, 403):
        return [_refusal(answer, what)]
    if answer.status != 200:
        return [_unexpected(answer, what)]
    names = {i.get("id"): str(i.get("name", "")) for i in items if isinstance(i, dict)}
    if os_id not in names:
        return [fail(SECTION, what, f"OS id {os_id} is not offered (of {len(names)} images)",
                     "set defaults.osId to the id of 'Debian 12 x64 (bookworm)' from GET /v2/os")]
    name = names[os_id][:60]
    if not name.startswith("Debian 12"):
        return [warn(SECTION, what, f"OS id {os_id} is '{name}'; the PoPs' cloud-config is tested on Debian 12",
                     "set defaults.osId to the id of 'Debian 12 x64 (bookworm)' (2136)")]
    return [passed(SECTION, what, f"{os_id} is '{name}'")]


def _ssh_keys(network: Network, stack: str, env: Mapping[str, str], api: Api, key: str | None) -> list[Row]:
    what = "SSH keys"
    wanted = [" ".join(k.split()[:2]) for k in network.admin.ssh_keys]
    if not wanted:
        return [warn(SECTION, what, "admin.sshKeys is empty: no one can log in to a PoP",
                     f"add your public key to admin.sshKeys in Pulumi.{stack}.yaml")]
    if not key:
        return [skip(SECTION, what, f"{len(wanted)} in the stack; the account's are not checked without a working "
                     f"{KEY_ENV}")]
    answer, items = _pages(api, "/v2/ssh-keys", "ssh_keys")
    if answer.status in (401, 403):
        return [_refusal(answer, what)]
    if answer.status != 200:
        return [_unexpected(answer, what)]
    held = {" ".join(str(i.get("ssh_key", "")).split()[:2]) for i in items if isinstance(i, dict)}
    present = sum(1 for k in wanted if k in held)
    return [passed(SECTION, what, f"{len(wanted)} in the stack, {present} of them already in the account; the key "
                   f"may list and add SSH keys (pulumi up adds anycast-{stack}-<n>)")]
