#!/usr/bin/python3
"""anycast-tls: the PoP side of HTTPS (stdlib Python 3 and the openssl and lego commands only).

  anycast-tls bootstrap --config /etc/anycast/tls.json   a short-lived self-signed certificate if none is installed,
                                                          so Caddy always starts (HTTP and /healthz keep working)
  anycast-tls fetch --config ...                          install the certificate from the S3 store if it changed
                                                          (checked first: parses, key matches, names, not expired),
                                                          then reload Caddy (graceful: open connections finish)
                                                          and, with a "peers" section, the reboot peer list (below)
  anycast-tls issue [--force] --config ...                (the issuer PoP) order a new certificate with lego, ACME
                                                          DNS-01 through Route53, when the stored one has fewer than
                                                          renew_days left; upload it to the store; then fetch

The store is one S3 object holding JSON {"names", "not_after", "cert", "key"}: one PUT replaces certificate and key
together, so a PoP never sees a certificate with the wrong key. Requests are signed with AWS Signature Version 4
(https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html) using the access key in
``credentials_file`` (JSON {"access_key_id", "secret_access_key"}). Every failure ends with one line (the CA's or
S3's own error text) and a non-zero exit; the installed certificate is left in place.

The peer list (docs/security.md#security-updates-and-reboots) is a second object in the same bucket, written by the
Pulumi program once the instances exist: {"peers": {code: "http://<ip>:9325/status"}, "addresses": {code: [ip, ...]}}.
It is untrusted input, checked strictly (size, JSON, PoP codes, IP literals, the exact status URL) before anything is
written; then ``peers`` goes to the reboot coordinator's peers file and every address into an ``nft -f`` file that
empties and refills the sets opening the status port in one transaction (anycast-status-peers.service loads it
after every fetch and at boot). A refused list changes nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

BOOTSTRAP_DAYS = 2
MAX_BODY = 1 << 20  # an S3 answer read at most (a bundle is a few KB)
# The reboot peer list (infra/contracts.py: REBOOT_PEERS_MAX, HEALTH_STATUS_PORT, STATUS_PEER_SETS, STATUS_PEERS_NFT).
MAX_PEERS = 256
STATUS_PORT = 9325
NFT_FILE = "status-peers.nft"  # beside the peers file
PEER_CODE = re.compile(r"[a-z][a-z0-9]{1,15}")  # a PoP code (infra/model/fields.py)
STATUS_URL = re.compile(rf"http://(?:\[([0-9a-f:]+)\]|([0-9.]+)):{STATUS_PORT}/status")


class TlsError(Exception):
    """One line for the log: what failed and the remote side's own words."""


# fetch before the issuer's first order (every PoP's first boot): nothing is wrong, nothing to install yet. A distinct
# exit status (sysexits' EX_TEMPFAIL) that the fetch unit counts as success (SuccessExitStatus=), so a new PoP is not
# "degraded" for a timer period; a store that stays empty shows as the untrusted bootstrap certificate in monitoring.
EX_TEMPFAIL = 75


