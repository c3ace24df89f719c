"""The audit trail of what operators and PICs did."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Boolean, bindparam, func, or_, select

from registry.schema import audit
from registry.storage.database import Database

_ENTRIES = select(
    audit.c.at, audit.c.actor, audit.c.action, audit.c.target, audit.c.detail
).order_by(audit.c.id)
# A page of the trail, newest first: each filter is on unless its any_* flag is set (one
# statement, compiled once, for every combination).
_LIKE = "\\"
_SEARCH = (
    select(audit.c.at, audit.c.actor, audit.c.action, audit.c.target, audit.c.detail)
    .where(
        or_(
            bindparam("any_actor", type_=Boolean),
            func.lower(audit.c.actor).like(bindparam("actor"), escape=_LIKE),
        ),
        or_(bindparam("any_action", type_=Boolean), audit.c.action == bindparam("action")),
        or_(
            bindparam("any_text", type_=Boolean),
            func.lower(audit.c.target).like(bindparam("text"), escape=_LIKE),
            func.lower(audit.c.detail).like(bindparam("text"), escape=_LIKE),
        ),
    )
    .order_by(audit.c.id.desc())
    .limit(bindparam("limit"))
)
_ACTIONS = select(audit.c.action).distinct().order_by(audit.c.action)
_SCRUB = (
    audit.update()
    .where(
        audit.c.at < bindparam("before"),
        audit.c.target != "-",
        audit.c.action.in_(bindparam("actions", expanding=True)),
    )
    .values(target="-")
)


def _contains(text: str) -> str:
    """A LIKE pattern for lower-case text holding ``text`` (its own % and _ taken as such)."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class Audit:
    _db: Database

    def audit(self, at: int, actor: str, action: str, target: str, detail: str = "") -> None:
        values = {"at": at, "actor": actor, "action": action, "target": target, "detail": detail}
        self._db.write("write the audit trail", lambda conn: conn.execute(audit.insert(), values))

    def audit_entries(self) -> list[tuple[int, str, str, str, str]]:
        rows = self._db.fetch(_ENTRIES)
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def audit_search(
        self, actor: str = "", action: str = "", text: str = "", limit: int = 200
    ) -> list[tuple[int, str, str, str, str]]:
        values = {
            "any_actor": not actor,
            "actor": _contains(actor),
            "any_action": not action,
            "action": action,
            "any_text": not text,
            "text": _contains(text),
            "limit": limit,
        }
        rows = self._db.fetch(_SEARCH, values)
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def audit_actions(self) -> list[str]:
        return [str(r[0]) for r in self._db.fetch(_ACTIONS)]

    def scrub_audit(self, before: int, actions: Sequence[str]) -> int:
        if not actions:
            return 0
        values = {"before": before, "actions": list(actions)}
        return self._db.write(
            "scrub the audit trail", lambda conn: int(conn.execute(_SCRUB, values).rowcount)
        )
