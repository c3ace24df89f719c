"""The store's side of counting (``hub.counting.service``), written once for SQLite and
PostgreSQL: ``SqlCounting`` answers what counting asks, in the transaction of one write,
and ``Batches`` is the part of the store (``hub.store.Store``) that stores a batch of
events or a staff adjustment through it.

Every statement is a ``Prepared`` one: compiled once per database by SQLAlchemy and run on
the driver's own cursor with the driver's own values (``driver_time``), as the ingest runs
it thousands of times a second. What the two databases do differently is in
``hub.store.dialect``: the facilities' locks (``Database._lock_facilities``), the bulk
insert (``insert_rows``) and the form of a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, func, insert, select, tuple_, update

from hub.counting.rules import (
    EVENT_RANK,
    Counted,
    CountingEvent,
    CountKey,
    OpenGap,
    Sample,
    Snapshot,
    check_adjustment,
    from_ms,
    minute_of,
    zones_from,
)
from hub.counting.service import Counting, NodeKey, NodeSeen, Start
from hub.records import Adjustment, AdjustmentKind, Alert, BatchResult, Gap
from hub.store.accounts import record_audit
from hub.store.alerts import alert_by_id, clear_ids, name_latest_exit, raise_alert, take_back
from hub.store.dialect import (
    Prepared,
    any_of,
    driver_time,
    from_driver_time,
    insert_returning,
    insert_rows,
    listed,
    ms,
    update_rows,
    upsert,
)
from hub.store.events import (
    ADJUSTMENT,
    COUNTING,
    ORDER,
    RECOUNTED,
    counting_event,
    made_adjustment,
)
from hub.store.tables import adjustments, events, gaps, nodes, occupancy, occupancy_history
from protocol.events import Event, utcnow

if TYPE_CHECKING:
    from hub.config import FacilityConfig
    from hub.store.dialect import Database

_E = events.c
_J = adjustments.c
_N = nodes.c
_G = gaps.c
_O = occupancy.c
_H = occupancy_history.c
_NOT_COUNTED = Counted(0)

# The columns of a new event, in the order ``_event_row`` gives them.
EVENT_COLUMNS = (
    "event_id", "facility_id", "node_id", "door_id", "seq", "ts", "kind", "direction",
    "subject", "signal", "admit", "reason", "message", "detail", "late", "received_at",
    "delta", "flag", "occupancy_after", "zones_after", "minute_peak", "alert_id",
)  # fmt: skip
_NEWEST_FIRST = (_E.ts.desc(), _E.seq.desc(), _E.event_id.desc())
_COUNTED = _E.occupancy_after.is_not(None)
_START = (_E.ts, _E.seq, _E.event_id, _E.occupancy_after, _E.zones_after, _E.minute_peak)
_P_KEY = tuple_(bindparam("p_ts"), bindparam("p_seq"), bindparam("p_event"))
_OF_FACILITY = _E.facility_id == bindparam("p_facility")

_KNOWN = Prepared(lambda d: select(_E.event_id).where(any_of(d, _E.event_id, "p_ids")))
# The last counted event before a point of the order: one step back along the index.
_BEFORE_EVENT = Prepared(
    lambda d: (
        select(*_START)
        .where(_OF_FACILITY, tuple_(*ORDER) < _P_KEY, _COUNTED)
        .order_by(*_NEWEST_FIRST)
        .limit(1)
    )
)
_BEFORE_TIME = Prepared(
    lambda d: (
        select(*_START)
        .where(_OF_FACILITY, _E.ts <= bindparam("p_ts"), _COUNTED)
        .order_by(*_NEWEST_FIRST)
        .limit(1)
    )
)
_LATER = Prepared(
    lambda d: (
        select(*COUNTING).where(_OF_FACILITY, _COUNTED, tuple_(*ORDER) > _P_KEY).order_by(*ORDER)
    )
)
_ALL_COUNTED = Prepared(lambda d: select(*COUNTING).where(_OF_FACILITY, _COUNTED).order_by(*ORDER))
_ADJUSTED_SINCE = Prepared(
    lambda d: select(*ADJUSTMENT).where(
        _J.facility_id == bindparam("p_facility"), _J.created_at >= bindparam("p_ts")
    )
)
_ALL_ADJUSTED = Prepared(
    lambda d: select(*ADJUSTMENT).where(_J.facility_id == bindparam("p_facility"))
)
_COUNTERS = Prepared(
    lambda d: select(_O.zone_id, _O.value).where(_O.facility_id == bindparam("p_facility"))
)
_SET_COUNT = Prepared(
    lambda d: upsert(
        d,
        occupancy,
        ("facility_id", "zone_id"),
        facility_id=bindparam("p_facility"),
        zone_id=bindparam("p_zone"),
        value=bindparam("p_value"),
        updated_at=bindparam("p_now"),
    )
)
# A minute counted (again) is known whole: its sample is replaced, not merged.
_SAMPLE = Prepared(
    lambda d: upsert(
        d,
        occupancy_history,
        ("facility_id", "minute"),
        facility_id=bindparam("p_facility"),
        minute=bindparam("p_minute"),
        occupancy=bindparam("p_occupancy"),
        peak=bindparam("p_peak"),
    )
)
_NODES = Prepared(
    lambda d: select(_N.facility_id, _N.node_id, _N.last_seq, _N.last_event_ts).where(
        any_of(d, _N.facility_id, "p_facilities")
    )
)
_OPEN_GAPS = Prepared(
    lambda d: (
        select(
            _G.facility_id, _G.node_id, _G.id, _G.first_seq, _G.last_seq, _G.missing, _G.alert_id
        )
        .where(any_of(d, _G.facility_id, "p_facilities"), _G.filled_at.is_(None))
        .order_by(_G.id)
    )
)
_TRACK_NODE = Prepared(
    lambda d: upsert(
        d,
        nodes,
        ("facility_id", "node_id"),
        facility_id=bindparam("p_facility"),
        node_id=bindparam("p_node"),
        door_id=bindparam("p_door"),
        last_seen=bindparam("p_now"),
        last_event_ts=bindparam("p_ts"),
        last_seq=bindparam("p_seq"),
    )
)
_LAST_ROW = Prepared(
    lambda d: select(func.coalesce(func.max(_E.id), 0)).where(
        _E.facility_id == bindparam("p_facility")
    )
)
_ADD_ADJUSTMENT = Prepared(
    lambda d: (
        insert(adjustments)
        .values(
            facility_id=bindparam("p_facility"),
            zone_id=bindparam("p_zone"),
            kind=bindparam("p_kind"),
            value=bindparam("p_value"),
            delta=0,
            after_event=bindparam("p_after"),
            username=bindparam("p_user"),
            note=bindparam("p_note"),
            created_at=bindparam("p_now"),
        )
        .returning(_J.id)
    )
)
_ADJUSTED = Prepared(
    lambda d: (
        update(adjustments).where(_J.id == bindparam("p_id")).values(delta=bindparam("p_delta"))
    )
)


def _counting_event(dialect: str, row: Sequence[Any]) -> CountingEvent:
    return counting_event((row[0], from_driver_time(dialect, row[1]), *row[2:]))


class SqlCounting:
    """``hub.counting.service.CountingStore`` on one connection, in its transaction."""

    def __init__(self, db: Database, conn: Connection, now: datetime) -> None:
        self.db = db
        self.conn = conn
        self.now = now
        self.dialect = conn.dialect.name
        self.stamp = driver_time(self.dialect, now)

    def lock(self, facility_ids: Sequence[str]) -> Mapping[str, FacilityConfig]:
        return self.db._lock_facilities(self.conn, facility_ids)

    def known(self, event_ids: Sequence[str]) -> set[str]:
        rows = _KNOWN.rows(self.conn, p_ids=listed(self.dialect, event_ids))
        return {row[0] for row in rows}

    def start(self, facility_id: str, point: CountKey) -> Start:
        conn, dialect = self.conn, self.dialect
        at_ms, rank, seq, event_id = point
        at = driver_time(dialect, from_ms(at_ms))
        if rank == EVENT_RANK:
            found = _BEFORE_EVENT.rows(
                conn, p_facility=facility_id, p_ts=at, p_seq=seq, p_event=event_id
            )
        else:
            found = _BEFORE_TIME.rows(conn, p_facility=facility_id, p_ts=at)
        if not found:
            snapshot = Snapshot()
            stored = _ALL_COUNTED.rows(conn, p_facility=facility_id)
            made = _ALL_ADJUSTED.rows(conn, p_facility=facility_id)
        else:
            ts, row_seq, row_event, after, zones, peak = found[0]
            minute = minute_of(from_driver_time(dialect, ts))
            snapshot = Snapshot(after, zones_from(zones), minute, peak)
            stored = _LATER.rows(
                conn, p_facility=facility_id, p_ts=ts, p_seq=row_seq, p_event=row_event
            )
            made = _ADJUSTED_SINCE.rows(conn, p_facility=facility_id, p_ts=ts)
        return Start(
            snapshot,
            [_counting_event(dialect, row) for row in stored],
            [made_adjustment((*row[:4], from_driver_time(dialect, row[4]))) for row in made],
        )

    def counters(self, facility_id: str) -> dict[str, int]:
        return dict(_COUNTERS.rows(self.conn, p_facility=facility_id))

    def add_events(
        self, events_: Sequence[Event], counted: Mapping[str, tuple[Counted, int | None]]
    ) -> int:
        dialect, received = self.dialect, self.stamp
        rows: list[tuple[Any, ...]] = []
        for event in events_:
            value, alert_id = counted.get(event.event_id, (_NOT_COUNTED, None))
            rows.append(
                (
                    event.event_id, event.facility_id, event.node_id, event.door_id, event.seq,
                    driver_time(dialect, event.ts), event.kind.value, event.direction,
                    event.subject, event.signal, event.admit, event.reason, event.message,
                    event.detail, event.late, received, value.delta, value.flag, value.after,
                    value.zones, value.peak, alert_id,
                )
            )  # fmt: skip
        # Only an event of another facility's batch can be stored meanwhile (this facility
        # is locked): a forged or reused id. ``StoreConflict``: counted without it next try.
        insert_rows(self.conn, events, EVENT_COLUMNS, rows, unique="event_id")
        return len(rows)

    def recounted(self, changed: Sequence[tuple[CountingEvent, Counted, int | None]]) -> None:
        update_rows(
            self.conn,
            events,
            "id",
            RECOUNTED,
            [(e.row_id, c.delta, c.flag, c.after, c.zones, c.peak, alert_id)
             for e, c, alert_id in changed],
        )  # fmt: skip

    def set_counters(self, facility_id: str, counters: Mapping[str, int]) -> None:
        _SET_COUNT.many(
            self.conn,
            [
                {"p_facility": facility_id, "p_zone": zone, "p_value": value, "p_now": self.stamp}
                for zone, value in sorted(counters.items())
            ],
        )

    def add_samples(self, facility_id: str, samples: Sequence[Sample]) -> None:
        _SAMPLE.many(
            self.conn,
            [
                {"p_facility": facility_id, "p_minute": driver_time(self.dialect, s.minute),
                 "p_occupancy": s.occupancy, "p_peak": s.peak}
                for s in samples
            ],
        )  # fmt: skip

    def raise_alert(
        self,
        facility_id: str,
        kind: str,
        message: str,
        *,
        node_id: str | None = None,
        door_id: str | None = None,
        event_id: str | None = None,
        times: int = 1,
    ) -> Alert:
        return raise_alert(
            self.conn,
            facility_id,
            kind,
            message,
            self.now,
            node_id=node_id,
            door_id=door_id,
            event_id=event_id,
            times=times,
        )

    def take_back(self, alert_id: int) -> None:
        take_back(self.conn, alert_id, self.now)

    def name_latest_exit(self, alert_id: int) -> None:
        name_latest_exit(self.conn, alert_id)

    def alert(self, alert_id: int) -> Alert | None:
        return alert_by_id(self.conn, alert_id)

    def clear_alerts(self, alert_ids: Sequence[int]) -> list[Alert]:
        return clear_ids(self.conn, self.dialect, alert_ids, self.now)

    def record_visits(self, events_: Sequence[Event]) -> None:
        self.db._record_visits(self.conn, events_)  # type: ignore[attr-defined]

    def nodes(self, keys: Sequence[NodeKey]) -> dict[NodeKey, tuple[int, datetime | None]]:
        wanted = set(keys)
        facility_ids = listed(self.dialect, sorted({facility_id for facility_id, _ in keys}))
        return {
            (facility_id, node_id): (
                last_seq,
                None if last_ts is None else from_driver_time(self.dialect, last_ts),
            )
            for facility_id, node_id, last_seq, last_ts in _NODES.rows(
                self.conn, p_facilities=facility_ids
            )
            if (facility_id, node_id) in wanted
        }

    def open_gaps(self, keys: Sequence[NodeKey]) -> dict[NodeKey, list[OpenGap]]:
        wanted = set(keys)
        facility_ids = listed(self.dialect, sorted({facility_id for facility_id, _ in keys}))
        found: dict[NodeKey, list[OpenGap]] = {}
        for facility_id, node_id, *gap in _OPEN_GAPS.rows(self.conn, p_facilities=facility_ids):
            if (facility_id, node_id) in wanted:
                found.setdefault((facility_id, node_id), []).append(OpenGap(*gap))
        return found

    def add_gaps(self, found: Sequence[tuple[str, str, int, int, int]]) -> list[Gap]:
        made = insert_returning(
            self.conn,
            gaps,
            ("facility_id", "node_id", "first_seq", "last_seq", "missing", "detected_at",
             "alert_id"),
            [(facility_id, node_id, first, last, last - first + 1, self.stamp, alert_id)
             for facility_id, node_id, first, last, alert_id in found],
            ("id", "facility_id", "node_id", "first_seq"),
        )  # fmt: skip
        ids = {(facility_id, node_id, first): id_ for id_, facility_id, node_id, first in made}
        return [
            Gap(
                id=int(ids[facility_id, node_id, first]),
                facility_id=facility_id,
                node_id=node_id,
                first_seq=first,
                last_seq=last,
                missing=last - first + 1,
                detected_at=self.now,
                alert_id=alert_id,
            )
            for facility_id, node_id, first, last, alert_id in found
        ]

    def fill_gaps(self, missing: Mapping[int, int]) -> None:
        update_rows(
            self.conn,
            gaps,
            "id",
            ("missing", "filled_at"),
            [(gap_id, left, self.stamp if left <= 0 else None) for gap_id, left in missing.items()],
        )

    def track_nodes(self, seen: Sequence[NodeSeen]) -> None:
        _TRACK_NODE.many(
            self.conn,
            [
                {"p_facility": n.facility_id, "p_node": n.node_id, "p_door": n.door_id,
                 "p_now": self.stamp, "p_ts": driver_time(self.dialect, n.last_event_ts),
                 "p_seq": n.last_seq}
                for n in seen
            ],
        )  # fmt: skip

    def add_adjustment(
        self, facility_id: str, zone_id: str | None, kind: str, value: int, user: str, note: str
    ) -> int:
        after = _LAST_ROW.rows(self.conn, p_facility=facility_id)[0][0]
        row = _ADD_ADJUSTMENT.rows(
            self.conn,
            p_facility=facility_id,
            p_zone=zone_id,
            p_kind=kind,
            p_value=value,
            p_after=after,
            p_user=user,
            p_note=note,
            p_now=self.stamp,
        )
        return int(row[0][0])

    def adjusted(self, adjustment_id: int, delta: int) -> None:
        _ADJUSTED.run(self.conn, p_id=adjustment_id, p_delta=delta)

    def audit(self, user: str, action: str, facility_id: str, target: str, detail: str) -> None:
        record_audit(self.conn, user, action, facility_id, target, detail)


class Batches:
    """Storing batches of events and staff adjustments, counted by ``hub.counting``: a
    part of the store (``hub.store.Store``)."""

    def store_batch(
        self: Database, events: Sequence[Event], received_at: datetime | None = None
    ) -> BatchResult:
        """Store new events, skip known ones, count them in the order of their own times
        (correcting what a late one changes), track seq gaps: one transaction."""
        if not events:
            return BatchResult()
        for event in events:
            if event.ts.tzinfo is None:
                raise ValueError(f"event {event.event_id}: ts has no time zone")
        now = ms(received_at or utcnow())
        return self._sa(
            "store events",
            lambda conn: Counting(SqlCounting(self, conn, now), now).store_batch(events),
        )

    def adjust(
        self: Database,
        facility_id: str,
        kind: AdjustmentKind,
        value: int,
        user: str,
        note: str = "",
        *,
        zone_id: str | None = None,
    ) -> Adjustment:
        """Set a headcount by hand (``correction``) or zero it (``reset``), recording who."""
        value, zone_id = check_adjustment(
            facility_id, self.configured.get(facility_id), kind, value, user, zone_id
        )
        now = ms(utcnow())
        return self._sa(
            "adjust the occupancy",
            lambda conn: Counting(SqlCounting(self, conn, now), now).adjust(
                facility_id, kind, value, user, note, zone_id
            ),
        )
