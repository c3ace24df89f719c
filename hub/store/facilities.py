"""A facility's capacity as staff set it at run time; it overrides the config file's until
changed (``hub.counting.rules.capacity_change`` checks a change). And the facilities' occupancy
as the events' path keeps it (``occupancy``: a counter a zone, ``WHOLE`` the facility's)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, select

from hub.config import FacilityConfig
from hub.counting.rules import WHOLE, CapacityChange, capacity_change, make_occupancy, with_capacity
from hub.errors import NotFound
from hub.records import Occupancy
from hub.store.accounts import record_audit
from hub.store.dialect import Prepared, bytewise, driver_time, from_driver_time, ms, upsert
from hub.store.tables import capacity_settings, occupancy
from protocol.events import utcnow

if TYPE_CHECKING:
    from hub.store.dialect import Database

logger = logging.getLogger(__name__)

_C = capacity_settings.c
_SETTINGS = (_C.facility_id, _C.capacity, _C.capacity_percent, _C.nominal_max,
             _C.soft_threshold_percent)  # fmt: skip
_O = occupancy.c


_SAVE_CAPACITY = Prepared(
    lambda d: upsert(
        d,
        capacity_settings,
        ("facility_id",),
        facility_id=bindparam("p_facility"),
        capacity=bindparam("p_capacity"),
        capacity_percent=bindparam("p_percent"),
        nominal_max=bindparam("p_nominal"),
        soft_threshold_percent=bindparam("p_soft"),
        username=bindparam("p_user"),
        updated_at=bindparam("p_now"),
    )
)


def save_capacity(
    conn: Connection,
    dialect: str,
    facility_id: str,
    change: CapacityChange,
    user: str,
    now: datetime,
) -> None:
    """Keep ``change`` and who made it, in the caller's transaction, with its audit entry."""
    _SAVE_CAPACITY.run(
        conn,
        p_facility=facility_id,
        p_capacity=change.capacity,
        p_percent=change.capacity_percent,
        p_nominal=change.nominal_max,
        p_soft=change.soft_threshold_percent,
        p_user=user,
        p_now=driver_time(dialect, now),
    )
    record_audit(conn, user, "capacity.set", facility_id, facility_id, change.detail)


def apply_settings(store: Database, rows: Iterable[Sequence[Any]]) -> Mapping[str, FacilityConfig]:
    """Take (facility_id, capacity, percent, nominal_max, soft) rows into the store's
    ``facilities``, swapped whole: a reader sees the old map or the new one."""
    updates: dict[str, FacilityConfig] = {}
    for facility_id, capacity, percent, nominal, soft in rows:
        configured = store.configured.get(facility_id)
        if configured is None or soft is None:
            continue  # not this hub's facility, or no change made by staff
        updated = with_capacity(configured, capacity, percent, nominal, soft)
        if store.facilities.get(facility_id) != updated:
            updates[facility_id] = updated
    if updates:
        store.facilities = {**store.facilities, **updates}
    return store.facilities


def read_settings(store: Database, conn: Connection, facility_id: str | None = None) -> None:
    """Staff's capacity changes made through any worker, into the store's ``facilities``."""
    query = select(*_SETTINGS)
    if facility_id is not None:
        query = query.where(_C.facility_id == facility_id)
    apply_settings(store, conn.execute(query).all())


