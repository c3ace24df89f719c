"""Visits the hubs push, and the tracing reads over them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, func, select

from registry.errors import Conflict
from registry.records import Visit, VisitIntake, visit_from_row
from registry.schema import visit_bounds, visits
from registry.storage.database import Database
from registry.storage.dialect import greatest

# Stay far below SQLite's 32,766 host parameters for IN lists.
_CHUNK = 500
_COLUMNS = [
    visits.c[name]
    for name in ("facility_id", "visit_id", "subject", "door_id", "check_in", "check_out")
]
_STORED = select(*_COLUMNS).where(
    visits.c.facility_id == bindparam("facility_id"),
    visits.c.visit_id.in_(bindparam("ids", expanding=True)),
)
_OF_SUBJECT = (
    select(*_COLUMNS)
    .where(
        visits.c.subject == bindparam("subject"),
        visits.c.check_in < bindparam("end"),
        visits.c.check_out > bindparam("start"),
    )
    .order_by(visits.c.check_in, visits.c.visit_id)
)
# No visit there lasted longer than max_length, so one that began before start - max_length
# ended before start: the index range stays short. The bound is read in the same statement;
# without one, nothing was stored there.
_OVERLAPPING = (
    select(*_COLUMNS)
    .where(
        visits.c.facility_id == bindparam("facility_id"),
        visits.c.check_in
        >= bindparam("start")
        - select(visit_bounds.c.max_length)
        .where(visit_bounds.c.facility_id == bindparam("facility_id"))
        .scalar_subquery(),
        visits.c.check_in < bindparam("end"),
        visits.c.check_out > bindparam("start"),
        visits.c.subject != bindparam("exclude"),
    )
    .order_by(visits.c.check_in, visits.c.visit_id)
)
_PURGE = visits.delete().where(visits.c.check_out < bindparam("before"))
_COUNT = select(func.count()).select_from(visits)
_RECEIVED = select(visits.c.facility_id, func.count(), func.max(visits.c.received_at)).group_by(
    visits.c.facility_id
)
_RECEIVED_AT = _RECEIVED.where(visits.c.facility_id == bindparam("facility_id"))


def bound_statement(db: Database) -> Any:
    """The raise of a facility's longest visit, in the dialect's own ``ON CONFLICT``."""
    bound = db.insert(visit_bounds)
    return bound.on_conflict_do_update(
        index_elements=["facility_id"],
        set_={"max_length": greatest(visit_bounds.c.max_length, bound.excluded.max_length)},
    )


class Visits:
    _db: Database
    _visit_bound: Any

    def add_visits(self, facility_id: str, batch: Sequence[Visit], at: int) -> VisitIntake:
        if not batch:
            return VisitIntake(0, 0, ())
        return self._db.write("store visits", lambda conn: self._add(conn, facility_id, batch, at))

    def _add(
        self, conn: Connection, facility_id: str, batch: Sequence[Visit], at: int
    ) -> VisitIntake:
        bound = self._visit_bound
        # One statement for the batch. Rows go in by visit id, so two pushes of the same
        # batch at once (on PostgreSQL) take their row locks in one order; what it skipped
        # was stored before, or by the other push, and is compared below.
        rows = [
            {
                "facility_id": facility_id,
                "visit_id": v.visit_id,
                "subject": v.subject,
                "door_id": v.door_id,
                "check_in": v.check_in,
                "check_out": v.check_out,
                "received_at": at,
            }
            for v in sorted(batch, key=lambda v: v.visit_id)
        ]
        inserted = self._db.inserted(conn, visits, rows, "visit_id")
        skipped = [v.visit_id for v in batch if v.visit_id not in inserted]
        stored: dict[str, Visit] = {}
        for start in range(0, len(skipped), _CHUNK):
            ids = skipped[start : start + _CHUNK]
            for row in conn.execute(_STORED, {"facility_id": facility_id, "ids": ids}):
                stored[row[1]] = visit_from_row(row)
        duplicates: list[str] = []
        for index, visit in enumerate(batch):
            if visit.visit_id in inserted:
                continue
            before = stored.get(visit.visit_id)
            if before is None or not before.same_as(visit):
                # Raising rolls back what this batch inserted: nothing of it is stored.
                raise Conflict(
                    f"row {index}: visit_id {visit.visit_id!r} was stored before with "
                    "other content; nothing of this batch was stored"
                )
            duplicates.append(visit.visit_id)
        new = [v for v in batch if v.visit_id in inserted]
        if new:
            longest = max(v.check_out - v.check_in for v in new)
            conn.execute(bound, {"facility_id": facility_id, "max_length": longest})
        return VisitIntake(len(new), len(duplicates), tuple(duplicates))

    def visits_of(self, subject: str, start: int, end: int) -> list[Visit]:
        # A subject has few visits in a window: the (subject, check_in) index gives them all.
        values = {"subject": subject, "start": start, "end": end}
        rows = self._db.fetch(_OF_SUBJECT, values)
        return [visit_from_row(row) for row in rows]

    def overlapping(
        self, facility_id: str, start: int, end: int, exclude_subject: str
    ) -> list[Visit]:
        values = {
            "facility_id": facility_id,
            "start": start,
            "end": end,
            "exclude": exclude_subject,
        }
        rows = self._db.fetch(_OVERLAPPING, values)
        return [visit_from_row(row) for row in rows]

    def purge_visits(self, before: int) -> int:
        return self._db.write(
            "purge visits", lambda conn: int(conn.execute(_PURGE, {"before": before}).rowcount)
        )

    def visits_received(self, facility_id: str | None = None) -> dict[str, tuple[int, int]]:
        rows = (
            self._db.fetch(_RECEIVED)
            if facility_id is None
            else self._db.fetch(_RECEIVED_AT, {"facility_id": facility_id})
        )
        return {str(fid): (int(count), int(last)) for fid, count, last in rows}

    def count_visits(self) -> int:
        row = self._db.fetch_one(_COUNT)
        return int(row[0]) if row else 0
