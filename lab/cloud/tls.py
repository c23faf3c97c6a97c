"""HTTPS in the lab (docs/tls.md, docs/lab.md): a real ACME server, real DNS-01, the PoPs' own anycast-tls.

The cloud around ACME lives in one client namespace (an Internet host, :data:`CLOUD_CLIENT`):

* **Pebble** (Debian's ``pebble``), the CA, with ``-dnsserver`` pointing at the lab resolver;
* **moto's server** as Route53 and S3 (the substitution for AWS, like GoBGP for Vultr's routers), over HTTPS with a
  certificate from a lab CA made here with openssl; the issuer PoP's ``/etc/hosts`` (``/etc/netns/<ns>/hosts``) sends
  ``route53.amazonaws.com`` there, which is how lego, unmodified, reaches it;
* **the lab resolver** (lab/cloud/acme_cloud.py): forwards the NSD zone to the *anycast* NSD and answers Route53 zones from
  moto, following CNAMEs. Pebble's DNS-01 check therefore asks the anycast NSD for ``_acme-challenge.<name>``, gets
  the rendered CNAME and finds the TXT that lego wrote through the Route53 API.

Each PoP runs the rendered ``anycast-tls`` with its rendered ``tls.json``, changed only as :data:`TLS_JSON_CHANGES`
lists. The issuer orders, stores the bundle in S3, every PoP fetches it and Caddy reloads.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from infra.contracts import TLS_FETCH_UNIT, TLS_ISSUE_UNIT
from infra.model import Network
from lab.net.netns import LabError, nsrun, socket_in
from lab.net.probes import read_head
from lab.net.processes import ROOT, python3, start
from lab.plan.configs import Substitution
from lab.plan.topology import BACKBONE_V4, ClientPlan, LabPlan, PopPlan
from lab.state import LabState
from userdata import tls as tls_files

CLOUD_CLIENT = "us"
MOTO_PORT = 443
PEBBLE_PORT = 14000
PEBBLE_MANAGEMENT_PORT = 15000
SCRIPT = ROOT / "userdata" / "files" / "anycast-tls.py"
LAB_CREDENTIALS = {"access_key_id": "AKIALABEXAMPLE000000", "secret_access_key": "lab-secret-not-a-real-key"}
NETNS_ETC = Path("/etc/netns")

# What the lab changes in each PoP's rendered tls.json (field, why): every other field runs as rendered.
TLS_JSON_CHANGES = {
    "cert_file, key_file": "the PoP's lab directory instead of /etc/caddy/tls (20 PoPs share one file system)",
    "credentials_file": "the lab's fixed access key for the Route53/S3 stand-in, in the PoP's lab directory",
    "reload": "`caddy reload --force` with the lab's Caddyfile path: what Debian's caddy.service ExecReload runs",
    "store.url": "path-style URL of the bucket on the S3 stand-in (moto) instead of <bucket>.s3.<region>.amazonaws.com",
    "ca_file": "the lab CA (moto's and Pebble's HTTPS listeners) instead of the system store",
    "acme.directory": "Pebble's directory instead of Let's Encrypt's",
    "acme.lego_path": "lego's account and certificates in the PoP's lab directory",
    "peers": "removed: the lab's store holds no reboot peer list and its PoPs share one host's nftables",
}


def enabled(network: Network) -> bool:
    return network.tls.enabled


def substitutions(network: Network, pop_dir: Path) -> list[Substitution]:
    """The Caddyfile's certificate paths, moved into the PoP's lab directory like tls.json's."""
    if not network.tls.enabled:
        return []
    return [Substitution("Caddyfile", "/etc/caddy/tls/", f"{pop_dir}/tls/",
                         "the certificate files live in the PoP's lab directory (see TLS_JSON_CHANGES in lab/cloud/tls.py)")]


def cloud_client(plan: LabPlan) -> ClientPlan:
    names = [c.name for c in plan.clients]
    return plan.client(CLOUD_CLIENT if CLOUD_CLIENT in names else names[0])


def cloud_address(plan: LabPlan) -> str:
    return str(cloud_client(plan).backbone_v4)


