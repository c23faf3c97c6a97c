"""A security update that needs a reboot, in the machine-mode lab (docs/security.md#security-updates-and-reboots).

``/var/run/reboot-required`` is created on ``code`` and on ``other`` (a PoP that backs it up: same rollout wave or
continent, so another slot). The lab cannot wait for the weekly slot, so ``code``'s slot is moved to the current
hour and ``other``'s an hour on, in the PoP's own ``/etc/anycast/reboot.json``; the quorum is set to 0 (the PoPs'
status ports are open to ``admin.monitoringCidrs`` only, which the lab's PoPs are not in; the quorum is tested in
tests/unit/test_reboots.py and against the real agent in tests/validators/test_health_agent_bird.py). Then the
timer's run is started on both at once, clients probing the anycast address throughout (lab/scenarios/rollout.py
``Load``). Measured: what the clients lost, when the container's PID 1 changed (the reboot), when its health agent
reported ``announced`` again, whether ``other`` and the rest rebooted (their PID 1 unchanged).
"""

from __future__ import annotations

import json
import textwrap
import time
from typing import Any

from infra.contracts import HEALTH_STATUS_PORT, REBOOT_CONFIG_FILE, REBOOT_REQUIRED_FILE, REBOOT_UNIT, STATUS_PATH
from lab.drivers import machines as m
from lab.net.netns import LabError
from lab.scenarios.rollout import Load
from lab.state import LabState

WEEK_MINUTES = 7 * 24 * 60


def _python(leader: int, code: str, timeout: float = 30) -> str:
    res = m.nsexec(leader, ["python3", "-c", textwrap.dedent(code)], timeout=timeout)
    if res.returncode != 0:
        raise LabError(f"python3 in pid {leader}: {(res.stderr or res.stdout).strip()[-300:]}")
    return res.stdout.strip()


def _prepare(leader: int, start_minute: int) -> None:
    _python(leader, f"""
        import json
        c = json.load(open({REBOOT_CONFIG_FILE!r}))
        c["slot"].update(start_minute={start_minute}, minutes=60)
        c.update(peers={{}}, group=[], min_announcing=0)
        json.dump(c, open({REBOOT_CONFIG_FILE!r}, "w"))
        open({REBOOT_REQUIRED_FILE!r}, "w").close()""")


def _state(leader: int) -> str:
    return _python(leader, f"""
        import json, urllib.request
        url = "http://127.0.0.1:{HEALTH_STATUS_PORT}{STATUS_PATH}"
        print(json.load(urllib.request.urlopen(url, timeout=1))["state"])""", timeout=10)


def security_reboot(state: LabState, zone: str, code: str, other: str, timeout: float = 240) -> dict[str, Any]:
    pops = state["pops"]
    if state.get("mode") != "machines":
        raise LabError("the reboot scenario needs machine mode (anycast lab up --machines)")
    leaders = {c: m.leader(p["namespace"]) for c, p in pops.items()}
    now = time.gmtime()
    minute = now.tm_wday * 1440 + now.tm_hour * 60 + now.tm_min
    for c, start in ((code, minute), (other, (minute + 60) % WEEK_MINUTES)):
        _prepare(int(leaders[c] or 0), start)
    anycast = state["anycast"]["ipv4"] or state["anycast"]["ipv6"]
    load = Load({n: c["namespace"] for n, c in state["clients"].items()}, str(anycast), zone).start()
    out: dict[str, Any] = {"pop": code, "other": other}
    t0 = time.monotonic()
    try:
        time.sleep(2)
        t0 = time.monotonic()
        for c in (code, other):
            m.nsexec(int(leaders[c] or 0), ["systemctl", "start", "--no-block", REBOOT_UNIT])
        new = None
        while time.monotonic() - t0 < timeout and (new is None or new == leaders[code]):
            new = m.leader(pops[code]["namespace"])
            time.sleep(0.1)
        out["rebooted_after_s"] = round(time.monotonic() - t0, 1) if new and new != leaders[code] else None
        while out["rebooted_after_s"] is not None and time.monotonic() - t0 < timeout:
            try:
                if _state(int(new or 0)) == "announced":
                    out["announced_after_s"] = round(time.monotonic() - t0, 1)
                    break
            except LabError:
                pass  # booting: no python3 or no agent yet
            time.sleep(0.25)
        time.sleep(2)
    finally:
        load.stop()
    summary = load.summary(t0)
    out["lost"] = {"http": summary["http"], "dns": summary["dns"]}  # [lost, sent]
    out["lost_at"] = summary["lost_at"][:20]  # (client, kind, seconds after the timer's run started)
    out["lost_at_switch"] = summary["at_switch"][:20]  # (client, kind, seconds, PoP before, PoP after)
    out["lost_elsewhere"] = summary["elsewhere"]
    out["unchanged"] = sorted(c for c in pops if c != code and m.leader(pops[c]["namespace"]) == leaders[c])
    if new:
        out["drain_left"] = _python(new, "import os; print(os.listdir('/var/lib/anycast'))")
    other_log = m.nsexec(int(leaders[other] or 0), ["journalctl", "-u", REBOOT_UNIT, "--no-pager", "-o", "cat"]).stdout
    out["other_said"] = [line for line in other_log.splitlines() if "anycast-reboot:" in line][-1:]
    return json.loads(json.dumps(out))
