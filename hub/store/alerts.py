"""Alerts as staff handle them: acknowledged, or cleared when their cause is gone (the
events' path raises them with the batch it stores)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Connection, func, select, update

from hub.errors import NotFound
from hub.records import Alert
from hub.store.accounts import record_audit
from hub.store.dialect import ms
from hub.store.reads import ALERT, OPEN, alert_of
from hub.store.tables import alerts
from protocol.events import utcnow

if TYPE_CHECKING:
    from hub.store.dialect import Database

_A = alerts.c


class Alerts:
    """Acknowledging and clearing alerts: a part of the store (``hub.store.Store``)."""

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
            .where(
                _A.facility_id == facility_id,
                _A.kind == str(kind),
                func.coalesce(_A.node_id, "") == (node_id or ""),
                *OPEN,
            )
            .values(cleared_at=ms(utcnow()))
            .returning(*ALERT)
        )
        rows = self._sa("clear alerts", lambda conn: conn.execute(query).all())
        return sorted((alert_of(row) for row in rows), key=lambda a: a.id)
