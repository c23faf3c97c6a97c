"""A CSK rollover by double signature in the signed lab (docs/dnssec.md, "Key rollover"), with every client asking
its validating resolvers throughout: no answer may lose its AD bit.

The resolvers' trust must come through a parent zone for a rollover to mean anything, so the scenario gives every
client namespace a parent: an NSD on its loopback serving ``dns.parentZone``, signed with a key made for the run and
delegating the zone with the DS set of the step (the Route53 record of the real network); each client's Unbounds are
restarted anchored at the parent's key. Every TTL is ``TTL`` seconds so caches turn over between steps. The steps
(each the new zone at every PoP, NSD reloaded, as a rollout's waves would leave it):

1. every PoP signs with both keys; then the parent publishes both DS;
2. the parent drops the old DS;
3. every PoP signs with the new key only.

Afterwards the lab is put back as it was (the old key, its own TTL, the resolvers anchored at the lab DS).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
from cryptography.hazmat.primitives.asymmetric import ec

from infra import safe_write
from infra.model import Network
from infra.model.fields import DNSSEC_KEY_ENV
from infra.model.schema import Dnssec
from lab.boot.resolvers import versions
from lab.boot.up import lab_password, pop_lab_files
from lab.drivers.base import pop_driver
from lab.net.netns import LabError, socket_in
from lab.net.processes import alive, start
from lab.plan.signing import keys_env, lab_ds, unbound_conf
from lab.plan.topology import ClientPlan, LabPlan
from lab.state import LabState
from userdata import dnssec
from userdata.render import zone_file_name

TTL = 2  # seconds, every record of both zones during the run
WAIT = TTL + 1.5  # after each step: every cached record has expired once
PARENT_PORT = 5300
PROBE_INTERVAL = 0.2
NEXT_ENV = f"{DNSSEC_KEY_ENV}_NEXT"


def keyed(network: Network, envs: list[str], ttl: int = TTL) -> Network:
    """``network`` signed by the lab keys named by ``envs`` (its ``dns.ttl`` set to ``ttl``)."""
    env = keys_env()
    keys = [{"env": e, "ds": dnssec.ds_text(network.dns.zone, dnssec.dnskey_of(dnssec.parse_private_key(env[e], e)))}
            for e in envs]
    return network.model_copy(update={"dns": network.dns.model_copy(
        update={"ttl": ttl, "dnssec": Dnssec.model_validate({"keys": keys})})})


class Parent:
    """``dns.parentZone`` signed with a key made for the run, delegating the zone with a given DS set."""

    def __init__(self, network: Network) -> None:
        self.name, self.zone_name = network.dns.parent_zone, network.dns.zone
        private = ec.generate_private_key(ec.SECP256R1())
        dnskey = dnssec.dnskey_of(private)
        self.key = dnssec.SigningKey("parent", private, dnskey, dnssec.ds_text(self.name, dnskey), True)

    def zone(self, ds: list[str]) -> str:
        child = self.zone_name.removesuffix(f".{self.name}")
        records = "".join(f"{child} IN DS {d}\n" for d in ds)
        text = (f"$ORIGIN {self.name}.\n$TTL {TTL}\n@ IN SOA ns.{self.name}. hostmaster.{self.name}. 1 3600 600 "
                f"1209600 {TTL}\n@ IN NS ns.{self.name}.\nns IN A 127.0.0.1\n{child} IN NS ns.{self.name}.\n{records}")
        return dnssec.sign_zone_text(text, self.name, [self.key], datetime.now(UTC))


class Prober(threading.Thread):
    """One client's resolver (one family): www and the DNSKEY set every PROBE_INTERVAL, recording each outcome."""

    def __init__(self, client: ClientPlan, version: int, zone: str) -> None:
        super().__init__(daemon=True)
        self.client, self.version, self.zone = client, version, zone
        self.stop = threading.Event()
        self.seen: Counter[str] = Counter()
        self.sock = socket_in(client.namespace, socket.AF_INET if version == 4 else socket.AF_INET6, socket.SOCK_DGRAM)

    def run(self) -> None:
        server = "127.0.0.1" if self.version == 4 else "::1"
        rtype = "A" if self.version == 4 else "AAAA"
        try:
            while not self.stop.is_set():
                for qname, qtype in ((f"www.{self.zone}", rtype), (self.zone, "DNSKEY")):
                    try:
                        a = dns.query.udp(dns.message.make_query(qname, qtype, want_dnssec=True), server, port=53,
                                          timeout=1.5, sock=self.sock)
                        ok = a.rcode() == dns.rcode.NOERROR and bool(a.flags & dns.flags.AD)
                        self.seen["AD" if ok else dns.rcode.to_text(a.rcode())] += 1
                    except Exception as exc:  # a timeout is a lost answer too
                        self.seen[type(exc).__name__] += 1
                time.sleep(PROBE_INTERVAL)
        finally:
            self.sock.close()


