"""The IAM policies of the HTTPS certificate (docs/tls.md), and the least-privilege check the policy pack runs on them.

Pure (no Pulumi import): the component fills in the zone id, the policy pack and the tests parse the JSON.

* The **issuer** (lego on the issuer PoP) may change only TXT records of the exact challenge names, only in the
  challenge zone: ``route53:ChangeResourceRecordSets`` with ``ForAllValues:StringEquals`` on the condition keys
  ``route53:ChangeResourceRecordSetsNormalizedRecordNames`` (lowercase, no trailing dot),
  ``route53:ChangeResourceRecordSetsRecordTypes`` = TXT and ``route53:ChangeResourceRecordSetsActions`` (UPSERT,
  DELETE) (AWS Route 53 Developer Guide, "Using IAM policy conditions for fine-grained access control",
  https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/specifying-conditions-route53.html). Plus what lego's
  route53 provider reads (go-acme/lego ``providers/dns/route53/route53.toml``): ``GetChange`` on ``change/*``,
  ``ListHostedZonesByName`` (cannot be scoped: ``*``), ``ListResourceRecordSets`` on the zone. And the one S3 object.
* The **readers** (every PoP) may read that one object (and list the bucket, which holds nothing else, so that a
  missing object is a 404, not a 403: https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html).
"""

from __future__ import annotations

import json
from typing import Any

ROUTE53_TXT_ACTIONS = ["DELETE", "UPSERT"]
NAMES_KEY = "route53:ChangeResourceRecordSetsNormalizedRecordNames"
TYPES_KEY = "route53:ChangeResourceRecordSetsRecordTypes"
ACTIONS_KEY = "route53:ChangeResourceRecordSetsActions"


def zone_arn(zone_id: str) -> str:
    return f"arn:aws:route53:::hostedzone/{zone_id}"


