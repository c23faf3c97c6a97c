"""The lab's clients as catchment probes: each client asks the anycast service addresses for CHAOS TXT ``id.server``
with the NSID option (dnspython, over a UDP socket opened inside the client's namespace), and the answers go through
the same analysis as RIPE Atlas results (``infra.catchment``), so both reports have one format.

A client's position and country come from the lab topology (``lab.plan.topology.CLIENT_SITES``); its ASN is the lab ASN
of its BIRD. RTTs in the lab are sub-millisecond veth hops, so for the lab the distances (km) carry the meaning.
"""

from __future__ import annotations

import json
import time

import dns.edns
import dns.exception
import dns.message
import dns.query
import dns.rdataclass
import dns.rdatatype

from infra.catchment.analysis import ProbeInfo
from infra.catchment.results import Observation
from infra.model import Network
from lab.net.netns import LabError, list_namespaces, socket_in
from lab.plan.topology import build_plan, namespace_prefix
from lab.state import state_path


def chaos_query() -> dns.message.Message:
    return dns.message.make_query("id.server.", dns.rdatatype.TXT, dns.rdataclass.CH, use_edns=0,
                                  options=[dns.edns.GenericOption(dns.edns.OptionType.NSID, b"")])


def query_from(ns: str, server: str, timeout: float = 1.0, tries: int = 2) -> tuple[str | None, str | None, float | None, str | None]:
    """(NSID, CHAOS TXT, RTT ms, error) of one CHAOS id.server query sent from namespace ``ns``."""
    import socket

    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    last = "no answer"
    for _ in range(tries):
        sock = socket_in(ns, family, socket.SOCK_DGRAM)
        try:
            t0 = time.perf_counter()
            resp = dns.query.udp(chaos_query(), server, timeout=timeout, sock=sock)
            rtt = (time.perf_counter() - t0) * 1000
        except dns.exception.Timeout:
            last = f"timeout after {timeout * 1000:.0f} ms"
            continue
        except (OSError, dns.exception.DNSException) as exc:
            last = f"error: {exc}"
            continue
        finally:
            sock.close()
        nsid = next((o.to_wire().decode(errors="replace") for o in resp.options
                     if o.otype == dns.edns.OptionType.NSID), None)
        txt = next((b"".join(rd.strings).decode(errors="replace") for rr in resp.answer
                    if rr.rdtype == dns.rdatatype.TXT for rd in rr), None)
        return nsid or None, txt, round(rtt, 3), None
    return None, None, None, last


def lab_observations(stack: str, network: Network) -> tuple[list[Observation], dict[str, ProbeInfo], list[str]]:
    """Ask every client of the running lab of ``stack``: (observations, the clients as probes, the PoPs in the lab).
    LabError if that lab is not running."""
    path = state_path(stack)
    if not path.exists() or not list_namespaces(f"{namespace_prefix(stack)}bb"):
        raise LabError(f"the lab of stack {stack} is not running: start it with `anycast lab up --stack {stack}`")
    state = json.loads(path.read_text(encoding="utf-8"))
    plan = build_plan(stack, network, list(state["pops"]))
    targets = [(4, str(network.service.ipv4))] if network.service.ipv4 is not None else []
    targets.append((6, str(network.service.ipv6)))
    obs: list[Observation] = []
    probes: dict[str, ProbeInfo] = {}
    for c in plan.clients:
        probes[c.name] = ProbeInfo(id=c.name, country=c.site.country, asn=c.asn, lat=c.site.lat, lon=c.site.lon,
                                   label=f"{c.name} ({c.site.city})")
        for af, addr in targets:
            nsid, txt, rtt, err = query_from(c.namespace, addr)
            if err:
                obs.append(Observation(c.name, af, addr, None, None, None, err))
            else:
                ident, source = (nsid, "nsid") if nsid else (txt, "chaos-txt")
                obs.append(Observation(c.name, af, addr, rtt, ident, source,
                                       None if ident else "answer carries neither an NSID nor a CHAOS TXT record"))
    return obs, probes, [p.code for p in plan.pops]
