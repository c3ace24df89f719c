"""Alerts: raised, counted again and taken back by the events' path in the transaction of
the batch it stores; acknowledged by staff, or cleared when their cause is gone."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    bindparam,
    case,
    func,
    insert,
    select,
    update,
)

from hub.counting.rules import COALESCED, exit_message
from hub.errors import NotFound
from hub.records import Alert
from hub.store.accounts import record_audit
from hub.store.dialect import Prepared, any_of, driver_time, listed, ms
from hub.store.reads import ALERT, OPEN, alert_of, driver_alert
from hub.store.tables import alerts, events
from protocol.events import utcnow

if TYPE_CHECKING:
    from hub.store.dialect import Database

logger = logging.getLogger(__name__)

_A = alerts.c
_E = events.c


def _same(facility: Any, kind: Any, node: Any) -> tuple[ColumnElement[bool], ...]:
    """The alerts of one facility, kind and node (``""`` for the facility's own)."""
    return (_A.facility_id == facility, _A.kind == kind, func.coalesce(_A.node_id, "") == node)


# The alerts of the ingest path: compiled once per database, run on the driver's cursor
# (see ``Prepared``), with the driver's own values (times are text in SQLite).
_LATEST_OPEN = (
    select(_A.id)
    .where(*_same(bindparam("p_facility"), bindparam("p_kind"), bindparam("p_node")), *OPEN)
    .order_by(_A.id.desc())
    .limit(1)
    .scalar_subquery()
)


_AGAIN = Prepared(
    lambda dialect: (
        update(alerts)
        .where(_A.id == _LATEST_OPEN, *OPEN)
        .values(
            count=_A.count + bindparam("p_times", type_=Integer),
            last_at=bindparam("p_now"),
            message=bindparam("p_message"),
            door_id=bindparam("p_door"),
            event_id=bindparam("p_event"),
        )
        .returning(*ALERT)
    )
)
_NEW = Prepared(
    lambda dialect: (
        insert(alerts)
        .values(
            facility_id=bindparam("p_facility"),
            kind=bindparam("p_kind"),
            message=bindparam("p_message"),
            node_id=bindparam("p_node"),
            door_id=bindparam("p_door"),
            event_id=bindparam("p_event"),
            count=bindparam("p_times", type_=Integer),
            created_at=bindparam("p_now"),
            last_at=bindparam("p_now"),
        )
        .returning(*ALERT)
    )
)
_TAKE_BACK = Prepared(
    lambda dialect: (
        update(alerts)
        .where(_A.id == bindparam("p_id"), *OPEN)
        .values(
            count=_A.count - 1,
            last_at=bindparam("p_now"),
            cleared_at=case((_A.count <= 1, bindparam("p_now")), else_=None),
        )
    )
)
_LATEST_EXIT = Prepared(
    lambda dialect: (
        select(_E.event_id, _E.door_id)
        .where(_E.alert_id == bindparam("p_id"))
        .order_by(_E.ts.desc(), _E.seq.desc(), _E.event_id.desc())
        .limit(1)
    )
)
_NAME_EXIT = Prepared(
    lambda dialect: (
        update(alerts)
        .where(_A.id == bindparam("p_id"), *OPEN)
        .values(
            event_id=bindparam("p_event"),
            door_id=bindparam("p_door"),
            message=bindparam("p_message"),
        )
    )
)
_BY_ID = Prepared(lambda dialect: select(*ALERT).where(_A.id == bindparam("p_id")))
_CLEAR = Prepared(
    lambda dialect: (
        update(alerts)
        .where(any_of(dialect, _A.id, "p_ids"), *OPEN)
        .values(cleared_at=bindparam("p_now"))
        .returning(*ALERT)
    )
)


def _driver_time(conn: Connection, ts: datetime) -> Any:
    return driver_time(conn.dialect.name, ts)


def _alert(conn: Connection, row: Sequence[Any]) -> Alert:
    return alert_of(driver_alert(conn.dialect.name, row))


def raise_alert(
    conn: Connection,
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
    params = {
        "p_facility": facility_id,
        "p_kind": str(kind),
        "p_message": message,
        "p_node": node_id,
        "p_door": door_id,
        "p_event": event_id,
        "p_times": times,
        "p_now": _driver_time(conn, now),
    }
    if coalesced:
        # Counted again only while still open: an alert acknowledged meanwhile is left
        # alone, and the repeat opens a new one.
        rows = _AGAIN.rows(conn, **{**params, "p_node": node_id or ""})
        if rows:
            return _alert(conn, rows[0])
    row = _NEW.rows(conn, **params)[0]
    logger.info("alert %s at %s: %s", kind, facility_id, message)
    return _alert(conn, row)


def take_back(conn: Connection, alert_id: int, now: datetime) -> None:
    """One exit of an open alert counted after all (its entry came in late): the alert
    counts one exit less, and ends when none is left; one acknowledged stays as it is."""
    _TAKE_BACK.run(conn, p_id=alert_id, p_now=_driver_time(conn, now))


def name_latest_exit(conn: Connection, alert_id: int) -> None:
    """The open alert names its latest exit in the counting order, however they came."""
    latest = _LATEST_EXIT.rows(conn, p_id=alert_id)
    if latest:
        event_id, door_id = latest[0]
        _NAME_EXIT.run(
            conn, p_id=alert_id, p_event=event_id, p_door=door_id, p_message=exit_message(door_id)
        )


def alert_by_id(conn: Connection, alert_id: int) -> Alert | None:
    rows = _BY_ID.rows(conn, p_id=alert_id)
    return _alert(conn, rows[0]) if rows else None


def clear_ids(
    conn: Connection, dialect: str, alert_ids: Sequence[int], now: datetime
) -> list[Alert]:
    """Close these alerts where still open (every gap of their node is filled)."""
    if not alert_ids:
        return []
    rows = _CLEAR.rows(
        conn, p_ids=listed(dialect, sorted(alert_ids)), p_now=_driver_time(conn, now)
    )
    return sorted((_alert(conn, row) for row in rows), key=lambda a: a.id)


class Alerts:
    """Adding, acknowledging and clearing alerts: a part of the store (``hub.store.Store``)."""

    def add_alert(
        self: Database,
        facility_id: str,
        kind: str,
        message: str,
        *,
        node_id: str | None = None,
        door_id: str | None = None,
        event_id: str | None = None,
        coalesce: bool = False,
    ) -> Alert:
        """A new alert; with ``coalesce``, an open alert of the same facility, kind and node
        is counted again instead."""
        now = utcnow()

        def add(conn: Connection) -> Alert:
            if coalesce:
                # Two workers raising the same alert count one alert twice, not open two.
                self._lock_facilities(conn, [facility_id])
            return raise_alert(
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

        return self._sa("add an alert", add)

    def ack_alert(self: Database, alert_id: int, user: str) -> Alert:
        """Acknowledge an alert; ``NotFound`` if there is none with that id."""
        now = ms(utcnow())

        def ack(conn: Connection) -> Alert:
            row = conn.execute(
                update(alerts)
                .where(_A.id == alert_id, _A.acknowledged_at.is_(None))
                .values(acknowledged_by=user, acknowledged_at=now)
                .returning(*ALERT)
            ).first()
            if row is None:
                before = alert_by_id(conn, alert_id)
                if before is None:
                    raise NotFound(f"no alert {alert_id}")
                return before  # acknowledged before: by whoever did it first
            alert = alert_of(row)
            record_audit(conn, user, "alert.ack", alert.facility_id, str(alert_id), alert.kind)
            return alert

        return self._sa("acknowledge an alert", ack)

    def clear_alerts(
        self: Database, facility_id: str, kind: str, node_id: str | None = None
    ) -> list[Alert]:
        """Close the open alerts whose condition has ended (a node came back)."""
        query = (
            update(alerts)
            .where(*_same(facility_id, str(kind), node_id or ""), *OPEN)
            .values(cleared_at=ms(utcnow()))
            .returning(*ALERT)
        )
        rows = self._sa("clear alerts", lambda conn: conn.execute(query).all())
        return sorted((alert_of(row) for row in rows), key=lambda a: a.id)
