"""What the dashboard, the API and tracing read of the events' path: events, seq gaps,
alerts, nodes, adjustments and the occupancy history (the stores write them)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, Integer, Select, and_, bindparam, func, or_, select

from hub.records import (
    Adjustment,
    AdjustmentKind,
    Alert,
    EventPage,
    Gap,
    HistorySample,
    NodeView,
    StoredEvent,
)
from hub.store.dialect import PreparedFamily, bytewise, driver_time, from_driver_time
from hub.store.tables import adjustments, alerts, events, gaps, nodes, occupancy_history
from protocol.events import Event

if TYPE_CHECKING:
    from hub.store.dialect import Database

MAX_PAGE = 1000
_E = events.c
EVENT_FIELDS = (
    "event_id", "facility_id", "node_id", "door_id", "seq", "ts", "kind", "direction",
    "subject", "signal", "admit", "reason", "message", "detail", "late",
)  # fmt: skip
_STORED = (_E.id, *(_E[name] for name in EVENT_FIELDS), _E.received_at, _E.delta, _E.flag)
_A = alerts.c
ALERT = tuple(alerts.c)
OPEN = (_A.acknowledged_at.is_(None), _A.cleared_at.is_(None))
_N = nodes.c
NODE = (
    _N.facility_id, _N.node_id, _N.door_id, _N.state, _N.problems, _N.trust_list_age_s,
    _N.status_list_age_s, _N.direction, _N.status_ts, _N.state_since, _N.last_seen,
    _N.last_event_ts, _N.last_seq,
)  # fmt: skip


def stored_event(row: Sequence[Any]) -> StoredEvent:
    data = {name: value for name, value in zip(EVENT_FIELDS, row[1:16], strict=True)
            if value is not None}  # fmt: skip
    data["late"] = bool(data.get("late"))
    if "admit" in data:
        data["admit"] = bool(data["admit"])
    return StoredEvent(
        id=row[0], event=Event.model_validate(data), received_at=row[16], delta=row[17],
        flag=row[18],
    )  # fmt: skip


def alert_of(row: Sequence[Any]) -> Alert:
    (id_, facility_id, kind, message, node_id, door_id, event_id, count, created_at,
     last_at, acked_by, acked_at, cleared_at) = row  # fmt: skip
    return Alert(
        id=id_, facility_id=facility_id, kind=kind, message=message, created_at=created_at,
        last_at=last_at, count=count, node_id=node_id, door_id=door_id, event_id=event_id,
        acknowledged_by=acked_by, acknowledged_at=acked_at, cleared_at=cleared_at,
    )  # fmt: skip


def node_of(row: Sequence[Any]) -> NodeView:
    (facility_id, node_id, door_id, state, problems, trust_age, status_age, direction,
     status_ts, state_since, last_seen, last_event_ts, last_seq) = row  # fmt: skip
    return NodeView(
        facility_id=facility_id, node_id=node_id, door_id=door_id, state=state,
        problems=problems,
        trust_list_age_s=trust_age, status_list_age_s=status_age, direction=direction,
        status_ts=status_ts, state_since=state_since, last_seen=last_seen,
        last_event_ts=last_event_ts, last_seq=last_seq,
    )  # fmt: skip


_ALERT_TIMES = (8, 9, 11, 12)  # created_at, last_at, acknowledged_at, cleared_at of ``ALERT``


def driver_alert(dialect: str, row: Sequence[Any]) -> list[Any]:
    """A row of ``ALERT`` as the driver gives it, with its times as ``datetime``."""
    return [
        from_driver_time(dialect, value) if index in _ALERT_TIMES and value is not None else value
        for index, value in enumerate(row)
    ]


# The dashboard's and the API's most frequent reads, their filters as given: compiled once
# for each set of filters and database, and run on the driver (``PreparedFamily``).
_EVENT_FILTERS = {
    "p_facility": lambda: _E.facility_id == bindparam("p_facility"),
    "p_door": lambda: _E.door_id == bindparam("p_door"),
    "p_node": lambda: _E.node_id == bindparam("p_node"),
    "p_kind": lambda: _E.kind == bindparam("p_kind"),
    "p_subject": lambda: _E.subject == bindparam("p_subject"),
    "p_since": lambda: _E.ts >= bindparam("p_since"),
    "p_until": lambda: _E.ts < bindparam("p_until"),
    "p_before": lambda: _E.id < bindparam("p_before"),
}
_EVENTS = PreparedFamily(
    lambda dialect, given: (
        select(*_STORED)
        .where(*(_EVENT_FILTERS[name]() for name in sorted(given) if name in _EVENT_FILTERS))
        .order_by(_E.id.desc())
        .limit(bindparam("p_limit", type_=Integer))
    )
)
_ALERTS = PreparedFamily(
    lambda dialect, given: (
        select(*ALERT)
        .where(
            *([_A.facility_id == bindparam("p_facility")] if "p_facility" in given else []),
            *([_A.kind == bindparam("p_kind")] if "p_kind" in given else []),
            *(OPEN if "p_open" in given else ()),
        )
        .order_by(_A.id.desc())
        .limit(bindparam("p_limit", type_=Integer))
    )
)


def _all(db: Database, what: str, query: Select[Any]) -> list[Any]:
    return db._sa(what, lambda conn: list(conn.execute(query).all()), write=False)


class Reads:
    """The events' path as the dashboard reads it: a part of the store."""

    def events(
        self: Database,
        *,
        facility_id: str | None = None,
        door_id: str | None = None,
        node_id: str | None = None,
        kind: str | None = None,
        subject: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> EventPage:
        """Stored events, newest first; ``since``/``until`` bound the event time ``ts``."""
        limit = max(1, min(limit, MAX_PAGE))

        def read(conn: Connection) -> list[Any]:
            dialect = conn.dialect.name
            rows = _EVENTS.rows(
                conn,
                p_facility=facility_id,
                p_door=door_id,
                p_node=node_id,
                p_kind=None if kind is None else str(kind),
                p_subject=subject,
                p_since=None if since is None else driver_time(dialect, since),
                p_until=None if until is None else driver_time(dialect, until),
                p_before=before,
                p_limit=limit + 1,
            )
            return [
                (*row[:6], from_driver_time(dialect, row[6]), *row[7:16],
                 from_driver_time(dialect, row[16]), *row[17:])
                for row in rows
            ]  # fmt: skip

        rows = self._sa("read events", read, write=False)
        page = [stored_event(row) for row in rows[:limit]]
        return EventPage(page, page[-1].id if len(rows) > limit else None)

    def count_events(
        self: Database, facility_id: str | None = None, *, since: datetime | None = None
    ) -> int:
        """How many events are stored (for a facility, since an event time)."""
        query = select(func.count()).select_from(events)
        if facility_id is not None:
            query = query.where(_E.facility_id == facility_id)
        if since is not None:
            query = query.where(_E.ts >= since)
        return int(_all(self, "count events", query)[0][0])

    def event(self: Database, event_id: str) -> StoredEvent | None:
        rows = _all(self, "read an event", select(*_STORED).where(_E.event_id == event_id))
        return stored_event(rows[0]) if rows else None

    def last_passage(self: Database, facility_id: str, subject: str) -> StoredEvent | None:
        """The subject's latest passage in or out at the facility (by its time), or None."""
        query = (
            select(*_STORED)
            .where(
                _E.subject == subject,
                _E.facility_id == facility_id,
                or_(
                    _E.kind.in_(("entry", "exit")),
                    and_(_E.kind == "manual", _E.direction.in_(("entry", "exit"))),
                ),
            )
            .order_by(_E.ts.desc(), _E.seq.desc())
            .limit(1)
        )
        rows = _all(self, "read a subject's last passage", query)
        return stored_event(rows[0]) if rows else None

    def gaps(
        self: Database, facility_id: str | None = None, *, open_only: bool = True
    ) -> list[Gap]:
        query = select(*gaps.c)
        if facility_id is not None:
            query = query.where(gaps.c.facility_id == facility_id)
        if open_only:
            query = query.where(gaps.c.filled_at.is_(None))
        return [Gap(*row) for row in _all(self, "read gaps", query.order_by(gaps.c.id))]

    def alerts(
        self: Database,
        facility_id: str | None = None,
        *,
        open_only: bool = True,
        kind: str | None = None,
        limit: int = 200,
    ) -> list[Alert]:
        """Alerts, newest first."""

        def read(conn: Connection) -> list[Alert]:
            rows = _ALERTS.rows(
                conn,
                p_facility=facility_id,
                p_kind=None if kind is None else str(kind),
                p_open=True if open_only else None,
                p_limit=max(1, min(limit, MAX_PAGE)),
            )
            return [alert_of(driver_alert(conn.dialect.name, row)) for row in rows]

        return self._sa("read alerts", read, write=False)

    def nodes(self: Database, facility_id: str | None = None) -> list[NodeView]:
        query = select(*NODE)
        if facility_id is None:
            query = query.order_by(bytewise(self.dialect, _N.facility_id))
        else:
            query = query.where(_N.facility_id == facility_id)
        query = query.order_by(bytewise(self.dialect, _N.node_id))
        return [node_of(row) for row in _all(self, "read nodes", query)]

    def adjustments(self: Database, facility_id: str, *, limit: int = 100) -> list[Adjustment]:
        c = adjustments.c
        query = (
            select(c.id, c.facility_id, c.zone_id, c.kind, c.value, c.delta, c.username, c.note,
                   c.created_at)
            .where(c.facility_id == facility_id)
            .order_by(c.id.desc())
            .limit(max(1, min(limit, MAX_PAGE)))
        )  # fmt: skip
        return [
            Adjustment(id=r[0], facility_id=r[1], zone_id=r[2], kind=cast(AdjustmentKind, r[3]),
                       value=r[4], delta=r[5], user=r[6], note=r[7], created_at=r[8])
            for r in _all(self, "read adjustments", query)
        ]  # fmt: skip

    def history(
        self: Database,
        facility_id: str,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[HistorySample]:
        """Occupancy per minute of the events' own time (minutes something was counted
        in only), oldest first."""
        h = occupancy_history.c
        query = select(h.facility_id, h.minute, h.occupancy, h.peak).where(
            h.facility_id == facility_id
        )
        if since is not None:
            query = query.where(h.minute >= since.astimezone(UTC).replace(second=0, microsecond=0))
        if until is not None:
            query = query.where(h.minute < until)
        return [
            HistorySample(*row) for row in _all(self, "read the history", query.order_by(h.minute))
        ]
