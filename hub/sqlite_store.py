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
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Select
from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import SQLAlchemyError

from hub.config import FacilityConfig
from hub.counting import (
    EVENT_RANK,
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
    iso,
    parse_iso,
)
from hub.store.accounts import Accounts, record_audit
from hub.store.alerts import Alerts, clear_ids, flag_alerts, raise_alert, touched_alerts
from hub.store.enrolments import Enrolments
from hub.store.events import Events, recount_all
from hub.store.facilities import Facilities
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
# SQLite allows 999 parameters in one statement in old builds; stay well under.
_CHUNK = 500
_PAGE = 5000  # events read at a time when every facility is counted again


class SqliteStore(
    Reads, Events, Facilities, Alerts, Nodes, Accounts, Enrolments, Upstream, Visits, Retention
):
    """The hub's store in one SQLite file (see the module's doc)."""

    dialect = "sqlite"
    several_writers = False

    def __init__(
        self,
        path: str | Path,
        facilities: Sequence[FacilityConfig] = (),
        *,
        max_readers: int = 4,
    ) -> None:
        self.path = Path(path)
        self.configured: Mapping[str, FacilityConfig] = {f.id: f for f in facilities}
        # Swapped whole, never changed in place: a reader sees the old map or the new one.
        self.facilities: Mapping[str, FacilityConfig] = dict(self.configured)
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
            recount_all(self, conn, utcnow())

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

    def _lock_facilities(
        self, conn: Connection, facility_ids: Sequence[str]
    ) -> Mapping[str, FacilityConfig]:
        """Nothing to lock: the store's one writer takes the file's lock."""
        return self.facilities

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
                alert = raise_alert(
                    self._writer,
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
        flag_alerts(self._writer, part, now)
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
        alerts, cleared = touched_alerts(self._writer, part)
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
                alert = raise_alert(
                    self._writer,
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
                        raise_alert(
                            self._writer,
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
            closed = clear_ids(self._writer, self.dialect, sorted(alert_ids), now)
        return fill.unmatched, closed

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
