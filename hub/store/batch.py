"""The events' path, written once for SQLite and PostgreSQL: a batch of events stored in
one transaction, counted in the events' own order (``hub.counting.rules``), with the alerts it
raises, the visits it closes and each node's sequence tracked; and a staff adjustment,
counted in its place the same way.

Every statement is a ``Prepared`` one: compiled once per database by SQLAlchemy and run on
the driver's own cursor with the driver's own values (``driver_time``), as the ingest runs
it thousands of times a second. What the two databases do differently is in
``hub.store.dialect``: the facilities' locks (``Database._lock_facilities``), the bulk
insert (``insert_rows``) and the form of a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, func, insert, select, tuple_, update

from hub.counting.rules import (
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
    epoch_ms,
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
from hub.records import Adjustment, AdjustmentKind, Alert, AlertKind, BatchResult, Flagged, Gap
from hub.store.accounts import record_audit
from hub.store.alerts import clear_ids, flag_alerts, raise_alert, touched_alerts
from hub.store.dialect import (
    Prepared,
    StoreConflict,
    any_of,
    driver_time,
    from_driver_time,
    insert_rows,
    listed,
    ms,
    upsert,
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
_ORDER = (_E.ts, _E.seq, _E.event_id)
_NEWEST_FIRST = (_E.ts.desc(), _E.seq.desc(), _E.event_id.desc())
_COUNTED = _E.occupancy_after.is_not(None)
_START = (_E.ts, _E.seq, _E.event_id, _E.occupancy_after, _E.zones_after, _E.minute_peak)
# An event as counting sees it (``CountingEvent``).
_COUNTING = (_E.id, _E.ts, _E.seq, _E.event_id, _E.node_id, _E.door_id, _E.kind,
             _E.direction, _E.delta, _E.flag, _E.occupancy_after, _E.zones_after,
             _E.minute_peak, _E.alert_id)  # fmt: skip
_ADJUSTMENT = (_J.id, _J.zone_id, _J.kind, _J.value, _J.created_at)
_P_KEY = tuple_(bindparam("p_ts"), bindparam("p_seq"), bindparam("p_event"))
_OF_FACILITY = _E.facility_id == bindparam("p_facility")

_KNOWN = Prepared(lambda d: select(_E.event_id).where(any_of(d, _E.event_id, "p_ids")))
# The last counted event before a point of the order: one step back along the index.
_BEFORE_EVENT = Prepared(
    lambda d: (
        select(*_START)
        .where(_OF_FACILITY, tuple_(*_ORDER) < _P_KEY, _COUNTED)
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
        select(*_COUNTING).where(_OF_FACILITY, _COUNTED, tuple_(*_ORDER) > _P_KEY).order_by(*_ORDER)
    )
)
_ALL_COUNTED = Prepared(
    lambda d: select(*_COUNTING).where(_OF_FACILITY, _COUNTED).order_by(*_ORDER)
)
_ADJUSTED_SINCE = Prepared(
    lambda d: select(*_ADJUSTMENT).where(
        _J.facility_id == bindparam("p_facility"), _J.created_at >= bindparam("p_ts")
    )
)
_ALL_ADJUSTED = Prepared(
    lambda d: select(*_ADJUSTMENT).where(_J.facility_id == bindparam("p_facility"))
)
_COUNTERS = Prepared(
    lambda d: select(_O.zone_id, _O.value).where(_O.facility_id == bindparam("p_facility"))
)
_FIX = Prepared(
    lambda d: (
        update(events)
        .where(_E.id == bindparam("p_id"))
        .values(
            delta=bindparam("p_delta"),
            flag=bindparam("p_flag"),
            occupancy_after=bindparam("p_after"),
            zones_after=bindparam("p_zones"),
            minute_peak=bindparam("p_peak"),
            alert_id=bindparam("p_alert"),
        )
    )
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
_ADD_GAP = Prepared(
    lambda d: (
        insert(gaps)
        .values(
            facility_id=bindparam("p_facility"),
            node_id=bindparam("p_node"),
            first_seq=bindparam("p_first"),
            last_seq=bindparam("p_last"),
            missing=bindparam("p_missing"),
            detected_at=bindparam("p_now"),
            alert_id=bindparam("p_alert"),
        )
        .returning(_G.id)
    )
)
_FILL_GAP = Prepared(
    lambda d: (
        update(gaps)
        .where(_G.id == bindparam("p_id"))
        .values(missing=bindparam("p_missing"), filled_at=bindparam("p_filled"))
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


def store_batch(
    db: Database, conn: Connection, batch: Sequence[Event], now: datetime
) -> BatchResult:
    """Store ``batch`` in the transaction of ``conn``: the new events counted in their
    place, the duplicates left out (``BatchResult``)."""
    dialect = conn.dialect.name
    facilities = db._lock_facilities(conn, sorted({e.facility_id for e in batch}))
    ids = list(dict.fromkeys(e.event_id for e in batch))
    known = {row[0] for row in _KNOWN.rows(conn, p_ids=listed(dialect, ids))}
    new: list[Event] = []
    duplicates: list[str] = []
    for event in batch:
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
                    (epoch_ms(event.ts), EVENT_RANK, event.seq, event.event_id),
                    event.node_id,
                    event.door_id,
                    event.kind,  # a str: its .value costs, once per event
                    event.direction,
                )
            )
    work = [
        _count(conn, facilities.get(facility_id), facility_id, by_facility[facility_id], now)
        for facility_id in sorted(by_facility)
    ]
    counted: dict[str, tuple[Counted, int | None]] = {}
    for part in work:
        counted.update(part.counted())
    received = driver_time(dialect, now)
    rows: list[tuple[Any, ...]] = []
    alerts: dict[int, Alert] = {}
    for event in new:
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
        raised = alert_for(event)
        if raised:
            alert = raise_alert(
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
    inserted = insert_rows(conn, events, EVENT_COLUMNS, rows, unique="event_id")
    if inserted != len(new):
        # Only an event of another facility's batch can get here first (this facility is
        # locked): a forged or reused id. Counted without it on the next try.
        raise StoreConflict(f"{len(new) - inserted} events were stored meanwhile")
    flagged: list[Flagged] = []
    cleared: list[Alert] = []
    changed_occupancy = {}
    corrected: dict[str, datetime] = {}
    for part in work:
        done = _persist(conn, facilities.get(part.recount.facility_id), part, now)
        flagged += done.flagged
        alerts.update((a.id, a) for a in done.alerts)
        cleared += done.cleared
        if done.occupancy is not None:
            changed_occupancy[part.recount.facility_id] = done.occupancy
        if part.replayed and part.recount.samples:
            corrected[part.recount.facility_id] = part.recount.samples[0].minute
    # In this same transaction: an exit and the visit it closes are stored together.
    db._record_visits(conn, new)  # type: ignore[attr-defined]
    found, gap_alerts, gap_cleared = _track_nodes(conn, new, now)
    alerts.update((a.id, a) for a in gap_alerts)
    return BatchResult(
        stored=new,
        duplicates=duplicates,
        gaps=found,
        flagged=flagged,
        alerts=list(alerts.values()),
        cleared=cleared + gap_cleared,
        occupancy=changed_occupancy,
        corrected=corrected,
    )


def _counting_event(dialect: str, row: Sequence[Any]) -> CountingEvent:
    (id_, ts, seq, event_id, node_id, door_id, kind, direction, delta, flag, after, zones,
     peak, alert_id) = row  # fmt: skip
    return CountingEvent(
        (epoch_ms(from_driver_time(dialect, ts)), EVENT_RANK, seq, event_id),
        node_id,
        door_id,
        kind,
        direction,
        row_id=id_,
        stored=Counted(delta, flag, after, zones, peak),
        alert_id=alert_id,
    )


def _count(
    conn: Connection,
    facility: FacilityConfig | None,
    facility_id: str,
    new: Sequence[CountingEvent],
    now: datetime,
    point: CountKey | None = None,
) -> FacilityCount:
    """Count a facility's ``new`` events (or, from ``point``, an adjustment just made) in
    their place: from the counts kept with the last event before them, with the events
    and adjustments after it counted again. Raises and reduces the alerts of the flags
    that change. The facility is locked (or the store has one writer): nothing of it
    changes meanwhile."""
    dialect = conn.dialect.name
    at_ms, rank, seq, event_id = point or min(e.key for e in new)
    at = driver_time(dialect, from_ms(at_ms))
    if rank == EVENT_RANK:
        found = _BEFORE_EVENT.rows(
            conn, p_facility=facility_id, p_ts=at, p_seq=seq, p_event=event_id
        )
    else:
        found = _BEFORE_TIME.rows(conn, p_facility=facility_id, p_ts=at)
    if not found:
        start = Snapshot()
        stored_rows = _ALL_COUNTED.rows(conn, p_facility=facility_id)
        made_rows = _ALL_ADJUSTED.rows(conn, p_facility=facility_id)
    else:
        ts, row_seq, row_event, after, zones, peak = found[0]
        start = Snapshot(after, zones_from(zones), minute_of(from_driver_time(dialect, ts)), peak)
        stored_rows = _LATER.rows(
            conn, p_facility=facility_id, p_ts=ts, p_seq=row_seq, p_event=row_event
        )
        made_rows = _ADJUSTED_SINCE.rows(conn, p_facility=facility_id, p_ts=ts)
    stored = [_counting_event(dialect, row) for row in stored_rows]
    made = [
        MadeAdjustment(id_, zone_id, kind, value, from_driver_time(dialect, created_at))
        for id_, zone_id, kind, value, created_at in made_rows
    ]
    result = recount(facility_id, facility, start, stored, new, made)
    counters = dict(_COUNTERS.rows(conn, p_facility=facility_id))
    part = FacilityCount(result, counters, replayed=bool(stored))
    flag_alerts(conn, part, now)
    return part


def _persist(
    conn: Connection, facility: FacilityConfig | None, part: FacilityCount, now: datetime
) -> Persisted:
    """Write what counting changed besides the new events: the stored events counted
    differently, the alerts' latest exits, the counters and the history."""
    dialect = conn.dialect.name
    result = part.recount
    facility_id = result.facility_id
    fixes = [
        {"p_delta": c.delta, "p_flag": c.flag, "p_after": c.after, "p_zones": c.zones,
         "p_peak": c.peak, "p_alert": part.alert_ids.get(e.event_id, e.alert_id),
         "p_id": e.row_id}
        for e, c in result.changed
        if e.row_id is not None
    ]  # fmt: skip
    _FIX.many(conn, fixes)
    changed = part.counters
    stamp = driver_time(dialect, now)
    _SET_COUNT.many(
        conn,
        [
            {"p_facility": facility_id, "p_zone": zone, "p_value": value, "p_now": stamp}
            for zone, value in sorted(changed.items())
        ],
    )
    _SAMPLE.many(
        conn,
        [
            {"p_facility": facility_id, "p_minute": driver_time(dialect, s.minute),
             "p_occupancy": s.occupancy, "p_peak": s.peak}
            for s in result.samples
        ],
    )  # fmt: skip
    alerts, cleared = touched_alerts(conn, part)
    occupancy_now = None
    if changed:
        final = result.final
        occupancy_now = make_occupancy(facility, facility_id, final.count, final.zones, now)
    flagged = [Flagged(e.event_id, facility_id, e.door_id, c.flag or "") for e, c in result.flagged]
    return Persisted(flagged, alerts, cleared, occupancy_now)


