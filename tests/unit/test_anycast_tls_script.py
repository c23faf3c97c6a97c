"""userdata/files/anycast-tls.py against moto's S3 (in-process, on loopback) with a stand-in ``lego`` on PATH: the
store round trip with SigV4, the checks before installing, and an issuance failure that ends with the CA's own error
text and leaves the stored and installed certificates in place."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.moto_s3 import moto_server

SCRIPT = Path(__file__).resolve().parents[2] / "userdata" / "files" / "anycast-tls.py"
NAMES = ["cdn.example.com", "www.example.com"]
RATE_LIMITED = ("acme: error: 429 :: POST :: https://acme-v02.api.letsencrypt.org/acme/new-order :: "
                "urn:ietf:params:acme:error:rateLimited :: too many certificates (5) already issued for this exact set "
                "of identifiers in the last 168h0m0s")


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    with moto_server("certs") as url:
        yield url


def _config(tmp_path: Path, s3: str, key: str, **extra: Any) -> Path:
    (tmp_path / "creds.json").write_text(json.dumps({"access_key_id": "AKIATEST", "secret_access_key": "s3cr3t"}))
    cfg = {"names": NAMES, "cert_file": str(tmp_path / "tls" / "cert.pem"), "key_file": str(tmp_path / "tls" / "key.pem"),
           "group": None, "reload": ["true"], "credentials_file": str(tmp_path / "creds.json"), "ca_file": None,
           "store": {"url": f"{s3}/certs/{key}", "region": "us-east-1"}, **extra}
    path = tmp_path / "tls.json"
    path.write_text(json.dumps(cfg))
    return path


def _run(config: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{path}:/usr/bin:/bin" if path else "/usr/bin:/bin"}
    return subprocess.run([sys.executable, str(SCRIPT), *args, "--config", str(config)], capture_output=True, text=True,
                          timeout=60, env=env, check=False)


def _self_signed(tmp_path: Path, names: list[str]) -> tuple[str, str]:
    """A certificate and key from the script's own bootstrap (self-signed, 2 days)."""
    tmp_path.mkdir(exist_ok=True)
    cfg = {"names": names, "cert_file": str(tmp_path / "ss" / "cert.pem"), "key_file": str(tmp_path / "ss" / "key.pem")}
    (tmp_path / "ss.json").write_text(json.dumps(cfg))
    assert _run(tmp_path / "ss.json", "bootstrap").returncode == 0
    return (tmp_path / "ss" / "cert.pem").read_text(), (tmp_path / "ss" / "key.pem").read_text()


def _put(s3: str, key: str, body: dict[str, Any]) -> None:
    import boto3

    boto3.client("s3", endpoint_url=s3, region_name="us-east-1", aws_access_key_id="k",
                 aws_secret_access_key="s").put_object(Bucket="certs", Key=key, Body=json.dumps(body).encode())


def test_fetch_installs_a_good_bundle_once_and_refuses_a_bad_one(tmp_path: Path, s3: str) -> None:
    config = _config(tmp_path, s3, "fetch/bundle.json")
    missing = _run(config, "fetch")
    # 75 (EX_TEMPFAIL): the fetch unit's SuccessExitStatus, so a PoP booting before the first order is not "failed"
    assert missing.returncode == 75 and "no certificate in the store yet" in missing.stderr
    assert (tmp_path / "tls" / "cert.pem").exists()  # the bootstrap certificate keeps Caddy up meanwhile
    cert, key = _self_signed(tmp_path, NAMES)
    _put(s3, "fetch/bundle.json", {"names": NAMES, "cert": cert, "key": key})
    first = _run(config, "fetch")
    assert first.returncode == 0 and first.stdout.startswith("installed certificate for cdn.example.com, www.example.com")
    assert (tmp_path / "tls" / "cert.pem").read_text() == cert and oct((tmp_path / "tls" / "key.pem").stat().st_mode)[-3:] == "640"
    assert _run(config, "fetch").stdout.startswith("unchanged:")
    _, other_key = _self_signed(tmp_path / "x", NAMES)
    _put(s3, "fetch/bundle.json", {"names": NAMES, "cert": cert, "key": other_key})
    bad = _run(config, "fetch")
    assert bad.returncode == 1 and "the stored key does not match the stored certificate" in bad.stderr
    narrow, narrow_key = _self_signed(tmp_path / "y", ["cdn.example.com"])
    _put(s3, "fetch/bundle.json", {"names": NAMES, "cert": narrow, "key": narrow_key})
    assert "lacks www.example.com" in _run(config, "fetch").stderr
    assert (tmp_path / "tls" / "cert.pem").read_text() == cert  # still the good one


def test_issue_failure_ends_with_the_ca_error_and_keeps_the_certificate(tmp_path: Path, s3: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    lego = bin_dir / "lego"
    lego.write_text(f"#!/bin/sh\necho '2026/11/26 09:00:00 [INFO] acme: Registering account'\n"
                    f"echo '2026/11/26 09:00:01 {RATE_LIMITED}' >&2\nexit 1\n")
    lego.chmod(0o755)
    acme = {"directory": "https://acme-v02.api.letsencrypt.org/directory", "email": "hostmaster@example.com",
            "key_type": "ec256", "renew_days": 30, "lego_path": str(tmp_path / "lego"), "aws_region": "us-east-1"}
    config = _config(tmp_path, s3, "issue/bundle.json", acme=acme)
    cert, key = _self_signed(tmp_path, NAMES)  # 2 days left: inside the renewal window
    stored = {"names": NAMES, "cert": cert, "key": key}
    _put(s3, "issue/bundle.json", stored)
    assert _run(config, "fetch").returncode == 0
    res = _run(config, "issue", path=str(bin_dir))
    assert res.returncode == 1
    assert res.stderr.strip().splitlines()[-1] == f"anycast-tls issue: lego: 2026/11/26 09:00:01 {RATE_LIMITED}"
    assert (tmp_path / "tls" / "cert.pem").read_text() == cert
    fetched = _run(config, "fetch")
    assert fetched.stdout.startswith("unchanged:")  # the store still holds the old bundle
    fresh = _config(tmp_path, s3, "issue/bundle.json", acme={**acme, "renew_days": 1})
    nothing = _run(fresh, "issue", path=str(bin_dir))  # 2 days left, renewal below 1: lego is not even run
    assert nothing.returncode == 0 and nothing.stdout.startswith("nothing to do: the stored certificate is valid until")
