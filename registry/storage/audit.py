"""The audit trail of what operators and PICs did."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, select

from registry.schema import audit
from registry.storage.database import Database

_ENTRIES = select(
    audit.c.at, audit.c.actor, audit.c.action, audit.c.target, audit.c.detail
).order_by(audit.c.id)
_SCRUB = (
    audit.update()
    .where(
        audit.c.at < bindparam("before"),
        audit.c.target != "-",
        audit.c.action.in_(bindparam("actions", expanding=True)),
    )
    .values(target="-")
)


class Audit:
    _db: Database

    def audit(self, at: int, actor: str, action: str, target: str, detail: str = "") -> None:
        values = {"at": at, "actor": actor, "action": action, "target": target, "detail": detail}
        self._db.write("write the audit trail", lambda conn: conn.execute(audit.insert(), values))

    def audit_entries(self) -> list[tuple[int, str, str, str, str]]:
        rows = self._db.fetch(_ENTRIES)
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def scrub_audit(self, before: int, actions: Sequence[str]) -> int:
        if not actions:
            return 0
        values = {"before": before, "actions": list(actions)}
        return self._db.write(
            "scrub the audit trail", lambda conn: int(conn.execute(_SCRUB, values).rowcount)
        )
