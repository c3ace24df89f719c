"""The events' path as both databases run it: counting every facility again from its
stored events and adjustments (``rebuild_occupancy``, and a migration that changes how
events count), in the counting order of ``hub.counting.rules``."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, delete, insert, select, tuple_

from hub.counting.rules import (
    WHOLE,
    Counted,
    CountingEvent,
    MadeAdjustment,
    Snapshot,
    counts,
    event_key,
    make_occupancy,
    recount,
)
from hub.records import AdjustmentKind, Occupancy
from hub.store.dialect import lock_all, ms, update_rows
from hub.store.facilities import read_settings
from hub.store.tables import adjustments, events, occupancy, occupancy_history
from protocol.events import utcnow

if TYPE_CHECKING:
    from hub.store.dialect import Database

logger = logging.getLogger(__name__)

_E = events.c
_J = adjustments.c
_H = occupancy_history.c
_PAGE = 5000  # events read at a time when every facility is counted again
# An event as counting sees it (``CountingEvent``).
COUNTING = (_E.id, _E.ts, _E.seq, _E.event_id, _E.node_id, _E.door_id, _E.kind, _E.direction,
            _E.delta, _E.flag, _E.occupancy_after, _E.zones_after, _E.minute_peak,
            _E.alert_id)  # fmt: skip
ADJUSTMENT = (_J.id, _J.zone_id, _J.kind, _J.value, _J.created_at)
ORDER = (_E.ts, _E.seq, _E.event_id)  # the counting order
_COUNTABLE = _E.kind.in_(("entry", "exit", "manual"))
# What counting again changes of a stored event (``update_rows`` with the event's id first).
RECOUNTED = ("delta", "flag", "occupancy_after", "zones_after", "minute_peak", "alert_id")


def counting_event(row: Sequence[Any]) -> CountingEvent:
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


def made_adjustment(row: Sequence[Any]) -> MadeAdjustment:
    id_, zone_id, kind, value, created_at = row
    return MadeAdjustment(id_, zone_id, cast(AdjustmentKind, kind), value, created_at)


def _all_counting(conn: Connection, facility_id: str) -> Iterator[CountingEvent]:
    """The facility's events that count, in the counting order, a page at a time (each
    page read whole, so the rows counted differently can be written in between)."""
    query = (
        select(*COUNTING)
        .where(_E.facility_id == facility_id, _COUNTABLE)
        .order_by(*ORDER)
        .limit(_PAGE)
    )
    after: tuple[Any, ...] | None = None
    while True:
        page = query if after is None else query.where(tuple_(*ORDER) > tuple_(*after))
        rows = conn.execute(page).all()
        for row in rows:
            if counts(row[6], row[7]):
                yield counting_event(row)
        if len(rows) < _PAGE:
            return
        after = tuple(rows[-1][1:4])


def recount_all(store: Database, conn: Connection, now: datetime) -> dict[str, Snapshot]:
    """Count every facility again from its first event, in the counting order: the
    events' values, the counters and the history are rewritten to what it finds."""
    now = ms(now)
    made: dict[str, list[MadeAdjustment]] = {}
    for row in conn.execute(select(_J.facility_id, *ADJUSTMENT)):
        made.setdefault(row[0], []).append(made_adjustment(row[1:]))
    facility_ids = set(conn.execute(select(_E.facility_id).distinct()).scalars())
    finals: dict[str, Snapshot] = {}
    fixes: list[tuple[Any, ...]] = []
    changed = 0

    def flush() -> None:
        if fixes:
            update_rows(conn, events, "id", RECOUNTED, fixes)
            fixes.clear()

    def fix(event: CountingEvent, counted: Counted) -> None:
        nonlocal changed
        changed += 1
        alert_id = event.alert_id if counted.flag else None
        fixes.append(
            (event.row_id, counted.delta, counted.flag, counted.after, counted.zones,
             counted.peak, alert_id)
        )  # fmt: skip
        if len(fixes) >= _PAGE:
            flush()

    for facility_id in sorted(facility_ids | set(made)):
        result = recount(
            facility_id,
            store.facilities.get(facility_id),
            Snapshot(),
            _all_counting(conn, facility_id),
            (),
            made.get(facility_id, ()),
            on_changed=fix,
        )
        flush()
        finals[facility_id] = result.final
        conn.execute(delete(occupancy_history).where(_H.facility_id == facility_id))
        if result.samples:
            conn.execute(
                insert(occupancy_history),
                [
                    {"facility_id": facility_id, "minute": s.minute, "occupancy": s.occupancy,
                     "peak": s.peak}
                    for s in result.samples
                ],
            )  # fmt: skip
    if changed:
        logger.warning("rebuild: %d events counted differently now", changed)
    conn.execute(delete(occupancy))
    rows = [
        {"facility_id": f, "zone_id": zone, "value": value, "updated_at": now}
        for f, final in sorted(finals.items())
        for zone, value in sorted({WHOLE: final.count, **final.zones}.items())
    ]
    if rows:
        conn.execute(insert(occupancy), rows)
    return finals


class Events:
    """The events' path written once: a part of the store (``hub.store.Store``)."""

    def rebuild_occupancy(self: Database) -> dict[str, Occupancy]:
        """Count every facility again from its stored events and adjustments, in the
        counting order (``hub.counting.rules``): the same counters live counting keeps."""
        now = ms(utcnow())

        def rebuild(conn: Connection) -> dict[str, Snapshot]:
            # Waits for every transaction holding a facility's lock, and keeps new ones out
            # until the counters are rebuilt.
            lock_all(self.dialect, conn)
            if self.several_writers:
                read_settings(self, conn)
            return recount_all(self, conn, now)

        finals = self._sa("rebuild the occupancy", rebuild)
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
