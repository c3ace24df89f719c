"""A facility's capacity as staff set it at run time; it overrides the config file's until
changed (``hub.counting.capacity_change`` checks a change)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from hub.counting import CapacityChange
from hub.store.accounts import record_audit
from hub.store.dialect import insert
from hub.store.tables import capacity_settings


def save_capacity(
    conn: Connection,
    dialect: str,
    facility_id: str,
    change: CapacityChange,
    user: str,
    now: datetime,
) -> None:
    """Keep ``change`` and who made it, in the caller's transaction, with its audit entry."""
    query = insert(dialect, capacity_settings).values(
        facility_id=facility_id,
        capacity=change.capacity,
        capacity_percent=change.capacity_percent,
        nominal_max=change.nominal_max,
        soft_threshold_percent=change.soft_threshold_percent,
        username=user,
        updated_at=now,
    )
    new = query.excluded
    conn.execute(
        query.on_conflict_do_update(
            index_elements=["facility_id"],
            set_={
                name: new[name]
                for name in (
                    "capacity",
                    "capacity_percent",
                    "nominal_max",
                    "soft_threshold_percent",
                    "username",
                    "updated_at",
                )
            },
        )
    )
    record_audit(conn, user, "capacity.set", facility_id, facility_id, change.detail)