def _parent_conf(cdir: Path, plan: LabPlan) -> str:
    listen = "".join(f"  ip-address: {a}\n" for a in (("127.0.0.1", "::1")))
    return (f"server:\n{listen}  port: {PARENT_PORT}\n  zonesdir: \"{cdir}\"\n  username: \"\"\n"
            f"  pidfile: \"{cdir}/nsd.pid\"\n  xfrdfile: \"{cdir}/xfrd.state\"\n  zonelistfile: \"{cdir}/zone.list\"\n"
            f"  database: \"\"\n  logfile: \"{cdir}/nsd.log\"\n  verbosity: 1\nremote-control:\n  control-enable: no\n"
            f"zone:\n  name: \"{plan.network.dns.parent_zone}\"\n  zonefile: \"parent.zone\"\n")


def _stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _wait_ad(plan: LabPlan, timeout: float = 20.0) -> None:
    """Every client resolver answers the zone's SOA with AD (they just started)."""
    zone = plan.network.dns.zone
    for c in plan.clients:
        for v in versions(plan):
            deadline = time.monotonic() + timeout
            sock = socket_in(c.namespace, socket.AF_INET if v == 4 else socket.AF_INET6, socket.SOCK_DGRAM)
            try:
                while True:
                    try:
                        a = dns.query.udp(dns.message.make_query(zone, "SOA", want_dnssec=True),
                                          "127.0.0.1" if v == 4 else "::1", port=53, timeout=1, sock=sock)
                        if a.rcode() == dns.rcode.NOERROR and a.flags & dns.flags.AD:
                            break
                    except Exception:  # not up yet
                        pass
                    if time.monotonic() > deadline:
                        raise LabError(f"{c.name}: its IPv{v} resolver gives no validated answer {timeout:.0f} s after start")
                    time.sleep(0.2)
            finally:
                sock.close()


