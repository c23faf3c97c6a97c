"""Real NSD and Unbound on loopback for the DNSSEC validator tests (Debian's nsd and unbound; no namespaces)."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dns.exception
import dns.message
import dns.query


def has_ipv6_loopback() -> bool:
    """False in a container started without IPv6 (no ::1 on lo): the IPv6 cases then say so instead of failing."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def free_port() -> int:
    """A port free on 127.0.0.1 and (where there is one) ::1, UDP and TCP, so one number serves both families."""
    hosts = ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")) if has_ipv6_loopback() else ((socket.AF_INET, "127.0.0.1"),)
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        try:
            for fam, host in hosts:
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    with socket.socket(fam, kind) as t:
                        t.bind((host, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port on the loopback addresses")


def wait_answer(address: str, port: int, qname: str, log: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    query = dns.message.make_query(qname, "SOA")
    while time.monotonic() < deadline:
        try:
            dns.query.udp(query, address, port=port, timeout=0.2)
            return
        except (OSError, dns.exception.Timeout):
            time.sleep(0.05)
    raise RuntimeError(f"no answer from {address}@{port}: {log.read_text()[-500:] if log.exists() else 'no log'}")


class Nsd:
    def __init__(self, tmp: Path, proc: subprocess.Popen[bytes], port: int) -> None:
        self.tmp, self.proc, self.port = tmp, proc, port

    def replace(self, name: str, text: str) -> None:
        """Swap a zone's file and make NSD reload it (SIGHUP), without a moment of not answering."""
        (self.tmp / f"{name}.zone.new").write_text(text, encoding="utf-8")
        (self.tmp / f"{name}.zone.new").replace(self.tmp / f"{name}.zone")
        self.proc.send_signal(signal.SIGHUP)


@contextmanager
def nsd(tmp: Path, zones: dict[str, str], port: int) -> Iterator[Nsd]:
    """NSD serving ``zones`` (name -> zone text) on 127.0.0.1 and ::1 (if there is one) at ``port``."""
    tmp.mkdir(parents=True, exist_ok=True)
    v6 = "  ip-address: ::1\n" if has_ipv6_loopback() else ""
    conf = [f"server:\n  ip-address: 127.0.0.1\n{v6}  port: {port}\n  zonesdir: \"{tmp}\"\n"
            f"  username: \"\"\n  pidfile: \"{tmp}/nsd.pid\"\n  xfrdfile: \"{tmp}/xfrd.state\"\n"
            f"  zonelistfile: \"{tmp}/zone.list\"\n  database: \"\"\n  logfile: \"{tmp}/nsd.log\"\n  verbosity: 1\n"
            "remote-control:\n  control-enable: no\n"]
    for name, text in zones.items():
        (tmp / f"{name}.zone").write_text(text, encoding="utf-8")
        conf.append(f"zone:\n  name: \"{name}\"\n  zonefile: \"{name}.zone\"\n")
    (tmp / "nsd.conf").write_text("".join(conf), encoding="utf-8")
    proc = subprocess.Popen(["nsd", "-d", "-c", str(tmp / "nsd.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_answer("127.0.0.1", port, next(iter(zones)), tmp / "nsd.log")
        yield Nsd(tmp, proc, port)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def unbound(tmp: Path, anchor: str, stubs: dict[str, list[str]], port: int) -> Iterator[int]:
    """A validating Unbound on 127.0.0.1 at ``port``: ``anchor`` (a DS or DNSKEY record) as its only trust anchor,
    ``stubs`` (zone -> ["127.0.0.1@5353", ...]) as where the zones are; no root, no network beyond loopback."""
    tmp.mkdir(parents=True, exist_ok=True)
    stub_text = "".join(f"stub-zone:\n  name: \"{z}\"\n" + "".join(f"  stub-addr: {a}\n" for a in addrs)
                        for z, addrs in stubs.items())
    (tmp / "unbound.conf").write_text(
        "server:\n"
        f"  interface: 127.0.0.1\n  port: {port}\n  do-daemonize: no\n  username: \"\"\n  chroot: \"\"\n"
        f"  directory: \"{tmp}\"\n  pidfile: \"{tmp}/unbound.pid\"\n  use-syslog: no\n  logfile: \"{tmp}/unbound.log\"\n"
        "  verbosity: 1\n  val-log-level: 2\n  do-not-query-localhost: no\n  access-control: 127.0.0.0/8 allow\n"
        "  module-config: \"validator iterator\"\n  qname-minimisation: no\n  trust-anchor-signaling: no\n"
        "  root-key-sentinel: no\n  harden-referral-path: no\n  prefetch: no\n"
        f"  trust-anchor: \"{anchor}\"\n"
        "remote-control:\n  control-enable: no\n" + stub_text, encoding="utf-8")
    checked = subprocess.run(["unbound-checkconf", str(tmp / "unbound.conf")], capture_output=True, text=True, check=False)
    if checked.returncode != 0:
        raise RuntimeError(f"unbound-checkconf: {checked.stdout}{checked.stderr}")
    proc = subprocess.Popen(["unbound", "-d", "-c", str(tmp / "unbound.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_answer("127.0.0.1", port, "cdn.example.com", tmp / "unbound.log")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def resolve(port: int, qname: str, qtype: str) -> dns.message.Message:
    """Ask the resolver with DO set (so AD comes back on validated answers)."""
    return dns.query.udp(dns.message.make_query(qname, qtype, want_dnssec=True), "127.0.0.1", port=port, timeout=5)