def _track_nodes(
    conn: Connection, new: Sequence[Event], now: datetime
) -> tuple[list[Gap], list[Alert], list[Alert]]:
    """Update each node's last seq and time; find seq gaps, fill old ones.

    The batch's nodes, and their open gaps, are read a statement for all of them: when
    several workers share a node's events, each batch finds gaps the others fill, and a
    round trip per node would add up.
    """
    dialect = conn.dialect.name
    by_node: dict[tuple[str, str], list[Event]] = {}
    for event in new:
        by_node.setdefault((event.facility_id, event.node_id), []).append(event)
    keys = sorted(by_node)
    facility_ids = listed(dialect, sorted({facility_id for facility_id, _ in keys}))
    known = {
        (facility_id, node_id): (last_seq, last_ts)
        for facility_id, node_id, last_seq, last_ts in _NODES.rows(conn, p_facilities=facility_ids)
        if (facility_id, node_id) in by_node
    }
    open_gaps: dict[tuple[str, str], list[OpenGap]] = {}
    if any(e.seq <= known.get(key, (0, None))[0] for key in keys for e in by_node[key]):
        for facility_id, node_id, *gap in _OPEN_GAPS.rows(conn, p_facilities=facility_ids):
            open_gaps.setdefault((facility_id, node_id), []).append(OpenGap(*gap))
    stamp = driver_time(dialect, now)
    alerts: list[Alert] = []
    found: list[Gap] = []
    filled: dict[int, int] = {}  # gap id -> still missing
    to_clear: set[int] = set()
    tracked: list[dict[str, Any]] = []
    for key in keys:
        facility_id, node_id = key
        node_events = by_node[key]
        last_seq, last_ts = known.get(key, (0, None))
        seqs = [e.seq for e in node_events]
        ranges = gap_ranges(last_seq, seqs)
        if ranges:
            # One open alert per node, counted once per gap.
            alert = raise_alert(
                conn,
                facility_id,
                AlertKind.SEQ_GAP,
                seq_gap_message(node_id, *ranges[-1]),
                now,
                node_id=node_id,
                times=len(ranges),
            )
            alerts.append(alert)
            for first, last in ranges:
                gap_id = _ADD_GAP.rows(
                    conn,
                    p_facility=facility_id,
                    p_node=node_id,
                    p_first=first,
                    p_last=last,
                    p_missing=last - first + 1,
                    p_now=stamp,
                    p_alert=alert.id,
                )[0][0]
                found.append(
                    Gap(
                        id=int(gap_id),
                        facility_id=facility_id,
                        node_id=node_id,
                        first_seq=first,
                        last_seq=last,
                        missing=last - first + 1,
                        detected_at=ms(now),
                        alert_id=alert.id,
                    )
                )
        reset: list[int] = []
        late = sorted({s for s in seqs if s <= last_seq})
        if late:
            node_gaps = open_gaps.get(key, [])
            fill = fill_gaps(node_gaps, late)
            filled.update(fill.missing)
            # A gap found by this batch is open (and shares the node's alert): the alert
            # ends only when nothing of the node is missing any more.
            if fill.all_filled and not ranges:
                to_clear.update(g.alert_id for g in node_gaps if g.alert_id is not None)
            reset = fill.unmatched
            if reset:
                alerts.append(
                    raise_alert(
                        conn,
                        facility_id,
                        AlertKind.SEQ_RESET,
                        seq_reset_message(node_id, reset[0], last_seq),
                        now,
                        node_id=node_id,
                    )
                )
        newest = max(node_events, key=lambda e: e.seq)
        event_ts = driver_time(dialect, max(e.ts for e in node_events))
        if last_ts is not None and last_ts > event_ts:
            event_ts = last_ts
        tracked.append(
            {
                "p_facility": facility_id,
                "p_node": node_id,
                "p_door": newest.door_id,
                "p_now": stamp,
                "p_ts": event_ts,
                "p_seq": followed_seq(last_seq, seqs, reset),
            }
        )
    _FILL_GAP.many(
        conn,
        [
            {"p_id": gap_id, "p_missing": missing, "p_filled": stamp if missing <= 0 else None}
            for gap_id, missing in filled.items()
        ],
    )
    cleared = clear_ids(conn, dialect, sorted(to_clear), now) if to_clear else []
    _TRACK_NODE.many(conn, tracked)
    return found, alerts, cleared


