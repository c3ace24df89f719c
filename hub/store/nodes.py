"""The door nodes as the hub last heard of them: their status messages (the events' path
keeps their last seq and time in ``nodes`` too, with the batch it stores)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, func, select

from hub.records import NodeChange
from hub.store.dialect import insert, ms
from hub.store.reads import NODE, node_of
from hub.store.tables import nodes
from protocol.events import NodeStatus, utcnow

if TYPE_CHECKING:
    from hub.store.dialect import Database

_N = nodes.c


class Nodes:
    """Node status: a part of the store (``hub.store.Store``)."""

    def upsert_node_status(
        self: Database,
        facility_id: str,
        node_id: str,
        status: NodeStatus,
        *,
        door_id: str | None = None,
        seen_at: datetime | None = None,
    ) -> NodeChange:
        now = ms(seen_at or utcnow())
        read = select(*NODE).where(_N.facility_id == facility_id, _N.node_id == node_id)

        def upsert(conn: Connection) -> NodeChange:
            # Every worker hears every status: locked, the second one to record it sees
            # the state the first one wrote, and reports no change.
            self._lock_facilities(conn, [facility_id])
            row = conn.execute(read).first()
            previous = node_of(row) if row else None
            state = status.state.value
            changed = previous is None or previous.state != state
            query = insert(self.dialect, nodes).values(
                facility_id=facility_id,
                node_id=node_id,
                door_id=door_id,
                state=state,
                problems=list(status.problems),
                trust_list_age_s=status.trust_list_age_s,
                status_list_age_s=status.status_list_age_s,
                direction=status.direction,
                status_ts=ms(status.ts) if status.ts and status.ts.tzinfo else None,
                state_since=now if changed or previous is None else previous.state_since,
                last_seen=now,
            )
            new = query.excluded
            query = query.on_conflict_do_update(
                index_elements=["facility_id", "node_id"],
                set_={
                    "door_id": func.coalesce(new.door_id, _N.door_id),
                    **{
                        name: new[name]
                        for name in (
                            "state",
                            "problems",
                            "trust_list_age_s",
                            "status_list_age_s",
                            "direction",
                            "status_ts",
                            "state_since",
                            "last_seen",
                        )
                    },
                },
            ).returning(*NODE)
            node = node_of(conn.execute(query).one())
            return NodeChange(node=node, previous=previous.state if previous else "unknown")

        return self._sa("record a node's status", upsert)
