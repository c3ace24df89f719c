"""The PostgreSQL store's part for the registry: the synced lists, the visits and retention.

A mixin of ``PgStore``, the counterpart of ``hub.sqlite_registry`` for SQLite: the same
methods, the same rules (``hub.visits.derive_visits`` pairs check-ins and check-outs for
both), the tables of migration 3 in ``PG_MIGRATIONS``. Visits are derived in the
transaction that stores the events, under the facility's lock, so two workers storing a
subject's check-in and check-out at once still pair them. Pairing reads what it may need
in two queries a batch rather than one or more an event, as a round trip to a server
costs what a query of a local SQLite file does not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast

import psycopg

from hub.errors import StoreError
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
    from hub.pg_store import Conn, Row, _Pool

T = TypeVar("T")

_UPSERT_STATUS = (
    "INSERT INTO statuses (subject, status, doses, changed_at, cursor) "
    "VALUES (%s, %s, %s, %s, %s) "
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
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
# Subject ids in the audit log: the desk records the subject of a lookup as its target and
# of an admission in its detail (", subject <id>").
_AUDIT_SUBJECT = ", subject "


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


def _pairing(conn: Conn, new: Sequence[Event], max_visit_s: float) -> BatchPairing:
    """The batch's pairing, from two reads (see ``pairing_window``)."""
    window = pairing_window(new, max_visit_s)
    if window is None:
        return BatchPairing([], [], [])
    rows = conn.execute(
        f"SELECT id, event_id, facility_id, subject, door_id, ts, {CHECK_IN_SQL} "  # noqa: S608
        "FROM events WHERE subject = ANY(%s) AND ts >= %s AND ts <= %s "
        f"AND ({CHECK_IN_SQL} OR {CHECK_OUT_SQL})",
        (window.subjects, window.start, window.end),
    ).fetchall()
    marks = [Mark(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6])) for r in rows]
    ids = [mark.event_id for mark in marks]
    visits = conn.execute(
        "SELECT visit_id, exit_event_id FROM visits "
        "WHERE visit_id = ANY(%s) OR exit_event_id = ANY(%s)",
        (ids, ids),
    ).fetchall()
    return BatchPairing(marks, (v[0] for v in visits), (v[1] for v in visits))


def _insert_visits(conn: Conn, visits: Sequence[Visit]) -> None:
    if not visits:
        return
    with conn.cursor() as cursor:
        cursor.executemany(
            _INSERT_VISIT,
            [
                (
                    visit.visit_id,
                    visit.facility_id,
                    visit.subject,
                    visit.door_id,
                    visit.check_in,
                    visit.check_out,
                    visit.exit_event_id,
                    visit.state,
                    visit.attempts,
                    visit.reason,
                    visit.created_at or utcnow(),
                    visit.sent_at,
                )
                for visit in visits
            ],
        )