def adjust(
    db: Database,
    conn: Connection,
    facility_id: str,
    kind: AdjustmentKind,
    value: int,
    user: str,
    note: str,
    zone_id: str | None,
    now: datetime,
) -> Adjustment:
    """A staff adjustment in the transaction of ``conn``, counted in its place: it follows
    every event stamped up to the time it was made (``check_adjustment`` checked it)."""
    dialect = conn.dialect.name
    facilities = db._lock_facilities(conn, [facility_id])
    facility = facilities.get(facility_id)
    stamp = driver_time(dialect, now)
    after = _LAST_ROW.rows(conn, p_facility=facility_id)[0][0]
    adjustment_id = int(
        _ADD_ADJUSTMENT.rows(
            conn,
            p_facility=facility_id,
            p_zone=zone_id,
            p_kind=kind,
            p_value=value,
            p_after=after,
            p_user=user,
            p_note=note,
            p_now=stamp,
        )[0][0]
    )
    # Events stamped later (a door whose clock runs ahead) are counted after it.
    part = _count(conn, facility, facility_id, [], now, point=adjustment_key(now, adjustment_id))
    _persist(conn, facility, part, now)
    delta = part.recount.adjusted[adjustment_id]
    _ADJUSTED.run(conn, p_id=adjustment_id, p_delta=delta)
    target = f"{facility_id}/{zone_id}" if zone_id else facility_id
    record_audit(
        conn, user, f"occupancy.{kind}", facility_id, target, f"{value} ({delta:+d}) {note}"
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
        occupancy=make_occupancy(facility, facility_id, final.count, final.zones, now),
    )


class Batches:
    """Storing batches of events and staff adjustments: a part of the store
    (``hub.store.Store``)."""

    def store_batch(
        self: Database, events: Sequence[Event], received_at: datetime | None = None
    ) -> BatchResult:
        if not events:
            return BatchResult()
        for event in events:
            if event.ts.tzinfo is None:
                raise ValueError(f"event {event.event_id}: ts has no time zone")
        now = ms(received_at or utcnow())
        return self._sa("store events", lambda conn: store_batch(self, conn, events, now))

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
        value, zone_id = check_adjustment(
            facility_id, self.configured.get(facility_id), kind, value, user, zone_id
        )
        now = ms(utcnow())
        return self._sa(
            "adjust the occupancy",
            lambda conn: adjust(self, conn, facility_id, kind, value, user, note, zone_id, now),
        )
