"""DNSSEC in the lab: which key signs the lab's zone, the network it signs, and each client's validating Unbound.

Like the BGP password (lab/boot/up.py ``lab_password``), the lab never uses the stack's real key: it signs with its
own, ``ANYCAST_LAB_DNSSEC_KEY`` (PEM) or the lab key in tests/fixtures/dnssec (generated for the tests, signs nothing
real), and replaces the stack's ``dns.dnssec`` by that key and its DS. A stack that ships unsigned (dev) is signed
in the lab on request (``anycast lab up --dnssec``); ``state.json`` then records the DS so that ``anycast lab check``
and the scenarios render and validate the same zone (docs/dnssec.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infra.model import Network
from infra.model.fields import DNSSEC_KEY_ENV
from infra.model.schema import Dnssec
from infra.model.stack import PROJECT_ROOT
from lab.plan.geodns import geo_answer
from lab.plan.topology import ClientPlan, LabPlan
from userdata import dnssec
from userdata.render import RenderedPop, render_pop

LAB_KEY_ENV = "ANYCAST_LAB_DNSSEC_KEY"
DEFAULT_KEY_FILE = PROJECT_ROOT / "tests" / "fixtures" / "dnssec" / "lab-key.pem"
NEXT_KEY_ENV = "ANYCAST_LAB_DNSSEC_KEY_NEXT"
NEXT_KEY_FILE = DEFAULT_KEY_FILE.with_name("lab-key-next.pem")
RESOLVER_PORT = 53  # each client namespace has its own loopback: the resolvers take the standard port there


def lab_key() -> str:
    """The lab's PEM key: never the real ANYCAST_DNSSEC_KEY, whose signatures would land in .lab/ files."""
    return os.environ.get(LAB_KEY_ENV) or DEFAULT_KEY_FILE.read_text(encoding="utf-8")


def lab_ds(network: Network) -> str:
    """The DS of the lab key for the stack's zone (ConfigError naming the variable for a bad key)."""
    private = dnssec.parse_private_key(lab_key(), LAB_KEY_ENV if os.environ.get(LAB_KEY_ENV) else str(DEFAULT_KEY_FILE))
    return dnssec.ds_text(network.dns.zone, dnssec.dnskey_of(private))


def lab_network(network: Network, sign: bool = False) -> Network:
    """``network`` as the lab runs it: signed with the lab key if the stack signs or ``sign``; else unchanged."""
    if network.dns.dnssec is None and not sign:
        return network
    keys = Dnssec.model_validate({"keys": [{"env": DNSSEC_KEY_ENV, "ds": lab_ds(network)}]})
    return network.model_copy(update={"dns": network.dns.model_copy(update={"dnssec": keys})})


def state_network(network: Network, state: Mapping[str, Any]) -> Network:
    """The network a running lab was booted with: signed if ``state.json`` says so."""
    return lab_network(network, sign=bool(state.get("dnssec")))


def lab_next_key() -> str:
    """The key the lab rolls over to (lab/scenarios/dnssec_rollover.py)."""
    return os.environ.get(NEXT_KEY_ENV) or NEXT_KEY_FILE.read_text(encoding="utf-8")


def keys_env() -> dict[str, str]:
    """The lab's keys under the variables its networks name (``ANYCAST_DNSSEC_KEY``, ``..._NEXT``)."""
    return {DNSSEC_KEY_ENV: lab_key(), f"{DNSSEC_KEY_ENV}_NEXT": lab_next_key()}


def render_lab_pop(network: Network, code: str, password: str, **kwargs: Any) -> RenderedPop:
    """``render_pop`` with the lab key (and, during the rollover, the next one) signing the zone when ``network``
    signs."""
    signing = None
    if network.dns.dnssec is not None:
        signing = dnssec.signing_from_env(network, keys_env(), datetime.now(UTC))
    return render_pop(network, network.pop(code), password, signing=signing, **kwargs)


def stub_address(plan: LabPlan, client: ClientPlan, version: int) -> str:
    """Where the client's resolver asks for the zone over IPv``version``: the nameserver address Route53 gives the
    client's country (a unicast PoP's, or the anycast address), as a resolver there would be sent."""
    return geo_answer(plan, client, rtype="A" if version == 4 else "AAAA").address


def unbound_conf(plan: LabPlan, client: ClientPlan, version: int, cdir: Path, anchor: str,
                 parent: tuple[str, int] | None = None) -> str:
    """A validating Unbound in the client's namespace on its loopback (127.0.0.1 or ::1), talking to the zone's
    nameserver over that family only, the lab's DS its only trust anchor; remote control on a local socket so that
    the checks can flush its cache between steps. ``parent``: (parent zone's DS, port of its NSD on the same
    loopback): the anchor is then the parent's key and the zone's DS comes from the parent (the rollover)."""
    zone = plan.network.dns.zone
    loopback = "127.0.0.1" if version == 4 else "::1"
    if parent is not None:
        name = plan.network.dns.parent_zone
        return (unbound_conf(plan, client, version, cdir, anchor)
                .replace(f'  trust-anchor: "{zone}. DS {anchor}"\n',
                         f'  trust-anchor: "{name}. DS {parent[0]}"\n  do-not-query-localhost: no\n')
                .replace("stub-zone:\n", f'stub-zone:\n  name: "{name}"\n  stub-addr: {loopback}@{parent[1]}\nstub-zone:\n', 1))
    other = "do-ip6: no" if version == 4 else "do-ip4: no"
    return (
        "server:\n"
        f"  interface: {loopback}\n  port: {RESOLVER_PORT}\n  {other}\n  do-daemonize: no\n  username: \"\"\n"
        f"  chroot: \"\"\n  directory: \"{cdir}\"\n  pidfile: \"{cdir}/unbound{version}.pid\"\n  use-syslog: no\n"
        f"  logfile: \"{cdir}/unbound{version}.log\"\n  verbosity: 1\n  val-log-level: 2\n"
        f"  access-control: {loopback}/{32 if version == 4 else 128} allow\n"
        "  module-config: \"validator iterator\"\n  qname-minimisation: no\n  trust-anchor-signaling: no\n"
        "  root-key-sentinel: no\n  harden-referral-path: no\n  prefetch: no\n"
        f"  trust-anchor: \"{zone}. DS {anchor}\"\n"
        f"stub-zone:\n  name: \"{zone}\"\n  stub-addr: {stub_address(plan, client, version)}\n"
        f"remote-control:\n  control-enable: yes\n  control-use-cert: no\n  control-interface: {cdir}/unbound{version}.ctl\n")
