#!/usr/bin/python3
"""anycast-reboot: reboot this PoP for a security update, drained, in its weekly slot, only while enough others announce.

Standard library only; configured by ``/etc/anycast/reboot.json`` (rendered per PoP: userdata/reboots.py). Modes:

* ``--once`` (anycast-reboot.service: at boot before the health agent, then every 5 minutes from its timer):
  first, if ``marker`` exists, the previous boot drained for a reboot: remove the drain file and the marker, so the
  agent announces again once its checks pass (a drain an operator made has no marker and stays). Then, when
  ``required_file`` exists (Debian's packages create /var/run/reboot-required when an upgrade needs a reboot;
  unattended-upgrades installs them and never reboots itself) and the PoP's slot has come, ask every known peer's
  ``/status``; go on only if at least ``min_announcing`` of them are announced and every peer of this PoP's group
  that we can ask is announced. Then write ``marker``, run the health agent's drain (withdraw, wait for in-flight
  connections), and reboot. A failed drain is undone and the PoP does not reboot.
* ``--check-config``: validate the config and exit.

Exit codes: 0 when nothing was to do or the slot was skipped (said why), 1 when a drain or the reboot failed,
2 for a bad config.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

WEEK_MINUTES = 7 * 24 * 60
ANNOUNCED = "announced"  # /status "state" of a PoP that announces (infra/contracts.py STATUS_STATES)


class ConfigProblem(Exception):
    pass


@dataclass(frozen=True)
class Config:
    pop: str
    slot_start: int  # minutes after Monday 00:00 UTC
    slot_minutes: int
    required_file: str
    marker: str
    drain_file: str
    drain: tuple[str, ...]  # empty: nothing announced here (unicast PoP), reboot without a drain
    reboot: tuple[str, ...]
    peers: dict[str, str]  # code -> status URL
    peers_file: str
    group: tuple[str, ...]
    min_announcing: int
    timeout_s: float = 2.0
    drain_timeout_s: float = 180.0


_KINDS = {"pop": str, "slot": dict, "required_file": str, "marker": str, "drain_file": str, "drain": list,
          "reboot": list, "peers": dict, "peers_file": str, "group": list, "min_announcing": int}


def load_config(data: Any) -> Config:
    if not isinstance(data, dict):
        raise ConfigProblem("the config is not a JSON object")
    for key, kind in _KINDS.items():
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise ConfigProblem(f"{key}: missing or not a {kind.__name__}")
    start, minutes = data["slot"].get("start_minute"), data["slot"].get("minutes")
    if not (isinstance(start, int) and isinstance(minutes, int) and 0 <= start < WEEK_MINUTES and minutes > 0):
        raise ConfigProblem("slot: start_minute must be a minute of the week and minutes positive")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in data["peers"].items()):
        raise ConfigProblem("peers: must map PoP codes to status URLs")
    if not all(isinstance(x, str) for k in ("drain", "reboot", "group") for x in data[k]) or not data["reboot"]:
        raise ConfigProblem("drain, reboot, group: lists of strings (reboot not empty)")
    return Config(pop=data["pop"], slot_start=start, slot_minutes=minutes, required_file=data["required_file"],
                  marker=data["marker"], drain_file=data["drain_file"], drain=tuple(data["drain"]),
                  reboot=tuple(data["reboot"]), peers=dict(data["peers"]), peers_file=data["peers_file"],
                  group=tuple(data["group"]), min_announcing=data["min_announcing"])


def in_slot(cfg: Config, now: float) -> bool:
    """The slot may wrap past Sunday 24:00 into Monday."""
    t = time.gmtime(now)
    return (t.tm_wday * 1440 + t.tm_hour * 60 + t.tm_min - cfg.slot_start) % WEEK_MINUTES < cfg.slot_minutes


def fetch_status(url: str, timeout: float) -> dict[str, Any] | None:
    """A peer's /status document, or None when it cannot be read (counted as not announcing)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # http URLs from the rendered config
            doc = json.loads(resp.read(1 << 20))
        return doc if isinstance(doc, dict) else None
    except (OSError, ValueError):
        return None


