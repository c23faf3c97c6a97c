"""AWS checks (read-only): the credentials, the Route53 parent zone, the TLS bucket name, and whether the
credentials may do what ``pulumi up`` does (IAM policy simulation).

boto3 reads the credentials and the endpoint the standard way (``AWS_PROFILE``, ``AWS_ACCESS_KEY_ID``...,
``AWS_ENDPOINT_URL``: botocore's service-specific endpoint configuration), so a local moto server stands in for AWS in
the tests. Every client has (connect, read) timeouts and two attempts at most; after one call found AWS unreachable
the remaining checks say so at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError
from botocore.parsers import ResponseParserError

from infra.contracts import REBOOT_PEERS_STORE_KEY
from infra.model import Network
from infra.preflight.http import Timeouts
from infra.preflight.rows import Row, fail, passed, skip, warn
from infra.preflight.text import clean
from userdata.tls import STORE_REGION, store_bucket

SECTION = "aws"
CREDENTIALS_FIX = "set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) to the credentials `pulumi up` uses"

# What the program's AWS resources need (infra/components/geodns.py, tls.py), by the resource they act on.
ROUTE53_ACTIONS = ("route53:ListHostedZones", "route53:GetHostedZone", "route53:ListResourceRecordSets",
                   "route53:ChangeResourceRecordSets", "route53:GetChange", "route53:CreateHealthCheck",
                   "route53:GetHealthCheck", "route53:UpdateHealthCheck", "route53:DeleteHealthCheck",
                   "route53:ChangeTagsForResource", "route53:ListTagsForResource")
ZONE_ACTIONS = ("route53:CreateHostedZone", "route53:DeleteHostedZone")
S3_ACTIONS = ("s3:CreateBucket", "s3:DeleteBucket", "s3:ListBucket", "s3:GetBucketTagging", "s3:PutBucketTagging",
              "s3:GetBucketPublicAccessBlock", "s3:PutBucketPublicAccessBlock", "s3:GetBucketPolicy", "s3:GetBucketAcl")
# The reboot peer list the program writes into the store (infra/components/tls.py add_reboot_peers).
S3_OBJECT_ACTIONS = ("s3:PutObject", "s3:GetObject", "s3:DeleteObject")
IAM_USER_ACTIONS = ("iam:CreateUser", "iam:GetUser", "iam:DeleteUser", "iam:TagUser", "iam:PutUserPolicy",
                    "iam:GetUserPolicy", "iam:DeleteUserPolicy", "iam:CreateAccessKey", "iam:ListAccessKeys",
                    "iam:DeleteAccessKey")


class _Down(Exception):
    pass


@dataclass
class Aws:
    """boto3 clients (one per service, made on first use) sharing one session and one breaker."""

    timeouts: Timeouts = field(default_factory=Timeouts)
    session: Any = None
    clients: dict[str, Any] = field(default_factory=dict)
    broken: str | None = None

    def client(self, service: str) -> Any:
        if service not in self.clients:
            config = Config(connect_timeout=self.timeouts.connect, read_timeout=self.timeouts.read,
                            region_name=STORE_REGION, retries={"max_attempts": 2, "mode": "standard"})
            self.clients[service] = (self.session or boto3.Session()).client(service, config=config)
        return self.clients[service]

    def call(self, service: str, op: str, **kwargs: Any) -> Any:
        if self.broken:
            raise _Down(self.broken)
        try:
            return getattr(self.client(service), op)(**kwargs)
        except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as exc:
            self.broken = f"AWS ({service}) did not answer: {clean(str(exc), 160)}"
            raise _Down(self.broken) from None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def aws_rows(network: Network, stack: str, aws: Aws) -> list[Row]:
    rows: list[Row] = []
    try:
        identity = _identity(aws, rows)
        if identity is None:
            return rows
        rows += _parent_zone(network, aws)
        rows += _bucket(network, stack, aws, identity["Account"])
        rows += _simulate(network, stack, aws, identity)
    except _Down as exc:
        rows.append(fail(SECTION, "AWS API", str(exc), "check the network path to AWS (AWS_ENDPOINT_URL if set)"))
    except NoCredentialsError:
        rows.append(fail(SECTION, "credentials", "no AWS credentials found", CREDENTIALS_FIX))
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        rows.append(fail(SECTION, "AWS API", f"unexpected answer: {clean(str(exc), 160)}",
                         "try again later; check AWS_ENDPOINT_URL if set"))
    return rows


def _identity(aws: Aws, rows: list[Row]) -> dict[str, str] | None:
    try:
        ident = aws.call("sts", "get_caller_identity")
    except NoCredentialsError:
        rows.append(fail(SECTION, "credentials", "no AWS credentials found", CREDENTIALS_FIX))
        return None
    except ClientError as exc:
        rows.append(fail(SECTION, "credentials", f"AWS refused the credentials ({_code(exc) or _status(exc)})", CREDENTIALS_FIX))
        return None
    except BotoCoreError as exc:
        rows.append(fail(SECTION, "credentials", clean(str(exc)), CREDENTIALS_FIX))
        return None
    rows.append(passed(SECTION, "credentials", f"account {ident['Account']} as {clean(ident['Arn'])}"))
    return {"Account": str(ident["Account"]), "Arn": str(ident["Arn"])}


def parent_zone_servers(network: Network, aws: Aws) -> list[str] | None:
    """The name servers of the parent zone's Route53 delegation set; None if there is no single public zone or AWS
    cannot tell (the AWS rows say why)."""
    try:
        zones = _public_zones(network, aws)
        if len(zones) != 1:
            return None
        zone = aws.call("route53", "get_hosted_zone", Id=zones[0]["Id"])
    except (_Down, ClientError, BotoCoreError, ResponseParserError):
        return None
    return [str(n).rstrip(".").lower() for n in zone.get("DelegationSet", {}).get("NameServers", [])]


def _public_zones(network: Network, aws: Aws) -> list[dict[str, Any]]:
    name = network.dns.parent_zone.rstrip(".") + "."
    answer = aws.call("route53", "list_hosted_zones_by_name", DNSName=name, MaxItems="20")
    return [z for z in answer.get("HostedZones", []) if z.get("Name", "").lower() == name
            and not z.get("Config", {}).get("PrivateZone", False)]


def _parent_zone(network: Network, aws: Aws) -> list[Row]:
    what, parent = "parent zone", network.dns.parent_zone
    try:
        zones = _public_zones(network, aws)
    except ClientError as exc:
        return [fail(SECTION, what, f"cannot list Route53 zones ({_code(exc)})",
                     "allow route53:ListHostedZonesByName to the deploying credentials")]
    if network.dns.create_parent_zone:
        if zones:
            return [warn(SECTION, what, f"a public zone {parent} exists already; dns.createParentZone: true makes a "
                         "second one that no registrar delegates to", "set dns.createParentZone: false to use it")]
        return [passed(SECTION, what, f"{parent} does not exist yet; pulumi up creates it (then delegate it at your "
                       "registrar)")]
    if not zones:
        return [fail(SECTION, what, f"no public Route53 hosted zone {parent} in this account",
                     "create it (Route53 -> Hosted zones) and delegate it at your registrar, or set "
                     "dns.createParentZone: true")]
    if len(zones) > 1:
        return [fail(SECTION, what, f"{len(zones)} public zones named {parent}: the program's lookup by name fails",
                     "delete the zone your registrar does not delegate to")]
    return [passed(SECTION, what, f"{parent} is zone {clean(str(zones[0]['Id']).rsplit('/', 1)[-1], 40)}")]


def _bucket(network: Network, stack: str, aws: Aws, account: str) -> list[Row]:
    if not network.tls.enabled:
        return [skip(SECTION, "TLS bucket", "tls.enabled is false")]
    name = store_bucket(network)
    what = f"TLS bucket {name}"
    taken = fail(SECTION, what, "the name is taken by another AWS account (bucket names are global)",
                 f"set tls.bucket to a name of your own in Pulumi.{stack}.yaml")
    try:
        aws.call("s3", "head_bucket", Bucket=name, ExpectedBucketOwner=account)
    except ClientError as exc:
        if _status(exc) == 404 or _code(exc) in ("404", "NoSuchBucket", "NotFound"):
            return [passed(SECTION, what, "free: pulumi up creates it")]
        if _status(exc) in (301, 403) or _code(exc) in ("403", "AccessDenied", "301", "PermanentRedirect"):
            return [taken]
        return [fail(SECTION, what, f"cannot tell whether the name is free ({_code(exc)})",
                     "allow s3:ListBucket to the deploying credentials")]
    try:
        tags = aws.call("s3", "get_bucket_tagging", Bucket=name, ExpectedBucketOwner=account).get("TagSet", [])
    except ClientError:
        tags = []
    if {"Key": "anycast-stack", "Value": stack} in [{"Key": t.get("Key"), "Value": t.get("Value")} for t in tags]:
        return [passed(SECTION, what, f"already ours (tagged anycast-stack={stack})")]
    return [fail(SECTION, what, f"exists in this account but is not tagged anycast-stack={stack}: pulumi up cannot "
                 "create it", f"set tls.bucket to another name, or `pulumi import aws:s3/bucket:Bucket tls-store {name}`")]


def _principal(identity: dict[str, str], aws: Aws) -> str | None:
    """The IAM ARN to simulate: the user, or the role behind an assumed-role session; None for root."""
    arn = identity["Arn"]
    kind = arn.split(":", 5)[-1]
    if kind == "root":
        return None
    if ":assumed-role/" in arn:
        role = kind.split("/")[1]
        return str(aws.call("iam", "get_role", RoleName=role)["Role"]["Arn"])
    return arn


def _simulate(network: Network, stack: str, aws: Aws, identity: dict[str, str]) -> list[Row]:
    what = "permissions"
    try:
        principal = _principal(identity, aws)
    except ClientError as exc:
        return [warn(SECTION, what, f"not simulated: cannot read the role ({_code(exc)})",
                     "allow iam:GetRole and iam:SimulatePrincipalPolicy to check before pulumi up")]
    if principal is None:
        return [warn(SECTION, what, "root credentials may do everything, and should not deploy",
                     "deploy with an IAM user or role")]
    account = identity["Account"]
    groups: list[tuple[tuple[str, ...], list[str]]] = [(ROUTE53_ACTIONS, ["*"])]
    if network.dns.create_parent_zone or network.tls.enabled:
        groups.append((ZONE_ACTIONS, ["*"]))
    if network.tls.enabled:
        groups.append((S3_ACTIONS, [f"arn:aws:s3:::{store_bucket(network)}"]))
        groups.append((S3_OBJECT_ACTIONS, [f"arn:aws:s3:::{store_bucket(network)}/{REBOOT_PEERS_STORE_KEY}"]))
        groups.append((IAM_USER_ACTIONS, [f"arn:aws:iam::{account}:user/anycast/anycast-{stack}-tls-{r}"
                                          for r in ("issuer", "reader")]))
    denied: list[str] = []
    for actions, resources in groups:
        try:
            denied += _denied(aws, principal, actions, resources)
        except ClientError as exc:
            return [warn(SECTION, what, f"not simulated ({_code(exc) or _status(exc)}): these credentials may not call "
                         "iam:SimulatePrincipalPolicy", "allow it to check before pulumi up, or read pulumi up's errors")]
        except (BotoCoreError, ResponseParserError) as exc:  # moto has no simulation: a 500 page, not XML
            return [warn(SECTION, what, f"not simulated: IAM gave no usable answer ({type(exc).__name__})",
                         "read pulumi up's errors instead")]
    if denied:
        shown = ", ".join(denied[:6]) + (f" and {len(denied) - 6} more" if len(denied) > 6 else "")
        return [fail(SECTION, what, f"{principal.rsplit(':', 1)[-1]} may not {shown}",
                     "attach a policy allowing these actions to the deploying user or role (docs/deploy.md)")]
    total = sum(len(a) for a, _ in groups)
    return [passed(SECTION, what, f"IAM policy simulation allows all {total} actions pulumi up needs")]


def _denied(aws: Aws, principal: str, actions: tuple[str, ...], resources: list[str]) -> list[str]:
    out: list[str] = []
    marker: str | None = None
    for _ in range(10):
        kwargs: dict[str, Any] = {"PolicySourceArn": principal, "ActionNames": list(actions), "ResourceArns": resources}
        if marker:
            kwargs["Marker"] = marker
        answer = aws.call("iam", "simulate_principal_policy", **kwargs)
        out += [str(r["EvalActionName"]) for r in answer.get("EvaluationResults", []) if r.get("EvalDecision") != "allowed"]
        marker = answer.get("Marker") if answer.get("IsTruncated") else None
        if not marker:
            break
    return out

