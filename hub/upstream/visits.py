"""Visits, derived from the doors' events.

A visit is a check-in closed by a check-out of the same subject at the same
facility. A check-in is an ``entry`` event (or a ``manual`` one with direction ``entry``)
carrying a subject; a check-out is an ``exit`` (or ``manual`` exit) with one. The store
derives visits in the same transaction that stores the events (``derive_visits``, called
from ``store_batch``), so a stored exit and its visit are never apart: both are there, or
neither. The rules, in the order the new events happened:

* a new **check-out** X closes the subject's latest check-in E at the facility at or before
  X, when E is not closed yet and X is at most ``max_visit`` after E;
* a new **check-in** E (one that arrived late, from a node's journal) is closed by the
  subject's earliest check-out X at or after it, when X closes no visit yet, X is at most
  ``max_visit`` after E and no other check-in of the subject lies between them.

So the order in which the events reach the hub does not matter. A check-in never closed
(someone left through a door that saw no pass) makes no visit. The visit's id is the
check-in's event id, its door the check-in's door; times are kept to the second (check-in
rounded down, check-out up), as the registry keeps them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from hub.upstream.records import Visit, ceil_second, floor_second
from protocol.events import Event, EventKind

# The same rules as ``is_check_in`` / ``is_check_out``, for a store's SQL.
CHECK_IN_SQL = "(kind = 'entry' OR (kind = 'manual' AND direction = 'entry'))"
CHECK_OUT_SQL = "(kind = 'exit' OR (kind = 'manual' AND direction = 'exit'))"


def is_check_in(event: Event) -> bool:
    return event.subject is not None and (
        event.kind == EventKind.ENTRY
        or (event.kind == EventKind.MANUAL and event.direction == "entry")
    )


def is_check_out(event: Event) -> bool:
    return event.subject is not None and (
        event.kind == EventKind.EXIT
        or (event.kind == EventKind.MANUAL and event.direction == "exit")
    )


class PairingIndex(Protocol):
    """What ``derive_visits`` asks of the stored events and visits (new events included),
    inside the transaction that stores them."""

    def latest_check_in(
        self, facility_id: str, subject: str, at: datetime
    ) -> tuple[str, str, datetime] | None:
        """(event_id, door_id, ts) of the subject's last check-in at or before ``at``."""
        ...

    def earliest_check_out(
        self, facility_id: str, subject: str, at: datetime
    ) -> tuple[str, datetime] | None:
        """(event_id, ts) of the subject's first check-out at or after ``at``."""
        ...

    def check_in_between(
        self, facility_id: str, subject: str, after: datetime, until: datetime, other_than: str
    ) -> bool:
        """Whether another check-in of the subject lies in ``[after, until]``."""
        ...

    def closed(self, check_in_id: str) -> bool:
        """Whether this check-in already has its visit."""
        ...

    def used(self, check_out_id: str) -> bool:
        """Whether this check-out already closes a visit."""
        ...

    def add(self, visit: Visit) -> None: ...


@dataclass(frozen=True)
class Mark:
    """A stored check-in or check-out, as pairing needs it (``id``: its row in the store,
    which breaks ties between equal times as the store's order does)."""

    id: int
    event_id: str
    facility_id: str
    subject: str
    door_id: str
    ts: datetime
    check_in: bool


@dataclass(frozen=True)
class PairingWindow:
    """What a store reads for a batch's pairing: the check-ins and check-outs of these
    subjects between ``start`` and ``end``, and the visits that close any of them."""

    subjects: list[str]
    start: datetime
    end: datetime


def pairing_window(new: Sequence[Event], max_visit_s: float) -> PairingWindow | None:
    """The window of stored events that can pair with the new ones, or None if none can.

    From the longest visit (and a margin for rounding) before the batch's earliest check-in
    or check-out to as long after its latest one: a pairing outside it would make a visit
    longer than the longest, which ``derive_visits`` refuses anyway. So answers from what a
    store reads once are those of a query per question, for two reads a batch instead of
    one or more an event.
    """
    pairable = [e for e in new if is_check_in(e) or is_check_out(e)]
    if not pairable:
        return None
    margin = timedelta(seconds=max_visit_s + 2)
    return PairingWindow(
        sorted({e.subject for e in pairable if e.subject}),
        min(e.ts for e in pairable) - margin,
        max(e.ts for e in pairable) + margin,
    )


