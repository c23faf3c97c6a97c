"""A preflight result: one row per check, PASS/WARN/FAIL/SKIP, with the fix in one line.

Rows carry only what is safe to print: the checks build them from public facts (plan ids, zone names, ASNs) and
never from a credential, so the CLI can show every row as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    PASS = "PASS"
    WARN = "WARN"  # works, but something will bite (an RPKI-invalid announcement, an unchecked path)
    FAIL = "FAIL"  # `pulumi up` would fail or build a network that cannot work: fix it first
    SKIP = "SKIP"  # not applicable to this stack, or not checkable with what was given


@dataclass(frozen=True)
class Row:
    section: str  # vultr, aws, ripe, dns, gates
    check: str  # what was checked, a few words
    status: Status
    detail: str  # what was found
    fix: str = ""  # one line: what to do (empty for PASS)

    def line(self) -> str:
        return f"{self.status.value:4}  {self.section:5}  {self.check}: {self.detail}" + (f"\n      fix: {self.fix}" if self.fix else "")


def passed(section: str, check: str, detail: str) -> Row:
    return Row(section, check, Status.PASS, detail)


def warn(section: str, check: str, detail: str, fix: str) -> Row:
    return Row(section, check, Status.WARN, detail, fix)


def fail(section: str, check: str, detail: str, fix: str) -> Row:
    return Row(section, check, Status.FAIL, detail, fix)


def skip(section: str, check: str, detail: str, fix: str = "") -> Row:
    return Row(section, check, Status.SKIP, detail, fix)


class Unreachable(Exception):
    """A provider's API did not answer in time or at all; ``str()`` says which and for how long (no secret)."""