def lab_tls_json(rendered: str, pop_dir: Path, cloud: str, ca_file: Path, bucket: str) -> str:
    cfg = json.loads(rendered)
    cfg.update(cert_file=str(pop_dir / "tls" / "cert.pem"), key_file=str(pop_dir / "tls" / "key.pem"),
               credentials_file=str(pop_dir / "tls-credentials"), ca_file=str(ca_file),
               reload=["caddy", "reload", "--config", str(pop_dir / "Caddyfile"), "--adapter", "caddyfile", "--force"])
    cfg["store"]["url"] = f"https://{cloud}:{MOTO_PORT}/{bucket}/{tls_files.STORE_KEY}"
    cfg.pop("peers", None)  # see TLS_JSON_CHANGES
    if "acme" in cfg:
        cfg["acme"].update(directory=f"https://{cloud}:{PEBBLE_PORT}/dir", lego_path=str(pop_dir / "lego"),
                           propagation_timeout=60, polling_interval=1)
    return json.dumps(cfg, indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_pop_files(plan: LabPlan, pop: PopPlan, rendered: dict[str, str], pop_dir: Path, base: Path) -> int:
    """tls.json (with the lab changes) and the lab access key; returns how many files were written."""
    if "tls.json" not in rendered:
        return 0
    pop_dir.mkdir(parents=True, exist_ok=True)
    text = lab_tls_json(rendered["tls.json"], pop_dir, cloud_address(plan), base / "tls" / "lab-ca.pem",
                        tls_files.store_bucket(plan.network))
    (pop_dir / "tls.json").write_text(text, encoding="utf-8")
    creds = pop_dir / "tls-credentials"
    creds.write_text(json.dumps(LAB_CREDENTIALS, allow_nan=False) + "\n", encoding="utf-8")
    creds.chmod(0o600)
    # As the user data's runcmd does before Caddy's first start, so even the render-only mode validates.
    res = subprocess.run([python3(), str(SCRIPT), "bootstrap", "--config", str(pop_dir / "tls.json")], capture_output=True,
                         text=True, timeout=30, check=False)
    if res.returncode != 0:
        raise LabError(f"{pop.code}: anycast-tls bootstrap: {res.stderr.strip()}")
    return 4


def run_script(ns: str, action: str, pop_dir: Path, *extra: str, timeout: float = 120) -> tuple[bool, str, float]:
    """``anycast-tls ACTION`` in ``ns`` as the PoP's timer would: (ok, last output line, seconds)."""
    t0 = time.monotonic()
    res = subprocess.run(["ip", "netns", "exec", ns, python3(), str(SCRIPT), action, "--config", str(pop_dir / "tls.json"),
                          *extra], capture_output=True, text=True, timeout=timeout, check=False)
    lines = [x for x in (res.stdout + res.stderr).strip().splitlines() if x.strip()]
    return res.returncode == 0, (lines[-1] if lines else ""), time.monotonic() - t0


def bootstrap(ns: str, pop_dir: Path) -> None:
    if (pop_dir / "tls.json").exists():
        ok, line, _ = run_script(ns, "bootstrap", pop_dir)
        if not ok:
            raise LabError(f"{pop_dir.name}: anycast-tls bootstrap: {line}")


# --- the cloud ----------------------------------------------------------------------------------------------------

def _openssl(*args: str) -> None:
    res = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise LabError(f"openssl {args[0]}: {res.stderr.strip()[-300:]}")


def make_lab_ca(d: Path, address: str, names: tuple[str, ...] = ()) -> None:
    """A lab CA and one server certificate for moto (route53.amazonaws.com, the address, ``names``) and Pebble."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
             "-keyout", str(d / "lab-ca.key"), "-out", str(d / "lab-ca.pem"), "-subj", "/CN=anycast lab CA")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(d / "server.key"),
             "-out", str(d / "server.csr"), "-subj", "/CN=anycast lab cloud")
    dns = ",".join(f"DNS:{n}" for n in ("route53.amazonaws.com", "s3.amazonaws.com", *names) if n)
    (d / "server.ext").write_text(f"subjectAltName={dns},IP:{address}\n"
                                  "extendedKeyUsage=serverAuth\n", encoding="ascii")
    _openssl("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "lab-ca.pem"), "-CAkey", str(d / "lab-ca.key"),
             "-CAcreateserial", "-days", "2", "-extfile", str(d / "server.ext"), "-out", str(d / "server.pem"))


def _wait_tcp(ns: str, address: str, port: int, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock = socket_in(ns, socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(0.5)
        try:
            sock.connect((address, port))
            return
        except OSError:
            time.sleep(0.1)
        finally:
            sock.close()
    raise LabError(f"{what} did not listen on {address}:{port} within {timeout:.0f} s (see {log})")


def _netns_etc(ns: str, cloud: str) -> None:
    """The issuer's view of the world: route53.amazonaws.com is the stand-in, DNS is the lab resolver."""
    d = NETNS_ETC / ns
    d.mkdir(parents=True, exist_ok=True)
    (d / "hosts").write_text(f"127.0.0.1 localhost\n{cloud} route53.amazonaws.com\n", encoding="ascii")
    (d / "resolv.conf").write_text(f"nameserver {cloud}\n", encoding="ascii")


def cleanup(namespaces: list[str]) -> None:
    """Remove the /etc/netns/<ns> directories the lab wrote (``ip netns delete`` leaves them)."""
    for ns in namespaces:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(NETNS_ETC / ns)


def acme_host(network: Network) -> str:
    """The ACME directory's host name (Let's Encrypt's unless the stack sets ``tls.directory``)."""
    return urlsplit(network.tls.directory).hostname or ""


def store_host(network: Network) -> str:
    """The S3 endpoint of the certificate store, as the rendered tls.json names it (virtual-hosted style)."""
    return urlsplit(tls_files.store_url(network)).hostname or ""


def acme_front_address(plan: LabPlan) -> str:
    """Machine mode: a second address of the cloud host where the lab's Caddy answers for the ACME directory's host
    (the cloud address's port 443 is moto's). On the backbone's /16, so every upstream reaches it on-link."""
    return str(BACKBONE_V4.network_address + 768 + 1)


def start_cloud(plan: LabPlan, base: Path, say: Any, front: bool = False) -> dict[str, Any]:
    """Pebble, moto (Route53 + S3, seeded with what the Pulumi program creates) and the lab resolver in the cloud
    namespace; with ``front`` (machine mode) also Caddy on :func:`acme_front_address` serving the rendered ACME
    directory URL (``https://<acme host>/directory``) from Pebble (whose directory is ``/dir``)."""
    net = plan.network
    cloud_ns, cloud = cloud_client(plan).namespace, cloud_address(plan)
    d = base / "tls"
    make_lab_ca(d, cloud, names=(store_host(net), acme_host(net)) if front else ())
    bin_dir = Path(sys.executable).parent
    pids: dict[str, int] = {}
    pids["moto"] = start(cloud_ns, [str(bin_dir / "moto_server"), "-H", cloud, "-p", str(MOTO_PORT), "-c",
                                    str(d / "server.pem"), "-k", str(d / "server.key")], d / "moto.log")
    _wait_tcp(cloud_ns, cloud, MOTO_PORT, 20, "moto_server", d / "moto.log")
    parent_cnames = tls_files.challenge_cnames(net)[1]
    spec = {"parent_zone": net.dns.parent_zone, "challenge_zone": net.tls_challenge_zone,
            "parent_cnames": parent_cnames, "bucket": tls_files.store_bucket(net)}
    (d / "seed.json").write_text(json.dumps(spec, indent=2, allow_nan=False), encoding="utf-8")
    endpoint = f"https://{cloud}:{MOTO_PORT}"
    nsrun(cloud_ns, [sys.executable, "-m", "lab.cloud.acme_cloud", "seed", "--endpoint", endpoint, "--ca",
                     str(d / "lab-ca.pem"), "--spec", str(d / "seed.json")], timeout=60)
    service = str(net.service.ipv4 or net.service.ipv6)
    pids["resolver"] = start(cloud_ns, [sys.executable, "-m", "lab.cloud.acme_cloud", "resolve", "--listen", cloud,
                                        "--endpoint", endpoint, "--ca", str(d / "lab-ca.pem"),
                                        "--forward", f"{net.dns.zone}={service}"], d / "resolver.log",
                             env={"PYTHONPATH": str(ROOT)})
    pebble_cfg = {"pebble": {"listenAddress": f"{cloud}:{PEBBLE_PORT}",
                             "managementListenAddress": f"{cloud}:{PEBBLE_MANAGEMENT_PORT}",
                             "certificate": str(d / "server.pem"), "privateKey": str(d / "server.key"),
                             "httpPort": 5002, "tlsPort": 5001, "ocspResponderURL": "",
                             "externalAccountBindingRequired": False}}
    (d / "pebble.json").write_text(json.dumps(pebble_cfg, indent=2, allow_nan=False), encoding="utf-8")
    pids["pebble"] = start(cloud_ns, ["pebble", "-config", str(d / "pebble.json"), "-dnsserver", f"{cloud}:53"],
                           d / "pebble.log", env={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0",
                                                  "PEBBLE_AUTHZREUSE": "0"})
    _wait_tcp(cloud_ns, cloud, PEBBLE_PORT, 20, "pebble", d / "pebble.log")
    cloud_state: dict[str, Any] = {"namespace": cloud_ns, "address": cloud, "pids": pids}
    what = (f"Pebble {cloud}:{PEBBLE_PORT}, Route53/S3 stand-in (moto) {cloud}:{MOTO_PORT}, lab resolver {cloud}:53")
    if front:
        front_addr = acme_front_address(plan)
        nsrun(cloud_ns, ["ip", "addr", "add", f"{front_addr}/{BACKBONE_V4.prefixlen}", "dev", "eth0"])
        (d / "acme-front.Caddyfile").write_text(acme_front_caddyfile(acme_host(net), front_addr, cloud, d),
                                                encoding="utf-8")
        pids["acme_front"] = start(cloud_ns, ["caddy", "run", "--config", str(d / "acme-front.Caddyfile"),
                                              "--adapter", "caddyfile"], d / "acme-front.log",
                                   env={"HOME": str(d), "XDG_DATA_HOME": str(d / "caddy-data"),
                                        "XDG_CONFIG_HOME": str(d / "caddy-config")})
        _wait_tcp(cloud_ns, front_addr, 443, 20, "the ACME front (Caddy)", d / "acme-front.log")
        cloud_state["acme_front"] = front_addr
        what += f", {acme_host(net)} (Caddy -> Pebble) {front_addr}:443"
    say(f"ACME cloud in {cloud_ns}: {what}")
    return cloud_state


def acme_front_caddyfile(host: str, listen: str, pebble: str, d: Path) -> str:
    """Caddy in front of Pebble for the rendered directory URL. Caddy keeps the Host header, so every URL Pebble
    hands out (new-nonce, new-order, ...) names ``host`` too and comes back through this front."""
    return f"""\
# anycast lab (lab/cloud/tls.py): the ACME directory's host, served by Pebble. Not part of any PoP.
{{
\tadmin off
\tauto_https off
}}

https://{host}:443 {{
\tbind {listen}
\ttls {d / "server.pem"} {d / "server.key"}
\trewrite /directory /dir
\treverse_proxy https://{pebble}:{PEBBLE_PORT} {{
\t\ttransport http {{
\t\t\ttls_trusted_ca_certs {d / "lab-ca.pem"}
\t\t}}
\t}}
}}
"""


def _pebble_root(cloud_ns: str, cloud: str, d: Path) -> Path:
    root = nsrun(cloud_ns, ["curl", "-sS", "--cacert", str(d / "lab-ca.pem"),
                            f"https://{cloud}:{PEBBLE_MANAGEMENT_PORT}/roots/0"], timeout=10)
    if "BEGIN CERTIFICATE" not in root:
        raise LabError(f"Pebble's management API gave no root: {root[:200]}")
    (d / "pebble-root.pem").write_text(root, encoding="ascii")
    return d / "pebble-root.pem"


def setup(plan: LabPlan, state: LabState, base: Path, say: Any,
          cloud: dict[str, Any] | None = None) -> dict[str, Any]:
    """Issue on the issuer PoP, fetch everywhere (starting the cloud first unless ``cloud`` says it runs); return
    ``state["tls"]``. Process mode runs the script with the lab's tls.json; machine mode starts the user data's own
    units (:func:`pop_tls`)."""
    net = plan.network
    d = base / "tls"
    cloud = cloud or start_cloud(plan, base, say)
    issuer = plan.pop(net.tls_issuer)
    machines = "machine" in state["pops"][issuer.code]
    if not machines:
        _netns_etc(issuer.namespace, cloud["address"])
    ok, line, issue_s = pop_tls(state, issuer.code, "issue", timeout=300)
    if not ok:
        raise LabError(f"{issuer.code}: anycast-tls issue: {line} (see {d / 'pebble.log'}, {d / 'resolver.log'})")
    say(f"{issuer.code} issued the certificate in {issue_s:.1f} s: {line[:120]}")
    fetched = {issuer.code: line}
    for p in plan.pops:
        if p.code != issuer.code:
            ok, line, _ = pop_tls(state, p.code, "fetch")
            if not ok:
                raise LabError(f"{p.code}: anycast-tls fetch: {line}")
            fetched[p.code] = line
    ca_file = _pebble_root(cloud["namespace"], cloud["address"], d)
    say(f"every PoP fetched the certificate ({len(fetched)}); clients trust {ca_file}")
    return {"ca_file": str(ca_file), "lab_ca": str(d / "lab-ca.pem"), "names": net.tls_names,
            "issuer": issuer.code, "cloud": cloud, "issue_seconds": round(issue_s, 2), "fetch": fetched,
            "nsd_cnames": tls_files.challenge_cnames(net)[0]}


# --- one PoP's HTTPS, in either mode --------------------------------------------------------------------------------

# Machine mode: what the lab starts instead of waiting for the user data's timers (the issue timer's first run is up to
# 32 minutes after boot: OnBootSec=2min plus RandomizedDelaySec=30min).
UNIT_OF = {"issue": TLS_ISSUE_UNIT, "fetch": TLS_FETCH_UNIT}
RUNNING = ("start-pre", "start", "start-post")  # a service's SubState while its ExecStart runs


def pop_tls(state: LabState, code: str, action: str, *extra: str,
            timeout: float = 120) -> tuple[bool, str, float]:
    """``anycast-tls ACTION`` at one PoP: (ok, last output line, seconds). Process mode: the script with the lab's
    tls.json. Machine mode: the unit from the user data (``systemctl start``, which waits for a oneshot), or, with
    ``extra`` arguments such as ``--force``, the installed script as an operator would run it in the container."""
    pst = state["pops"][code]
    if "machine" not in pst:
        return run_script(pst["namespace"], action, Path(pst["dir"]), *extra, timeout=timeout)
    from lab.drivers.machines import nsexec

    leader = int(pst["pids"]["leader"])
    t0 = time.monotonic()
    if extra or action not in UNIT_OF:
        res = nsexec(leader, ["/usr/bin/python3", tls_files.SCRIPT, action, "--config", tls_files.CONFIG_FILE, *extra],
                     timeout=timeout)
        lines = [x for x in (res.stdout + res.stderr).strip().splitlines() if x.strip()]
        return res.returncode == 0, (lines[-1] if lines else ""), time.monotonic() - t0
    unit = UNIT_OF[action]
    # The container shares the host's monotonic clock, so the timers' OnBootSec= is long past when runcmd enables
    # them: a timer-started run may be under way (e.g. the issuer's, before the network converged). `systemctl start`
    # would join it and report its result; wait for it to end, then start the lab's own run.
    # A failed run leaves the issue unit waiting RestartSec (30 min) in "auto-restart", where a start job waits for
    # that timer: stop it first, as an operator would.
    deadline = time.monotonic() + timeout
    while (sub := nsexec(leader, ["systemctl", "show", "-p", "SubState", "--value", unit]).stdout.strip()) in RUNNING:
        if time.monotonic() > deadline:
            return False, f"{unit} still running after {timeout:.0f} s", time.monotonic() - t0
        time.sleep(0.5)
    if sub == "auto-restart":
        nsexec(leader, ["systemctl", "stop", unit], timeout=30)
    res = nsexec(leader, ["systemctl", "start", unit], timeout=timeout)
    seconds = time.monotonic() - t0
    log = nsexec(leader, ["journalctl", "-o", "cat", "--no-pager", "-n", "1", "-u", unit, "_TRANSPORT=stdout"])
    line = log.stdout.strip().splitlines()[-1] if log.stdout.strip() else (res.stderr.strip() or unit)
    return res.returncode == 0, line, seconds


def cert_file(state: LabState, code: str) -> Path:
    """The certificate Caddy serves at that PoP, as a host path."""
    pst = state["pops"][code]
    if "machine" in pst:
        return Path(pst["machine"]["root"]) / tls_files.CERT_FILE.lstrip("/")
    return Path(pst["dir"]) / "tls" / "cert.pem"


# Machine mode: what the lab puts into every container beside the NoCloud seed (docs/lab.md lists these with the other
# substitutions). The user data and its tls.json run unchanged; these stand where a Vultr machine has DNS and the
# public CA roots.
MACHINE_FILES = {
    "/etc/hosts": "the AWS endpoints the PoP uses (route53.amazonaws.com, the bucket's S3 host) -> the cloud host's "
                  "moto, the ACME directory's host -> the lab's Caddy front of Pebble",
    "/etc/resolv.conf": "the lab resolver (Vultr's machines get their provider's resolver by DHCP)",
    "/usr/local/share/ca-certificates/anycast-lab-ca.crt": "the lab CA that signed moto's and the front's certificate",
    "/etc/ssl/certs/ca-certificates.crt": "the image's bundle plus the lab CA (what update-ca-certificates would build)",
}


def machine_files(plan: LabPlan, base: Path, image: Path) -> dict[str, bytes]:
    """The files of :data:`MACHINE_FILES` for every container (host-relative paths -> content)."""
    net = plan.network
    if not net.tls.enabled:
        return {}
    d = base / "tls"
    ca = (d / "lab-ca.pem").read_bytes()
    cloud = cloud_address(plan)
    hosts = (f"127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"
             f"{cloud} route53.amazonaws.com {store_host(net)}\n{acme_front_address(plan)} {acme_host(net)}\n")
    bundle = image / "etc/ssl/certs/ca-certificates.crt"
    return {"etc/hosts": hosts.encode(), "etc/resolv.conf": f"nameserver {cloud}\n".encode(),
            "usr/local/share/ca-certificates/anycast-lab-ca.crt": ca,
            "etc/ssl/certs/ca-certificates.crt": (bundle.read_bytes() if bundle.exists() else b"") + ca}


# --- what a client sees --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HttpsResult:
    ok: bool
    xpop: str | None
    http_version: str | None
    tls_version: str | None
    error: str | None


_TLS_RE = re.compile(r"SSL connection using (TLSv[\d.]+)")


def curl_https(ns: str, address: str, name: str, ca_file: str, path: str = "/") -> HttpsResult:
    """``curl --cacert`` to https://NAME/ connected to ADDRESS: verification, HTTP version, TLS version, X-PoP."""
    host = f"[{address}]" if ":" in address else address
    cmd = ["curl", "-sS", "-v", "-m", "5", "--cacert", ca_file, "--resolve", f"{name}:443:{host}", "-o", "/dev/null",
           "-D", "-", "-w", "http_version=%{http_version}\n", f"https://{name}{path}"]
    res = subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=15, check=False)
    xpop = next((ln.split(":", 1)[1].strip() for ln in res.stdout.splitlines() if ln.lower().startswith("x-pop:")), None)
    version = next((ln.split("=", 1)[1].strip() for ln in res.stdout.splitlines() if ln.startswith("http_version=")), None)
    tls = _TLS_RE.search(res.stderr)
    error = None if res.returncode == 0 else (res.stderr.strip().splitlines() or ["curl failed"])[-1]
    return HttpsResult(res.returncode == 0, xpop, version, tls.group(1) if tls else None, error)


