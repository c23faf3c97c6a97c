"""The typed lab state (lab/state.py): what `lab up` writes survives the JSON round trip, a file that does not fit
is refused with one line naming the field, and keys the types do not name are kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.model.stack import load_network
from lab.boot.up import _state
from lab.net.netns import LabError
from lab.plan.topology import build_plan
from lab.state import LabState, load_state, parse_state, save_state, state_json


def _booted(stack: str, base: Path, machines: bool = False) -> LabState:
    """The state `lab up` builds for ``stack`` (lab/boot/up.py:_state), with made-up pids."""
    plan = build_plan(stack, load_network(stack))
    if machines:
        started = {p.code: {"pids": {"nspawn": 100 + i, "leader": 200 + i}, "commands": {},
                            "machine": {"name": p.namespace, "root": f"/x/{p.code}/root", "dir": f"/x/{p.code}",
                                        "cloud_init": "done", "boot_seconds": 8.5, "mirror": "http://10.0.0.1:3142"},
                            "bird_socket": f"/proc/{200 + i}/root/run/bird/bird.ctl"} for i, p in enumerate(plan.pops)}
    else:
        started = {p.code: {"pids": {"bird": 10 + i, "caddy": 20 + i}, "commands": {"bird": ["bird", "-f"]}}
                   for i, p in enumerate(plan.pops)}
    state = _state(plan, base, started, {p.code: 300 + i for i, p in enumerate(plan.pops)},
                   {c.name: 400 + i for i, c in enumerate(plan.clients)})
    state["mode"] = "machines" if machines else "processes"
    state["boot_seconds"] = 12.5
    return state


@pytest.mark.parametrize(("stack", "machines"), [("dev", False), ("prod", False), ("dev", True)])
def test_round_trip(tmp_path: Path, stack: str, machines: bool) -> None:
    state = _booted(stack, tmp_path / stack, machines)
    (tmp_path / stack).mkdir()
    save_state(stack, state, root=tmp_path)
    text = (tmp_path / stack / "state.json").read_text(encoding="utf-8")
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"  # for people: indented, sorted
    back = load_state(stack, root=tmp_path)
    assert back == state
    assert state_json(back) == text
    pop = next(iter(back["pops"].values()))
    assert ("machine" in pop) is machines


def test_unknown_keys_are_kept(tmp_path: Path) -> None:
    state = _booted("dev", tmp_path)
    doc = json.loads(state_json(state))
    doc["added_later"] = {"x": 1}
    next(iter(doc["pops"].values()))["upstream"]["note"] = "kept"
    back = parse_state(json.dumps(doc))
    assert json.loads(state_json(back)) == doc


@pytest.mark.parametrize(("edit", "field"), [
    (lambda d: d["pops"][next(iter(d["pops"]))].pop("namespace"), "pops.ams.namespace"),
    (lambda d: d["clients"][next(iter(d["clients"]))].update(pid="not a pid"), ".pid"),
    (lambda d: d.update(mode="containers"), "mode"),
])
def test_a_file_that_does_not_fit_is_refused_naming_the_field(tmp_path: Path, edit: object, field: str) -> None:
    doc = json.loads(state_json(_booted("dev", tmp_path)))
    edit(doc)  # type: ignore[operator]
    with pytest.raises(LabError, match="state.json: .*" + field.replace(".", r"\.")) as err:
        parse_state(json.dumps(doc))
    assert "\n" not in str(err.value)


def test_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(LabError, match=r"run `anycast lab up --stack dev` first"):
        load_state("dev", root=tmp_path)
