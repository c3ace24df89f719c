"""What the store forgets after the tracing window (``hub.retention`` decides when)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, delete, func, update

from hub.store.dialect import position
from hub.store.tables import audit, events, visits
from hub.upstream.records import Purged

if TYPE_CHECKING:
    from hub.store.dialect import Database

# Subject ids in the audit log: the desk records the subject of a lookup as its target and
# of an admission in its detail (", subject <id>").
_AUDIT_SUBJECT = ", subject "


class Retention:
    """Forgetting old data: a part of the store (``hub.store.Store``)."""

    def purge_before(self: Database, before: datetime) -> Purged:
        """Forget visits that ended before ``before`` and the subject ids of older events
        and desk audit entries; counts and times stay (occupancy is recounted from them)."""
        A = audit.c
        at = position(self.dialect, _AUDIT_SUBJECT, A.detail)

        def purge(conn: Connection) -> Purged:
            gone = conn.execute(delete(visits).where(visits.c.check_out < before)).rowcount
            forgotten = conn.execute(
                update(events)
                .where(events.c.subject.is_not(None), events.c.ts < before)
                .values(subject=None)
            ).rowcount
            lookups = conn.execute(
                update(audit)
                .where(A.action == "desk.lookup", A.target.is_not(None), A.ts < before)
                .values(target=None)
            ).rowcount
            admissions = conn.execute(
                update(audit)
                .where(A.action == "desk.admit", at > 0, A.ts < before)
                .values(detail=func.substr(A.detail, 1, at - 1))
            ).rowcount
            return Purged(before, gone, forgotten, lookups + admissions)

        return self._sa("purge old data", purge)
