"""Reading BGP state: GoBGP upstreams (``gobgp -j`` inside their namespace) and BIRD (its control socket)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType

from lab.net.netns import LabError, nsrun
from lab.net.processes import HEALTH_AGENT

ESTABLISHED = 6  # GoBGP's session_state for Established


@lru_cache(maxsize=1)
def agent_module() -> ModuleType:
    """The health agent as a module (its file name has a dash): its BIRD socket client is reused here."""
    spec = importlib.util.spec_from_file_location("anycast_health", HEALTH_AGENT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def birdc(socket_path: Path | str, command: str) -> str:
    """One command over a BIRD control socket; the reply text."""
    try:
        return str(agent_module().bird_command(str(socket_path), command))
    except RuntimeError as exc:
        raise LabError(str(exc)) from exc


def bird_protocols(socket_path: Path | str) -> dict[str, tuple[str, str]]:
    """BIRD protocol name -> (state, info) from ``show protocols``."""
    out: dict[str, tuple[str, str]] = {}
    for line in birdc(socket_path, "show protocols").splitlines():
        body = line[5:] if line[:4].isdigit() else line.lstrip()
        parts = body.split()
        if len(parts) >= 4 and parts[0] not in ("Name", "BIRD"):
            # "Since" is one word by default, two with `timeformat protocol iso long` ("2026-11-26 08:00:00").
            since_words = 2 if len(parts) > 5 and re.fullmatch(r"\d{4}-\d\d-\d\d", parts[4]) else 1
            info = parts[4 + since_words:]
            out[parts[0]] = (parts[3], " ".join(info))
    return out


def bird_route_via(socket_path: Path | str, prefix: str) -> str | None:
    """The next hop of BIRD's best route for ``prefix`` (None if BIRD has none)."""
    text = birdc(socket_path, f"show route {prefix} primary")
    for line in text.splitlines():
        if "via " in line:
            return line.split("via ", 1)[1].split()[0]
    return None


@dataclass(frozen=True)
class Neighbor:
    address: str
    peer_asn: int
    established: bool
    state: int


def gobgp(ns: str, *args: str) -> object:
    out = nsrun(ns, ["gobgp", "-j", *args], timeout=20)
    return json.loads(out) if out.strip() else None


def neighbors(ns: str) -> dict[str, Neighbor]:
    data = gobgp(ns, "neighbor")
    out: dict[str, Neighbor] = {}
    for n in data if isinstance(data, list) else []:
        st = n.get("state", {})
        addr = n.get("conf", {}).get("neighbor_address") or st.get("neighbor_address")
        state = int(st.get("session_state", 0))
        out[addr] = Neighbor(addr, int(n.get("conf", {}).get("peer_asn", 0)), state == ESTABLISHED, state)
    return out


@dataclass(frozen=True)
class ReceivedRoute:
    prefix: str
    as_path: tuple[int, ...]
    communities: frozenset[str]


def _community(value: int) -> str:
    return f"{value >> 16}:{value & 0xFFFF}"


def adj_in(ns: str, neighbor: str, version: int) -> dict[str, ReceivedRoute]:
    """Routes the upstream in ``ns`` received from ``neighbor`` (before policy), with AS path and communities."""
    try:
        data = gobgp(ns, "neighbor", neighbor, "adj-in", "-a", f"ipv{version}")
    except LabError as exc:
        if "not established" in str(exc):
            return {}  # a session that is down has received nothing
        raise
    out: dict[str, ReceivedRoute] = {}
    if not isinstance(data, dict):
        return out
    for prefix, paths in data.items():
        for path in paths:
            asns: list[int] = []
            comms: set[str] = set()
            for attr in path.get("attrs", []):
                if attr.get("type") == 2:
                    for seg in attr.get("as_paths", []):
                        asns += seg.get("asns", [])
                elif attr.get("type") == 8:
                    comms |= {_community(int(c)) for c in attr.get("communities", [])}
            out[prefix] = ReceivedRoute(prefix, tuple(asns), frozenset(comms))
    return out


def adj_out(ns: str, neighbor: str, version: int) -> set[str]:
    """Prefixes the upstream in ``ns`` sends to ``neighbor``."""
    try:
        data = gobgp(ns, "neighbor", neighbor, "adj-out", "-a", f"ipv{version}")
    except LabError as exc:
        if "not established" in str(exc):
            return set()
        raise
    return set(data) if isinstance(data, dict) else set()
