"""Visits as the store keeps them: derived in the events' own transaction (``hub.upstream.visits``
pairs check-ins and check-outs), pushed from the outbox, read by tracing.

Visits are derived in the transaction that stores the events, under the facility's lock,
so two workers storing a subject's check-in and check-out at once still pair them.
Pairing reads what it may need in two queries a batch rather than one or more an event.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, bindparam, func, or_, select, update

from hub.store.dialect import Prepared, any_of, bytewise, listed, ms
from hub.store.tables import _time_text, events, visits
from hub.upstream.records import VISIT_STATES, OutboxCounts, Visit, VisitState
from hub.upstream.visits import BatchPairing, Mark, derive_visits, pairing_window
from protocol.events import Event, utcnow

if TYPE_CHECKING:
    from hub.store.dialect import Database

_E = events.c
_V = visits.c
_VISIT = tuple(visits.c)
# The same rules as ``hub.upstream.visits.is_check_in`` / ``is_check_out``.
_CHECK_IN = or_(_E.kind == "entry", and_(_E.kind == "manual", _E.direction == "entry"))
_CHECK_OUT = or_(_E.kind == "exit", and_(_E.kind == "manual", _E.direction == "exit"))


def _visit(row: Sequence[Any]) -> Visit:
    (visit_id, facility_id, subject, door_id, check_in, check_out, exit_id, state, attempts,
     reason, created_at, sent_at) = row  # fmt: skip
    return Visit(
        visit_id=visit_id,
        facility_id=facility_id,
        subject=subject,
        door_id=door_id,
        check_in=check_in,
        check_out=check_out,
        exit_event_id=exit_id,
        state=state,
        attempts=attempts,
        reason=reason,
        created_at=created_at,
        sent_at=sent_at,
    )


# The pairing's two reads, on the ingest path: compiled once (see ``Prepared``).
_MARKS = Prepared(
    lambda dialect: select(
        _E.id, _E.event_id, _E.facility_id, _E.subject, _E.door_id, _E.ts, _CHECK_IN
    ).where(
        any_of(dialect, _E.subject, "subjects"),
        _E.ts >= bindparam("start"),
        _E.ts <= bindparam("end"),
        or_(_CHECK_IN, _CHECK_OUT),
    )
)
_CLOSED = Prepared(
    lambda dialect: select(_V.visit_id, _V.exit_event_id).where(
        or_(any_of(dialect, _V.visit_id, "ids"), any_of(dialect, _V.exit_event_id, "ids"))
    )
)


def _pairing(
    conn: Connection, dialect: str, new: Sequence[Event], max_visit_s: float
) -> BatchPairing:
    """The batch's pairing, from two reads (see ``pairing_window``)."""
    window = pairing_window(new, max_visit_s)
    if window is None:
        return BatchPairing([], [], [])
    subjects = listed(dialect, window.subjects)
    # The driver's own values: times are text in SQLite.
    pg = dialect == "postgresql"
    start: Any = window.start if pg else _time_text(window.start)
    end: Any = window.end if pg else _time_text(window.end)
    marks = [
        Mark(r[0], r[1], r[2], r[3], r[4], r[5] if pg else datetime.fromisoformat(r[5]), bool(r[6]))
        for r in _MARKS.rows(conn, subjects=subjects, start=start, end=end)
    ]
    ids = listed(dialect, [mark.event_id for mark in marks])
    visits_made = _CLOSED.rows(conn, ids=ids)
    closed = [row[0] for row in visits_made]
    used = [row[1] for row in visits_made]
    return BatchPairing(marks, closed, used)


