"""Facilities (a registration from request to activation) and their doors."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, bindparam, select, true
from sqlalchemy.exc import IntegrityError

from registry.errors import AlreadyExists, Conflict, NotFound
from registry.records import Door, Facility, FacilityState, facility_from_row
from registry.schema import doors, facilities
from registry.storage.database import Database
from registry.storage.dialect import violation

# In the order facility_from_row reads them.
_FACILITY_COLUMNS = [
    facilities.c[name]
    for name in (
        *("id", "name", "address", "type", "capacity", "pic_name", "pic_email", "state"),
        *("created_at", "updated_at", "reason", "activation_hash", "activation_expires_at"),
    )
]
_GET = select(*_FACILITY_COLUMNS).where(facilities.c.id == bindparam("id"))
# FOR UPDATE (nothing on SQLite, whose writer is alone): a second operator acting at once
# waits here, then reads the state the first one left.
_STATE_FOR_UPDATE = (
    select(facilities.c.state).where(facilities.c.id == bindparam("id")).with_for_update()
)
_TRANSITION = (
    facilities.update()
    .where(facilities.c.id == bindparam("key"))
    .values(
        state=bindparam("state"),
        reason=bindparam("reason"),
        activation_hash=bindparam("activation_hash"),
        activation_expires_at=bindparam("activation_expires_at"),
        updated_at=bindparam("updated_at"),
    )
    .returning(*_FACILITY_COLUMNS)
)
_LIST_DOORS = (
    select(doors).where(doors.c.facility_id == bindparam("facility_id")).order_by(doors.c.door_id)
)
_GET_DOOR = select(doors).where(
    doors.c.facility_id == bindparam("facility_id"), doors.c.door_id == bindparam("door_id")
)

_RENAME_DOOR = (
    doors.update()
    .where(doors.c.facility_id == bindparam("fid"), doors.c.door_id == bindparam("did"))
    .values(name=bindparam("name"))
    .returning(*doors.c)
)


class Facilities:
    _db: Database

    def add_facility(self, facility: Facility) -> None:
        values = {
            "id": facility.id,
            "name": facility.name,
            "address": facility.address,
            "type": facility.type,
            "capacity": facility.capacity,
            "pic_name": facility.pic_name,
            "pic_email": facility.pic_email,
            "state": facility.state.value,
            "created_at": facility.created_at,
            "updated_at": facility.updated_at,
            "reason": facility.reason,
            "activation_hash": facility.activation_hash,
            "activation_expires_at": facility.activation_expires_at,
        }

        def work(conn: Connection) -> None:
            try:
                conn.execute(facilities.insert(), values)
            except IntegrityError as err:
                raise AlreadyExists(f"a facility with id {facility.id!r} exists") from err

        self._db.write("add a facility", work)

    def get_facility(self, facility_id: str) -> Facility | None:
        row = self._db.fetch_one(_GET, {"id": facility_id})
        return None if row is None else facility_from_row(row)

    def list_facilities(
        self, state: FacilityState | None = None, pic_email: str | None = None
    ) -> list[Facility]:
        query = select(*_FACILITY_COLUMNS).where(true()).order_by(facilities.c.id)
        if state is not None:
            query = query.where(facilities.c.state == state.value)
        if pic_email is not None:
            query = query.where(facilities.c.pic_email == pic_email)
        return [facility_from_row(row) for row in self._db.read(lambda c: c.execute(query).all())]

    def transition(
        self,
        facility_id: str,
        from_states: Sequence[FacilityState],
        to_state: FacilityState,
        at: int,
        *,
        reason: str | None = None,
        activation_hash: str | None = None,
        activation_expires_at: int | None = None,
    ) -> Facility:
        def work(conn: Connection) -> Facility:
            state = conn.execute(_STATE_FOR_UPDATE, {"id": facility_id}).scalar()
            if state is None:
                raise NotFound(f"no facility {facility_id!r}")
            current = FacilityState(state)
            if current not in from_states:
                raise Conflict(f"facility {facility_id!r} is {current.value}", current.value)
            values = {
                "key": facility_id,
                "state": to_state.value,
                "reason": reason,
                "activation_hash": activation_hash,
                "activation_expires_at": activation_expires_at,
                "updated_at": at,
            }
            return facility_from_row(conn.execute(_TRANSITION, values).one())

        return self._db.write("change a facility's state", work)

    def add_door(self, door: Door) -> None:
        values = {
            "facility_id": door.facility_id,
            "door_id": door.door_id,
            "name": door.name,
            "direction": door.direction,
            "created_at": door.created_at,
            "kind": door.kind,
        }

        def work(conn: Connection) -> None:
            try:
                conn.execute(doors.insert(), values)
            except IntegrityError as err:
                if violation(err) == "foreign_key":
                    raise NotFound(f"no facility {door.facility_id!r}") from err
                raise AlreadyExists(
                    f"facility {door.facility_id!r} already has a door {door.door_id!r}"
                ) from err

        self._db.write("add a door", work)

    def rename_door(self, facility_id: str, door_id: str, name: str) -> Door:
        def work(conn: Connection) -> Door:
            row = conn.execute(_RENAME_DOOR, {"fid": facility_id, "did": door_id, "name": name})
            found = row.one_or_none()
            if found is None:
                raise NotFound(f"facility {facility_id!r} has no door {door_id!r}")
            return Door(*found)

        return self._db.write("rename a door", work)

    def list_doors(self, facility_id: str) -> list[Door]:
        rows = self._db.fetch(_LIST_DOORS, {"facility_id": facility_id})
        return [Door(*row) for row in rows]

    def get_door(self, facility_id: str, door_id: str) -> Door | None:
        row = self._db.fetch_one(_GET_DOOR, {"facility_id": facility_id, "door_id": door_id})
        return None if row is None else Door(*row)