class Rollover:
    """The scenario's moving parts; :meth:`run` returns the report, :meth:`restore` puts the lab back."""

    def __init__(self, plan: LabPlan, state: LabState) -> None:
        self.plan, self.state = plan, state
        self.base = Path(state["dir"])
        self.network = plan.network
        self.parent = Parent(self.network)
        self.password = lab_password()
        self.zone_files = {code: Path(pst["dir"]) / "zones" / zone_file_name(self.network)
                           for code, pst in state["pops"].items()}
        self.originals = {code: f.read_text(encoding="utf-8") for code, f in self.zone_files.items()}
        self.parent_pids: dict[str, int] = {}

    def serve(self, envs: list[str]) -> None:
        """Every PoP's zone signed by ``envs``, PoP after PoP, each NSD reloaded."""
        net = keyed(self.network, envs)
        for code, f in self.zone_files.items():
            pst = self.state["pops"][code]
            text = pop_lab_files(net, code, self.password, Path(pst["dir"]))[f"zones/{zone_file_name(net)}"]
            safe_write.write_file(f, text, 0o644)
            pop_driver(pst).kill("nsd", signal.SIGHUP)

    def publish(self, ds: list[str]) -> None:
        for name, pid in self.parent_pids.items():
            safe_write.write_file(self.base / "clients" / name / "parent" / "parent.zone", self.parent.zone(ds), 0o644)
            os.kill(pid, signal.SIGHUP)

    def _restart_resolvers(self, parent: bool) -> None:
        pids = self.state["dnssec"]["resolvers"]
        for c in self.plan.clients:
            cdir = self.base / "clients" / c.name
            for v in versions(self.plan):
                _stop(int(pids[c.name][str(v)]))
                conf = cdir / (f"unbound{v}-rollover.conf" if parent else f"unbound{v}.conf")
                if parent:
                    safe_write.write_file(conf, unbound_conf(self.plan, c, v, cdir, lab_ds(self.network),
                                                             (self.parent.key.ds, PARENT_PORT)), 0o644)
                pids[c.name][str(v)] = start(c.namespace, ["unbound", "-d", "-c", str(conf)], cdir / f"unbound{v}.out")
        _wait_ad(self.plan)

    def run(self, control: bool = False) -> dict[str, Any]:
        """The three steps; ``control``: instead, the new key alone while the parent holds only the old DS."""
        t0 = time.monotonic()
        first = [DNSSEC_KEY_ENV]
        old, new = (dnssec.ds_text(self.network.dns.zone, dnssec.dnskey_of(dnssec.parse_private_key(keys_env()[e], e)))
                    for e in (DNSSEC_KEY_ENV, NEXT_ENV))
        for c in self.plan.clients:
            pdir = self.base / "clients" / c.name / "parent"
            safe_write.write_file(pdir / "parent.zone", self.parent.zone([old]), 0o644)
            safe_write.write_file(pdir / "nsd.conf", _parent_conf(pdir, self.plan), 0o644)
            self.parent_pids[c.name] = start(c.namespace, ["nsd", "-d", "-c", str(pdir / "nsd.conf")], pdir / "nsd.out")
        self.serve(first)  # the old key with the short TTL, before the resolvers start
        self._restart_resolvers(parent=True)
        setup = time.monotonic() - t0
        probers = [Prober(c, v, self.network.dns.zone) for c in self.plan.clients for v in versions(self.plan)]
        for p in probers:
            p.start()
        steps: list[tuple[str, float]] = []
        t1 = time.monotonic()
        time.sleep(WAIT)
        plan: list[tuple[str, Callable[[], None]]] = [
            ("both keys sign", lambda: self.serve([DNSSEC_KEY_ENV, NEXT_ENV])),
            ("both DS published", lambda: self.publish([old, new])),
            ("old DS withdrawn", lambda: self.publish([new])),
            ("new key alone signs", lambda: self.serve([NEXT_ENV]))]
        if control:
            plan = [("new key alone signs, parent holds the old DS", lambda: self.serve([NEXT_ENV]))]
        for label, action in plan:
            action()
            steps.append((label, round(time.monotonic() - t1, 1)))
            time.sleep(WAIT)
        for p in probers:
            p.stop.set()
        for p in probers:
            p.join(timeout=10)
        return {"setup_s": round(setup, 1), "run_s": round(time.monotonic() - t1, 1), "steps": steps,
                "old_ds": old, "new_ds": new,
                "seen": {f"{p.client.name}/v{p.version}": dict(p.seen) for p in probers}}

    def restore(self) -> None:
        for code, f in self.zone_files.items():
            safe_write.write_file(f, self.originals[code], 0o644)
            pop_driver(self.state["pops"][code]).kill("nsd", signal.SIGHUP)
        try:
            self._restart_resolvers(parent=False)
        finally:
            for pid in self.parent_pids.values():
                _stop(pid)


def rollover(plan: LabPlan, state: LabState, control: bool = False) -> dict[str, Any]:
    """Run the scenario on the running signed lab and put it back; the report (``seen``: outcomes per resolver).
    ``control``: switch keys at once instead (what the double signature avoids), which must lose validations."""
    if not state.get("dnssec"):
        raise LabError("the lab is not signed: boot it with anycast lab up --dnssec")
    scenario = Rollover(plan, state)
    try:
        return scenario.run(control)
    finally:
        scenario.restore()
