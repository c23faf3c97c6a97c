"""``anycast preflight``'s AWS checks against moto's server on 127.0.0.1 (reached through the standard
``AWS_ENDPOINT_URL``) and, where moto has no implementation (IAM policy simulation, a bucket of another account),
botocore's Stubber, which checks every stubbed answer against the AWS API model."""

from __future__ import annotations

import time
from collections.abc import Iterator

import boto3
import pytest
import requests
from botocore.stub import Stubber

from infra.model import Network
from infra.model.stack import load_network
from infra.preflight.aws import Aws, aws_rows
from infra.preflight.http import Timeouts
from infra.preflight.rows import Row, Status
from tests.helpers.moto_s3 import moto_server
from tests.ripe_fake_server import SilentServer

SECRET = "aws-secret-MARKER-5d1f"
FAST = Timeouts(connect=0.5, read=0.5, total=1.0)


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def env(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_ROUTE53"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAPREFLIGHTTEST001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    requests.post(f"{moto_url}/moto-api/reset", timeout=5)  # each test starts from an empty account
    return moto_url


@pytest.fixture(scope="module")
def dev() -> Network:
    return load_network("dev")


def by_check(rows: list[Row]) -> dict[str, Row]:
    return {r.check: r for r in rows}


def run(network: Network, stack: str = "dev", aws: Aws | None = None) -> list[Row]:
    return aws_rows(network, stack, aws or Aws(FAST))


def zone(name: str) -> str:
    return str(boto3.client("route53").create_hosted_zone(Name=name, CallerReference=name)["HostedZone"]["Id"])


def test_credentials_zone_and_a_free_bucket(env: str, dev: Network) -> None:
    zone("example.com")
    rows = by_check(run(dev))
    assert rows["credentials"].status is Status.PASS and "account 123456789012" in rows["credentials"].detail
    assert rows["parent zone"].status is Status.PASS
    bucket = rows["TLS bucket anycast-tls-cdn-example-com"]
    assert bucket.status is Status.PASS and bucket.detail == "free: pulumi up creates it"
    # moto does not implement SimulatePrincipalPolicy: the row says it could not check, and does not fail.
    assert rows["permissions"].status is Status.WARN and "not simulated" in rows["permissions"].detail
    assert SECRET not in "\n".join(r.line() for r in rows.values())


def test_parent_zone_missing_fails(env: str, dev: Network) -> None:
    zone("example.org")
    row = by_check(run(dev))["parent zone"]
    assert row.status is Status.FAIL and row.detail == "no public Route53 hosted zone example.com in this account"
    assert "dns.createParentZone: true" in row.fix


def test_create_parent_zone_warns_when_one_exists(env: str, dev: Network) -> None:
    zone("example.com")
    net = dev.model_copy(update={"dns": dev.dns.model_copy(update={"create_parent_zone": True})})
    row = by_check(run(net))["parent zone"]
    assert row.status is Status.WARN and "second one" in row.detail


def test_our_bucket_passes_and_an_untagged_one_fails(env: str, dev: Network) -> None:
    zone("example.com")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="anycast-tls-cdn-example-com")
    row = by_check(run(dev))["TLS bucket anycast-tls-cdn-example-com"]
    assert row.status is Status.FAIL and "not tagged anycast-stack=dev" in row.detail and "tls.bucket" in row.fix
    s3.put_bucket_tagging(Bucket="anycast-tls-cdn-example-com", Tagging={"TagSet": [{"Key": "anycast-stack", "Value": "dev"}]})
    row = by_check(run(dev))["TLS bucket anycast-tls-cdn-example-com"]
    assert row.status is Status.PASS and row.detail == "already ours (tagged anycast-stack=dev)"


def test_configured_bucket_name_is_the_one_checked(env: str, dev: Network) -> None:
    net = dev.model_copy(update={"tls": dev.tls.model_copy(update={"bucket": "my-own-cert-store"})})
    assert "TLS bucket my-own-cert-store" in by_check(run(net))


def test_a_bucket_of_another_account_is_taken(env: str, dev: Network) -> None:
    aws = Aws(FAST)
    s3 = aws.client("s3")
    with Stubber(s3) as stub:
        stub.add_client_error("head_bucket", service_error_code="403", http_status_code=403,
                              expected_params={"Bucket": "anycast-tls-cdn-example-com", "ExpectedBucketOwner": "123456789012"})
        row = by_check(run(dev, aws=aws))["TLS bucket anycast-tls-cdn-example-com"]
    assert row.status is Status.FAIL and "taken by another AWS account" in row.detail
    assert "set tls.bucket" in row.fix


