"""The lab state: what ``anycast lab up`` booted, in ``.lab/<stack>/state.json`` (JSON, indented and sorted, for
people to read) and typed here. Every part of the lab reads it through these types; :func:`load_state` validates the
file against them (one line naming the field when it does not fit), :func:`save_state` writes it back. Keys these
types do not name are kept on the round trip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, NotRequired

from pydantic import ConfigDict, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict

from lab.net.netns import LabError

LAB_ROOT = Path(__file__).resolve().parents[1] / ".lab"
KEEP = ConfigDict(extra="allow")


@with_config(KEEP)
class UpstreamState(TypedDict):
    """The GoBGP upstream (transit stand-in) of one PoP."""

    namespace: str
    asn: int
    pid: int
    backbone_ipv4: str
    backbone_ipv6: str
    radv_pid: NotRequired[int]  # its BIRD sending router advertisements (bgp.ipv6NeighborRoute: auto)


@with_config(KEEP)
class MachineState(TypedDict):
    """Machine mode: the PoP's container (lab/boot/machines.py)."""

    name: str
    root: str  # the container's root file system on the host
    dir: str
    cloud_init: str
    boot_seconds: float
    mirror: str


@with_config(KEEP)
class PopState(TypedDict):
    namespace: str
    mode: str  # anycast or unicast
    provider: str
    unicast_ipv4: str | None
    unicast_ipv6: str | None
    upstream: UpstreamState
    dir: str
    bird_socket: str
    pids: dict[str, int]  # daemon -> host pid (machine mode: nspawn, leader = the container's PID 1, ...)
    commands: dict[str, list[str]]  # process mode: how the lab started each daemon (to start it again)
    machine: NotRequired[MachineState]  # machine mode only
    generation: NotRequired[int]  # replaced by `anycast lab rollout` this often (0 when absent)


@with_config(KEEP)
class ClientState(TypedDict):
    namespace: str
    country: str
    city: str
    expected_pop: str
    geodns: dict[str, Any]
    bird_socket: str
    pid: int


@with_config(KEEP)
class LabState(TypedDict):
    stack: str
    dir: str
    anycast: dict[str, str | None]
    prefixes: list[str]
    backbone: str
    pops: dict[str, PopState]
    clients: dict[str, ClientState]
    mode: NotRequired[Literal["processes", "machines"]]
    well_connected: NotRequired[list[str]]
    topology: NotRequired[Literal["default", "multi-as"]]  # absent: default (lab/plan/multias.py)
    transits: NotRequired[dict[str, dict[str, Any]]]  # multi-as: each transit's namespace, ASN, BIRD pid and socket
    boot_seconds: NotRequired[float]
    tls: NotRequired[dict[str, Any]]  # HTTPS (lab/cloud/tls.py): the ACME stand-ins, issuer, CA file
    dnssec: NotRequired[dict[str, Any]]  # signed lab (lab/plan/signing.py): the DS, the client resolvers' pids
    monitoring: NotRequired[dict[str, Any]]  # the lab's running Prometheus (lab/monitor/prometheus.py)


STATE = TypeAdapter(LabState)


def lab_dir(stack: str, root: Path | None = None) -> Path:
    return (root or LAB_ROOT) / stack


def state_path(stack: str, root: Path | None = None) -> Path:
    return lab_dir(stack, root) / "state.json"


def parse_state(text: str, where: str = "state.json") -> LabState:
    """The state from its JSON text; LabError naming the first field that does not fit."""
    try:
        return STATE.validate_json(text)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(x) for x in err["loc"])
        raise LabError(f"{where}: {field}: {err['msg']} (written by another version? run `anycast lab down` and "
                       "`anycast lab up` again)") from None


def state_json(state: LabState) -> str:
    """The file's text: indented, sorted keys, one trailing newline."""
    return json.dumps(state, indent=2, sort_keys=True) + "\n"


def load_state(stack: str, root: Path | None = None) -> LabState:
    path = state_path(stack, root)
    if not path.exists():
        raise LabError(f"no lab state at {path}: run `anycast lab up --stack {stack}` first")
    return parse_state(path.read_text(encoding="utf-8"), str(path))


def save_state(stack: str, state: LabState, root: Path | None = None) -> None:
    state_path(stack, root).write_text(state_json(state), encoding="utf-8")