class PgRegistryMixin:
    """Registry sync, visits and retention for ``PgStore``."""

    if TYPE_CHECKING:
        _pool: _Pool

        def _run(self, what: str, work: Callable[[Conn], T], *, write: bool = True) -> T: ...

        def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    # Longest visit an exit closes; the hub sets it from [retention] max_visit_hours.
    visit_max_s: float = 24 * 3600.0

    def configure_visits(self, max_visit_s: float) -> None:
        if max_visit_s <= 0:
            raise ValueError("the longest visit must be positive")
        self.visit_max_s = max_visit_s

    # --- visits, derived in the events' own transaction --------------------------------
    def _record_visits(self, conn: Conn, new: Sequence[Event]) -> list[Visit]:
        """Close the check-ins these new events complete (called by ``store_batch``)."""
        index = _pairing(conn, new, self.visit_max_s)
        made = derive_visits(new, index, self.visit_max_s, utcnow())
        _insert_visits(conn, index.added)
        return made

    # --- the synced lists ----------------------------------------------------------------
    def sync_state(self) -> SyncState:
        def read(conn: Conn) -> tuple[Row | None, int]:
            row = conn.execute(
                "SELECT cursor, statuses_changed_at, statuses_checked_at, trust_body, "
                "trust_etag, trust_changed_at, trust_checked_at FROM registry_sync WHERE id = 1"
            ).fetchone()
            count = conn.execute("SELECT COUNT(*) FROM statuses").fetchone()
            return row, int(count[0]) if count else 0

        row, count = self._run("read the sync state", read, write=False)
        if row is None:
            return SyncState(statuses=count)
        cursor, s_changed, s_checked, body, etag, t_changed, t_checked = row
        trust = None
        if body is not None and t_changed and t_checked:
            trust = TrustCopy(body, etag, t_changed, t_checked)
        return SyncState(cursor, count, s_changed, s_checked, trust)

    def save_trust(self, body: str | None, etag: str | None, at: datetime) -> None:
        """Keep a new trust list (``body``), or note that the registry confirmed ours."""

        def save(conn: Conn) -> None:
            if body is None:
                conn.execute(
                    "UPDATE registry_sync SET trust_checked_at = %s, "
                    "trust_etag = COALESCE(%s, trust_etag) WHERE id = 1",
                    (at, etag),
                )
            else:
                conn.execute(
                    "UPDATE registry_sync SET trust_body = %s, trust_etag = %s, "
                    "trust_changed_at = %s, trust_checked_at = %s WHERE id = 1",
                    (body, etag, at, at),
                )

        self._run("store the trust list", save)

    def save_statuses(
        self, changes: Sequence[StatusChange], cursor: int, at: datetime, *, complete: bool
    ) -> int:
        """Store one feed page and its cursor in one transaction; ``complete``: the feed
        was read to its end. Returns the number of changes stored."""
        rows = [(c.subject, int(c.status), c.doses, c.changed_at, c.cursor) for c in changes]

        def save(conn: Conn) -> None:
            if rows:
                # One statement per change (pipelined): a page may change a subject twice.
                with conn.cursor() as many:
                    many.executemany(_UPSERT_STATUS, rows)
            conn.execute(
                "UPDATE registry_sync SET cursor = %s, "
                "statuses_changed_at = CASE WHEN %s THEN %s ELSE statuses_changed_at END, "
                "statuses_checked_at = CASE WHEN %s THEN %s ELSE statuses_checked_at END "
                "WHERE id = 1",
                (cursor, bool(rows), at, complete, at),
            )

        self._run("store statuses", save)
        return len(rows)

    def status_items(self) -> Iterator[tuple[bytes, Status, int]]:
        """Every subject's latest status, as ``StatusList.from_items`` takes them."""
        try:
            # A server-side cursor: a million subjects are read a slice at a time.
            with (
                self._pool.connection() as pooled,
                cast("Conn", pooled.connection.driver_connection).transaction() as done,
                done.connection.cursor(name="pintu_statuses") as cursor,
            ):
                cursor.itersize = 10_000
                cursor.execute("SELECT subject, status, changed_at FROM statuses")
                for subject, status, changed_at in cursor:
                    yield bytes.fromhex(subject), Status(status), changed_at
        except psycopg.Error as err:
            raise StoreError(f"cannot read statuses: {err}") from err

    # --- the outbox -------------------------------------------------------------------
    def pending_visits(self, facility_id: str, limit: int = 1000) -> list[Visit]:
        """The facility's visits not yet taken by the registry, oldest first."""
        rows = self._rows(
            f"SELECT {_VISIT_COLUMNS} FROM visits WHERE state = 'pending' "  # noqa: S608
            "AND facility_id = %s ORDER BY created_at, visit_id LIMIT %s",
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
        now = utcnow()
        return self._run(
            "mark visits",
            lambda conn: (
                conn.execute(
                    "UPDATE visits SET state = %s, reason = %s, attempts = attempts + 1, "
                    "sent_at = CASE WHEN %s = 'sent' THEN %s ELSE sent_at END "
                    "WHERE visit_id = ANY(%s)",
                    (state, reason, state, now, list(visit_ids)),
                ).rowcount
            ),
        )

    def outbox_counts(self) -> OutboxCounts:
        rows = self._rows("SELECT state, COUNT(*) FROM visits GROUP BY state")
        return OutboxCounts({row[0]: row[1] for row in rows})

    def failed_visits(self, facility_id: str | None = None, limit: int = 100) -> list[Visit]:
        where, params = "state = 'failed'", []
        if facility_id is not None:
            where += " AND facility_id = %s"
            params.append(facility_id)
        rows = self._rows(
            f"SELECT {_VISIT_COLUMNS} FROM visits WHERE {where} "  # noqa: S608
            "ORDER BY created_at DESC LIMIT %s",
            [*params, max(1, limit)],
        )
        return [_visit(row) for row in rows]

    # --- tracing ------------------------------------------------------------------------
    def visits_of(
        self, facility_id: str, subject: str, start: datetime, end: datetime
    ) -> list[Visit]:
        """The subject's visits at the facility that overlap ``[start, end)``."""
        rows = self._rows(
            f"SELECT {_VISIT_COLUMNS} FROM visits WHERE subject = %s AND facility_id = %s "  # noqa: S608
            'AND check_in < %s AND check_out > %s ORDER BY check_in, visit_id COLLATE "C"',
            (subject, facility_id, end, start),
        )
        return [_visit(row) for row in rows]

    def overlapping(
        self, facility_id: str, start: datetime, end: datetime, exclude_subject: str
    ) -> list[Visit]:
        """Other subjects' visits at the facility overlapping ``[start, end)``."""
        # No stored visit lasts longer than visit_max_s, so the scan of check_in starts
        # there: one index range however many visits are kept.
        lowest = start - timedelta(seconds=self.visit_max_s + 1)
        rows = self._rows(
            f"SELECT {_VISIT_COLUMNS} FROM visits WHERE facility_id = %s AND check_in >= %s "  # noqa: S608
            "AND check_in < %s AND check_out > %s AND subject <> %s "
            'ORDER BY check_in, visit_id COLLATE "C"',
            (facility_id, lowest, end, start, exclude_subject),
        )
        return [_visit(row) for row in rows]

    # --- retention -------------------------------------------------------------------
    def purge_before(self, before: datetime) -> Purged:
        """Forget visits that ended before ``before`` and the subject ids of older events
        and desk audit entries; counts and times stay (occupancy is recounted from them)."""

        def purge(conn: Conn) -> Purged:
            visits = conn.execute("DELETE FROM visits WHERE check_out < %s", (before,)).rowcount
            events = conn.execute(
                "UPDATE events SET subject = NULL WHERE subject IS NOT NULL AND ts < %s",
                (before,),
            ).rowcount
            audit = conn.execute(
                "UPDATE audit SET target = NULL WHERE action = 'desk.lookup' "
                "AND target IS NOT NULL AND ts < %s",
                (before,),
            ).rowcount
            audit += conn.execute(
                "UPDATE audit SET detail = substr(detail, 1, strpos(detail, %s) - 1) "
                "WHERE action = 'desk.admit' AND strpos(detail, %s) > 0 AND ts < %s",
                (_AUDIT_SUBJECT, _AUDIT_SUBJECT, before),
            ).rowcount
            return Purged(before, visits, events, audit)

        return self._run("purge old data", purge)
