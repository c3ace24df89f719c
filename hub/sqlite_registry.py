"""The SQLite store's part for the registry: the synced lists, the visits and retention.

A mixin of ``SqliteStore`` (it uses the store's one writer connection and its readers), kept
in a module of its own so that the registry sync is one concept in one place. The tables
are migration 3 in ``hub.schema``. The SQL keeps to what PostgreSQL also speaks.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hub.errors import StoreError
from hub.records import iso, parse_iso
from hub.registry_records import (
    VISIT_STATES,
    OutboxCounts,
    Purged,
    StatusChange,
    SyncState,
    TrustCopy,
    Visit,
    VisitState,
)
from hub.visits import (
    CHECK_IN_SQL,
    CHECK_OUT_SQL,
    BatchPairing,
    Mark,
    derive_visits,
    pairing_window,
)
from protocol.events import Event, utcnow
from protocol.status import Status

if TYPE_CHECKING:
    from pathlib import Path

_UPSERT_STATUS = (
    "INSERT INTO statuses (subject, status, doses, changed_at, cursor) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (subject) DO UPDATE SET status = excluded.status, doses = excluded.doses, "
    "changed_at = excluded.changed_at, cursor = excluded.cursor "
    "WHERE excluded.cursor > statuses.cursor"
)
_VISIT_COLUMNS = (
    "visit_id, facility_id, subject, door_id, check_in, check_out, exit_event_id, state, "
    "attempts, reason, created_at, sent_at"
)
_INSERT_VISIT = (
    f"INSERT INTO visits ({_VISIT_COLUMNS}) "  # noqa: S608 - constant column names
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# Subject ids in the audit log: the desk records the subject of a lookup as its target and
# of an admission in its detail (", subject <id>").
_AUDIT_SUBJECT = ", subject "


def _time(text: str | None) -> datetime | None:
    return parse_iso(text) if text else None


def _visit(row: Sequence[Any]) -> Visit:
    (visit_id, facility_id, subject, door_id, check_in, check_out, exit_id, state, attempts,
     reason, created_at, sent_at) = tuple(row)  # fmt: skip
    return Visit(
        visit_id=visit_id,
        facility_id=facility_id,
        subject=subject,
        door_id=door_id,
        check_in=parse_iso(check_in),
        check_out=parse_iso(check_out),
        exit_event_id=exit_id,
        state=state,
        attempts=attempts,
        reason=reason,
        created_at=_time(created_at),
        sent_at=_time(sent_at),
    )


def _pairing(conn: sqlite3.Connection, new: Sequence[Event], max_visit_s: float) -> BatchPairing:
    """The batch's pairing, from two reads (see ``pairing_window``)."""
    window = pairing_window(new, max_visit_s)
    if window is None:
        return BatchPairing([], [], [])
    marks: list[Mark] = []
    for chunk in _chunks(window.subjects):
        marks += [
            Mark(row[0], row[1], row[2], row[3], row[4], parse_iso(row[5]), bool(row[6]))
            for row in conn.execute(
                f"SELECT id, event_id, facility_id, subject, door_id, ts, {CHECK_IN_SQL} "  # noqa: S608
                f"FROM events WHERE subject IN ({_marks(chunk)}) AND ts >= ? AND ts <= ? "
                f"AND ({CHECK_IN_SQL} OR {CHECK_OUT_SQL})",
                (*chunk, iso(window.start), iso(window.end)),
            )
        ]
    closed: list[str] = []
    used: list[str] = []
    for chunk in _chunks([mark.event_id for mark in marks]):
        marks_sql = _marks(chunk)
        for visit_id, exit_id in conn.execute(
            "SELECT visit_id, exit_event_id FROM visits "  # noqa: S608 - placeholders only
            f"WHERE visit_id IN ({marks_sql}) OR exit_event_id IN ({marks_sql})",
            (*chunk, *chunk),
        ):
            closed.append(visit_id)
            used.append(exit_id)
    return BatchPairing(marks, closed, used)


# SQLite takes up to 32,766 parameters a statement; a visits read binds a chunk twice.
_CHUNK = 5000


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _marks(chunk: Sequence[str]) -> str:
    return ", ".join("?" for _ in chunk)


def _visit_values(visit: Visit) -> tuple[Any, ...]:
    return (
        visit.visit_id,
        visit.facility_id,
        visit.subject,
        visit.door_id,
        iso(visit.check_in),
        iso(visit.check_out),
        visit.exit_event_id,
        visit.state,
        visit.attempts,
        visit.reason,
        iso(visit.created_at or utcnow()),
        iso(visit.sent_at) if visit.sent_at else None,
    )


