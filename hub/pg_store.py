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
    COALESCED,
    EVENT_RANK,
    WHOLE,
    CapacityChange,
    Counted,
    CountingEvent,
    CountKey,
    FacilityCount,
    MadeAdjustment,
    OpenGap,
    Persisted,
    Snapshot,
    adjustment_key,
    alert_for,
    capacity_change,
    check_adjustment,
    counts,
    event_key,
    exit_message,
    fill_gaps,
    followed_seq,
    from_ms,
    gap_ranges,
    make_occupancy,
    minute_of,
    recount,
    seq_gap_message,
    seq_reset_message,
    with_capacity,
    zones_from,
)
from hub.errors import NotFound, StoreDataError, StoreError
from hub.records import (
    Adjustment,
    AdjustmentKind,
    Alert,
    AlertKind,
    BatchResult,
    Flagged,
    Gap,
    Occupancy,
    StoredEvent,
)
from hub.store.accounts import Accounts, record_audit
from hub.store.alerts import Alerts
from hub.store.enrolments import Enrolments
from hub.store.facilities import save_capacity
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
_MAX_PAGE = 1000
_OPEN = "acknowledged_at IS NULL AND cleared_at IS NULL"

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
_ALERT_COLUMNS = (
    "id, facility_id, kind, message, node_id, door_id, event_id, count, created_at, "
    "last_at, acknowledged_by, acknowledged_at, cleared_at"
)
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