def test_refused_credentials_fail_once(env: str, dev: Network) -> None:
    aws = Aws(FAST)
    with Stubber(aws.client("sts")) as stub:
        stub.add_client_error("get_caller_identity", service_error_code="InvalidClientTokenId", http_status_code=403)
        rows = run(dev, aws=aws)
    assert [(r.check, r.status) for r in rows] == [("credentials", Status.FAIL)]
    assert "InvalidClientTokenId" in rows[0].detail


def _simulation(decisions: dict[str, str]) -> dict[str, object]:
    return {"EvaluationResults": [{"EvalActionName": a, "EvalDecision": d} for a, d in decisions.items()], "IsTruncated": False}


def test_policy_simulation_names_the_denied_actions(env: str, dev: Network) -> None:
    from infra.preflight import aws as module
    zone("example.com")
    aws = Aws(FAST)
    iam = aws.client("iam")
    with Stubber(iam) as stub:
        stub.add_response("simulate_principal_policy", _simulation({a: "allowed" for a in module.ROUTE53_ACTIONS}))
        stub.add_response("simulate_principal_policy", _simulation({a: "allowed" for a in module.ZONE_ACTIONS}))
        stub.add_response("simulate_principal_policy", _simulation(
            {a: ("implicitDeny" if a == "s3:CreateBucket" else "allowed") for a in module.S3_ACTIONS}))
        stub.add_response("simulate_principal_policy", _simulation(  # the reboot peer list, written by pulumi up
            {a: ("implicitDeny" if a == "s3:PutObject" else "allowed") for a in module.S3_OBJECT_ACTIONS}))
        stub.add_response("simulate_principal_policy", _simulation(
            {a: ("explicitDeny" if a == "iam:CreateAccessKey" else "allowed") for a in module.IAM_USER_ACTIONS}))
        row = by_check(run(dev, aws=aws))["permissions"]
    assert row.status is Status.FAIL
    assert row.detail == "user/moto may not s3:CreateBucket, s3:PutObject, iam:CreateAccessKey"
    with Stubber(iam) as stub:
        for group in (module.ROUTE53_ACTIONS, module.ZONE_ACTIONS, module.S3_ACTIONS, module.S3_OBJECT_ACTIONS,
                      module.IAM_USER_ACTIONS):
            stub.add_response("simulate_principal_policy", _simulation({a: "allowed" for a in group}))
        row = by_check(run(dev, aws=aws))["permissions"]
    assert row.status is Status.PASS and "all 35 actions" in row.detail


def test_a_silent_aws_ends_in_bounded_time(dev: Network, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAPREFLIGHTTEST001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    with SilentServer() as silent:
        monkeypatch.setenv("AWS_ENDPOINT_URL", silent.url)
        start = time.monotonic()
        rows = run(dev)
        elapsed = time.monotonic() - start
    assert elapsed < 4, f"{elapsed:.1f} s"
    assert [r.status for r in rows] == [Status.FAIL] and "did not answer" in rows[0].detail


@pytest.mark.parametrize(("bucket", "why"), [
    ("ab", "is not an S3 bucket name"), ("My-Bucket", "is not an S3 bucket name"), ("a..b", "is not an S3 bucket name"),
    ("bucket-", "is not an S3 bucket name"), ("192.168.5.4", "looks like an IP address"), ("certs.example.com", "breaks HTTPS"),
    ("xn--bucket", "reserves"), ("bucket-s3alias", "reserves"), ("a\nb", "is not an S3 bucket name"),
])
def test_tls_bucket_is_a_valid_s3_name(bucket: str, why: str) -> None:
    from infra.model import ConfigError, parse_network
    from infra.model.stack import read_stack_config
    doc = read_stack_config("dev")["anycast:network"]
    doc["tls"] = {**doc["tls"], "bucket": bucket}
    with pytest.raises(ConfigError) as err:
        parse_network(doc, source="Pulumi.dev.yaml")
    assert "tls.bucket" in str(err.value) and why in str(err.value)


def test_tls_bucket_names_the_store() -> None:
    from userdata.tls import store_bucket, store_url
    dev = load_network("dev")
    assert store_bucket(dev) == "anycast-tls-cdn-example-com"
    net = dev.model_copy(update={"tls": dev.tls.model_copy(update={"bucket": "certs-example-com"})})
    assert store_bucket(net) == "certs-example-com"
    assert store_url(net) == "https://certs-example-com.s3.us-east-1.amazonaws.com/tls/bundle.json"