class Facilities:
    """Capacity settings and occupancy counters: a part of the store (``hub.store.Store``)."""

    def _load_capacity_settings(self: Database) -> None:
        query = select(*_SETTINGS, _C.username, _C.updated_at)
        rows = self._sa(
            "read the capacity settings", lambda conn: conn.execute(query).all(), write=False
        )
        apply_settings(self, [row[:5] for row in rows])
        for facility_id, *_, user, updated_at in rows:
            facility = self.facilities.get(facility_id)
            if facility is not None:
                logger.info(
                    "capacity of %s as %s set it at %s overrides the config: %s",
                    facility_id,
                    user,
                    updated_at.isoformat(),
                    facility.effective_capacity,
                )

    def facility_config(self: Database, facility_id: str) -> FacilityConfig | None:
        """The facility's settings in effect: the config's, with staff's capacity changes."""
        if facility_id not in self.configured:
            return None
        if self.several_writers:
            self._sa(
                "read the capacity settings",
                lambda conn: read_settings(self, conn, facility_id),
                write=False,
            )
        return self.facilities.get(facility_id)

    def set_capacity(
        self: Database,
        facility_id: str,
        user: str,
        *,
        capacity: int | None = None,
        capacity_percent: float | None = None,
        nominal_max: int | None = None,
        soft_threshold_percent: float | None = None,
    ) -> FacilityConfig:
        """Set the capacity in effect (absolute, or a percentage of ``nominal_max``), kept
        across restarts and audited; ``ValueError`` for a bad value, nothing changed."""
        if facility_id not in self.configured:
            raise NotFound(f"unknown facility {facility_id!r}")
        now = ms(utcnow())

        def save(conn: Connection) -> CapacityChange:
            # Locked, and read afresh: what is left out (the soft threshold, the nominal
            # maximum) stays as staff last set it through any worker.
            facility = self._lock_facilities(conn, [facility_id])[facility_id]
            change = capacity_change(
                facility,
                user,
                capacity=capacity,
                capacity_percent=capacity_percent,
                nominal_max=nominal_max,
                soft_threshold_percent=soft_threshold_percent,
            )
            save_capacity(conn, self.dialect, facility_id, change, user, now)
            return change

        change = self._sa("set the capacity", save)
        apply_settings(
            self,
            [
                (
                    facility_id,
                    change.capacity,
                    change.capacity_percent,
                    change.nominal_max,
                    change.soft_threshold_percent,
                )
            ],
        )
        return change.facility

    def occupancy(self: Database, facility_id: str) -> Occupancy:
        """The facility's occupancy; ``NotFound`` for a facility neither configured nor seen."""

        def read(conn: Connection) -> Sequence[Any]:
            if self.several_writers:
                read_settings(self, conn, facility_id)
            # Read on every page and poll of the dashboard: compiled once, on the driver.
            dialect = conn.dialect.name
            return [
                (zone_id, value, from_driver_time(dialect, updated_at))
                for zone_id, value, updated_at in _OCCUPANCY.rows(conn, p_facility=facility_id)
            ]

        rows = self._sa("read the occupancy", read, write=False)
        if facility_id not in self.facilities and not rows:
            raise NotFound(f"unknown facility {facility_id!r}")
        return _occupancy_of(self, facility_id, rows)

    def occupancies(self: Database) -> list[Occupancy]:
        """Every configured facility's occupancy (and any other facility seen in events)."""
        query = select(_O.facility_id, _O.zone_id, _O.value, _O.updated_at).order_by(
            bytewise(self.dialect, _O.facility_id)
        )

        def read(conn: Connection) -> Sequence[Any]:
            if self.several_writers:
                read_settings(self, conn)
            return conn.execute(query).all()

        rows = self._sa("read the occupancy", read, write=False)
        by_facility: dict[str, list[Any]] = {f: [] for f in self.facilities}
        for row in rows:
            by_facility.setdefault(row[0], []).append(row[1:])
        return [_occupancy_of(self, f, rows) for f, rows in by_facility.items()]


_OCCUPANCY = Prepared(
    lambda d: select(_O.zone_id, _O.value, _O.updated_at).where(
        _O.facility_id == bindparam("p_facility")
    )
)


def _occupancy_of(store: Database, facility_id: str, rows: Sequence[Any]) -> Occupancy:
    counts = {row[0]: row[1] for row in rows}
    updated = max((row[2] for row in rows), default=None)
    return make_occupancy(
        store.facilities.get(facility_id), facility_id, counts.pop(WHOLE, 0), counts, updated
    )