class BatchPairing(PairingIndex):
    """``derive_visits``'s questions, answered from the marks and visits a store read for
    the batch's ``pairing_window`` (the batch's own events included). New visits collect
    in ``added``; the store writes them in the batch's transaction."""

    def __init__(
        self, marks: Iterable[Mark], closed_ids: Iterable[str], used_ids: Iterable[str]
    ) -> None:
        self.marks: dict[tuple[str, str], list[Mark]] = {}
        for mark in marks:
            self.marks.setdefault((mark.facility_id, mark.subject), []).append(mark)
        self.closed_ids = set(closed_ids)
        self.used_ids = set(used_ids)
        self.added: list[Visit] = []

    def latest_check_in(
        self, facility_id: str, subject: str, at: datetime
    ) -> tuple[str, str, datetime] | None:
        found = [m for m in self.marks.get((facility_id, subject), []) if m.check_in and m.ts <= at]
        if not found:
            return None
        mark = max(found, key=lambda m: (m.ts, m.id))
        return mark.event_id, mark.door_id, mark.ts

    def earliest_check_out(
        self, facility_id: str, subject: str, at: datetime
    ) -> tuple[str, datetime] | None:
        found = [
            m for m in self.marks.get((facility_id, subject), []) if not m.check_in and m.ts >= at
        ]
        if not found:
            return None
        mark = min(found, key=lambda m: (m.ts, m.id))
        return mark.event_id, mark.ts

    def check_in_between(
        self, facility_id: str, subject: str, after: datetime, until: datetime, other_than: str
    ) -> bool:
        return any(
            m.check_in and after <= m.ts <= until and m.event_id != other_than
            for m in self.marks.get((facility_id, subject), [])
        )

    def closed(self, check_in_id: str) -> bool:
        return check_in_id in self.closed_ids

    def used(self, check_out_id: str) -> bool:
        return check_out_id in self.used_ids

    def add(self, visit: Visit) -> None:
        self.closed_ids.add(visit.visit_id)
        self.used_ids.add(visit.exit_event_id)
        self.added.append(visit)


def derive_visits(
    new: Sequence[Event], index: PairingIndex, max_visit_s: float, now: datetime
) -> list[Visit]:
    """The visits the new (just stored) events close, added through ``index``."""
    made: list[Visit] = []
    ordered = sorted((e for e in new if is_check_in(e) or is_check_out(e)), key=lambda e: e.ts)
    for event in ordered:
        subject = event.subject
        assert subject is not None  # noqa: S101 - is_check_in/out require one
        if is_check_out(event):
            found = index.latest_check_in(event.facility_id, subject, event.ts)
            if found is None or index.closed(found[0]) or index.used(event.event_id):
                continue
            entry_id, door_id, entry_ts = found
            exit_id, exit_ts = event.event_id, event.ts
        else:
            later = index.earliest_check_out(event.facility_id, subject, event.ts)
            if later is None or index.closed(event.event_id) or index.used(later[0]):
                continue
            if index.check_in_between(
                event.facility_id, subject, event.ts, later[1], event.event_id
            ):
                continue  # that check-out belongs to a later check-in
            entry_id, door_id, entry_ts = event.event_id, event.door_id, event.ts
            exit_id, exit_ts = later
        check_in, check_out = floor_second(entry_ts), ceil_second(exit_ts)
        if (check_out - check_in).total_seconds() > max_visit_s:
            continue  # too long to be one visit: the exit of another, unseen, check-in
        visit = Visit(
            visit_id=entry_id,
            facility_id=event.facility_id,
            subject=subject,
            door_id=door_id,
            check_in=check_in,
            check_out=check_out,
            exit_event_id=exit_id,
            created_at=now,
        )
        index.add(visit)
        made.append(visit)
    return made