def _s3(bucket: str, key: str, write: bool, read_only: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    actions = ["s3:GetObject", "s3:PutObject"] if write else ["s3:GetObject"]
    out = [{"Sid": "CertificateObject", "Effect": "Allow", "Action": actions, "Resource": f"arn:aws:s3:::{bucket}/{key}"}]
    if read_only:  # the reboot peer list, which only the Pulumi program writes
        out.append({"Sid": "ReadOnlyObjects", "Effect": "Allow", "Action": ["s3:GetObject"],
                    "Resource": [f"arn:aws:s3:::{bucket}/{k}" for k in read_only]})
    # Without ListBucket S3 answers a missing object with 403, not 404, and the issuer could not tell "not issued yet"
    # from "not allowed". The bucket holds only the bundle and the peer list (public addresses): listing reveals nothing.
    out.append({"Sid": "MissingObjectIs404", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}"})
    return out


def issuer_policy(zone_id: str, txt_names: list[str], bucket: str, key: str, read_only: tuple[str, ...] = ()) -> str:
    """The issuer's policy document (JSON text) for the challenge zone ``zone_id`` and its TXT names."""
    doc = {"Version": "2012-10-17", "Statement": [
        {"Sid": "AcmeChallengeTxtOnly", "Effect": "Allow", "Action": "route53:ChangeResourceRecordSets",
         "Resource": zone_arn(zone_id),
         "Condition": {"ForAllValues:StringEquals": {NAMES_KEY: sorted(n.rstrip(".").lower() for n in txt_names),
                                                     TYPES_KEY: ["TXT"], ACTIONS_KEY: ROUTE53_TXT_ACTIONS}}},
        {"Sid": "ReadChallengeZone", "Effect": "Allow", "Action": "route53:ListResourceRecordSets",
         "Resource": zone_arn(zone_id)},
        {"Sid": "WaitForChange", "Effect": "Allow", "Action": "route53:GetChange", "Resource": "arn:aws:route53:::change/*"},
        {"Sid": "FindZone", "Effect": "Allow", "Action": "route53:ListHostedZonesByName", "Resource": "*"},
        *_s3(bucket, key, write=True, read_only=read_only)]}
    return json.dumps(doc, indent=2, sort_keys=True, allow_nan=False)


def reader_policy(bucket: str, key: str, read_only: tuple[str, ...] = ()) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": _s3(bucket, key, write=False, read_only=read_only)},
                      indent=2, sort_keys=True, allow_nan=False)


# --- least privilege -----------------------------------------------------------------------------------------------

# Everything an identity of this program may be allowed, with the resources each action may name. Anything else
# (another action, a wildcard action, Deny-less NotAction/NotResource, another zone or object) is a violation.
ALLOWED_ACTIONS = {
    "route53:ChangeResourceRecordSets": "zone", "route53:ListResourceRecordSets": "zone",
    "route53:GetChange": "change", "route53:ListHostedZonesByName": "any",
    "s3:GetObject": "object", "s3:PutObject": "object", "s3:ListBucket": "bucket",
}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def policy_problems(document: str | dict[str, Any]) -> list[str]:
    """Why ``document`` grants more than changing the challenge TXT records and reading/writing one object.

    Rules: only Allow statements with Action and Resource (no NotAction/NotResource, no wildcard actions); only the
    actions of :data:`ALLOWED_ACTIONS`; ChangeResourceRecordSets only on named hosted zones and only under a
    ForAllValues:StringEquals condition restricting record types to exactly TXT and record names to explicit,
    normalised names (no wildcards); S3 only on named objects and buckets.
    """
    try:
        doc = json.loads(document) if isinstance(document, str) else document
    except json.JSONDecodeError as exc:
        return [f"the policy is not JSON: {exc}"]
    problems: list[str] = []
    for i, st in enumerate(_as_list(doc.get("Statement", []))):
        where = f"Statement[{i}]" + (f" ({st['Sid']})" if isinstance(st, dict) and st.get("Sid") else "")
        if not isinstance(st, dict):
            problems.append(f"{where}: not an object")
            continue
        if st.get("Effect") != "Allow":
            continue  # a Deny only takes away
        for bad in ("NotAction", "NotResource", "NotPrincipal"):
            if bad in st:
                problems.append(f"{where}: {bad} grants everything else")
        actions = [str(a) for a in _as_list(st.get("Action", []))]
        resources = [str(r) for r in _as_list(st.get("Resource", []))]
        for action in actions:
            kind = ALLOWED_ACTIONS.get(action)
            if kind is None:
                problems.append(f"{where}: action {action} is not needed for ACME DNS-01 or the certificate store")
                continue
            for res in resources:
                if kind == "zone" and not (res.startswith("arn:aws:route53:::hostedzone/") and "*" not in res):
                    problems.append(f"{where}: {action} on {res}: only on the challenge zone's own ARN")
                if kind == "change" and res != "arn:aws:route53:::change/*":
                    problems.append(f"{where}: {action} on {res}: only on arn:aws:route53:::change/*")
                if kind == "object" and not (res.startswith("arn:aws:s3:::") and "/" in res and "*" not in res):
                    problems.append(f"{where}: {action} on {res}: only on the certificate object")
                if kind == "bucket" and not (res.startswith("arn:aws:s3:::") and "/" not in res and "*" not in res):
                    problems.append(f"{where}: {action} on {res}: only on the certificate bucket")
            if action == "route53:ChangeResourceRecordSets":
                problems += _change_condition_problems(where, st.get("Condition"))
    return problems


def _change_condition_problems(where: str, condition: Any) -> list[str]:
    cond = (condition or {}).get("ForAllValues:StringEquals") if isinstance(condition, dict) else None
    if not isinstance(cond, dict):
        return [f"{where}: ChangeResourceRecordSets without a ForAllValues:StringEquals condition may change any record"]
    problems = []
    if _as_list(cond.get(TYPES_KEY, [])) != ["TXT"]:
        problems.append(f"{where}: {TYPES_KEY} must be exactly [TXT], got {cond.get(TYPES_KEY)}")
    names = [str(n) for n in _as_list(cond.get(NAMES_KEY, []))]
    if not names:
        problems.append(f"{where}: {NAMES_KEY} is missing: every name in the zone could be changed")
    for n in names:
        if "*" in n or "?" in n:
            problems.append(f"{where}: record name {n} is a pattern; name the challenge records exactly")
        if n != n.lower() or n.endswith("."):
            problems.append(f"{where}: record name {n} is not normalised (lowercase, no trailing dot), so it never matches")
    return problems
