"""Security updates and coordinated reboots: the weekly slot schedule (infra/derived/reboots.py), the rendered
unattended-upgrades policy and reboot.json (userdata/reboots.py), and the coordinator on the PoP
(userdata/files/anycast-reboot.py): slot arithmetic, peer quorum, drain before reboot, no reboot without need."""

from __future__ import annotations

import calendar
import copy
import importlib.util
import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from infra.derived.reboots import WEEK_MINUTES, backup_groups, reboot_slots, schedule_table
from infra.derived.rollout import rollout_waves
from infra.model.stack import NETWORK_KEY, load_network, parse_network, read_stack_config
from userdata import reboots

SCRIPT = Path(__file__).resolve().parents[2] / "userdata" / "files" / "anycast-reboot.py"
STACKS = ["prod", "dev", "free"]


@pytest.fixture(scope="module")
def agent() -> ModuleType:
    spec = importlib.util.spec_from_file_location("anycast_reboot_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up
    spec.loader.exec_module(module)
    return module


# --- the schedule --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", STACKS)
def test_no_two_pops_that_back_each_other_up_share_a_slot(stack: str) -> None:
    network = load_network(stack)
    slots = reboot_slots(network)
    assert set(slots) == {p.code for p in network.pops}
    continent = {p.code: p.continent for p in network.pops}
    for wave in rollout_waves(network):
        assert len({slots[c].index for c in wave}) == len(wave), (stack, wave)
    for code, others in backup_groups(network).items():
        assert all(continent[o] == continent[code] or any({o, code} <= set(w) for w in rollout_waves(network))
                   for o in others)
        assert not [o for o in others if slots[o].index == slots[code].index], (stack, code)
    for s in slots.values():
        assert 0 <= s.start_minute < WEEK_MINUTES and s.minutes == 60


def test_the_schedule_is_deterministic_and_stable_when_a_pop_is_appended() -> None:
    config = read_stack_config("prod")[NETWORK_KEY]
    before = reboot_slots(parse_network(copy.deepcopy(config), source="prod"))
    assert before == reboot_slots(load_network("prod"))
    grown = copy.deepcopy(config)
    extra = copy.deepcopy(next(p for p in grown["pops"] if p["code"] == "fra"))
    extra.update(code="waw", region="waw", city="Warsaw", country="PL")
    grown["pops"].append(extra)
    after = reboot_slots(parse_network(grown, source="prod+waw"))
    assert {c: s for c, s in after.items() if c != "waw"} == before
    eu = [c for c in before if c in ("ams", "lhr", "fra", "cdg")]
    assert after["waw"].index not in {before[c].index for c in eu}


def test_prod_schedule_table_is_in_the_docs() -> None:
    table = schedule_table(load_network("prod"))
    assert "| 0 | Tue 01:00-02:00 UTC | ewr | NA | 1 |" in table
    doc = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text(encoding="utf-8")
    assert table in doc, "docs/security.md: paste the output of `anycast reboots --stack prod`"


# --- what the user data carries ------------------------------------------------------------------------------------

def test_unattended_upgrades_takes_only_debian_security_and_never_reboots(tmp_path: Path) -> None:
    """apt-config reads Debian's own 50unattended-upgrades (when installed) and ours the way apt does."""
    parts = tmp_path / "parts"
    parts.mkdir()
    stock = Path("/etc/apt/apt.conf.d/50unattended-upgrades")
    if stock.is_file():
        (parts / stock.name).write_text(stock.read_text(encoding="utf-8"), encoding="utf-8")
    (parts / Path(reboots.APT_CONF).name).write_text(reboots.APT_CONF_TEXT, encoding="utf-8")
    (tmp_path / "apt.conf").write_text(f'Dir::Etc::parts "{parts}";\n', encoding="utf-8")
    out = subprocess.run(["apt-config", "dump"], env={"APT_CONFIG": str(tmp_path / "apt.conf"), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, check=True, timeout=30).stdout
    origins = [line for line in out.splitlines() if line.startswith("Unattended-Upgrade::Origins-Pattern:: ")]
    assert origins == ['Unattended-Upgrade::Origins-Pattern:: '
                       '"origin=Debian,codename=${distro_codename}-security,label=Debian-Security";'], out
    assert 'Unattended-Upgrade::Automatic-Reboot "false";' in out
    assert 'APT::Periodic::Unattended-Upgrade "1";' in out


@pytest.mark.parametrize("stack", STACKS)
def test_every_pop_gets_a_coordinator_config_it_accepts(stack: str, agent: ModuleType) -> None:
    network = load_network(stack)
    slots = reboot_slots(network)
    for pop in network.pops:
        data = json.loads(reboots.reboot_json(network, pop))
        cfg = agent.load_config(data)
        assert cfg.slot_start == slots[pop.code].start_minute and cfg.pop == pop.code
        assert bool(cfg.drain) == pop.is_anycast and (not cfg.drain or "--drain" in cfg.drain)
        anycast_peers = [p for p in network.pops if p.is_anycast and p.code != pop.code]
        assert set(cfg.group) == {p.code for p in anycast_peers if p.continent == pop.continent}
        assert 1 <= cfg.min_announcing <= len(anycast_peers)
        assert pop.code not in cfg.peers


def test_prod_knows_the_external_pops_status_before_boot() -> None:
    network = load_network("prod")
    cfg = reboots.reboot_config(network, next(p for p in network.pops if p.code == "ams"))
    assert set(cfg["peers"]) == {"hkg", "maa"}  # the Vultr PoPs' addresses exist only after they are created
    assert all(url.endswith(":9325/status") for url in cfg["peers"].values())


# --- the coordinator -----------------------------------------------------------------------------------------------

def _utc(text: str) -> float:
    return float(calendar.timegm(__import__("time").strptime(text, "%Y-%m-%d %H:%M")))


def _config(agent: ModuleType, tmp: Path, **over: Any) -> Any:
    data = {"pop": "ams", "slot": {"start_minute": 1 * 1440 + 60, "minutes": 60},  # Tuesday 01:00-02:00 UTC
            "required_file": str(tmp / "reboot-required"), "marker": str(tmp / "state" / "reboot-drain"),
            "drain_file": str(tmp / "state" / "drain"), "drain": ["anycast-health", "--drain"],
            "reboot": ["systemctl", "reboot"], "peers": {"lhr": "http://lhr/status", "ewr": "http://ewr/status",
                                                          "nrt": "http://nrt/status"},
            "peers_file": str(tmp / "peers.json"), "group": ["lhr"], "min_announcing": 2, **over}
    return agent.load_config(data)


class FakeHost:
    """Records the commands run and answers /status from a table; the drain writes the drain file as the agent does."""

    def __init__(self, cfg: Any, states: Mapping[str, str | None], drain_rc: int = 0) -> None:
        self.cfg, self.states, self.drain_rc = cfg, states, drain_rc
        self.calls: list[tuple[str, ...]] = []
        self.asked: list[str] = []

    def run(self, cmd: tuple[str, ...], timeout: float) -> int:
        self.calls.append(cmd)
        if cmd == self.cfg.drain:
            Path(self.cfg.drain_file).write_text("drained\n", encoding="utf-8")
            assert Path(self.cfg.marker).exists(), "the marker is written before the drain starts"
            return self.drain_rc
        return 0

    def status(self, url: str, timeout: float) -> dict[str, Any] | None:
        self.asked.append(url)
        state = self.states.get(url.split("/")[2])
        return None if state is None else {"state": state}


def _once(agent: ModuleType, cfg: Any, host: FakeHost, when: str) -> tuple[int, list[str]]:
    said: list[str] = []
    return agent.once(cfg, _utc(when), host.run, host.status, said.append), said


ALL_UP = {"lhr": "announced", "ewr": "announced", "nrt": "announced"}
IN_SLOT = "2026-12-08 01:30"  # a Tuesday


@pytest.mark.parametrize(("when", "inside"), [
    ("2026-12-08 01:00", True), ("2026-12-08 01:59", True), ("2026-12-08 02:00", False),
    ("2026-12-08 00:59", False), ("2026-12-15 01:10", True), ("2026-12-07 01:30", False)])
def test_slot_arithmetic(agent: ModuleType, tmp_path: Path, when: str, inside: bool) -> None:
    assert agent.in_slot(_config(agent, tmp_path), _utc(when)) is inside


def test_a_slot_may_wrap_from_sunday_into_monday(agent: ModuleType, tmp_path: Path) -> None:
    cfg = _config(agent, tmp_path, slot={"start_minute": WEEK_MINUTES - 30, "minutes": 60})  # Sun 23:30-Mon 00:30
    assert agent.in_slot(cfg, _utc("2026-12-13 23:45")) and agent.in_slot(cfg, _utc("2026-12-14 00:15"))
    assert not agent.in_slot(cfg, _utc("2026-12-14 00:30")) and not agent.in_slot(cfg, _utc("2026-12-13 23:29"))


def test_no_reboot_without_reboot_required(agent: ModuleType, tmp_path: Path) -> None:
    cfg = _config(agent, tmp_path)
    host = FakeHost(cfg, ALL_UP)
    rc, said = _once(agent, cfg, host, IN_SLOT)
    assert rc == 0 and host.calls == [] and host.asked == [] and "no reboot needed" in said[-1]


def test_outside_the_slot_nobody_is_asked_and_nothing_runs(agent: ModuleType, tmp_path: Path) -> None:
    cfg = _config(agent, tmp_path)
    Path(cfg.required_file).touch()
    host = FakeHost(cfg, ALL_UP)
    rc, said = _once(agent, cfg, host, "2026-12-08 03:00")
    assert rc == 0 and host.calls == [] and host.asked == [] and "waiting for this PoP's slot" in said[-1]


def test_drain_then_reboot_and_the_next_boot_undoes_the_drain(agent: ModuleType, tmp_path: Path) -> None:
    cfg = _config(agent, tmp_path)
    Path(cfg.required_file).touch()
    host = FakeHost(cfg, ALL_UP)
    rc, said = _once(agent, cfg, host, IN_SLOT)
    assert rc == 0 and host.calls == [cfg.drain, cfg.reboot], host.calls  # drained first
    assert Path(cfg.drain_file).exists() and Path(cfg.marker).exists()  # withdrawn until the reboot
    Path(cfg.required_file).unlink()  # /run is a tmpfs: gone after the reboot
    after = FakeHost(cfg, ALL_UP)
    rc, said = _once(agent, cfg, after, "2026-12-08 01:40")  # the run at boot, before the health agent
    assert rc == 0 and after.calls == [] and not Path(cfg.drain_file).exists() and not Path(cfg.marker).exists()
    assert "removed the reboot's drain" in said[0]


def test_a_failed_drain_does_not_reboot_and_announces_again(agent: ModuleType, tmp_path: Path) -> None:
    cfg = _config(agent, tmp_path)
    Path(cfg.required_file).touch()
    host = FakeHost(cfg, ALL_UP, drain_rc=1)
    rc, said = _once(agent, cfg, host, IN_SLOT)
    assert rc == 1 and host.calls == [cfg.drain] and cfg.reboot not in host.calls
    assert not Path(cfg.drain_file).exists() and not Path(cfg.marker).exists()
    assert "not rebooting" in said[-1]


def test_an_operators_drain_is_kept_across_the_reboot(agent: ModuleType, tmp_path: Path) -> None:
    cfg = _config(agent, tmp_path)
    Path(cfg.required_file).touch()
    Path(cfg.drain_file).parent.mkdir(parents=True)
    Path(cfg.drain_file).write_text("maintenance\n", encoding="utf-8")
    host = FakeHost(cfg, ALL_UP)
    rc, _ = _once(agent, cfg, host, IN_SLOT)
    assert rc == 0 and host.calls == [cfg.reboot] and not Path(cfg.marker).exists()
    _once(agent, cfg, FakeHost(cfg, ALL_UP), IN_SLOT)
    assert Path(cfg.drain_file).read_text(encoding="utf-8") == "maintenance\n"


@pytest.mark.parametrize(("states", "why"), [
    ({"lhr": "withdrawn", "ewr": "announced", "nrt": "announced"}, "lhr (withdrawn)"),  # the group's peer
    ({"lhr": None, "ewr": "announced", "nrt": "announced"}, "lhr (unreachable)"),
    ({"lhr": "announced", "ewr": "drained", "nrt": None}, "1 of 3 known peers announcing, 2 needed"),
])
def test_the_slot_is_skipped_without_a_quorum(agent: ModuleType, tmp_path: Path, states: dict[str, str | None],
                                              why: str) -> None:
    cfg = _config(agent, tmp_path)
    Path(cfg.required_file).touch()
    host = FakeHost(cfg, states)
    rc, said = _once(agent, cfg, host, IN_SLOT)
    assert rc == 0 and host.calls == [] and "skipping this slot" in said[-1] and why in said[-1], said
    assert not Path(cfg.drain_file).exists()


def test_peers_learnt_after_boot_count_toward_the_quorum(agent: ModuleType, tmp_path: Path) -> None:
    cfg = _config(agent, tmp_path, peers={}, min_announcing=2)
    Path(cfg.required_file).touch()
    host = FakeHost(cfg, {"fra": "announced", "sgp": "announced"})
    assert _once(agent, cfg, host, IN_SLOT)[1][-1].startswith("skipping this slot: 0 of 0")
    Path(cfg.peers_file).write_text(json.dumps({"fra": "http://fra/status", "sgp": "http://sgp/status"}), encoding="utf-8")
    host = FakeHost(cfg, {"fra": "announced", "sgp": "announced"})
    assert _once(agent, cfg, host, IN_SLOT)[0] == 0 and host.calls == [cfg.drain, cfg.reboot]
    Path(cfg.peers_file).write_text("[1]", encoding="utf-8")
    with pytest.raises(agent.ConfigProblem, match=r"peers\.json: must be a JSON object"):
        _once(agent, cfg, FakeHost(cfg, {}), IN_SLOT)


def test_the_command_line_checks_the_rendered_config_and_refuses_a_bad_one(tmp_path: Path) -> None:
    network = load_network("dev")
    good = tmp_path / "reboot.json"
    good.write_text(reboots.reboot_json(network, network.pops[0]), encoding="utf-8")
    res = subprocess.run([sys.executable, str(SCRIPT), "--config", str(good), "--check-config"], capture_output=True,
                         text=True, timeout=30, check=False)
    assert res.returncode == 0 and "config ok" in res.stdout
    data = json.loads(good.read_text(encoding="utf-8"))
    data["slot"]["start_minute"] = WEEK_MINUTES
    good.write_text(json.dumps(data), encoding="utf-8")
    res = subprocess.run([sys.executable, str(SCRIPT), "--config", str(good), "--once"], capture_output=True,
                         text=True, timeout=30, check=False)
    assert res.returncode == 2 and res.stdout.count("\n") == 1 and "slot: start_minute" in res.stdout, res.stdout