class SqliteRegistryMixin:
    """Registry sync, visits and retention for ``SqliteStore``."""

    if TYPE_CHECKING:
        path: Path

        def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...

        def _read(self) -> AbstractContextManager[sqlite3.Connection]: ...

        def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]: ...

    # Longest visit an exit closes; the hub sets it from [retention] max_visit_hours.
    visit_max_s: float = 24 * 3600.0

    def configure_visits(self, max_visit_s: float) -> None:
        if max_visit_s <= 0:
            raise ValueError("the longest visit must be positive")
        self.visit_max_s = max_visit_s

    # --- visits, derived in the events' own transaction --------------------------------
    def _record_visits(self, conn: sqlite3.Connection, new: Sequence[Event]) -> list[Visit]:
        """Close the check-ins these new events complete (called by ``store_batch``)."""
        index = _pairing(conn, new, self.visit_max_s)
        made = derive_visits(new, index, self.visit_max_s, utcnow())
        conn.executemany(_INSERT_VISIT, [_visit_values(visit) for visit in index.added])
        return made

    # --- the synced lists ----------------------------------------------------------------
    def sync_state(self) -> SyncState:
        with self._read() as conn:
            row = conn.execute(
                "SELECT cursor, statuses_changed_at, statuses_checked_at, trust_body, "
                "trust_etag, trust_changed_at, trust_checked_at FROM registry_sync WHERE id = 1"
            ).fetchone()
            count = conn.execute("SELECT COUNT(*) FROM statuses").fetchone()[0]
        if row is None:
            return SyncState(statuses=count)
        cursor, s_changed, s_checked, body, etag, t_changed, t_checked = tuple(row)
        trust = None
        if body is not None and t_changed and t_checked:
            trust = TrustCopy(body, etag, parse_iso(t_changed), parse_iso(t_checked))
        return SyncState(cursor, count, _time(s_changed), _time(s_checked), trust)

    def save_trust(self, body: str | None, etag: str | None, at: datetime) -> None:
        """Keep a new trust list (``body``), or note that the registry confirmed ours."""
        with self._write() as conn:
            if body is None:
                conn.execute(
                    "UPDATE registry_sync SET trust_checked_at = ?, "
                    "trust_etag = COALESCE(?, trust_etag) WHERE id = 1",
                    (iso(at), etag),
                )
            else:
                conn.execute(
                    "UPDATE registry_sync SET trust_body = ?, trust_etag = ?, "
                    "trust_changed_at = ?, trust_checked_at = ? WHERE id = 1",
                    (body, etag, iso(at), iso(at)),
                )

    def save_statuses(
        self, changes: Sequence[StatusChange], cursor: int, at: datetime, *, complete: bool
    ) -> int:
        """Store one feed page and its cursor in one transaction; ``complete``: the feed
        was read to its end. Returns the number of changes stored."""
        # In key order: a page of random subjects then walks the table's b-tree once, in
        # order, instead of jumping about it (a third less time for a fresh hub's million).
        # The order within a subject does not matter: the highest cursor wins either way.
        rows = sorted((c.subject, int(c.status), c.doses, c.changed_at, c.cursor) for c in changes)
        stamp = iso(at)
        try:
            with self._write() as conn:
                conn.executemany(_UPSERT_STATUS, rows)
                conn.execute(
                    "UPDATE registry_sync SET cursor = ?, "
                    "statuses_changed_at = CASE WHEN ? THEN ? ELSE statuses_changed_at END, "
                    "statuses_checked_at = CASE WHEN ? THEN ? ELSE statuses_checked_at END "
                    "WHERE id = 1",
                    (cursor, bool(rows), stamp, complete, stamp),
                )
        except sqlite3.Error as err:
            raise StoreError(f"{self.path}: cannot store statuses: {err}") from err
        return len(rows)

    def status_items(self) -> Iterator[tuple[bytes, Status, int]]:
        """Every subject's latest status, as ``StatusList.from_items`` takes them."""
        by_code = tuple(Status)  # indexing a tuple is cheaper than Status(code), a million times
        with self._read() as conn:
            cursor = conn.execute("SELECT subject, status, changed_at FROM statuses")
            while batch := cursor.fetchmany(10_000):
                for subject, status, changed_at in batch:
                    yield bytes.fromhex(subject), by_code[status], changed_at

    # --- the outbox -------------------------------------------------------------------
    def pending_visits(self, facility_id: str, limit: int = 1000) -> list[Visit]:
        """The facility's visits not yet taken by the registry, oldest first."""
        rows = self._rows(
            f"SELECT {_VISIT_COLUMNS} FROM visits WHERE state = 'pending' "  # noqa: S608
            "AND facility_id = ? ORDER BY created_at, visit_id LIMIT ?",
            (facility_id, max(1, limit)),
        )
        return [_visit(row) for row in rows]

    def mark_visits(
        self, visit_ids: Sequence[str], state: VisitState, *, reason: str | None = None
    ) -> int:
        """Set the outbox state of visits: ``sent`` (the registry has them), ``failed``
        (it refused them, for ``reason``) or ``pending`` again (counts an attempt)."""
        if state not in VISIT_STATES:
            raise ValueError(f"unknown visit state {state!r}")
        now = iso(utcnow())
        changed = 0
        with self._write() as conn:
            for start in range(0, len(visit_ids), 500):
                chunk = list(visit_ids[start : start + 500])
                marks = ", ".join("?" for _ in chunk)
                cursor = conn.execute(
                    "UPDATE visits SET state = ?, reason = ?, attempts = attempts + 1, "  # noqa: S608
                    f"sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END "
                    f"WHERE visit_id IN ({marks})",
                    (state, reason, state, now, *chunk),
                )
                changed += cursor.rowcount
        return changed

    def outbox_counts(self) -> OutboxCounts:
        rows = self._rows("SELECT state, COUNT(*) FROM visits GROUP BY state")
        return OutboxCounts({row[0]: row[1] for row in rows})

    def failed_visits(self, facility_id: str | None = None, limit: int = 100) -> list[Visit]:
        where, params = "state = 'failed'", []
        if facility_id is not None:
            where += " AND facility_id = ?"
            params.append(facility_id)
        rows = self._rows(
            f"SELECT {_VISIT_COLUMNS} FROM visits WHERE {where} "  # noqa: S608
            "ORDER BY created_at DESC LIMIT ?",
            [*params, max(1, limit)],
        )
        return [_visit(row) for row in rows]

    # --- tracing ------------------------------------------------------------------------
    def visits_of(
        self, facility_id: str, subject: str, start: datetime, end: datetime
    ) -> list[Visit]:
        """The subject's visits at the facility that overlap ``[start, end)``."""
        rows = self._rows(
            f"SELECT {_VISIT_COLUMNS} FROM visits WHERE subject = ? AND facility_id = ? "  # noqa: S608
            "AND check_in < ? AND check_out > ? ORDER BY check_in, visit_id",
            (subject, facility_id, iso(end), iso(start)),
        )
        return [_visit(row) for row in rows]

    def overlapping(
        self, facility_id: str, start: datetime, end: datetime, exclude_subject: str
    ) -> list[Visit]:
        """Other subjects' visits at the facility overlapping ``[start, end)``."""
        # No stored visit lasts longer than visit_max_s, so the scan of check_in starts
        # there: one index range however many visits are kept.
        lowest = datetime.fromtimestamp(start.timestamp() - self.visit_max_s - 1, start.tzinfo)
        rows = self._rows(
            f"SELECT {_VISIT_COLUMNS} FROM visits WHERE facility_id = ? AND check_in >= ? "  # noqa: S608
            "AND check_in < ? AND check_out > ? AND subject <> ? ORDER BY check_in, visit_id",
            (facility_id, iso(lowest), iso(end), iso(start), exclude_subject),
        )
        return [_visit(row) for row in rows]

    # --- retention -------------------------------------------------------------------
    def purge_before(self, before: datetime) -> Purged:
        """Forget visits that ended before ``before`` and the subject ids of older events
        and desk audit entries; counts and times stay (occupancy is recounted from them)."""
        cutoff = iso(before)
        with self._write() as conn:
            visits = conn.execute("DELETE FROM visits WHERE check_out < ?", (cutoff,)).rowcount
            events = conn.execute(
                "UPDATE events SET subject = NULL WHERE subject IS NOT NULL AND ts < ?", (cutoff,)
            ).rowcount
            audit = conn.execute(
                "UPDATE audit SET target = NULL WHERE action = 'desk.lookup' "
                "AND target IS NOT NULL AND ts < ?",
                (cutoff,),
            ).rowcount
            audit += conn.execute(
                "UPDATE audit SET detail = substr(detail, 1, instr(detail, ?) - 1) "
                "WHERE action = 'desk.admit' AND instr(detail, ?) > 0 AND ts < ?",
                (_AUDIT_SUBJECT, _AUDIT_SUBJECT, cutoff),
            ).rowcount
        return Purged(before, visits, events, audit)
