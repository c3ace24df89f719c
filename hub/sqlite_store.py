"""The SQLite store: one file in WAL mode, one writer, any number of readers.

Every write goes through one connection, one transaction at a time, under a lock: SQLite
allows one writer per database, and queuing the writers here is cheaper than making them
retry on ``SQLITE_BUSY``. Readers take read-only connections from a small pool, so the
dashboard never waits for a batch of events being written.

The SQL is kept to what PostgreSQL also understands (``ON CONFLICT ... DO UPDATE``, no
SQLite-only functions in queries), so a second backend is a port of the schema, not of
the logic. The schema is ``hub.store.tables``, migrated by ``hub.store.migrations``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Select
from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import SQLAlchemyError

from hub.config import FacilityConfig
from hub.counting import (
    COALESCED,
    EVENT_RANK,
    WHOLE,
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
    iso,
    parse_iso,
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

_EVENT_COLUMNS = (
    "event_id",
    "facility_id",
    "node_id",
    "door_id",
    "seq",
    "ts",
    "kind",
    "direction",
    "subject",
    "signal",
    "admit",
    "reason",
    "message",
    "detail",
    "late",
)
_COUNTED_COLUMNS = "delta, flag, occupancy_after, zones_after, minute_peak, alert_id"
_INSERT_EVENT = (
    f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)}, received_at, {_COUNTED_COLUMNS}) "  # noqa: S608
    f"VALUES ({', '.join('?' for _ in range(len(_EVENT_COLUMNS) + 7))})"
)
# An event as counting sees it (hub.counting.CountingEvent).
_COUNTING_COLUMNS = "id, ts, seq, event_id, node_id, door_id, kind, direction, " + _COUNTED_COLUMNS
_NOT_COUNTED = Counted(0)
_UPSERT_COUNT = (
    "INSERT INTO occupancy (facility_id, zone_id, value, updated_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (facility_id, zone_id) DO UPDATE "
    "SET value = excluded.value, updated_at = excluded.updated_at"
)
# A minute counted (again) is known whole: its sample is replaced, not merged.
_SAMPLE = (
    "INSERT INTO occupancy_history (facility_id, minute, occupancy, peak) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (facility_id, minute) DO UPDATE SET occupancy = excluded.occupancy, "
    "peak = excluded.peak"
)
_OPEN = "acknowledged_at IS NULL AND cleared_at IS NULL"
# SQLite allows 999 parameters in one statement in old builds; stay well under.
_CHUNK = 500
_PAGE = 5000  # events read at a time when every facility is counted again
_MAX_PAGE = 1000


def _time(text: str | None) -> datetime | None:
    return parse_iso(text) if text else None


def _iso_or_none(ts: datetime | None) -> str | None:
    return iso(ts) if ts else None


def _minute(ts: datetime) -> str:
    return iso(ts.astimezone(UTC).replace(second=0, microsecond=0))


class SqliteStore(Reads, Alerts, Nodes, Accounts, Enrolments, Upstream, Visits, Retention):
    """The hub's store in one SQLite file (see the module's doc)."""

    dialect = "sqlite"

    def __init__(
        self,
        path: str | Path,
        facilities: Sequence[FacilityConfig] = (),
        *,
        max_readers: int = 4,
    ) -> None:
        self.path = Path(path)
        self.facilities: Mapping[str, FacilityConfig] = {f.id: f for f in facilities}
        self._lock = threading.Lock()
        self._closed = False
        try:
            # One writer connection, held open; readers from a read-only pool of their own,
            # so the dashboard never waits for a batch of events being written.
            self._engine = open_engine(self.path, pool_size=1)
            self._writer = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except (DatabaseError, SQLAlchemyError) as err:
            raise StoreError(f"{self.path}: cannot open the database: {err}") from err
        self._readers = open_engine(self.path, read_only=True, pool_size=max_readers)
        try:
            self._migrate()
            self._load_capacity_settings()
        except sqlite3.Error as err:
            self.close()
            raise StoreError(f"{self.path}: cannot prepare the database: {err}") from err
        except StoreError:
            self.close()
            raise

    @property
    def conn(self) -> sqlite3.Connection:
        """The writer's own connection."""
        return cast(sqlite3.Connection, self._writer.connection.driver_connection)

    # --- plumbing -------------------------------------------------------------------------
    @property
    def schema_version(self) -> str | None:
        """The revision of the store's schema (``hub.store.migrations``)."""
        rows = self._rows("SELECT version_num FROM alembic_version")
        return str(rows[0][0]) if rows else None

    def _migrate(self) -> None:
        def recount(conn: Connection) -> None:
            self._recount_all(cast(sqlite3.Connection, conn.connection.driver_connection), utcnow())

        try:
            migrate(self._engine, recount)
        except DatabaseError as err:
            raise StoreError(f"{self.path}: cannot migrate the store: {err}") from err

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """The writer inside one transaction, committed when the block ends."""
        with self._lock:
            if self._closed:
                raise StoreError("the store is closed")
            conn = self.conn
            try:
                # IMMEDIATE takes the write lock now, so a reader in another process never
                # turns this transaction into a busy error half way through.
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as err:
                raise StoreError(f"{self.path}: cannot start a transaction: {err}") from err
            try:
                yield self._writer
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as err:
                conn.execute("ROLLBACK")
                raise StoreError(f"{self.path}: cannot commit: {err}") from err

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """The writer's own connection inside one transaction."""
        with self._transaction():
            yield self.conn

    @contextmanager
    def _reader(self) -> Iterator[Connection]:
        """A read-only connection from the pool; it sees every committed write."""
        if self._closed:
            raise StoreError("the store is closed")
        try:
            conn = self._readers.connect().execution_options(isolation_level="AUTOCOMMIT")
        except SQLAlchemyError as err:
            raise StoreError(f"{self.path}: cannot open for reading: {err}") from err
        with conn:
            cast(sqlite3.Connection, conn.connection.driver_connection).row_factory = sqlite3.Row
            yield conn

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection of the driver's own."""
        with self._reader() as conn:
            try:
                yield cast(sqlite3.Connection, conn.connection.driver_connection)
            except sqlite3.Error as err:
                raise StoreError(f"{self.path}: read failed: {err}") from err

    def _sa(self, what: str, work: Callable[[Connection], T], *, write: bool = True) -> T:
        """``work`` on a connection, in one transaction when it writes; database errors
        become ``StoreError`` (``StoreDataError`` for a value a column cannot hold)."""
        try:
            if write:
                with self._transaction() as conn:
                    return work(conn)
            with self._reader() as conn:
                return work(conn)
        except (OverflowError, sa_exc.DataError) as err:
            raise StoreDataError(f"{self.path}: cannot {what}: {err}") from err
        except sa_exc.SQLAlchemyError as err:
            raise StoreError(f"{self.path}: cannot {what}: {err}") from err

    def _stream(self, what: str, query: Select[Any]) -> Iterator[Any]:
        with self._reader() as conn:
            try:
                yield from conn.execution_options(yield_per=10_000).execute(query)
            except sa_exc.SQLAlchemyError as err:
                raise StoreError(f"{self.path}: cannot {what}: {err}") from err

    def _lock_facilities(self, conn: Connection, facility_ids: Sequence[str]) -> None:
        """Nothing to do: the store's one writer takes the file's lock."""

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._read() as conn:
            return conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._writer.close()
            self._engine.dispose()
            self._readers.dispose()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- events and occupancy ---------------------------------------------------------
    def store_batch(
        self, events: Sequence[Event], received_at: datetime | None = None
    ) -> BatchResult:
        if not events:
            return BatchResult()
        for event in events:
            if event.ts.tzinfo is None:
                raise ValueError(f"event {event.event_id}: ts has no time zone")
        now = received_at or utcnow()
        now_text = iso(now)
        try:
            with self._write() as conn:
                return self._store_batch(conn, events, now, now_text)
        except (OverflowError, sqlite3.DataError) as err:
            # A value SQLite cannot hold (an integer past 64 bits): the same data fails
            # again, every time.
            raise StoreDataError(f"{self.path}: cannot store events: {err}") from err
        except sqlite3.Error as err:
            raise StoreError(f"{self.path}: cannot store events: {err}") from err

    def _store_batch(
        self, conn: sqlite3.Connection, events: Sequence[Event], now: datetime, now_text: str
    ) -> BatchResult:
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
            self._count(conn, facility_id, by_facility[facility_id], now)
            for facility_id in sorted(by_facility)
        ]
        counted: dict[str, tuple[Counted, int | None]] = {}
        for part in work:
            counted.update(part.counted())
        alerts: dict[int, Alert] = {}
        rows: list[tuple[Any, ...]] = []
        for event in new:
            value, alert_id = counted.get(event.event_id, (_NOT_COUNTED, None))
            rows.append(
                (
                    *self._event_values(event),
                    now_text,
                    value.delta,
                    value.flag,
                    value.after,
                    value.zones,
                    value.peak,
                    alert_id,
                )
            )
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
        conn.executemany(_INSERT_EVENT, rows)
        flagged: list[Flagged] = []
        cleared: list[Alert] = []
        occupancy: dict[str, Occupancy] = {}
        corrected: dict[str, datetime] = {}
        for part in work:
            done = self._persist(conn, part, now)
            flagged += done.flagged
            alerts.update((a.id, a) for a in done.alerts)
            cleared += done.cleared
            if done.occupancy is not None:
                occupancy[part.recount.facility_id] = done.occupancy
            if part.replayed and part.recount.samples:
                corrected[part.recount.facility_id] = part.recount.samples[0].minute
        # In this same transaction: an exit and the visit it closes are stored together.
        self._record_visits(self._writer, new)
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
            iso(event.ts),
            event.kind.value,
            event.direction,
            event.subject,
            event.signal,
            None if event.admit is None else int(event.admit),
            event.reason,
            event.message,
            event.detail,
            int(event.late),
        )

    @staticmethod
    def _known_ids(conn: sqlite3.Connection, ids: Sequence[str]) -> set[str]:
        known: set[str] = set()
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            marks = ", ".join("?" for _ in chunk)
            sql = f"SELECT event_id FROM events WHERE event_id IN ({marks})"  # noqa: S608 - placeholders only
            known.update(row[0] for row in conn.execute(sql, chunk))
        return known

    # --- counting in the events' own order (hub.counting) ------------------------------
    def _count(
        self,
        conn: sqlite3.Connection,
        facility_id: str,
        new: Sequence[CountingEvent],
        now: datetime,
        point: CountKey | None = None,
    ) -> FacilityCount:
        """Count a facility's ``new`` events (or, from ``point``, an adjustment just made)
        in their place: from the counts kept with the last event before them, with the
        events and adjustments after it counted again. Raises and reduces the alerts of
        the flags that change."""
        start_key = point or min(e.key for e in new)
        ms, rank, seq, event_id = start_key
        ts = from_ms(ms)
        # The last event before the point: one step back along the index.
        before = "(ts, seq, event_id) < (?, ?, ?)" if rank == EVENT_RANK else "ts <= ?"
        params: tuple[Any, ...] = (iso(ts), seq, event_id) if rank == EVENT_RANK else (iso(ts),)
        row = conn.execute(
            "SELECT ts, seq, event_id, occupancy_after, zones_after, minute_peak FROM events "  # noqa: S608 - fixed SQL
            f"WHERE facility_id = ? AND {before} AND occupancy_after IS NOT NULL "
            "ORDER BY ts DESC, seq DESC, event_id DESC LIMIT 1",
            (facility_id, *params),
        ).fetchone()
        later_sql, adjusted_sql = "", ""
        later_params: tuple[Any, ...] = ()
        adjusted_params: tuple[Any, ...] = ()
        if row is None:
            start = Snapshot()
        else:
            start_ts = parse_iso(row[0])
            start = Snapshot(row[3], zones_from(row[4]), minute_of(start_ts), row[5])
            later_sql, later_params = " AND (ts, seq, event_id) > (?, ?, ?)", tuple(row[:3])
            adjusted_sql, adjusted_params = " AND created_at >= ?", (row[0],)
        stored = [
            self._counting_event(r)
            for r in conn.execute(
                f"SELECT {_COUNTING_COLUMNS} FROM events WHERE facility_id = ? "  # noqa: S608 - fixed SQL
                f"AND occupancy_after IS NOT NULL{later_sql} ORDER BY ts, seq, event_id",
                (facility_id, *later_params),
            )
        ]
        adjustments = [
            self._made_adjustment(r)
            for r in conn.execute(
                "SELECT id, zone_id, kind, value, created_at FROM adjustments "  # noqa: S608 - fixed SQL
                f"WHERE facility_id = ?{adjusted_sql}",
                (facility_id, *adjusted_params),
            )
        ]
        result = recount(
            facility_id, self.facilities.get(facility_id), start, stored, new, adjustments
        )
        counters = self._load_counts(conn, {facility_id})
        part = FacilityCount(
            result,
            {zone: value for (_, zone), value in counters.items()},
            replayed=bool(stored),
        )
        self._flag_alerts(conn, part, now)
        return part

    @staticmethod
    def _counting_event(row: sqlite3.Row | tuple[Any, ...]) -> CountingEvent:
        (id_, ts, seq, event_id, node_id, door_id, kind, direction, delta, flag, after, zones,
         peak, alert_id) = tuple(row)  # fmt: skip
        return CountingEvent(
            event_key(parse_iso(ts), seq, event_id),
            node_id,
            door_id,
            kind,
            direction,
            row_id=id_,
            stored=Counted(delta, flag, after, zones, peak),
            alert_id=alert_id,
        )

    @staticmethod
    def _made_adjustment(row: sqlite3.Row | tuple[Any, ...]) -> MadeAdjustment:
        id_, zone_id, kind, value, created_at = tuple(row)
        return MadeAdjustment(
            id_, zone_id, cast(AdjustmentKind, kind), value, parse_iso(created_at)
        )

    def _flag_alerts(self, conn: sqlite3.Connection, part: FacilityCount, now: datetime) -> None:
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
        now_text = iso(now)
        for event in part.recount.unflagged:
            part.alert_ids[event.event_id] = None
            if event.alert_id is None:
                continue
            # Its entry came in late: the exit counts after all. An open alert counts one
            # exit less, and ends when none is left; one already acknowledged stays as it is.
            conn.execute(
                f"UPDATE alerts SET count = count - 1, last_at = ?, cleared_at = CASE "  # noqa: S608 - fixed SQL
                f"WHEN count <= 1 THEN ? END WHERE id = ? AND {_OPEN}",
                (now_text, now_text, event.alert_id),
            )
            part.touched.add(event.alert_id)

    def _persist(self, conn: sqlite3.Connection, part: FacilityCount, now: datetime) -> Persisted:
        """Write what counting changed besides the new events: the stored events counted
        differently, the alerts' latest exits, the counters and the history."""
        now_text = iso(now)
        result = part.recount
        fixes = [
            (c.delta, c.flag, c.after, c.zones, c.peak, part.alert_ids.get(e.event_id, e.alert_id),
             e.row_id)
            for e, c in result.changed
            if e.row_id is not None
        ]  # fmt: skip
        if fixes:
            conn.executemany(
                "UPDATE events SET delta = ?, flag = ?, occupancy_after = ?, zones_after = ?, "
                "minute_peak = ?, alert_id = ? WHERE id = ?",
                fixes,
            )
        alerts: list[Alert] = []
        cleared: list[Alert] = []
        for alert_id in sorted(part.touched):
            if part.replayed:
                # The alert names its latest exit in the counting order, however they came.
                latest = conn.execute(
                    "SELECT event_id, door_id FROM events WHERE alert_id = ? "
                    "ORDER BY ts DESC, seq DESC, event_id DESC LIMIT 1",
                    (alert_id,),
                ).fetchone()
                if latest is not None:
                    conn.execute(
                        f"UPDATE alerts SET event_id = ?, door_id = ?, message = ? "  # noqa: S608 - fixed SQL
                        f"WHERE id = ? AND {_OPEN}",
                        (latest[0], latest[1], exit_message(latest[1]), alert_id),
                    )
            alert = self._alert_by_id(conn, alert_id)
            if alert is not None:
                (alerts if alert.open else cleared).append(alert)
        changed = part.counters
        facility_id = result.facility_id
        conn.executemany(
            _UPSERT_COUNT, [(facility_id, z, v, now_text) for z, v in sorted(changed.items())]
        )
        conn.executemany(
            _SAMPLE,
            [(facility_id, iso(s.minute), s.occupancy, s.peak) for s in result.samples],
        )
        occupancy = None
        if changed:
            final = result.final
            occupancy = make_occupancy(
                self.facilities.get(facility_id), facility_id, final.count, final.zones, now
            )
        flagged = [
            Flagged(e.event_id, facility_id, e.door_id, c.flag or "") for e, c in result.flagged
        ]
        return Persisted(flagged, alerts, cleared, occupancy)

    @staticmethod
    def _load_counts(
        conn: sqlite3.Connection, facility_ids: set[str]
    ) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for facility_id in facility_ids:
            for zone_id, value in conn.execute(
                "SELECT zone_id, value FROM occupancy WHERE facility_id = ?", (facility_id,)
            ):
                counts[(facility_id, zone_id)] = value
        return counts

    def _track_nodes(
        self, conn: sqlite3.Connection, new: Sequence[Event], now: datetime
    ) -> tuple[list[Gap], list[Alert], list[Alert]]:
        """Update each node's last seq and time; find seq gaps, fill old ones."""
        by_node: dict[tuple[str, str], list[Event]] = {}
        for event in new:
            by_node.setdefault((event.facility_id, event.node_id), []).append(event)
        found: list[Gap] = []
        alerts: list[Alert] = []
        cleared: list[Alert] = []
        now_text = iso(now)
        for (facility_id, node_id), node_events in by_node.items():
            row = conn.execute(
                "SELECT last_seq, last_event_ts FROM nodes WHERE facility_id = ? AND node_id = ?",
                (facility_id, node_id),
            ).fetchone()
            last_seq = row[0] if row else 0
            last_ts = row[1] if row else None
            seqs = [e.seq for e in node_events]
            reset: list[int] = []
            for first, last in gap_ranges(last_seq, seqs):
                alert = self._raise(
                    conn,
                    facility_id,
                    AlertKind.SEQ_GAP,
                    seq_gap_message(node_id, first, last),
                    now,
                    node_id=node_id,
                )
                alerts.append(alert)
                cursor = conn.execute(
                    "INSERT INTO gaps (facility_id, node_id, first_seq, last_seq, missing, "
                    "detected_at, alert_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (facility_id, node_id, first, last, last - first + 1, now_text, alert.id),
                )
                found.append(
                    Gap(
                        id=int(cursor.lastrowid or 0),
                        facility_id=facility_id,
                        node_id=node_id,
                        first_seq=first,
                        last_seq=last,
                        missing=last - first + 1,
                        detected_at=now,
                        alert_id=alert.id,
                    )
                )
            late = sorted({s for s in seqs if s <= last_seq})
            if late:
                reset, closed = self._fill_gaps(conn, facility_id, node_id, late, now)
                cleared.extend(closed)
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
            new_last = followed_seq(last_seq, seqs, reset)
            newest = max(node_events, key=lambda e: e.seq)
            event_ts = iso(max(e.ts for e in node_events))
            if last_ts and last_ts > event_ts:
                event_ts = last_ts
            conn.execute(
                "INSERT INTO nodes (facility_id, node_id, door_id, last_seen, last_event_ts, "
                "last_seq) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (facility_id, node_id) DO UPDATE "
                "SET door_id = excluded.door_id, last_seen = excluded.last_seen, "
                "last_event_ts = excluded.last_event_ts, last_seq = excluded.last_seq",
                (facility_id, node_id, newest.door_id, now_text, event_ts, new_last),
            )
        return found, alerts, cleared

    def _fill_gaps(
        self,
        conn: sqlite3.Connection,
        facility_id: str,
        node_id: str,
        late: Sequence[int],
        now: datetime,
    ) -> tuple[list[int], list[Alert]]:
        """Count late seqs against the node's open gaps; the seqs that fit none, and the
        alerts closed because every gap of the node is filled."""
        open_gaps = [
            OpenGap(*row)
            for row in conn.execute(
                "SELECT id, first_seq, last_seq, missing, alert_id FROM gaps "
                "WHERE facility_id = ? AND node_id = ? AND filled_at IS NULL",
                (facility_id, node_id),
            )
        ]
        fill = fill_gaps(open_gaps, late)
        now_text = iso(now)
        for gap_id, missing in fill.missing.items():
            conn.execute(
                "UPDATE gaps SET missing = ?, filled_at = ? WHERE id = ?",
                (missing, now_text if missing <= 0 else None, gap_id),
            )
        closed: list[Alert] = []
        if fill.all_filled:
            alert_ids = {gap.alert_id for gap in open_gaps if gap.alert_id is not None}
            for alert_id in sorted(alert_ids):
                conn.execute(
                    f"UPDATE alerts SET cleared_at = ? WHERE id = ? AND {_OPEN}",  # noqa: S608
                    (now_text, alert_id),
                )
                alert = self._alert_by_id(conn, alert_id)
                if alert:
                    closed.append(alert)
        return fill.unmatched, closed

    def occupancy(self, facility_id: str) -> Occupancy:
        rows = self._rows(
            "SELECT zone_id, value, updated_at FROM occupancy WHERE facility_id = ?",
            (facility_id,),
        )
        facility = self.facilities.get(facility_id)
        if facility is None and not rows:
            raise NotFound(f"unknown facility {facility_id!r}")
        return self._occupancy_of(facility_id, rows)

    def _occupancy_of(self, facility_id: str, rows: Sequence[sqlite3.Row]) -> Occupancy:
        counts = {row[0]: row[1] for row in rows}
        updated = max((row[2] for row in rows), default=None)
        return make_occupancy(
            self.facilities.get(facility_id),
            facility_id,
            counts.pop(WHOLE, 0),
            counts,
            _time(updated),
        )

    def occupancies(self) -> list[Occupancy]:
        rows = self._rows(
            "SELECT facility_id, zone_id, value, updated_at FROM occupancy ORDER BY facility_id"
        )
        by_facility: dict[str, list[Any]] = {f: [] for f in self.facilities}
        for row in rows:
            by_facility.setdefault(row[0], []).append(tuple(row)[1:])
        return [self._occupancy_of(f, rows) for f, rows in by_facility.items()]

    def rebuild_occupancy(self) -> dict[str, Occupancy]:
        now = utcnow()
        with self._write() as conn:
            finals = self._recount_all(conn, now)
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

    def _recount_all(self, conn: sqlite3.Connection, now: datetime) -> dict[str, Snapshot]:
        """Count every facility again from its first event, in the counting order: the
        events' values, the counters and the history are rewritten to what it finds."""
        now_text = iso(now)
        adjustments: dict[str, list[MadeAdjustment]] = {}
        for row in conn.execute(
            "SELECT facility_id, id, zone_id, kind, value, created_at FROM adjustments"
        ):
            adjustments.setdefault(row[0], []).append(self._made_adjustment(row[1:]))
        facility_ids = {r[0] for r in conn.execute("SELECT DISTINCT facility_id FROM events")}
        finals: dict[str, Snapshot] = {}
        fixes: list[tuple[Any, ...]] = []
        changed = 0

        def fix(event: CountingEvent, counted: Counted) -> None:
            nonlocal changed
            changed += 1
            alert_id = event.alert_id if counted.flag else None
            fixes.append(
                (counted.delta, counted.flag, counted.after, counted.zones, counted.peak,
                 alert_id, event.row_id)
            )  # fmt: skip
            if len(fixes) >= _CHUNK:
                flush()

        def flush() -> None:
            conn.executemany(
                "UPDATE events SET delta = ?, flag = ?, occupancy_after = ?, zones_after = ?, "
                "minute_peak = ?, alert_id = ? WHERE id = ?",
                fixes,
            )
            fixes.clear()

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
            conn.execute("DELETE FROM occupancy_history WHERE facility_id = ?", (facility_id,))
            conn.executemany(
                _SAMPLE,
                [(facility_id, iso(s.minute), s.occupancy, s.peak) for s in result.samples],
            )
        if changed:
            logger.warning("rebuild: %d events counted differently now", changed)
        conn.execute("DELETE FROM occupancy")
        conn.executemany(
            "INSERT INTO occupancy (facility_id, zone_id, value, updated_at) VALUES (?, ?, ?, ?)",
            [
                (f, zone, value, now_text)
                for f, final in sorted(finals.items())
                for zone, value in sorted({WHOLE: final.count, **final.zones}.items())
            ],
        )
        return finals

    def _all_counting(self, conn: sqlite3.Connection, facility_id: str) -> Iterator[CountingEvent]:
        """The facility's events that count, in the counting order, a page at a time (each
        page read whole, so the rows counted differently can be written in between)."""
        after: tuple[Any, ...] = ("", 0, "")
        while True:
            rows = conn.execute(
                f"SELECT {_COUNTING_COLUMNS} FROM events WHERE facility_id = ? "  # noqa: S608 - fixed SQL
                "AND kind IN ('entry', 'exit', 'manual') AND (ts, seq, event_id) > (?, ?, ?) "
                "ORDER BY ts, seq, event_id LIMIT ?",
                (facility_id, *after, _PAGE),
            ).fetchall()
            for row in rows:
                if counts(row[6], row[7]):
                    yield self._counting_event(row)
            if len(rows) < _PAGE:
                return
            after = tuple(rows[-1][1:4])

    @staticmethod
    def _stored_event(row: sqlite3.Row) -> StoredEvent:
        data = {name: row[name] for name in _EVENT_COLUMNS if row[name] is not None}
        data["late"] = bool(data.get("late"))
        if "admit" in data:
            data["admit"] = bool(data["admit"])
        return StoredEvent(
            id=row["id"],
            event=Event.model_validate(data),
            received_at=parse_iso(row["received_at"]),
            delta=row["delta"],
            flag=row["flag"],
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
        with self._write() as conn:
            return self._raise(
                conn,
                facility_id,
                kind,
                message,
                utcnow(),
                node_id=node_id,
                door_id=door_id,
                event_id=event_id,
                coalesce=coalesce,
            )

    def _raise(
        self,
        conn: sqlite3.Connection,
        facility_id: str,
        kind: str,
        message: str,
        now: datetime,
        *,
        node_id: str | None = None,
        door_id: str | None = None,
        event_id: str | None = None,
        coalesce: bool | None = None,
    ) -> Alert:
        """A new alert, or the open one of its kind counted again (see ``COALESCED``)."""
        now_text = iso(now)
        if coalesce if coalesce is not None else kind in COALESCED:
            row = conn.execute(
                f"SELECT id FROM alerts WHERE facility_id = ? AND kind = ? "  # noqa: S608
                f"AND COALESCE(node_id, '') = ? AND {_OPEN} ORDER BY id DESC LIMIT 1",
                (facility_id, kind, node_id or ""),
            ).fetchone()
            if row:
                conn.execute(
                    "UPDATE alerts SET count = count + 1, last_at = ?, message = ?, "
                    "door_id = ?, event_id = ? WHERE id = ?",
                    (now_text, message, door_id, event_id, row[0]),
                )
                alert = self._alert_by_id(conn, row[0])
                assert alert is not None  # noqa: S101 - read back in the same transaction
                return alert
        cursor = conn.execute(
            "INSERT INTO alerts (facility_id, kind, message, node_id, door_id, event_id, "
            "created_at, last_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (facility_id, str(kind), message, node_id, door_id, event_id, now_text, now_text),
        )
        logger.info("alert %s at %s: %s", kind, facility_id, message)
        return Alert(
            id=int(cursor.lastrowid or 0),
            facility_id=facility_id,
            kind=str(kind),
            message=message,
            created_at=parse_iso(now_text),
            last_at=parse_iso(now_text),
            node_id=node_id,
            door_id=door_id,
            event_id=event_id,
        )

    @staticmethod
    def _alert(row: sqlite3.Row | tuple[Any, ...]) -> Alert:
        (id_, facility_id, kind, message, node_id, door_id, event_id, count, created_at,
         last_at, acked_by, acked_at, cleared_at) = tuple(row)  # fmt: skip
        return Alert(
            id=id_,
            facility_id=facility_id,
            kind=kind,
            message=message,
            created_at=parse_iso(created_at),
            last_at=parse_iso(last_at),
            count=count,
            node_id=node_id,
            door_id=door_id,
            event_id=event_id,
            acknowledged_by=acked_by,
            acknowledged_at=_time(acked_at),
            cleared_at=_time(cleared_at),
        )

    _ALERT_COLUMNS = (
        "id, facility_id, kind, message, node_id, door_id, event_id, count, created_at, "
        "last_at, acknowledged_by, acknowledged_at, cleared_at"
    )

    def _alert_by_id(self, conn: sqlite3.Connection, alert_id: int) -> Alert | None:
        row = conn.execute(
            f"SELECT {self._ALERT_COLUMNS} FROM alerts WHERE id = ?",  # noqa: S608
            (alert_id,),
        ).fetchone()
        return self._alert(row) if row else None

    # --- capacity set by staff -------------------------------------------------------
    def _load_capacity_settings(self) -> None:
        rows = self.conn.execute(
            "SELECT facility_id, capacity, capacity_percent, nominal_max, "
            "soft_threshold_percent, username, updated_at FROM capacity_settings"
        ).fetchall()
        facilities = dict(self.facilities)
        for facility_id, capacity, percent, nominal, soft, user, updated_at in rows:
            facility = facilities.get(facility_id)
            if facility is None:
                continue
            facilities[facility_id] = with_capacity(facility, capacity, percent, nominal, soft)
            logger.info(
                "capacity of %s as %s set it at %s overrides the config: %s",
                facility_id,
                user,
                updated_at,
                facilities[facility_id].effective_capacity,
            )
        self.facilities = facilities

    def facility_config(self, facility_id: str) -> FacilityConfig | None:
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
        facility = self.facilities.get(facility_id)
        if facility is None:
            raise NotFound(f"unknown facility {facility_id!r}")
        change = capacity_change(
            facility,
            user,
            capacity=capacity,
            capacity_percent=capacity_percent,
            nominal_max=nominal_max,
            soft_threshold_percent=soft_threshold_percent,
        )
        updated = change.facility
        with self._write():
            save_capacity(self._writer, self.dialect, facility_id, change, user, utcnow())
            # Swapped whole under the write lock: readers see the old or the new, never half.
            self.facilities = {**self.facilities, facility_id: updated}
        return updated

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
            facility_id, self.facilities.get(facility_id), kind, value, user, zone_id
        )
        now = utcnow()
        now_text = iso(now)
        with self._write() as conn:
            after = conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
            cursor = conn.execute(
                "INSERT INTO adjustments (facility_id, zone_id, kind, value, delta, after_event, "
                "username, note, created_at) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?)",
                (facility_id, zone_id, kind, value, after, user, note, now_text),
            )
            adjustment_id = int(cursor.lastrowid or 0)
            # It takes its place at the time it was made: events stamped later (a door
            # whose clock runs ahead) are counted after it.
            part = self._count(conn, facility_id, [], now, point=adjustment_key(now, adjustment_id))
            self._persist(conn, part, now)
            delta = part.recount.adjusted[adjustment_id]
            conn.execute("UPDATE adjustments SET delta = ? WHERE id = ?", (delta, adjustment_id))
            target = f"{facility_id}/{zone_id}" if zone_id else facility_id
            record_audit(
                self._writer,
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
            created_at=parse_iso(now_text),
            occupancy=make_occupancy(
                self.facilities.get(facility_id), facility_id, final.count, final.zones, now
            ),
        )