class Visits:
    """Visits and their outbox: a part of the store (``hub.store.Store``)."""

    # Longest visit an exit closes; the hub sets it from [retention] max_visit_hours.
    visit_max_s: float = 24 * 3600.0

    def configure_visits(self, max_visit_s: float) -> None:
        """The longest visit an exit closes (``[retention] max_visit_hours``)."""
        if max_visit_s <= 0:
            raise ValueError("the longest visit must be positive")
        self.visit_max_s = max_visit_s

    # --- visits, derived in the events' own transaction --------------------------------
    def _record_visits(self: Database, conn: Connection, new: Sequence[Event]) -> list[Visit]:
        """Close the check-ins these new events complete (called by ``store_batch``)."""
        max_s: float = self.visit_max_s  # type: ignore[attr-defined]
        index = _pairing(conn, self.dialect, new, max_s)
        made = derive_visits(new, index, max_s, utcnow())
        if index.added:
            now = ms(utcnow())
            conn.execute(
                visits.insert(),
                [
                    {
                        "visit_id": v.visit_id,
                        "facility_id": v.facility_id,
                        "subject": v.subject,
                        "door_id": v.door_id,
                        "check_in": v.check_in,
                        "check_out": v.check_out,
                        "exit_event_id": v.exit_event_id,
                        "state": v.state,
                        "attempts": v.attempts,
                        "reason": v.reason,
                        "created_at": v.created_at or now,
                        "sent_at": v.sent_at,
                    }
                    for v in index.added
                ],
            )
        return made

    # --- the outbox -------------------------------------------------------------------
    def pending_visits(self: Database, facility_id: str, limit: int = 1000) -> list[Visit]:
        """The facility's visits not yet taken by the registry, oldest first."""
        query = (
            select(*_VISIT)
            .where(_V.state == "pending", _V.facility_id == facility_id)
            .order_by(_V.created_at, _V.visit_id)
            .limit(max(1, limit))
        )
        return _visits(self, "read the outbox", query)

    def mark_visits(
        self: Database, visit_ids: Sequence[str], state: VisitState, *, reason: str | None = None
    ) -> int:
        """Set the outbox state of visits: ``sent`` (the registry has them), ``failed``
        (it refused them, for ``reason``) or ``pending`` again (counts an attempt)."""
        if state not in VISIT_STATES:
            raise ValueError(f"unknown visit state {state!r}")
        now = ms(utcnow())

        query = (
            update(visits)
            .where(any_of(self.dialect, _V.visit_id, visit_ids))
            .values(
                state=state,
                reason=reason,
                attempts=_V.attempts + 1,
                sent_at=now if state == "sent" else _V.sent_at,
            )
        )
        return self._sa("mark visits", lambda conn: int(conn.execute(query).rowcount))

    def outbox_counts(self: Database) -> OutboxCounts:
        query = select(_V.state, func.count()).group_by(_V.state)
        rows = self._sa("count the outbox", lambda conn: conn.execute(query).all(), write=False)
        return OutboxCounts({row[0]: row[1] for row in rows})

    def failed_visits(
        self: Database, facility_id: str | None = None, limit: int = 100
    ) -> list[Visit]:
        query = select(*_VISIT).where(_V.state == "failed")
        if facility_id is not None:
            query = query.where(_V.facility_id == facility_id)
        query = query.order_by(_V.created_at.desc()).limit(max(1, limit))
        return _visits(self, "read the failed visits", query)

    # --- tracing ------------------------------------------------------------------------
    def visits_of(
        self: Database, facility_id: str, subject: str, start: datetime, end: datetime
    ) -> list[Visit]:
        """The subject's visits at the facility that overlap ``[start, end)``."""
        query = (
            select(*_VISIT)
            .where(_V.subject == subject, _V.facility_id == facility_id, _V.check_in < end,
                   _V.check_out > start)
            .order_by(_V.check_in, bytewise(self.dialect, _V.visit_id))
        )  # fmt: skip
        return _visits(self, "read visits", query)

    def overlapping(
        self: Database, facility_id: str, start: datetime, end: datetime, exclude_subject: str
    ) -> list[Visit]:
        """Other subjects' visits at the facility overlapping ``[start, end)``."""
        # No stored visit lasts longer than visit_max_s, so the scan of check_in starts
        # there: one index range however many visits are kept.
        max_s: float = self.visit_max_s  # type: ignore[attr-defined]
        lowest = start - timedelta(seconds=max_s + 1)
        query = (
            select(*_VISIT)
            .where(_V.facility_id == facility_id, _V.check_in >= lowest, _V.check_in < end,
                   _V.check_out > start, _V.subject != exclude_subject)
            .order_by(_V.check_in, bytewise(self.dialect, _V.visit_id))
        )  # fmt: skip
        return _visits(self, "read visits", query)


def _visits(db: Database, what: str, query: Any) -> list[Visit]:
    rows = db._sa(what, lambda conn: conn.execute(query).all(), write=False)
    return [_visit(row) for row in rows]
