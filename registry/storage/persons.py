"""Persons and the status feed: who has which status, and every change of it in order."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import Connection, bindparam, func, select

from protocol.status import Status
from registry.records import Outcome, Person, PersonRow, PersonState, StatusChange, plan_persons
from registry.schema import persons, status_changes
from registry.storage.database import Database

_STATUS_BY_LABEL = {status.label: status for status in Status}  # the text the store keeps
_PERSON_COLUMNS = ("subject", "name", "status", "doses", "changed_at", "created_at")
_CHANGE_COLUMNS = ("subject", "status", "doses", "changed_at")

_GET = select(persons).where(persons.c.subject == bindparam("subject"))
_NEW_PERSONS = persons.insert().values({c: bindparam(c) for c in _PERSON_COLUMNS})
_NEW_CHANGES = status_changes.insert().values({c: bindparam(c) for c in _CHANGE_COLUMNS})
_UPDATE = (
    persons.update()
    .where(persons.c.subject == bindparam("key"))
    .values(
        name=bindparam("name"),
        status=bindparam("status"),
        doses=bindparam("doses"),
        changed_at=bindparam("changed_at"),
        created_at=bindparam("created_at"),
    )
)
_SINCE = (
    select(status_changes)
    .where(status_changes.c.cursor > bindparam("cursor"))
    .order_by(status_changes.c.cursor)
    .limit(bindparam("limit"))
)
_LAST = select(func.max(status_changes.c.cursor))
_ALL_STATUSES = select(persons.c.subject, persons.c.status, persons.c.changed_at).order_by(
    persons.c.subject
)


def _values(value: PersonState) -> tuple[str, str, int, int, int]:
    name, status, doses, changed_at, created_at = value
    return name, status.label, doses, changed_at, created_at


class Persons:
    _db: Database

    def get_person(self, subject: str) -> Person | None:
        row = self._db.fetch_one(_GET, {"subject": subject})
        if row is None:
            return None
        return Person(row[0], row[1], Status.parse(row[2]), row[3], row[4], row[5])

    def apply_persons(self, rows: Sequence[PersonRow], at: int) -> list[Outcome]:
        if not rows:
            return []
        return self._db.write("apply persons", lambda conn: self._apply_persons(conn, rows, at))

    def _apply_persons(self, conn: Connection, rows: Sequence[PersonRow], at: int) -> list[Outcome]:
        db = self._db
        db.lock_feed(conn)
        # Where each subject stands now: (name, status, doses, changed_at, created_at).
        state: dict[str, PersonState] = {}
        subjects = sorted({row.subject for row in rows})
        for subject, name, status, doses, changed_at, created_at in db.select_by_keys(
            conn, persons, "subject", subjects
        ):
            state[subject] = (name, Status.parse(status), doses, changed_at, created_at)
        existed = set(state)
        plan = plan_persons(rows, state, at)
        created = [(s, *_values(state[s])) for s in sorted(plan.dirty - existed)]
        if created:
            db.bulk_insert(conn, _NEW_PERSONS, _PERSON_COLUMNS, created)
        updated = [
            dict(zip(("key", *_PERSON_COLUMNS[1:]), (s, *_values(state[s])), strict=True))
            for s in sorted(plan.dirty & existed)
        ]
        if updated:
            db.execute_many(conn, _UPDATE, updated)
        if plan.changes:
            db.bulk_insert(conn, _NEW_CHANGES, _CHANGE_COLUMNS, plan.changes)
        return plan.outcomes

    def changes_since(self, cursor: int, limit: int) -> list[StatusChange]:
        rows = self._db.fetch(_SINCE, {"cursor": cursor, "limit": limit})
        # A dict of the four labels, not Status[st.upper()]: this runs for every change a
        # fresh hub reads, a million of them.
        by_label = _STATUS_BY_LABEL
        return [StatusChange(c, s, by_label[st], d, t) for c, s, st, d, t in rows]

    def last_cursor(self) -> int:
        row = self._db.fetch_one(_LAST)
        return int(row[0] or 0) if row else 0

    def status_snapshot(self) -> tuple[int, Iterator[tuple[str, str, int]]]:
        # A connection of its own: the cursor and the rows come from one read transaction,
        # and the iterator may outlive other calls.
        conn = self._db.snapshot()
        try:
            cursor = int(conn.execute(_LAST).scalar() or 0)
            rows = conn.execute(_ALL_STATUSES)
        except BaseException:
            conn.close()
            raise

        def iterate() -> Iterator[tuple[str, str, int]]:
            try:
                # Plain tuples, as the callers build JSON or a status list from them.
                yield from ((subject, status, at) for subject, status, at in rows)
            finally:
                rows.close()
                conn.close()

        return cursor, iterate()
