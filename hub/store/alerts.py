"""Alerts: raised, counted again and taken back by the events' path in the transaction of
the batch it stores; acknowledged by staff, or cleared when their cause is gone."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, Connection, case, func, insert, select, update

from hub.counting import COALESCED, FacilityCount, exit_message
from hub.errors import NotFound
from hub.records import Alert, AlertKind
from hub.store.accounts import record_audit
from hub.store.dialect import any_of, ms
from hub.store.reads import ALERT, OPEN, alert_of
from hub.store.tables import alerts, events
from protocol.events import utcnow

if TYPE_CHECKING:
    from hub.store.dialect import Database

logger = logging.getLogger(__name__)

_A = alerts.c
_E = events.c


def _same(facility_id: str, kind: str, node_id: str | None) -> tuple[ColumnElement[bool], ...]:
    return (
        _A.facility_id == facility_id,
        _A.kind == str(kind),
        func.coalesce(_A.node_id, "") == (node_id or ""),
    )


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
    now = ms(now)
    coalesced = coalesce if coalesce is not None else kind in COALESCED
    if times != 1 and not coalesced:
        raise ValueError("only a coalesced alert is raised several times at once")
    if coalesced:
        # Counted again only while still open: an alert acknowledged meanwhile is left
        # alone, and the repeat opens a new one.
        latest = (
            select(_A.id)
            .where(*_same(facility_id, kind, node_id), *OPEN)
            .order_by(_A.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        row = conn.execute(
            update(alerts)
            .where(_A.id == latest, *OPEN)
            .values(
                count=_A.count + times,
                last_at=now,
                message=message,
                door_id=door_id,
                event_id=event_id,
            )
            .returning(*ALERT)
        ).first()
        if row is not None:
            return alert_of(row)
    row = conn.execute(
        insert(alerts)
        .values(
            facility_id=facility_id,
            kind=str(kind),
            message=message,
            node_id=node_id,
            door_id=door_id,
            event_id=event_id,
            count=times,
            created_at=now,
            last_at=now,
        )
        .returning(*ALERT)
    ).one()
    logger.info("alert %s at %s: %s", kind, facility_id, message)
    return alert_of(row)


def take_back(conn: Connection, alert_id: int, now: datetime) -> None:
    """One exit of an open alert counted after all (its entry came in late): the alert
    counts one exit less, and ends when none is left; one acknowledged stays as it is."""
    now = ms(now)
    conn.execute(
        update(alerts)
        .where(_A.id == alert_id, *OPEN)
        .values(
            count=_A.count - 1,
            last_at=now,
            cleared_at=case((_A.count <= 1, now), else_=None),
        )
    )


def name_latest_exit(conn: Connection, alert_id: int) -> None:
    """The open alert names its latest exit in the counting order, however they came."""
    latest = conn.execute(
        select(_E.event_id, _E.door_id)
        .where(_E.alert_id == alert_id)
        .order_by(_E.ts.desc(), _E.seq.desc(), _E.event_id.desc())
        .limit(1)
    ).first()
    if latest is not None:
        conn.execute(
            update(alerts)
            .where(_A.id == alert_id, *OPEN)
            .values(event_id=latest[0], door_id=latest[1], message=exit_message(latest[1]))
        )


def flag_alerts(conn: Connection, part: FacilityCount, now: datetime) -> None:
    """Raise the alert of each exit counting flagged now; take back those no longer
    flagged (their entry came in late: the exit counts after all)."""
    facility_id = part.recount.facility_id
    for event, _ in part.recount.flagged:
        alert = raise_alert(
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
        if event.alert_id is not None:
            take_back(conn, event.alert_id, now)
            part.touched.add(event.alert_id)


def touched_alerts(conn: Connection, part: FacilityCount) -> tuple[list[Alert], list[Alert]]:
    """The alerts counting raised or reduced, once the batch's events are stored: those
    still open, and those it ended. Each open one names its latest exit in the counting
    order when stored events were counted again."""
    alerts: list[Alert] = []
    cleared: list[Alert] = []
    for alert_id in sorted(part.touched):
        if part.replayed:
            name_latest_exit(conn, alert_id)
        alert = alert_by_id(conn, alert_id)
        if alert is not None:
            (alerts if alert.open else cleared).append(alert)
    return alerts, cleared


def alert_by_id(conn: Connection, alert_id: int) -> Alert | None:
    row = conn.execute(select(*ALERT).where(_A.id == alert_id)).first()
    return alert_of(row) if row else None


def clear_ids(
    conn: Connection, dialect: str, alert_ids: Sequence[int], now: datetime
) -> list[Alert]:
    """Close these alerts where still open (every gap of their node is filled)."""
    if not alert_ids:
        return []
    rows = conn.execute(
        update(alerts)
        .where(any_of(dialect, _A.id, sorted(alert_ids)), *OPEN)
        .values(cleared_at=ms(now))
        .returning(*ALERT)
    ).all()
    return sorted((alert_of(row) for row in rows), key=lambda a: a.id)


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
        now = ms(utcnow())

        def ack(conn: Connection) -> Alert:
            row = conn.execute(
                update(alerts)
                .where(_A.id == alert_id, _A.acknowledged_at.is_(None))
                .values(acknowledged_by=user, acknowledged_at=now)
                .returning(*ALERT)
            ).first()
            if row is None:
                row = conn.execute(select(*ALERT).where(_A.id == alert_id)).first()
                if row is None:
                    raise NotFound(f"no alert {alert_id}")
                return alert_of(row)  # acknowledged before: by whoever did it first
            alert = alert_of(row)
            record_audit(conn, user, "alert.ack", alert.facility_id, str(alert_id), alert.kind)
            return alert

        return self._sa("acknowledge an alert", ack)

    def clear_alerts(
        self: Database, facility_id: str, kind: str, node_id: str | None = None
    ) -> list[Alert]:
        query = (
            update(alerts)
            .where(*_same(facility_id, kind, node_id), *OPEN)
            .values(cleared_at=ms(utcnow()))
            .returning(*ALERT)
        )
        rows = self._sa("clear alerts", lambda conn: conn.execute(query).all())
        return sorted((alert_of(row) for row in rows), key=lambda a: a.id)