def _minute(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(second=0, microsecond=0)


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


class PgStore(Reads, Alerts, Nodes, Accounts, Enrolments, Upstream, Visits, Retention):
    """The hub's store in PostgreSQL (see the module's doc). ``dsn`` is a libpq connection
    string; its password, if the server needs one, belongs in a ``.pgpass`` file."""

    dialect = "postgresql"

    def __init__(
        self,
        dsn: str,
        facilities: Sequence[FacilityConfig] = (),
        *,
        max_idle: int = 4,
    ) -> None:
        self._configured: Mapping[str, FacilityConfig] = {f.id: f for f in facilities}
        # Swapped whole, never changed in place: a reader sees the old map or the new one.
        self.facilities: Mapping[str, FacilityConfig] = dict(self._configured)
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

    def _lock_facilities(self, conn: Connection, facility_ids: Sequence[str]) -> None:
        self._lock(_driver(conn), facility_ids)

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._run(
            "read the store", lambda conn: conn.execute(sql, params).fetchall(), write=False
        )

    def _migrate(self) -> None:
        def recount(conn: Connection) -> None:
            # Every worker waits for the recount, as it waits for a facility's lock.
            conn.exec_driver_sql("LOCK TABLE facility_locks IN EXCLUSIVE MODE")
            self._recount_all(cast(Conn, conn.connection.driver_connection), _ms(utcnow()))

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
        return self._apply_settings(rows)

    def _apply_settings(self, rows: Iterable[Row]) -> Mapping[str, FacilityConfig]:
        """Take (facility_id, capacity, percent, nominal_max, soft) rows into ``facilities``."""
        updates: dict[str, FacilityConfig] = {}
        for facility_id, capacity, percent, nominal, soft in rows:
            configured = self._configured.get(facility_id)
            if configured is None or soft is None:
                continue  # not this hub's facility, or no change made by staff
            updated = with_capacity(configured, capacity, percent, nominal, soft)
            if self.facilities.get(facility_id) != updated:
                updates[facility_id] = updated
        if updates:
            self.facilities = {**self.facilities, **updates}
        return self.facilities

    def _read_settings(self, conn: Conn, facility_id: str | None = None) -> None:
        sql = (
            "SELECT facility_id, capacity, capacity_percent, nominal_max, soft_threshold_percent "
            "FROM capacity_settings"
        )
        if facility_id is None:
            self._apply_settings(conn.execute(sql).fetchall())
        else:
            where = f"{sql} WHERE facility_id = %s"
            self._apply_settings(conn.execute(where, (facility_id,)).fetchall())

    def _load_capacity_settings(self) -> None:
        rows = self._rows(
            "SELECT facility_id, capacity, capacity_percent, nominal_max, soft_threshold_percent, "
            "username, updated_at FROM capacity_settings"
        )
        self._apply_settings([row[:5] for row in rows])
        for facility_id, *_, user, updated_at in rows:
            facility = self.facilities.get(facility_id)
            if facility is not None:
                logger.info(
                    "capacity of %s as %s set it at %s overrides the config: %s",
                    facility_id,
                    user,
                    updated_at.isoformat(),
                    facility.effective_capacity,
                )

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
            self._count(conn, facilities, facility_id, by_facility[facility_id], now)
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
                alert = self._raise(
                    conn,
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
            done = self._persist(conn, facilities, part, now)
            flagged += done.flagged
            alerts.update((a.id, a) for a in done.alerts)
            cleared += done.cleared
            if done.occupancy is not None:
                occupancy[part.recount.facility_id] = done.occupancy
            if part.replayed and part.recount.samples:
                corrected[part.recount.facility_id] = part.recount.samples[0].minute
        # In this same transaction: an exit and the visit it closes are stored together.
        self._record_visits(pooled, new)
        gaps, gap_alerts, gap_cleared = self._track_nodes(conn, new, now)
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
        conn: Conn,
        facilities: Mapping[str, FacilityConfig],
        facility_id: str,
        new: Sequence[CountingEvent],
        now: datetime,
        point: CountKey | None = None,
    ) -> FacilityCount:
        """Count a facility's ``new`` events (or, from ``point``, an adjustment just made)
        in their place, as the SQLite store does (see ``SqliteStore._count``). The
        facility is locked: nothing of it changes meanwhile."""
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
            self._counting_event(r)
            for r in conn.execute(
                f"SELECT {_COUNTING_COLUMNS} FROM events WHERE facility_id = %s "  # noqa: S608 - fixed SQL
                f"AND occupancy_after IS NOT NULL{later_sql} ORDER BY ts, seq, event_id",
                (facility_id, *later_params),
            ).fetchall()
        ]
        adjustments = [
            self._made_adjustment(r)
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
        self._flag_alerts(conn, part, now)
        return part

    @staticmethod
    def _counting_event(row: Row) -> CountingEvent:
        (id_, ts, seq, event_id, node_id, door_id, kind, direction, delta, flag, after, zones,
         peak, alert_id) = row  # fmt: skip
        return CountingEvent(
            event_key(ts, seq, event_id),
            node_id,
            door_id,
            kind,
            direction,
            row_id=id_,
            stored=Counted(delta, flag, after, zones, peak),
            alert_id=alert_id,
        )

    @staticmethod
    def _made_adjustment(row: Row) -> MadeAdjustment:
        id_, zone_id, kind, value, created_at = row
        return MadeAdjustment(id_, zone_id, cast(AdjustmentKind, kind), value, created_at)

    def _flag_alerts(self, conn: Conn, part: FacilityCount, now: datetime) -> None:
        """Raise the alert of each exit flagged now; take back those no longer flagged."""
        facility_id = part.recount.facility_id
        for event, _ in part.recount.flagged:
            alert = self._raise(
                conn,
                facility_id,
                AlertKind.EXIT_WITHOUT_ENTRY,
                exit_message(event.door_id),
                now,
                node_id=event.node_id,
                door_id=event.door_id,
                event_id=event.event_id,
            )
            part.alert_ids[event.event_id] = alert.id
            part.touched.add(alert.id)
        for event in part.recount.unflagged:
            part.alert_ids[event.event_id] = None
            if event.alert_id is None:
                continue
            # Its entry came in late: an open alert counts one exit less and ends when
            # none is left; one already acknowledged stays as it is.
            conn.execute(
                "UPDATE alerts SET count = count - 1, last_at = %s, cleared_at = CASE "  # noqa: S608 - fixed SQL
                f"WHEN count <= 1 THEN %s END WHERE id = %s AND {_OPEN}",
                (now, now, event.alert_id),
            )
            part.touched.add(event.alert_id)

    def _persist(
        self,
        conn: Conn,
        facilities: Mapping[str, FacilityConfig],
        part: FacilityCount,
        now: datetime,
    ) -> Persisted:
        """Write what counting changed besides the new events: the stored events counted
        differently, the alerts' latest exits, the counters and the history."""
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
        alerts: list[Alert] = []
        cleared: list[Alert] = []
        for alert_id in sorted(part.touched):
            if part.replayed:
                # The alert names its latest exit in the counting order, however they came.
                latest = conn.execute(
                    "SELECT event_id, door_id FROM events WHERE alert_id = %s "
                    "ORDER BY ts DESC, seq DESC, event_id DESC LIMIT 1",
                    (alert_id,),
                ).fetchone()
                if latest is not None:
                    conn.execute(
                        "UPDATE alerts SET event_id = %s, door_id = %s, message = %s "  # noqa: S608 - fixed SQL
                        f"WHERE id = %s AND {_OPEN}",
                        (latest[0], latest[1], exit_message(latest[1]), alert_id),
                    )
            row = conn.execute(
                f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = %s",  # noqa: S608 - fixed SQL
                (alert_id,),
            ).fetchone()
            if row is not None:
                alert = self._alert(row)
                (alerts if alert.open else cleared).append(alert)
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
        self, conn: Conn, new: Sequence[Event], now: datetime
    ) -> tuple[list[Gap], list[Alert], list[Alert]]:
        """Update each node's last seq and time; find seq gaps, fill old ones.

        The same rules as the SQLite store's, with the batch's nodes read, and their gaps
        written, a statement for all of them: when several workers share a node's events,
        each batch finds gaps the others fill, and a round trip per gap would add up.
        """
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
                # One open alert per node, counted once per gap, as ``_raise`` would do a
                # gap at a time.
                alert = self._raise(
                    conn,
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
                        self._raise(
                            conn,
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
            rows = conn.execute(
                f"UPDATE alerts SET cleared_at = %s WHERE id = ANY(%s) AND {_OPEN} "  # noqa: S608
                f"RETURNING {_ALERT_COLUMNS}",
                (now, sorted(to_clear)),
            ).fetchall()
            cleared = sorted((self._alert(row) for row in rows), key=lambda a: a.id)
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

    def occupancy(self, facility_id: str) -> Occupancy:
        def read(conn: Conn) -> list[Row]:
            self._read_settings(conn, facility_id)
            return conn.execute(
                "SELECT zone_id, value, updated_at FROM occupancy WHERE facility_id = %s",
                (facility_id,),
            ).fetchall()

        rows = self._run("read the occupancy", read, write=False)
        if facility_id not in self.facilities and not rows:
            raise NotFound(f"unknown facility {facility_id!r}")
        return self._occupancy_of(facility_id, rows)

    def _occupancy_of(self, facility_id: str, rows: Sequence[Row]) -> Occupancy:
        counts = {row[0]: row[1] for row in rows}
        updated = max((row[2] for row in rows), default=None)
        return make_occupancy(
            self.facilities.get(facility_id), facility_id, counts.pop(WHOLE, 0), counts, updated
        )

    def occupancies(self) -> list[Occupancy]:
        def read(conn: Conn) -> list[Row]:
            self._read_settings(conn)
            return conn.execute(
                "SELECT facility_id, zone_id, value, updated_at FROM occupancy "
                'ORDER BY facility_id COLLATE "C"'
            ).fetchall()

        rows = self._run("read the occupancy", read, write=False)
        by_facility: dict[str, list[Row]] = {f: [] for f in self.facilities}
        for row in rows:
            by_facility.setdefault(row[0], []).append(row[1:])
        return [self._occupancy_of(f, rows) for f, rows in by_facility.items()]

    def rebuild_occupancy(self) -> dict[str, Occupancy]:
        now = _ms(utcnow())

        def rebuild(conn: Conn) -> dict[str, Snapshot]:
            # Waits for every transaction holding a facility's lock, and keeps new ones out
            # until the counters are rebuilt.
            conn.execute("LOCK TABLE facility_locks IN EXCLUSIVE MODE")
            self._read_settings(conn)
            return self._recount_all(conn, now)

        finals = self._run("rebuild the occupancy", rebuild)
        facility_ids = sorted(set(finals) | set(self.facilities))
        return {
            f: make_occupancy(
                self.facilities.get(f),
                f,
                finals[f].count if f in finals else 0,
                finals[f].zones if f in finals else {},
                now,
            )
            for f in facility_ids
        }

    def _recount_all(self, conn: Conn, now: datetime) -> dict[str, Snapshot]:
        """Count every facility again from its first event, in the counting order: the
        events' values, the counters and the history are rewritten to what it finds."""
        adjustments: dict[str, list[MadeAdjustment]] = {}
        for row in conn.execute(
            "SELECT facility_id, id, zone_id, kind, value, created_at FROM adjustments"
        ).fetchall():
            adjustments.setdefault(row[0], []).append(self._made_adjustment(row[1:]))
        facility_ids = {
            r[0] for r in conn.execute("SELECT DISTINCT facility_id FROM events").fetchall()
        }
        finals: dict[str, Snapshot] = {}
        fixes: list[tuple[Any, ...]] = []
        changed = 0

        def flush() -> None:
            if fixes:
                with conn.cursor() as cursor:
                    cursor.executemany(_FIX_EVENT, fixes)
                fixes.clear()

        def fix(event: CountingEvent, counted: Counted) -> None:
            nonlocal changed
            changed += 1
            alert_id = event.alert_id if counted.flag else None
            fixes.append(
                (counted.delta, counted.flag, counted.after, counted.zones, counted.peak,
                 alert_id, event.row_id)
            )  # fmt: skip
            if len(fixes) >= _PAGE:
                flush()

        for facility_id in sorted(facility_ids | set(adjustments)):
            result = recount(
                facility_id,
                self.facilities.get(facility_id),
                Snapshot(),
                self._all_counting(conn, facility_id),
                (),
                adjustments.get(facility_id, ()),
                on_changed=fix,
            )
            flush()
            finals[facility_id] = result.final
            conn.execute("DELETE FROM occupancy_history WHERE facility_id = %s", (facility_id,))
            if result.samples:
                with conn.cursor() as cursor:
                    cursor.executemany(
                        _SAMPLE,
                        [(facility_id, s.minute, s.occupancy, s.peak) for s in result.samples],
                    )
        if changed:
            logger.warning("rebuild: %d events counted differently now", changed)
        conn.execute("DELETE FROM occupancy")
        rows = [
            (f, zone, value, now)
            for f, final in sorted(finals.items())
            for zone, value in sorted({WHOLE: final.count, **final.zones}.items())
        ]
        if rows:
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO occupancy (facility_id, zone_id, value, updated_at) "
                    "VALUES (%s, %s, %s, %s)",
                    rows,
                )
        return finals

    def _all_counting(self, conn: Conn, facility_id: str) -> Iterator[CountingEvent]:
        """The facility's events that count, in the counting order, a page at a time (each
        page read whole, so the rows counted differently can be written in between)."""
        after = ""
        params: tuple[Any, ...] = ()
        while True:
            rows = conn.execute(
                f"SELECT {_COUNTING_COLUMNS} FROM events WHERE facility_id = %s "  # noqa: S608 - fixed SQL
                f"AND kind IN ('entry', 'exit', 'manual'){after} "
                "ORDER BY ts, seq, event_id LIMIT %s",
                (facility_id, *params, _PAGE),
            ).fetchall()
            for row in rows:
                if counts(row[6], row[7]):
                    yield self._counting_event(row)
            if len(rows) < _PAGE:
                return
            after = " AND (ts, seq, event_id) > (%s, %s, %s)"
            params = tuple(rows[-1][1:4])

    @staticmethod
    def _stored_event(row: Row) -> StoredEvent:
        data = {
            name: value
            for name, value in zip(_EVENT_NAMES, row[1:16], strict=True)
            if value is not None
        }
        return StoredEvent(
            id=row[0],
            event=Event.model_validate(data),
            received_at=row[16],
            delta=row[17],
            flag=row[18],
        )

    # --- alerts -----------------------------------------------------------------------
    def add_alert(
        self,
        facility_id: str,
        kind: str,
        message: str,
        *,
        node_id: str | None = None,
        door_id: str | None = None,
        event_id: str | None = None,
        coalesce: bool = False,
    ) -> Alert:
        now = _ms(utcnow())

        def add(conn: Conn) -> Alert:
            if coalesce:
                # Two workers raising the same alert count one alert twice, not open two.
                self._lock(conn, [facility_id])
            return self._raise(
                conn,
                facility_id,
                kind,
                message,
                now,
                node_id=node_id,
                door_id=door_id,
                event_id=event_id,
                coalesce=coalesce,
            )

        return self._run("add an alert", add)

    def _raise(
        self,
        conn: Conn,
        facility_id: str,
        kind: str,
        message: str,
        now: datetime,
        *,
        node_id: str | None = None,
        door_id: str | None = None,
        event_id: str | None = None,
        coalesce: bool | None = None,
        times: int = 1,
    ) -> Alert:
        """A new alert, or the open one of its kind counted again (see ``COALESCED``);
        ``times``: it happened that often (only for an alert that coalesces)."""
        coalesced = coalesce if coalesce is not None else kind in COALESCED
        if times != 1 and not coalesced:
            raise ValueError("only a coalesced alert is raised several times at once")
        if coalesced:
            # Counted again only while still open: an alert acknowledged meanwhile is
            # left alone, and the repeat opens a new one.
            row = conn.execute(
                "UPDATE alerts SET count = count + %s, last_at = %s, message = %s, "  # noqa: S608
                "door_id = %s, event_id = %s WHERE id = (SELECT id FROM alerts "
                "WHERE facility_id = %s AND kind = %s AND COALESCE(node_id, '') = %s "
                f"AND {_OPEN} ORDER BY id DESC LIMIT 1) AND {_OPEN} "
                f"RETURNING {_ALERT_COLUMNS}",
                (times, now, message, door_id, event_id, facility_id, str(kind), node_id or ""),
            ).fetchone()
            if row is not None:
                return self._alert(row)
        row = conn.execute(
            "INSERT INTO alerts (facility_id, kind, message, node_id, door_id, event_id, "  # noqa: S608
            "count, created_at, last_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
            f"RETURNING {_ALERT_COLUMNS}",
            (facility_id, str(kind), message, node_id, door_id, event_id, times, now, now),
        ).fetchone()
        assert row is not None  # noqa: S101 - INSERT ... RETURNING gives one row
        logger.info("alert %s at %s: %s", kind, facility_id, message)
        return self._alert(row)

    @staticmethod
    def _alert(row: Row) -> Alert:
        (id_, facility_id, kind, message, node_id, door_id, event_id, count, created_at,
         last_at, acked_by, acked_at, cleared_at) = row  # fmt: skip
        return Alert(
            id=id_,
            facility_id=facility_id,
            kind=kind,
            message=message,
            created_at=created_at,
            last_at=last_at,
            count=count,
            node_id=node_id,
            door_id=door_id,
            event_id=event_id,
            acknowledged_by=acked_by,
            acknowledged_at=acked_at,
            cleared_at=cleared_at,
        )

    # --- nodes ------------------------------------------------------------------------
    # --- capacity set by staff -------------------------------------------------------
    def facility_config(self, facility_id: str) -> FacilityConfig | None:
        if facility_id not in self._configured:
            return None
        self._run(
            "read the capacity settings",
            lambda conn: self._read_settings(conn, facility_id),
            write=False,
        )
        return self.facilities.get(facility_id)

    def set_capacity(
        self,
        facility_id: str,
        user: str,
        *,
        capacity: int | None = None,
        capacity_percent: float | None = None,
        nominal_max: int | None = None,
        soft_threshold_percent: float | None = None,
    ) -> FacilityConfig:
        if facility_id not in self._configured:
            raise NotFound(f"unknown facility {facility_id!r}")
        now = _ms(utcnow())

        def save(pooled: Connection) -> CapacityChange:
            conn = _driver(pooled)
            # Locked, and read afresh: what is left out (the soft threshold, the nominal
            # maximum) stays as staff last set it through any worker.
            facility = self._lock(conn, [facility_id])[facility_id]
            change = capacity_change(
                facility,
                user,
                capacity=capacity,
                capacity_percent=capacity_percent,
                nominal_max=nominal_max,
                soft_threshold_percent=soft_threshold_percent,
            )
            save_capacity(pooled, self.dialect, facility_id, change, user, now)
            return change

        change = self._sa("set the capacity", save)
        self._apply_settings(
            [
                (
                    facility_id,
                    change.capacity,
                    change.capacity_percent,
                    change.nominal_max,
                    change.soft_threshold_percent,
                )
            ]
        )
        return change.facility

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
            facility_id, self._configured.get(facility_id), kind, value, user, zone_id
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
                conn, facilities, facility_id, [], now, point=adjustment_key(now, adjustment_id)
            )
            self._persist(conn, facilities, part, now)
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
