"""The PostgreSQL store: one database that several hub workers write at once.

It keeps the same records and follows the same rules as the SQLite store (``hub.counting``
does the counting for both); what differs is how writers take turns. SQLite has one
writer per file; here each hub worker writes through connections of its own, and:

* Every transaction that counts or changes a facility first locks the facility's row in
  ``facility_locks`` (``SELECT ... FOR UPDATE``), several facilities in id order. Batches
  of one facility therefore take turns however many workers there are: each one reads the
  counters the previous one committed, so a count is exact and never goes below zero, and
  a node's seq numbers are checked against what every worker stored before. Batches of
  different facilities run side by side. Taking the locks in one order means two workers
  never wait for each other in a circle.
* Counting follows the events' own times, not their row ids (``hub.counting``): an event
  one worker stores after another worker stored later ones is counted in its place, under
  the facility's lock, exactly as a late event on one hub.
* ``event_id`` is unique. A batch inserts with ``ON CONFLICT DO NOTHING RETURNING``: should
  a row go missing there (an event id some other transaction stored meanwhile), the batch
  is rolled back and stored again, and that event is then a duplicate.
* A deadlock or serialization failure PostgreSQL reports is retried the same way. A
  connection the server closed is dropped; the call is tried again on a new one when
  nothing of it had begun, and otherwise fails (the ingest retries its batch, which is
  safe: what was committed is a duplicate the second time).
* Capacity set by staff through one worker is read by the others from the database, in
  the same transaction that counts.

Connections are kept in a small pool, in autocommit mode: reads see everything committed,
and writes are explicit transactions. Times are ``timestamptz``, kept to the millisecond
as everywhere in the store. The schema is ``hub.store.tables``, migrated by
``hub.store.migrations``; workers starting together migrate one at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from sqlalchemy import Connection, Select
from sqlalchemy.exc import DBAPIError

from hub.config import FacilityConfig
from hub.counting import (
    EVENT_RANK,
    Counted,
    CountingEvent,
    CountKey,
    FacilityCount,
    OpenGap,
    Persisted,
    Snapshot,
    adjustment_key,
    alert_for,
    check_adjustment,
    counts,
    event_key,
    fill_gaps,
    followed_seq,
    from_ms,
    gap_ranges,
    make_occupancy,
    minute_of,
    recount,
    seq_gap_message,
    seq_reset_message,
    zones_from,
)
from hub.errors import StoreDataError, StoreError
from hub.records import (
    Adjustment,
    AdjustmentKind,
    Alert,
    AlertKind,
    BatchResult,
    Flagged,
    Gap,
    Occupancy,
)
from hub.store.accounts import Accounts, record_audit
from hub.store.alerts import Alerts, clear_ids, flag_alerts, raise_alert, touched_alerts
from hub.store.dialect import lock_all
from hub.store.enrolments import Enrolments
from hub.store.events import Events, counting_event, made_adjustment, recount_all
from hub.store.facilities import Facilities, apply_settings
from hub.store.migrations import migrate
from hub.store.nodes import Nodes
from hub.store.reads import Reads
from hub.store.retention import Retention
from hub.store.upstream import Upstream
from hub.store.visits import Visits
from protocol.events import Event, utcnow
from runtime.db import DatabaseError, open_engine

logger = logging.getLogger(__name__)

T = TypeVar("T")
Row = tuple[Any, ...]
Conn = psycopg.Connection[Row]

_RETRIES = 5

# Column, and the array type it is sent as when a batch is inserted in one statement.
_EVENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_id", "text"),
    ("facility_id", "text"),
    ("node_id", "text"),
    ("door_id", "text"),
    ("seq", "bigint"),
    ("ts", "timestamptz"),
    ("kind", "text"),
    ("direction", "text"),
    ("subject", "text"),
    ("signal", "text"),
    ("admit", "boolean"),
    ("reason", "text"),
    ("message", "text"),
    ("detail", "text"),
    ("late", "boolean"),
    ("delta", "smallint"),
    ("flag", "text"),
    ("occupancy_after", "integer"),
    ("zones_after", "text"),
    ("minute_peak", "integer"),
    ("alert_id", "bigint"),
)
_EVENT_NAMES = [name for name, _ in _EVENT_COLUMNS[:15]]
_SELECT_EVENT = f"SELECT id, {', '.join(_EVENT_NAMES)}, received_at, delta, flag FROM events"  # noqa: S608 - fixed column names
# ``WITH ORDINALITY ... ORDER BY`` keeps the batch's arrival order in the ids (the events
# page by id), whatever order they are counted in.
_INSERT_EVENTS = (
    f"INSERT INTO events ({', '.join(n for n, _ in _EVENT_COLUMNS)}, received_at) "  # noqa: S608
    f"SELECT {', '.join(f'e.{n}' for n, _ in _EVENT_COLUMNS)}, %s::timestamptz "
    f"FROM unnest({', '.join(f'%s::{t}[]' for _, t in _EVENT_COLUMNS)}) "
    f"WITH ORDINALITY AS e({', '.join(n for n, _ in _EVENT_COLUMNS)}, ord) "
    "ORDER BY e.ord ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)
_LOCK = (
    "SELECT l.facility_id, c.capacity, c.capacity_percent, c.nominal_max, "
    "c.soft_threshold_percent FROM facility_locks l "
    "LEFT JOIN capacity_settings c ON c.facility_id = l.facility_id "
    "WHERE l.facility_id = ANY(%s) ORDER BY l.facility_id FOR UPDATE OF l"
)
_UPSERT_COUNT = (
    "INSERT INTO occupancy (facility_id, zone_id, value, updated_at) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (facility_id, zone_id) DO UPDATE "
    "SET value = excluded.value, updated_at = excluded.updated_at"
)
# A minute counted (again) is known whole: its sample is replaced, not merged.
_SAMPLE = (
    "INSERT INTO occupancy_history (facility_id, minute, occupancy, peak) "
    "VALUES (%s, %s, %s, %s) ON CONFLICT (facility_id, minute) DO UPDATE "
    "SET occupancy = excluded.occupancy, peak = excluded.peak"
)
_COUNTED_COLUMNS = "delta, flag, occupancy_after, zones_after, minute_peak, alert_id"
# An event as counting sees it (hub.counting.CountingEvent).
_COUNTING_COLUMNS = "id, ts, seq, event_id, node_id, door_id, kind, direction, " + _COUNTED_COLUMNS
_FIX_EVENT = (
    "UPDATE events SET delta = %s, flag = %s, occupancy_after = %s, zones_after = %s, "
    "minute_peak = %s, alert_id = %s WHERE id = %s"
)
_NOT_COUNTED = Counted(0)
_PAGE = 5000  # events read at a time when every facility is counted again
_USER_COLUMNS = "id, username, password_hash, role, created_at, disabled, language"
_AUDIT_COLUMNS = "id, ts, username, action, facility_id, target, detail"


def _driver(conn: Connection) -> Conn:
    """psycopg's own connection under SQLAlchemy's."""
    return cast(Conn, conn.connection.driver_connection)


def _revision(conn: Conn) -> str | None:
    row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return str(row[0]) if row else None


class _Conflict(Exception):
    """An event of the batch was stored by another transaction meanwhile: start again."""


def _ms(ts: datetime) -> datetime:
    """``ts`` in UTC to the millisecond, as the store keeps every time."""
    ts = ts.astimezone(UTC)
    return ts.replace(microsecond=ts.microsecond // 1000 * 1000)


class _Pool:
    """Connections from the engine's pool, in autocommit mode: reads see everything
    committed, and writes are explicit transactions. One that broke is dropped."""

    def __init__(self, dsn: str, max_idle: int) -> None:
        try:
            conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as err:
            raise StoreError(f"the store's dsn is not a valid connection string: {err}") from err
        if "=" not in dsn and "://" not in dsn:
            raise StoreError("the store's dsn is not a valid connection string")
        try:
            self.engine = open_engine(
                dsn, pool_size=max_idle, application_name="pintu-hub", isolation_level="AUTOCOMMIT"
            )
        except DatabaseError as err:
            raise StoreError(f"the store's dsn: {err}") from err
        self.closed = False

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        if self.closed:
            raise StoreError("the store is closed")
        try:
            pooled = self.engine.connect()
        except DBAPIError as err:
            raise StoreError(f"cannot connect to the database: {err.orig}") from err
        conn = _driver(pooled)
        try:
            yield pooled
        finally:
            if conn.closed or conn.broken or conn.info.transaction_status != TransactionStatus.IDLE:
                pooled.invalidate()
            pooled.close()

    def close(self) -> None:
        self.closed = True
        self.engine.dispose()


class PgStore(
    Reads, Events, Facilities, Alerts, Nodes, Accounts, Enrolments, Upstream, Visits, Retention
):
    """The hub's store in PostgreSQL (see the module's doc). ``dsn`` is a libpq connection
    string; its password, if the server needs one, belongs in a ``.pgpass`` file."""

    dialect = "postgresql"
    several_writers = True

    def __init__(
        self,
        dsn: str,
        facilities: Sequence[FacilityConfig] = (),
        *,
        max_idle: int = 4,
    ) -> None:
        self.configured: Mapping[str, FacilityConfig] = {f.id: f for f in facilities}
        # Swapped whole, never changed in place: a reader sees the old map or the new one.
        self.facilities: Mapping[str, FacilityConfig] = dict(self.configured)
        self._pool = _Pool(dsn, max_idle)
        try:
            self._migrate()
            self._load_capacity_settings()
        except BaseException:
            self._pool.close()
            raise

    # --- plumbing -------------------------------------------------------------------------
    def _run(self, what: str, work: Callable[[Conn], T], *, write: bool = True) -> T:
        """``work`` on a connection, in one transaction when it writes; PostgreSQL errors
        become ``StoreError``, after retrying the ones that ask for it."""
        return self._sa(what, lambda conn: work(_driver(conn)), write=write)

    def _sa(self, what: str, work: Callable[[Connection], T], *, write: bool = True) -> T:
        """``_run`` for a statement of ``hub.store.tables`` (SQLAlchemy's connection)."""

        def call(conn: Connection) -> T:
            try:
                return work(conn)
            except DBAPIError as err:
                # The driver's own error, for the retries below.
                if isinstance(err.orig, psycopg.Error):
                    raise err.orig from err
                raise

        for attempt in range(1, _RETRIES + 1):
            begun = False
            used: Conn | None = None
            try:
                with self._pool.connection() as pooled:
                    used = conn = _driver(pooled)
                    if not write:
                        return call(pooled)
                    with conn.transaction():
                        begun = True
                        return call(pooled)
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure, _Conflict) as err:
                if attempt == _RETRIES:
                    raise StoreError(f"cannot {what}: {err}") from err
                logger.info("%s: %s; trying again", what, err)
            except psycopg.OperationalError as err:
                # A pooled connection the server closed meanwhile (a restart, an idle
                # timeout) fails on first use. A read, or a write that did not begin, is
                # safe to try again on a new connection; a write cut off half way is the
                # caller's to retry, as it may or may not have been committed.
                if begun or attempt == _RETRIES or used is None or not used.broken:
                    raise StoreError(f"cannot {what}: {err}") from err
                logger.info("%s: %s; trying again on a new connection", what, err)
            except psycopg.DataError as err:
                # A value the column cannot hold: the same data fails again, every time.
                raise StoreDataError(f"cannot {what}: {err}") from err
            except psycopg.Error as err:
                raise StoreError(f"cannot {what}: {err}") from err
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _stream(self, what: str, query: Select[Any]) -> Iterator[Any]:
        try:
            with self._pool.connection() as pooled, _driver(pooled).transaction():
                # A server-side cursor, which lives in a transaction.
                options = pooled.execution_options(stream_results=True, yield_per=10_000)
                yield from options.execute(query)
        except DBAPIError as err:
            raise StoreError(f"cannot {what}: {err.orig}") from err
        except psycopg.Error as err:
            raise StoreError(f"cannot {what}: {err}") from err

    def _lock_facilities(
        self, conn: Connection, facility_ids: Sequence[str]
    ) -> Mapping[str, FacilityConfig]:
        return self._lock(_driver(conn), facility_ids)

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._run(
            "read the store", lambda conn: conn.execute(sql, params).fetchall(), write=False
        )

    def _migrate(self) -> None:
        def recount(conn: Connection) -> None:
            # Every worker waits for the recount, as it waits for a facility's lock.
            lock_all(self.dialect, conn)
            recount_all(self, conn, utcnow())

        try:
            migrate(self._pool.engine, recount)
        except DatabaseError as err:
            raise StoreError(f"cannot migrate the store: {err}") from err

    @property
    def schema_version(self) -> str | None:
        """The revision of the store's schema (``hub.store.migrations``)."""
        return self._run("read the schema's revision", _revision, write=False)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> PgStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- facilities and their locks ---------------------------------------------------------
    def _lock(self, conn: Conn, facility_ids: Iterable[str]) -> Mapping[str, FacilityConfig]:
        """Lock the facilities' rows in id order, until the transaction ends; the facilities'
        settings in effect (capacity staff set through any worker included)."""
        ids = sorted(set(facility_ids))
        rows = conn.execute(_LOCK, (ids,)).fetchall()
        if len(rows) < len(ids):
            # A facility's first transaction makes its row. Locked out of order, but only
            # once per facility, and a deadlock that may cause is retried.
            found = {row[0] for row in rows}
            missing = [f for f in ids if f not in found]
            conn.execute(
                "INSERT INTO facility_locks (facility_id) SELECT unnest(%s::text[]) "
                "ON CONFLICT DO NOTHING",
                (missing,),
            )
            rows += conn.execute(_LOCK, (missing,)).fetchall()
        return apply_settings(self, rows)

    # --- events and occupancy ---------------------------------------------------------
    def store_batch(
        self, events: Sequence[Event], received_at: datetime | None = None
    ) -> BatchResult:
        if not events:
            return BatchResult()
        for event in events:
            if event.ts.tzinfo is None:
                raise ValueError(f"event {event.event_id}: ts has no time zone")
        now = _ms(received_at or utcnow())
        return self._sa("store events", lambda pooled: self._store_batch(pooled, events, now))

    def _store_batch(
        self, pooled: Connection, events: Sequence[Event], now: datetime
    ) -> BatchResult:
        conn = _driver(pooled)
        facilities = self._lock(conn, {e.facility_id for e in events})
        known = self._known_ids(conn, [e.event_id for e in events])
        new: list[Event] = []
        duplicates: list[str] = []
        for event in events:
            if event.event_id in known:
                duplicates.append(event.event_id)
            else:
                known.add(event.event_id)
                new.append(event)
        if not new:
            return BatchResult(duplicates=duplicates)

        by_facility: dict[str, list[CountingEvent]] = {}
        for event in new:
            if counts(event.kind, event.direction):
                by_facility.setdefault(event.facility_id, []).append(
                    CountingEvent(
                        event_key(event.ts, event.seq, event.event_id),
                        event.node_id,
                        event.door_id,
                        event.kind,  # a str: its .value costs, once per event
                        event.direction,
                    )
                )
        work = [
            self._count(pooled, facilities, facility_id, by_facility[facility_id], now)
            for facility_id in sorted(by_facility)
        ]
        counted: dict[str, tuple[Counted, int | None]] = {}
        for part in work:
            counted.update(part.counted())
        columns: list[list[Any]] = [[] for _ in _EVENT_COLUMNS]
        alerts: dict[int, Alert] = {}
        for event in new:
            value, alert_id = counted.get(event.event_id, (_NOT_COUNTED, None))
            values = (
                *self._event_values(event),
                value.delta,
                value.flag,
                value.after,
                value.zones,
                value.peak,
                alert_id,
            )
            for column, item in zip(columns, values, strict=True):
                column.append(item)
            raised = alert_for(event)
            if raised:
                alert = raise_alert(
                    pooled,
                    event.facility_id,
                    raised[0],
                    raised[1],
                    now,
                    node_id=event.node_id,
                    door_id=event.door_id,
                    event_id=event.event_id,
                )
                alerts[alert.id] = alert
        # A column with no value in the whole batch goes as NULL, not as an array of them:
        # unnest pads it with NULLs all the same, and psycopg need not look at every one.
        arrays = [None if c.count(None) == len(c) else c for c in columns]
        inserted = conn.execute(_INSERT_EVENTS, (now, *arrays)).fetchall()
        if len(inserted) != len(new):
            # Only an event of another facility's batch can get here first (this facility
            # is locked): a forged or reused id. Counted without it on the next try.
            raise _Conflict(f"{len(new) - len(inserted)} events were stored meanwhile")
        flagged: list[Flagged] = []
        cleared: list[Alert] = []
        occupancy: dict[str, Occupancy] = {}
        corrected: dict[str, datetime] = {}
        for part in work:
            done = self._persist(pooled, facilities, part, now)
            flagged += done.flagged
            alerts.update((a.id, a) for a in done.alerts)
            cleared += done.cleared
            if done.occupancy is not None:
                occupancy[part.recount.facility_id] = done.occupancy
            if part.replayed and part.recount.samples:
                corrected[part.recount.facility_id] = part.recount.samples[0].minute
        # In this same transaction: an exit and the visit it closes are stored together.
        self._record_visits(pooled, new)
        gaps, gap_alerts, gap_cleared = self._track_nodes(pooled, new, now)
        alerts.update((a.id, a) for a in gap_alerts)
        return BatchResult(
            stored=new,
            duplicates=duplicates,
            gaps=gaps,
            flagged=flagged,
            alerts=list(alerts.values()),
            cleared=cleared + gap_cleared,
            occupancy=occupancy,
            corrected=corrected,
        )

    @staticmethod
    def _event_values(event: Event) -> tuple[Any, ...]:
        return (
            event.event_id,
            event.facility_id,
            event.node_id,
            event.door_id,
            event.seq,
            event.ts,
            event.kind.value,
            event.direction,
            event.subject,
            event.signal,
            event.admit,
            event.reason,
            event.message,
            event.detail,
            event.late,
        )

    @staticmethod
    def _known_ids(conn: Conn, ids: Sequence[str]) -> set[str]:
        rows = conn.execute(
            "SELECT event_id FROM events WHERE event_id = ANY(%s)", (list(dict.fromkeys(ids)),)
        ).fetchall()
        return {row[0] for row in rows}

    # --- counting in the events' own order (hub.counting) ------------------------------
    def _count(
        self,
        pooled: Connection,
        facilities: Mapping[str, FacilityConfig],
        facility_id: str,
        new: Sequence[CountingEvent],
        now: datetime,
        point: CountKey | None = None,
    ) -> FacilityCount:
        """Count a facility's ``new`` events (or, from ``point``, an adjustment just made)
        in their place, as the SQLite store does (see ``SqliteStore._count``). The
        facility is locked: nothing of it changes meanwhile."""
        conn = _driver(pooled)
        ms, rank, seq, event_id = point or min(e.key for e in new)
        ts = from_ms(ms)
        params: tuple[Any, ...]
        if rank == EVENT_RANK:
            before, params = "(ts, seq, event_id) < (%s, %s, %s)", (ts, seq, event_id)
        else:
            before, params = "ts <= %s", (ts,)
        row = conn.execute(
            "SELECT ts, seq, event_id, occupancy_after, zones_after, minute_peak FROM events "  # noqa: S608 - fixed SQL
            f"WHERE facility_id = %s AND {before} AND occupancy_after IS NOT NULL "
            "ORDER BY ts DESC, seq DESC, event_id DESC LIMIT 1",
            (facility_id, *params),
        ).fetchone()
        later_sql, adjusted_sql = "", ""
        later_params: tuple[Any, ...] = ()
        adjusted_params: tuple[Any, ...] = ()
        if row is None:
            start = Snapshot()
        else:
            start = Snapshot(row[3], zones_from(row[4]), minute_of(row[0]), row[5])
            later_sql = " AND (ts, seq, event_id) > (%s, %s, %s)"
            later_params = tuple(row[:3])
            adjusted_sql, adjusted_params = " AND created_at >= %s", (row[0],)
        stored = [
            counting_event(r)
            for r in conn.execute(
                f"SELECT {_COUNTING_COLUMNS} FROM events WHERE facility_id = %s "  # noqa: S608 - fixed SQL
                f"AND occupancy_after IS NOT NULL{later_sql} ORDER BY ts, seq, event_id",
                (facility_id, *later_params),
            ).fetchall()
        ]
        adjustments = [
            made_adjustment(r)
            for r in conn.execute(
                "SELECT id, zone_id, kind, value, created_at FROM adjustments "  # noqa: S608 - fixed SQL
                f"WHERE facility_id = %s{adjusted_sql}",
                (facility_id, *adjusted_params),
            ).fetchall()
        ]
        result = recount(facility_id, facilities.get(facility_id), start, stored, new, adjustments)
        counters = conn.execute(
            "SELECT zone_id, value FROM occupancy WHERE facility_id = %s", (facility_id,)
        ).fetchall()
        part = FacilityCount(result, {r[0]: r[1] for r in counters}, replayed=bool(stored))
        flag_alerts(pooled, part, now)
        return part

    def _persist(
        self,
        pooled: Connection,
        facilities: Mapping[str, FacilityConfig],
        part: FacilityCount,
        now: datetime,
    ) -> Persisted:
        """Write what counting changed besides the new events: the stored events counted
        differently, the alerts' latest exits, the counters and the history."""
        conn = _driver(pooled)
        result = part.recount
        facility_id = result.facility_id
        fixes = [
            (c.delta, c.flag, c.after, c.zones, c.peak, part.alert_ids.get(e.event_id, e.alert_id),
             e.row_id)
            for e, c in result.changed
            if e.row_id is not None
        ]  # fmt: skip
        with conn.cursor() as cursor:
            if fixes:
                cursor.executemany(_FIX_EVENT, fixes)
            changed = part.counters
            if changed:
                cursor.executemany(
                    _UPSERT_COUNT, [(facility_id, z, v, now) for z, v in sorted(changed.items())]
                )
            if result.samples:
                cursor.executemany(
                    _SAMPLE, [(facility_id, s.minute, s.occupancy, s.peak) for s in result.samples]
                )
        alerts, cleared = touched_alerts(pooled, part)
        occupancy = None
        if changed:
            final = result.final
            occupancy = make_occupancy(
                facilities.get(facility_id), facility_id, final.count, final.zones, now
            )
        flagged = [
            Flagged(e.event_id, facility_id, e.door_id, c.flag or "") for e, c in result.flagged
        ]
        return Persisted(flagged, alerts, cleared, occupancy)

    def _track_nodes(
        self, pooled: Connection, new: Sequence[Event], now: datetime
    ) -> tuple[list[Gap], list[Alert], list[Alert]]:
        """Update each node's last seq and time; find seq gaps, fill old ones.

        The same rules as the SQLite store's, with the batch's nodes read, and their gaps
        written, a statement for all of them: when several workers share a node's events,
        each batch finds gaps the others fill, and a round trip per gap would add up.
        """
        conn = _driver(pooled)
        by_node: dict[tuple[str, str], list[Event]] = {}
        for event in new:
            by_node.setdefault((event.facility_id, event.node_id), []).append(event)
        keys = sorted(by_node)
        known = {
            (row[0], row[1]): (row[2], row[3])
            for row in conn.execute(
                "SELECT facility_id, node_id, last_seq, last_event_ts FROM nodes "
                "WHERE (facility_id, node_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
                ([k[0] for k in keys], [k[1] for k in keys]),
            )
        }
        open_gaps = self._open_gaps(
            conn,
            [
                key
                for key in keys
                if any(e.seq <= known.get(key, (0, None))[0] for e in by_node[key])
            ],
        )
        alerts: list[Alert] = []
        new_gaps: list[tuple[str, str, int, int, int]] = []  # facility, node, first, last, alert
        filled: dict[int, int] = {}  # gap id -> still missing
        to_clear: set[int] = set()
        updates: list[tuple[Any, ...]] = []
        for key in keys:
            facility_id, node_id = key
            node_events = by_node[key]
            last_seq, last_ts = known.get(key, (0, None))
            seqs = [e.seq for e in node_events]
            ranges = gap_ranges(last_seq, seqs)
            if ranges:
                # One open alert per node, counted once per gap, as ``raise_alert`` would do a
                # gap at a time.
                alert = raise_alert(
                    pooled,
                    facility_id,
                    AlertKind.SEQ_GAP,
                    seq_gap_message(node_id, *ranges[-1]),
                    now,
                    node_id=node_id,
                    times=len(ranges),
                )
                alerts.append(alert)
                new_gaps += [
                    (facility_id, node_id, first, last, alert.id) for first, last in ranges
                ]
            reset: list[int] = []
            late = sorted({s for s in seqs if s <= last_seq})
            if late:
                gaps = open_gaps.get(key, [])
                fill = fill_gaps(gaps, late)
                filled.update(fill.missing)
                # A gap found by this batch is open (and shares the node's alert): the alert
                # ends only when nothing of the node is missing any more.
                if fill.all_filled and not ranges:
                    to_clear.update(g.alert_id for g in gaps if g.alert_id is not None)
                reset = fill.unmatched
                if reset:
                    alerts.append(
                        raise_alert(
                            pooled,
                            facility_id,
                            AlertKind.SEQ_RESET,
                            seq_reset_message(node_id, reset[0], last_seq),
                            now,
                            node_id=node_id,
                        )
                    )
            newest = max(node_events, key=lambda e: e.seq)
            event_ts = max(e.ts for e in node_events)
            if last_ts is not None and last_ts > event_ts:
                event_ts = last_ts
            updates.append(
                (
                    facility_id,
                    node_id,
                    newest.door_id,
                    now,
                    event_ts,
                    followed_seq(last_seq, seqs, reset),
                )
            )
        found = self._add_gaps(conn, new_gaps, now)
        if filled:
            conn.execute(
                "UPDATE gaps SET missing = f.missing, "
                "filled_at = CASE WHEN f.missing <= 0 THEN %s::timestamptz END "
                "FROM unnest(%s::bigint[], %s::integer[]) AS f(id, missing) WHERE gaps.id = f.id",
                (now, list(filled), list(filled.values())),
            )
        cleared: list[Alert] = []
        if to_clear:
            cleared = clear_ids(pooled, self.dialect, sorted(to_clear), now)
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO nodes (facility_id, node_id, door_id, last_seen, last_event_ts, "
                "last_seq) VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (facility_id, node_id) DO UPDATE SET door_id = excluded.door_id, "
                "last_seen = excluded.last_seen, last_event_ts = excluded.last_event_ts, "
                "last_seq = excluded.last_seq",
                updates,
            )
        return found, alerts, cleared

    @staticmethod
    def _open_gaps(
        conn: Conn, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], list[OpenGap]]:
        """The open gaps of these nodes, oldest first."""
        if not keys:
            return {}
        gaps: dict[tuple[str, str], list[OpenGap]] = {}
        for facility_id, node_id, *gap in conn.execute(
            "SELECT facility_id, node_id, id, first_seq, last_seq, missing, alert_id FROM gaps "
            "WHERE (facility_id, node_id) IN (SELECT * FROM unnest(%s::text[], %s::text[])) "
            "AND filled_at IS NULL ORDER BY id",
            ([k[0] for k in keys], [k[1] for k in keys]),
        ):
            gaps.setdefault((facility_id, node_id), []).append(OpenGap(*gap))
        return gaps

    @staticmethod
    def _add_gaps(
        conn: Conn, new_gaps: Sequence[tuple[str, str, int, int, int]], now: datetime
    ) -> list[Gap]:
        """Insert the gaps found, in order; their records."""
        if not new_gaps:
            return []
        columns = list(zip(*new_gaps, strict=True))
        rows = conn.execute(
            "INSERT INTO gaps (facility_id, node_id, first_seq, last_seq, missing, detected_at, "
            "alert_id) SELECT g.facility_id, g.node_id, g.first_seq, g.last_seq, "
            "g.last_seq - g.first_seq + 1, %s, g.alert_id "
            "FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[]) "
            "WITH ORDINALITY AS g(facility_id, node_id, first_seq, last_seq, alert_id, ord) "
            "ORDER BY g.ord RETURNING id",
            (now, *(list(c) for c in columns)),
        ).fetchall()
        # Ids are drawn in the order inserted; RETURNING's order is not promised.
        ids = sorted(row[0] for row in rows)
        return [
            Gap(
                id=gap_id,
                facility_id=facility_id,
                node_id=node_id,
                first_seq=first,
                last_seq=last,
                missing=last - first + 1,
                detected_at=now,
                alert_id=alert_id,
            )
            for gap_id, (facility_id, node_id, first, last, alert_id) in zip(
                ids, new_gaps, strict=True
            )
        ]

    # --- adjustments and history ------------------------------------------------------
    def adjust(
        self,
        facility_id: str,
        kind: AdjustmentKind,
        value: int,
        user: str,
        note: str = "",
        *,
        zone_id: str | None = None,
    ) -> Adjustment:
        value, zone_id = check_adjustment(
            facility_id, self.configured.get(facility_id), kind, value, user, zone_id
        )
        now = _ms(utcnow())

        def make(pooled: Connection) -> Adjustment:
            conn = _driver(pooled)
            facilities = self._lock(conn, [facility_id])
            # The facility is locked: its events so far have ids up to this, later ones above.
            after = conn.execute(
                "SELECT COALESCE(MAX(id), 0) FROM events WHERE facility_id = %s", (facility_id,)
            ).fetchone()
            row = conn.execute(
                "INSERT INTO adjustments (facility_id, zone_id, kind, value, delta, after_event, "
                "username, note, created_at) VALUES (%s, %s, %s, %s, 0, %s, %s, %s, %s) "
                "RETURNING id",
                (facility_id, zone_id, kind, value, after[0] if after else 0, user, note, now),
            ).fetchone()
            assert row is not None  # noqa: S101 - INSERT ... RETURNING gives one row
            adjustment_id = int(row[0])
            # It takes its place at the time it was made: events stamped later (a door
            # whose clock runs ahead) are counted after it.
            part = self._count(
                pooled, facilities, facility_id, [], now, point=adjustment_key(now, adjustment_id)
            )
            self._persist(pooled, facilities, part, now)
            delta = part.recount.adjusted[adjustment_id]
            conn.execute("UPDATE adjustments SET delta = %s WHERE id = %s", (delta, adjustment_id))
            target = f"{facility_id}/{zone_id}" if zone_id else facility_id
            record_audit(
                pooled,
                user,
                f"occupancy.{kind}",
                facility_id,
                target,
                f"{value} ({delta:+d}) {note}",
            )
            final = part.recount.final
            return Adjustment(
                id=adjustment_id,
                facility_id=facility_id,
                zone_id=zone_id,
                kind=kind,
                value=value,
                delta=delta,
                user=user,
                note=note,
                created_at=now,
                occupancy=make_occupancy(
                    facilities.get(facility_id), facility_id, final.count, final.zones, now
                ),
            )

        return self._sa("adjust the occupancy", make)