class StoreEmpty(TlsError):
    """The store holds no bundle yet."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- S3 with SigV4 ---------------------------------------------------------------------------------------------------

def _sign(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def s3_request(method: str, url: str, region: str, creds: dict[str, str], body: bytes = b"",
               ca_file: str | None = None, content_type: str | None = None,
               max_bytes: int = MAX_BODY) -> tuple[int, bytes]:
    """One signed S3 request; (status, body of at most max_bytes). Network errors and longer bodies raise TlsError."""
    parts = urllib.parse.urlsplit(url)
    now = _now()
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload_hash = hashlib.sha256(body).hexdigest()
    headers = {"host": parts.netloc, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
    if content_type:
        headers["content-type"] = content_type
    signed = ";".join(sorted(headers))
    canonical = "\n".join([method, urllib.parse.quote(parts.path or "/", safe="/~"), parts.query,
                           "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, payload_hash])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _sign(_sign(_sign(_sign(("AWS4" + creds["secret_access_key"]).encode(), day), region), "s3"), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={creds['access_key_id']}/{scope}, "
                                f"SignedHeaders={signed}, Signature={signature}")
    req = urllib.request.Request(url, data=body if method == "PUT" else None, method=method,
                                 headers={k: v for k, v in headers.items() if k != "host"})
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    try:
        with urllib.request.urlopen(req, timeout=30, context=context) as resp:
            status, answer = resp.status, resp.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        status, answer = exc.code, exc.read(max_bytes + 1)
    except (urllib.error.URLError, OSError) as exc:
        raise TlsError(f"store {parts.netloc}: {getattr(exc, 'reason', exc)}") from None
    if len(answer) > max_bytes:
        raise TlsError(f"store {method} {url}: longer than {max_bytes} bytes")
    return status, answer


def _s3_error(status: int, body: bytes) -> str:
    text = body.decode(errors="replace")
    code = text.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in text else ""
    message = text.split("<Message>", 1)[1].split("</Message>", 1)[0] if "<Message>" in text else text[:200]
    return f"HTTP {status} {code}: {message}".strip()


# --- certificates (openssl) ----------------------------------------------------------------------------------------

def _openssl(*args: str, stdin: str | None = None) -> str:
    res = subprocess.run(["openssl", *args], input=stdin, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise TlsError(f"openssl {args[0]}: {(res.stderr.strip().splitlines() or ['failed'])[-1]}")
    return res.stdout


def cert_info(cert_pem: str) -> dict[str, Any]:
    """not_after (aware datetime), names (SAN DNS names) and the public key of the first certificate in the PEM."""
    out = _openssl("x509", "-noout", "-enddate", "-ext", "subjectAltName", stdin=cert_pem)
    end = next(line for line in out.splitlines() if line.startswith("notAfter="))
    not_after = dt.datetime.strptime(end.split("=", 1)[1].replace(" GMT", ""), "%b %d %H:%M:%S %Y")
    names = sorted(p.strip()[4:] for line in out.splitlines() for p in line.split(",") if p.strip().startswith("DNS:"))
    pub = _openssl("x509", "-noout", "-pubkey", stdin=cert_pem)
    return {"not_after": not_after.replace(tzinfo=dt.UTC), "names": names, "pubkey": pub}


def check_bundle(bundle: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """Refuse a bundle whose key does not match, that misses a name, or that has expired; return its cert_info."""
    for field in ("cert", "key"):
        if not isinstance(bundle.get(field), str) or "-----BEGIN" not in bundle[field]:
            raise TlsError(f"the stored bundle has no PEM '{field}'")
    info = cert_info(bundle["cert"])
    if _openssl("pkey", "-pubout", stdin=bundle["key"]) != info["pubkey"]:
        raise TlsError("the stored key does not match the stored certificate")
    missing = [n for n in names if n not in info["names"]]
    if missing:
        raise TlsError(f"the stored certificate lacks {', '.join(missing)} (it has {', '.join(info['names'])})")
    if info["not_after"] <= _now():
        raise TlsError(f"the stored certificate expired on {info['not_after']:%Y-%m-%d %H:%M} UTC")
    return info


# --- installing ----------------------------------------------------------------------------------------------------

def _write_atomic(path: Path, text: str, mode: int, group: str | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(text)
    os.chmod(tmp, mode)
    if group:
        # the group may not exist (lab, or caddy not installed yet): root keeps the file
        with contextlib.suppress(LookupError, PermissionError):
            shutil.chown(tmp, group=group)
    os.replace(tmp, path)


def _reload(cfg: dict[str, Any]) -> None:
    res = subprocess.run(cfg["reload"], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise TlsError(f"reload ({' '.join(cfg['reload'])}): {(res.stderr.strip().splitlines() or ['failed'])[-1]}")


def install(cfg: dict[str, Any], cert: str, key: str) -> None:
    group = cfg.get("group")
    _write_atomic(Path(cfg["key_file"]), key, 0o640, group)
    _write_atomic(Path(cfg["cert_file"]), cert, 0o644, group)


def bootstrap(cfg: dict[str, Any]) -> str:
    cert, key = Path(cfg["cert_file"]), Path(cfg["key_file"])
    if cert.exists() and key.exists():
        return "a certificate is installed"
    with tempfile.TemporaryDirectory() as tmp:
        k, c = Path(tmp) / "key.pem", Path(tmp) / "cert.pem"
        san = ",".join(f"DNS:{n}" for n in cfg["names"])
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(k),
                 "-out", str(c), "-days", str(BOOTSTRAP_DAYS), "-subj", "/CN=anycast bootstrap (not trusted)",
                 "-addext", f"subjectAltName={san}")
        install(cfg, c.read_text(encoding="ascii"), k.read_text(encoding="ascii"))
    return f"installed a self-signed bootstrap certificate ({BOOTSTRAP_DAYS} days) until the store has one"


def _credentials(cfg: dict[str, Any]) -> dict[str, str]:
    path = Path(cfg["credentials_file"])
    try:
        creds = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TlsError(f"no credentials at {path} (the Pulumi program writes them into the user data)") from None
    except json.JSONDecodeError:
        raise TlsError(f"{path} is not JSON") from None
    if not isinstance(creds, dict) or not {"access_key_id", "secret_access_key"} <= set(creds):
        raise TlsError(f"{path} needs access_key_id and secret_access_key")
    return creds


def read_store(cfg: dict[str, Any], creds: dict[str, str]) -> dict[str, Any] | None:
    store = cfg["store"]
    status, body = s3_request("GET", store["url"], store["region"], creds, ca_file=cfg.get("ca_file"))
    if status == 404:
        return None
    if status != 200:
        raise TlsError(f"store GET {store['url']}: {_s3_error(status, body)}")
    try:
        bundle = json.loads(body)
    except json.JSONDecodeError:
        raise TlsError("the stored bundle is not JSON") from None
    if not isinstance(bundle, dict):
        raise TlsError("the stored bundle is not a JSON object")
    return bundle


def fetch(cfg: dict[str, Any]) -> str:
    bootstrap(cfg)
    bundle = read_store(cfg, _credentials(cfg))
    if bundle is None:
        raise StoreEmpty(f"no certificate in the store yet ({cfg['store']['url']}); the issuer PoP puts it there; "
                         "keeping the installed one")
    info = check_bundle(bundle, cfg["names"])
    cert_file, key_file = Path(cfg["cert_file"]), Path(cfg["key_file"])
    if (cert_file.exists() and key_file.exists() and cert_file.read_text(encoding="ascii") == bundle["cert"]
            and key_file.read_text(encoding="ascii") == bundle["key"]):
        return f"unchanged: certificate for {', '.join(info['names'])} valid until {info['not_after']:%Y-%m-%d %H:%M} UTC"
    install(cfg, bundle["cert"], bundle["key"])
    _reload(cfg)
    return (f"installed certificate for {', '.join(info['names'])} valid until {info['not_after']:%Y-%m-%d %H:%M} UTC; "
            "Caddy reloaded")


# --- the reboot peer list ------------------------------------------------------------------------------------------

def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len(dict(pairs)) < len(pairs):
        raise ValueError("a key twice")
    return dict(pairs)


def check_peers(body: bytes) -> tuple[dict[str, str], list[str]]:
    """(status URL by PoP code, every address that may ask this PoP's status port), else TlsError naming the field."""
    try:  # NaN, Infinity: int() refuses them (ValueError); so does _unique a key given twice
        doc = json.loads(body.decode(), parse_constant=int, object_pairs_hook=_unique)
    except (ValueError, RecursionError):
        raise TlsError("peer list: not strict JSON") from None
    if not isinstance(doc, dict) or sorted(doc) != ["addresses", "peers"]:
        raise TlsError("peer list: not an object of exactly addresses and peers")
    sources: set[str] = set()
    for key in doc:
        if not isinstance(doc[key], dict) or len(doc[key]) > MAX_PEERS:
            raise TlsError(f"peer list: {key}: not an object of at most {MAX_PEERS} PoPs")
        for code, item in doc[key].items():
            m = STATUS_URL.fullmatch(item) if isinstance(item, str) and key == "peers" else None
            items = [m[1] or m[2]] if m else item if key == "addresses" and isinstance(item, list) else []
            ips = []
            try:
                ips = [ipaddress.ip_address(x) for x in items]
                ok = PEER_CODE.fullmatch(code) and 0 < len(ips) < 3 and [str(x) for x in ips] == items and "%" not in str(items)
            except ValueError:
                ok = False
            if not ok or any(x.is_multicast or x.is_unspecified or x.is_loopback for x in ips):
                raise TlsError(f"peer list: {key}.{code[:20]!r}: not a PoP code with its status URL or 1-2 addresses")
            sources.update(items)
    return doc["peers"], sorted(sources)


def nft_commands(sources: list[str]) -> str:
    """An ``nft -f`` file, so one transaction: both sets emptied and refilled (a failure leaves them as they were)."""
    lines = []
    for name, v6 in (("status4", False), ("status6", True)):
        found = ", ".join(x for x in sources if (":" in x) == v6)
        lines += [f"flush set inet anycast {name}"] + ([f"add element inet anycast {name} {{ {found} }}"] if found else [])
    return "\n".join(lines) + "\n"


def install_peers(cfg: dict[str, Any], creds: dict[str, str]) -> str:
    url, path = cfg["peers"]["url"], Path(cfg["peers"]["file"])
    status, body = s3_request("GET", url, cfg["store"]["region"], creds, ca_file=cfg.get("ca_file"), max_bytes=1 << 16)
    if status == 404:
        return f"no peer list in the store yet ({url})"
    if status != 200:
        raise TlsError(f"store GET {url}: {_s3_error(status, body)}")
    peers, sources = check_peers(body)
    _write_atomic(path, json.dumps(peers, indent=1, sort_keys=True) + "\n", 0o644, None)
    # anycast-status-peers.service loads it after this unit (Wants=): nft with CAP_NET_ADMIN, which this unit lacks
    _write_atomic(path.with_name(NFT_FILE), nft_commands(sources), 0o644, None)
    return f"peer list: {len(peers)} status URLs, {len(sources)} addresses"


def _lego(cfg: dict[str, Any], creds: dict[str, str]) -> tuple[str, str]:
    acme = cfg["acme"]
    path = Path(acme["lego_path"])
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "HOME": str(path),
           "AWS_ACCESS_KEY_ID": creds["access_key_id"], "AWS_SECRET_ACCESS_KEY": creds["secret_access_key"],
           "AWS_REGION": acme["aws_region"], "AWS_PROPAGATION_TIMEOUT": str(acme.get("propagation_timeout", 300)),
           "AWS_POLLING_INTERVAL": str(acme.get("polling_interval", 4))}
    if cfg.get("ca_file"):  # the lab's CA (Pebble, the Route53 stand-in); production uses the system store
        env["LEGO_CA_CERTIFICATES"] = env["AWS_CA_BUNDLE"] = cfg["ca_file"]
    cmd = ["lego", "--accept-tos", "--email", acme["email"], "--server", acme["directory"], "--key-type",
           acme["key_type"], "--dns", "route53", "--path", str(path)]
    for name in cfg["names"]:
        cmd += ["--domains", name]
    cmd.append("run")
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=900)
    if res.returncode != 0:
        lines = [x for x in (res.stdout + "\n" + res.stderr).strip().splitlines() if x.strip()]
        errors = [x for x in lines if "error" in x.lower() or "acme:" in x]
        raise TlsError(f"lego: {(errors or lines or ['failed'])[-1]}")
    base = path / "certificates" / cfg["names"][0]
    return (base.with_suffix(base.suffix + ".crt").read_text(encoding="ascii"),
            base.with_suffix(base.suffix + ".key").read_text(encoding="ascii"))


