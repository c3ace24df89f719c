"""Phone check-ins on their way to a facility's hub (``registry.checkins``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, or_, select

from registry.errors import Conflict
from registry.records import Checkin
from registry.schema import checkins
from registry.storage.database import Database

_C = checkins.c
_GET = select(checkins).where(_C.id == bindparam("id"))
# The hub takes what is neither answered nor leased to it (or whose lease ran out: its
# answer was lost on the way), oldest first, and leases it for a while.
_DUE = (
    select(_C.id)
    .where(
        _C.facility_id == bindparam("facility_id"),
        _C.answer.is_(None),
        or_(_C.leased_until_ms.is_(None), _C.leased_until_ms <= bindparam("now_ms")),
    )
    .order_by(_C.at_ms, _C.id)
    .limit(bindparam("limit"))
)
_LEASE = (
    checkins.update()
    .where(_C.id.in_(bindparam("ids", expanding=True)))
    .values(leased_until_ms=bindparam("until_ms"))
)
_BY_IDS = select(checkins).where(_C.id.in_(bindparam("ids", expanding=True))).order_by(_C.at_ms)
_ANSWER = (
    checkins.update()
    .where(
        _C.id == bindparam("key"),
        _C.facility_id == bindparam("of_facility"),
        _C.answer.is_(None),
    )
    .values(answer=bindparam("answer_json"), answered_at=bindparam("answered"))
)
_WAITING = (
    select(func.count())
    .select_from(checkins)
    .where(_C.wallet_hash == bindparam("wallet_hash"), _C.answer.is_(None))
)
_QUEUED = checkins.update().where(_C.id == bindparam("key")).values(queued=1)
_DELETE = checkins.delete().where(_C.id == bindparam("key"))
# Answered rows go a little after their answer (a phone that asked again gets it); rows no
# hub ever took go with the tracing window, as their visit would.
_PURGE = checkins.delete().where(
    or_(
        and_(_C.answered_at.is_not(None), _C.answered_at <= bindparam("answered_before")),
        _C.at_ms <= bindparam("before_ms"),
    )
)


def _checkin(row: Any) -> Checkin:
    values = list(row)
    values[6] = bool(values[6])  # queued: an integer in the table
    return Checkin(*values)


class Checkins:
    _db: Database

    def add_checkin(self, checkin: Checkin) -> Checkin:
        """Store ``checkin`` unless its id is stored; the stored one either way.

        ``Conflict`` if the id is another wallet's, or the same wallet's at another door:
        an id names one check-in.
        """
        values: dict[str, Any] = {
            "id": checkin.id,
            "wallet_hash": checkin.wallet_hash,
            "facility_id": checkin.facility_id,
            "door_id": checkin.door_id,
            "pass_text": checkin.pass_text,
            "at_ms": checkin.at_ms,
            "queued": int(checkin.queued),
            "leased_until_ms": None,
            "answer": None,
            "answered_at": None,
        }

        def work(conn: Connection) -> Checkin:
            self._db.inserted(conn, checkins, [values], "id")
            row = conn.execute(_GET, {"id": checkin.id}).one()
            stored = _checkin(row)
            same = (stored.wallet_hash, stored.facility_id, stored.door_id)
            if same != (checkin.wallet_hash, checkin.facility_id, checkin.door_id):
                raise Conflict("this check-in id is used already", "checkin_id_used")
            return stored

        return self._db.write("add a phone check-in", work)

    def waiting_checkins(self, wallet_hash: str) -> int:
        """How many of a wallet's check-ins no hub has answered yet."""
        row = self._db.fetch_one(_WAITING, {"wallet_hash": wallet_hash})
        return int(row[0]) if row is not None else 0

    def get_checkin(self, checkin_id: str) -> Checkin | None:
        row = self._db.fetch_one(_GET, {"id": checkin_id})
        return None if row is None else _checkin(row)

    def take_checkins(
        self, facility_id: str, now_ms: int, lease_ms: int, limit: int
    ) -> list[Checkin]:
        """Lease the facility's due check-ins to its hub for ``lease_ms``, oldest first."""

        def work(conn: Connection) -> list[Checkin]:
            due = (
                conn.execute(_DUE, {"facility_id": facility_id, "now_ms": now_ms, "limit": limit})
                .scalars()
                .all()
            )
            if not due:
                return []
            conn.execute(_LEASE, {"ids": list(due), "until_ms": now_ms + lease_ms})
            return [_checkin(row) for row in conn.execute(_BY_IDS, {"ids": list(due)})]

        return self._db.write("lease phone check-ins", work)

    def answer_checkins(self, facility_id: str, answers: dict[str, str], at: int) -> list[str]:
        """Keep the hub's answers (JSON by check-in id); the ids that took one. A check-in
        of another facility, or answered already, is left as it is."""

        def work(conn: Connection) -> list[str]:
            done = []
            for checkin_id, answer in answers.items():
                changed = conn.execute(
                    _ANSWER,
                    {"key": checkin_id, "of_facility": facility_id, "answer_json": answer,
                     "answered": at},
                )  # fmt: skip
                if changed.rowcount == 1:
                    done.append(checkin_id)
            return done

        return self._db.write("keep the hub's answers", work)

    def mark_checkin_queued(self, checkin_id: str) -> None:
        self._db.write(
            "mark a check-in queued", lambda conn: conn.execute(_QUEUED, {"key": checkin_id})
        )

    def delete_checkin(self, checkin_id: str) -> None:
        self._db.write("forget a check-in", lambda conn: conn.execute(_DELETE, {"key": checkin_id}))

    def purge_checkins(self, answered_before: int, before_ms: int) -> int:
        return self._db.write(
            "purge phone check-ins",
            lambda conn: int(
                conn.execute(
                    _PURGE, {"answered_before": answered_before, "before_ms": before_ms}
                ).rowcount
            ),
        )
