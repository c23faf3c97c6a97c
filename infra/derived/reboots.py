"""Weekly reboot slots: when each PoP may reboot for a security update (pure: the renderer and the docs use it).

Two PoPs back each other up when they are in the same rollout wave (``infra/derived/rollout.py``: the wave is what
a deploy replaces together) or on the same continent (the group GeoDNS and BGP fall back to when one goes away).
Such PoPs never share a slot. Slots are assigned greedily in the stack's document order: each PoP takes the first
slot that no earlier PoP it backs up holds. So the schedule depends on the stack alone (deterministic, no clock), and
a PoP appended to the stack changes no other PoP's slot.

A slot is ``SLOT_MINUTES`` long, the first starts ``FIRST_SLOT`` (UTC) each week. The coordinator on the PoP
(``userdata/files/anycast-reboot.py``) reboots only inside its slot, only when an update asks for a reboot, and
only when enough other PoPs announce; docs/security.md has prod's table (``anycast reboots --stack prod``).
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.derived.rollout import rollout_waves
from infra.model import Network

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# Tuesday 01:00 UTC: after Debian's security announcements cluster (Monday/Tuesday), away from the weekend; the
# apt-daily-upgrade.timer (06:00 + up to 60 min, each day) has installed the update by then on most days.
FIRST_SLOT = (1, 1, 0)  # (weekday index, hour, minute), UTC
SLOT_MINUTES = 60  # drain (at most drain.timeout_s, 60 s) + reboot + boot + `rise` checks, with room to spare
WEEK_MINUTES = 7 * 24 * 60


@dataclass(frozen=True)
class Slot:
    index: int
    start_minute: int  # minutes after Monday 00:00 UTC
    minutes: int = SLOT_MINUTES

    @property
    def label(self) -> str:
        day, rest = divmod(self.start_minute, 24 * 60)
        end = (self.start_minute + self.minutes) % WEEK_MINUTES
        eday, erest = divmod(end, 24 * 60)
        return (f"{WEEKDAYS[day]} {rest // 60:02d}:{rest % 60:02d}-"
                f"{'' if eday == day else WEEKDAYS[eday] + ' '}{erest // 60:02d}:{erest % 60:02d} UTC")


def slot(index: int) -> Slot:
    day, hour, minute = FIRST_SLOT
    start = (day * 24 * 60 + hour * 60 + minute + index * SLOT_MINUTES) % WEEK_MINUTES
    return Slot(index=index, start_minute=start)


def backup_groups(network: Network) -> dict[str, set[str]]:
    """For each PoP the other PoPs it backs up (and that back it up): same rollout wave or same continent."""
    wave_of = {code: i for i, wave in enumerate(rollout_waves(network)) for code in wave}
    out: dict[str, set[str]] = {}
    for pop in network.pops:
        out[pop.code] = {other.code for other in network.pops if other.code != pop.code and (
            other.continent == pop.continent
            or (pop.code in wave_of and wave_of.get(other.code) == wave_of[pop.code]))}
    return out


def continent_peers(network: Network, code: str) -> list[str]:
    """The PoPs of ``code``'s continent (its region group), in document order, without itself."""
    mine = next(p for p in network.pops if p.code == code)
    return [p.code for p in network.pops if p.code != code and p.continent == mine.continent]


def reboot_slots(network: Network) -> dict[str, Slot]:
    """Each PoP's weekly slot; no two PoPs of one backup group share one (see the module docstring)."""
    groups = backup_groups(network)
    taken: dict[str, int] = {}
    for pop in network.pops:
        busy = {taken[other] for other in groups[pop.code] if other in taken}
        index = next(i for i in range(len(network.pops) + 1) if i not in busy)
        taken[pop.code] = index
    return {code: slot(index) for code, index in taken.items()}


def schedule_table(network: Network) -> str:
    """The Markdown table docs/security.md shows for prod."""
    slots = reboot_slots(network)
    waves = {code: i + 1 for i, wave in enumerate(rollout_waves(network)) for code in wave}
    rows = ["| slot | weekly window | PoP | continent | wave |", "| --- | --- | --- | --- | --- |"]
    for pop in sorted(network.pops, key=lambda p: (slots[p.code].index, p.code)):
        s = slots[pop.code]
        rows.append(f"| {s.index} | {s.label} | {pop.code} | {pop.continent} | {waves.get(pop.code, '-')} |")
    return "\n".join(rows) + "\n"