def issue(cfg: dict[str, Any], force: bool) -> str:
    creds = _credentials(cfg)
    current = read_store(cfg, creds)
    if current is not None and not force:
        try:
            info = check_bundle(current, cfg["names"])
            left = (info["not_after"] - _now()).days
            if left >= cfg["acme"]["renew_days"]:
                return (f"nothing to do: the stored certificate is valid until {info['not_after']:%Y-%m-%d} UTC "
                        f"({left} days; renewal below {cfg['acme']['renew_days']})")
        except TlsError:
            pass  # unusable (names changed, expired): order a new one
    cert, key = _lego(cfg, creds)
    bundle = {"names": cfg["names"], "cert": cert, "key": key}
    info = check_bundle(bundle, cfg["names"])
    bundle["not_after"] = info["not_after"].strftime("%Y-%m-%dT%H:%M:%SZ")
    body = json.dumps(bundle, sort_keys=True).encode()
    status, answer = s3_request("PUT", cfg["store"]["url"], cfg["store"]["region"], creds, body,
                                ca_file=cfg.get("ca_file"), content_type="application/json")
    if status != 200:
        raise TlsError(f"store PUT {cfg['store']['url']}: {_s3_error(status, answer)}")
    return f"issued and stored a certificate valid until {bundle['not_after']}; " + fetch(cfg)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="anycast-tls", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("action", choices=("bootstrap", "fetch", "issue"))
    parser.add_argument("--config", default="/etc/anycast/tls.json")
    parser.add_argument("--force", action="store_true", help="issue: order even if the stored certificate is fresh")
    args = parser.parse_args(argv)
    failed = False
    try:
        cfg = json.loads(Path(args.config).read_text(encoding="utf-8"))
        if args.action == "bootstrap":
            print(bootstrap(cfg))
        elif args.action == "fetch":
            if cfg.get("peers"):  # before the certificate: an empty or broken bundle must not stop it
                try:
                    print(install_peers(cfg, _credentials(cfg)))
                except (TlsError, OSError, KeyError, ValueError) as exc:  # the certificate goes on regardless
                    why = exc if isinstance(exc, TlsError) else f"peer list: {type(exc).__name__}: {exc}"
                    print(f"anycast-tls fetch: {why}", file=sys.stderr)
                    failed = True
            print(fetch(cfg))
        else:
            if "acme" not in cfg:
                raise TlsError(f"{args.config} has no acme section: this PoP is not the issuer")
            print(issue(cfg, args.force))
    except StoreEmpty as exc:
        print(f"anycast-tls {args.action}: {exc}", file=sys.stderr)
        return 1 if failed else EX_TEMPFAIL
    except TlsError as exc:
        print(f"anycast-tls {args.action}: {exc}", file=sys.stderr)
        return 1
    except (OSError, KeyError, ValueError, subprocess.TimeoutExpired) as exc:
        print(f"anycast-tls {args.action}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