def all_peers(cfg: Config) -> dict[str, str]:
    """The rendered peers plus ``peers_file`` (written after boot, when the other PoPs' addresses are known)."""
    peers = dict(cfg.peers)
    try:
        with open(cfg.peers_file, encoding="utf-8") as fh:
            extra = json.load(fh)
    except FileNotFoundError:
        return peers
    except (OSError, ValueError) as exc:
        raise ConfigProblem(f"{cfg.peers_file}: {exc}") from exc
    if not isinstance(extra, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
        raise ConfigProblem(f"{cfg.peers_file}: must be a JSON object mapping PoP codes to status URLs")
    peers.update(extra)
    peers.pop(cfg.pop, None)
    return peers


def quorum(cfg: Config, states: dict[str, str | None]) -> str | None:
    """None when the others can carry this PoP's traffic, else why not. ``states``: peer code -> /status state
    (None: unreachable)."""
    announcing = sorted(code for code, state in states.items() if state == ANNOUNCED)
    down = sorted(code for code in cfg.group if code in states and states[code] != ANNOUNCED)
    if down:
        named = ", ".join(f"{c} ({states[c] or 'unreachable'})" for c in down)
        return f"peer(s) of this PoP's group not announcing: {named}"
    if len(announcing) < cfg.min_announcing:
        return f"{len(announcing)} of {len(states)} known peers announcing, {cfg.min_announcing} needed ({cfg.peers_file})"
    return None


Run = Callable[[tuple[str, ...], float], int]  # a command and its timeout -> exit code
Status = Callable[[str, float], "dict[str, Any] | None"]  # a peer's status URL and a timeout -> its /status


def run_command(cmd: tuple[str, ...], timeout: float) -> int:
    try:
        return subprocess.run(list(cmd), timeout=timeout, check=False).returncode
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"{cmd[0]}: {exc}", file=sys.stderr)
        return 1


def once(cfg: Config, now: float, run: Run, status: Status, say: Callable[[str], None]) -> int:
    # A marker at the start: this is the first run after the reboot it drained for (a oneshot unit never runs twice
    # at once), or that reboot failed. Either way the drain has done its work.
    undo(cfg, say)
    if not os.path.exists(cfg.required_file):
        say(f"no reboot needed (no {cfg.required_file})")
        return 0
    if not in_slot(cfg, now):
        say(f"a reboot is needed; waiting for this PoP's slot (minute {cfg.slot_start} of the week UTC)")
        return 0
    states: dict[str, str | None] = {}
    for code, url in sorted(all_peers(cfg).items()):
        doc = status(url, cfg.timeout_s)
        states[code] = doc.get("state") if doc is not None and isinstance(doc.get("state"), str) else None
    why = quorum(cfg, states)
    if why is not None:
        say(f"skipping this slot: {why}")
        return 0
    if cfg.drain and os.path.exists(cfg.drain_file):
        say(f"already drained by someone else ({cfg.drain_file}): it stays drained after the reboot")
    elif cfg.drain:
        os.makedirs(os.path.dirname(cfg.marker) or ".", exist_ok=True)
        with open(cfg.marker, "w", encoding="utf-8") as fh:
            fh.write(f"drained for a reboot at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now))}\n")
        say("draining: " + " ".join(cfg.drain))
        if run(cfg.drain, cfg.drain_timeout_s) != 0:
            undo(cfg, say)
            say("the drain failed: not rebooting (next try in 5 minutes)")
            return 1
    say("rebooting: " + " ".join(cfg.reboot))
    return 0 if run(cfg.reboot, 60.0) == 0 else 1


def undo(cfg: Config, say: Callable[[str], None]) -> None:
    """Remove the drain this coordinator made (marker present); an operator's drain (no marker) stays."""
    if os.path.exists(cfg.marker):
        for path in (cfg.drain_file, cfg.marker):
            if os.path.exists(path):
                os.unlink(path)
        say(f"removed the reboot's drain ({cfg.drain_file}): the health agent announces after its checks pass")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="anycast-reboot", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--config", default="/etc/anycast/reboot.json", help="reboot.json (default: %(default)s)")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--once", action="store_true", help="reboot now if needed, in the slot and with a quorum")
    mode.add_argument("--check-config", action="store_true", help="validate the config and exit")
    args = parser.parse_args(argv)

    def say(text: str) -> None:
        print(f"anycast-reboot: {text}", flush=True)

    try:
        with open(args.config, encoding="utf-8") as fh:
            cfg = load_config(json.load(fh))
        if args.check_config:
            say("config ok")
            return 0
        return once(cfg, time.time(), run_command, fetch_status, say)
    except (OSError, ValueError, ConfigProblem) as exc:
        say(f"{args.config}: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