def curl_http(ns: str, address: str, path: str) -> tuple[str | None, str | None, str | None]:
    """Plain HTTP: (status code, Location, X-PoP)."""
    host = f"[{address}]" if ":" in address else address
    out = nsrun(ns, ["curl", "-s", "-m", "3", "-o", "/dev/null", "-D", "-", f"http://{host}{path}"], check=False)
    lines = out.splitlines()
    status = lines[0].split()[1] if lines and len(lines[0].split()) > 1 else None
    header = {ln.split(":", 1)[0].lower(): ln.split(":", 1)[1].strip() for ln in lines[1:] if ":" in ln}
    return status, header.get("location"), header.get("x-pop")


def handshake(ns: str, address: str, name: str, context: ssl.SSLContext, timeout: float = 1.0) -> tuple[str | None, str | None]:
    """One TLS handshake + HTTP/1.1 GET from inside ``ns``: (certificate serial, X-PoP), (None, error) on failure."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket_in(ns, family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((address, 443))
        with context.wrap_socket(sock, server_hostname=name) as tls:
            serial = (tls.getpeercert() or {}).get("serialNumber")
            tls.sendall(f"GET /healthz HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
            data = read_head(tls)
        xpop = next((ln.split(":", 1)[1].strip() for ln in data.decode(errors="replace").split("\r\n")
                     if ln.lower().startswith("x-pop:")), None)
        return str(serial), xpop
    except (OSError, ssl.SSLError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        sock.close()


@dataclass
class HandshakeProber:
    """TLS handshakes every ``interval`` s from ``ns`` to ``address`` (SNI ``name``), counting failures and serials."""

    ns: str
    address: str
    name: str
    ca_file: str
    interval: float = 0.02
    samples: list[tuple[float, str | None, str | None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> HandshakeProber:
        context = ssl.create_default_context(cafile=self.ca_file)
        context.set_alpn_protocols(["http/1.1"])
        self._thread = threading.Thread(target=self._loop, args=(context,), daemon=True)
        self._thread.start()
        return self

    def _loop(self, context: ssl.SSLContext) -> None:
        while not self._stop.is_set():
            t = time.monotonic()
            serial, info = handshake(self.ns, self.address, self.name, context)
            self.samples.append((t, serial, info))
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t)))

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def first_after(self, t0: float, pop: str) -> float | None:
        """The time of the first successful handshake after ``t0`` answered (X-PoP) by ``pop``."""
        return next((t for t, serial, info in self.samples if t >= t0 and serial is not None and info == pop), None)

    def lost(self, t0: float, t1: float) -> tuple[int, int]:
        """(failed handshakes, handshakes) between t0 and t1."""
        window = [serial for t, serial, _ in self.samples if t0 <= t <= t1]
        return sum(1 for s in window if s is None), len(window)

    @property
    def failures(self) -> list[str]:
        return [str(info) for _, serial, info in self.samples if serial is None]

    @property
    def serials(self) -> list[str]:
        out: list[str] = []
        for _, serial, _ in self.samples:
            if serial is not None and (not out or out[-1] != serial):
                out.append(serial)
        return out


def cert_serial(path: Path) -> str:
    out = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", str(path)], capture_output=True, text=True,
                         check=False).stdout
    return out.strip().split("=", 1)[-1].upper()


def https_prober(state: LabState, ns: str, address: str) -> HandshakeProber | None:
    """A running HandshakeProber for the failover measurements when the lab serves HTTPS, else None."""
    tls = state.get("tls")
    if not tls:
        return None
    name = tls.get("https_name") or tls["names"][0]
    return HandshakeProber(ns, address, name, tls["ca_file"], interval=0.05).start()
