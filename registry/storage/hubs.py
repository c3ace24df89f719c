"""What the registry saw of each facility's hub (``hub_activity``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select

from registry.records import HubActivity
from registry.schema import hub_activity
from registry.storage.database import Database

HUB_SEEN = ("statuses", "trust", "visits", "channel")


def hub_statements(db: Database) -> dict[str, Any]:
    """One upsert a kind of sighting, in the dialect's own ``ON CONFLICT``: a read or a
    push sets its time; a refusal sets its time and reason and counts one more."""
    statements: dict[str, Any] = {}
    for kind in HUB_SEEN:
        insert = db.insert(hub_activity)
        column = f"{kind}_at"
        statements[kind] = insert.on_conflict_do_update(
            index_elements=["facility_id"], set_={column: insert.excluded[column]}
        )
    insert = db.insert(hub_activity)
    statements["refused"] = insert.on_conflict_do_update(
        index_elements=["facility_id"],
        set_={
            "refused_at": insert.excluded.refused_at,
            "refused_reason": insert.excluded.refused_reason,
            "refused": hub_activity.c.refused + 1,
        },
    )
    return statements


_ALL = select(hub_activity)
_ONE = select(hub_activity).where(hub_activity.c.facility_id == bindparam("facility_id"))


class Hubs:
    _db: Database
    _hub_statements: dict[str, Any]

    def note_hub(self, facility_id: str, kind: str, at: int, reason: str | None = None) -> None:
        values: dict[str, Any] = {"facility_id": facility_id}
        if kind == "refused":
            values.update(refused_at=at, refused=1, refused_reason=reason)
        else:
            values[f"{kind}_at"] = at
        statement = self._hub_statements[kind]
        self._db.write("note a hub's call", lambda conn: conn.execute(statement, values))

    def hub_activity(self) -> dict[str, HubActivity]:
        rows = self._db.fetch(_ALL)
        return {str(row[0]): HubActivity(*row) for row in rows}

    def hub_activity_of(self, facility_id: str) -> HubActivity | None:
        row = self._db.fetch_one(_ONE, {"facility_id": facility_id})
        return None if row is None else HubActivity(*row)
