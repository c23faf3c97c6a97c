"""Plan and apply route(6) objects: compare wanted with stored, then make only the needed writes.

Safety rules: objects without this stack's managed remark are never changed or deleted; deleting managed objects
that are no longer wanted needs ``prune``; ``apply`` first sends every write as a RIPE dry run, so a refusal (say, the
lessor's ``mnt-routes``) stops the run before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from infra.ripe.client import RipeDbClient
from infra.ripe.desired import RouteSpec, managing_stack
from infra.ripe.errors import RipeError, RipeProtocolError, RipeRefused
from infra.ripe.rpsl import RpslObject


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    OK = "unchanged"
    FOREIGN = "left alone"
    STALE = "stale"


WRITES = (Action.CREATE, Action.UPDATE, Action.DELETE)


@dataclass(frozen=True)
class Change:
    action: Action
    obj_type: str
    key: str
    reason: str = ""
    spec: RouteSpec | None = None
    actual: RpslObject | None = None

    def line(self) -> str:
        return f"{self.action.value:>10}  {self.obj_type} {self.key}" + (f"  ({self.reason})" if self.reason else "")


class PreflightRefused(RipeError):
    """RIPE's dry run refused at least one write; nothing was written."""

    def __init__(self, refusals: list[RipeRefused]) -> None:
        self.refusals = refusals
        super().__init__("\n".join(str(r) for r in refusals) + "\nNothing was written (RIPE's dry run refused the "
                         "change above).")


def plan(client: RipeDbClient, specs: list[RouteSpec], stack: str, maintainer: str, prune: bool = False) -> list[Change]:
    """What ``apply`` would do, from lookups only (no key needed)."""
    changes = []
    for spec in specs:
        actual = client.lookup(spec.type, spec.key)
        changes.append(_compare(spec, actual, client.source, stack))
    wanted = {spec.key for spec in specs}
    for obj in client.search_by_maintainer(maintainer):
        if obj.key in wanted or managing_stack(obj) != stack:
            continue  # someone else's object, or one compared above
        if prune:
            changes.append(Change(Action.DELETE, obj.type, obj.key, "managed here, no longer in the stack", actual=obj))
        else:
            changes.append(Change(Action.STALE, obj.type, obj.key, "managed here, no longer in the stack; "
                                  "--prune deletes it", actual=obj))
    return changes


def _compare(spec: RouteSpec, actual: RpslObject | None, source: str, stack: str) -> Change:
    if actual is None:
        return Change(Action.CREATE, spec.type, spec.key, spec=spec)
    owner = managing_stack(actual)
    if owner is None:
        return Change(Action.FOREIGN, spec.type, spec.key, "exists, not created by this project (mnt-by "
                      f"{', '.join(actual.values('mnt-by'))})", spec, actual)
    if owner != stack:
        return Change(Action.FOREIGN, spec.type, spec.key, f"managed by stack {owner}", spec, actual)
    diffs = spec.differences(actual, source)
    if diffs:
        return Change(Action.UPDATE, spec.type, spec.key, "; ".join(diffs), spec, actual)
    return Change(Action.OK, spec.type, spec.key, spec=spec, actual=actual)


def dry_run(client: RipeDbClient, changes: list[Change]) -> list[RipeRefused]:
    """Ask RIPE to check every write without applying it; the refusals, [] if all would pass."""
    refusals = []
    for change in changes:
        if change.action in WRITES:
            try:
                _write(client, change, dry_run=True)
            except RipeRefused as exc:
                refusals.append(exc)
    return refusals


def apply(client: RipeDbClient, changes: list[Change], report: Callable[[str], None] = lambda _: None) -> int:
    """Make the writes of ``changes``; the number of writes RIPE accepted. ``report`` hears one line per outcome.

    Raises PreflightRefused (nothing written) or the first RipeError of a real write (the writes before it are
    reported, each object is written whole or not at all).
    """
    todo = [c for c in changes if c.action in WRITES]
    if not todo:
        return 0
    refusals = dry_run(client, todo)
    if refusals:
        raise PreflightRefused(refusals)
    written = 0
    for change in todo:
        outcome, wrote = _apply_one(client, change)
        written += wrote
        report(outcome)
    return written


def _apply_one(client: RipeDbClient, change: Change) -> tuple[str, int]:
    try:
        _write(client, change, dry_run=False)
        return f"{change.action.value}d {change.obj_type} {change.key}", 1
    except RipeRefused as exc:
        if not (exc.status == 409 and change.action is Action.CREATE):
            raise
        # Someone (or an earlier attempt of ours that timed out) created it between plan and write: look again.
        return _settle(client, change, "it already existed (HTTP 409)")
    except RipeProtocolError:
        # The answer was unreadable; whether the write happened is a fact RIPE can tell us.
        return _settle(client, change, "RIPE's answer was unreadable")


def _settle(client: RipeDbClient, change: Change, why: str) -> tuple[str, int]:
    assert change.spec is not None or change.action is Action.DELETE
    actual = client.lookup(change.obj_type, change.key)
    if change.action is Action.DELETE:
        if actual is None:
            return f"deleted {change.obj_type} {change.key} ({why}; checked: it is gone)", 1
        raise RipeProtocolError(f"delete {change.obj_type} {change.key}: {why} and the object is still there; "
                                "nothing else was changed, run apply again")
    spec = change.spec
    assert spec is not None
    if actual is not None and managing_stack(actual) == spec.stack and not spec.differences(actual, client.source):
        return f"{change.action.value}d {change.obj_type} {change.key} ({why}; checked: stored as wanted)", 1
    if actual is not None and managing_stack(actual) != spec.stack:
        return f"left alone {change.obj_type} {change.key} ({why}; it was created by someone else)", 0
    raise RipeProtocolError(f"{change.action.value} {change.obj_type} {change.key}: {why}, and the stored object "
                            "is not as wanted; nothing else was changed, run apply again")


def _write(client: RipeDbClient, change: Change, dry_run: bool) -> None:
    if change.action is Action.DELETE:
        client.delete(change.obj_type, change.key, reason="no longer announced by the anycast stack", dry_run=dry_run)
        return
    spec = change.spec
    assert spec is not None
    if change.action is Action.CREATE:
        client.create(spec.to_object(client.source), dry_run=dry_run)
    else:
        assert change.actual is not None
        client.update(spec.merged(change.actual, client.source), dry_run=dry_run)
