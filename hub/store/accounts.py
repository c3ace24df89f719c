"""Staff accounts and the audit log of what people did."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, bindparam, delete, select, update

from hub.errors import AlreadyExists, NotFound
from hub.records import AuditEntry, Role, User, check_user_change
from hub.store.dialect import Prepared, bytewise, driver_time, from_driver_time, insert, ms
from hub.store.tables import audit as audit_table
from hub.store.tables import users
from protocol.events import utcnow

if TYPE_CHECKING:
    from hub.store.dialect import Database

_MAX_PAGE = 1000
_USER = (
    users.c.id,
    users.c.username,
    users.c.password_hash,
    users.c.role,
    users.c.created_at,
    users.c.disabled,
    users.c.language,
)
_AUDIT = tuple(audit_table.c)


def _user(row: Sequence[Any]) -> User:
    id_, username, password_hash, role, created_at, disabled, language = row
    return User(
        id=id_,
        username=username,
        password_hash=password_hash,
        role=cast(Role, role),
        created_at=created_at,
        disabled=bool(disabled),
        language=language,
    )


_GET_USER = Prepared(lambda d: select(*_USER).where(users.c.username == bindparam("p_username")))


def _driver_user(conn: Connection, username: str) -> list[Sequence[Any]]:
    dialect = conn.dialect.name
    return [
        (*row[:4], from_driver_time(dialect, row[4]), *row[5:])
        for row in _GET_USER.rows(conn, p_username=username)
    ]


_AUDIT_ENTRY = Prepared(
    lambda d: (
        audit_table.insert()
        .values(
            ts=bindparam("p_ts"),
            username=bindparam("p_user"),
            action=bindparam("p_action"),
            facility_id=bindparam("p_facility"),
            target=bindparam("p_target"),
            detail=bindparam("p_detail"),
        )
        .returning(*_AUDIT)
    )
)


def record_audit(
    conn: Connection,
    user: str,
    action: str,
    facility_id: str | None = None,
    target: str | None = None,
    detail: str = "",
) -> AuditEntry:
    """Write what ``user`` did, in the caller's transaction."""
    dialect = conn.dialect.name
    row = _AUDIT_ENTRY.rows(
        conn,
        p_ts=driver_time(dialect, utcnow()),
        p_user=user,
        p_action=action,
        p_facility=facility_id,
        p_target=target,
        p_detail=detail,
    )[0]
    return AuditEntry(row[0], from_driver_time(dialect, row[1]), *row[2:])


class Accounts:
    """Staff accounts and the audit log: a part of the store (``hub.store.Store``)."""

    def add_user(self: Database, username: str, password_hash: str, role: Role) -> User:
        check_user_change(role, None)
        if not username or not password_hash:
            raise ValueError("a user needs a name and a password hash")
        query = (
            insert(self.dialect, users)
            .values(username=username, password_hash=password_hash, role=role,
                    created_at=ms(utcnow()))
            .on_conflict_do_nothing(index_elements=["username"])
            .returning(*_USER)
        )  # fmt: skip
        row = self._sa("add a user", lambda conn: conn.execute(query).first())
        if row is None:
            raise AlreadyExists(f"user {username!r} already exists")
        return _user(row)

    def get_user(self: Database, username: str) -> User | None:
        # Read on every request a logged-in person makes: compiled once, on the driver.
        rows = self._sa("read a user", lambda conn: _driver_user(conn, username), write=False)
        return _user(rows[0]) if rows else None

    def list_users(self: Database) -> list[User]:
        query = select(*_USER).order_by(bytewise(self.dialect, users.c.username))
        rows = self._sa("read the users", lambda conn: conn.execute(query).all(), write=False)
        return [_user(row) for row in rows]

    def update_user(
        self: Database,
        username: str,
        *,
        password_hash: str | None = None,
        role: Role | None = None,
        disabled: bool | None = None,
        language: str | None = None,
    ) -> User:
        check_user_change(role, language)
        changes = {
            column: value
            for column, value in (
                ("password_hash", password_hash),
                ("role", role),
                ("disabled", disabled),
                ("language", language),
            )
            if value is not None
        }
        query = (
            update(users)
            .where(users.c.username == username)
            .values(changes or {"username": users.c.username})
            .returning(*_USER)
        )
        row = self._sa("update a user", lambda conn: conn.execute(query).first())
        if row is None:
            raise NotFound(f"no user {username!r}")
        return _user(row)

    def delete_user(self: Database, username: str) -> None:
        query = delete(users).where(users.c.username == username)
        deleted = self._sa("delete a user", lambda conn: conn.execute(query).rowcount)
        if deleted == 0:
            raise NotFound(f"no user {username!r}")

    def audit(
        self: Database,
        user: str,
        action: str,
        *,
        facility_id: str | None = None,
        target: str | None = None,
        detail: str = "",
    ) -> AuditEntry:
        return self._sa(
            "write the audit log",
            lambda conn: record_audit(conn, user, action, facility_id, target, detail),
        )

    def audit_log(
        self: Database,
        *,
        facility_id: str | None = None,
        user: str | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        query = select(*_AUDIT)
        if facility_id is not None:
            query = query.where(audit_table.c.facility_id == facility_id)
        if user is not None:
            query = query.where(audit_table.c.username == user)
        if before is not None:
            query = query.where(audit_table.c.id < before)
        query = query.order_by(audit_table.c.id.desc()).limit(max(1, min(limit, _MAX_PAGE)))
        rows = self._sa("read the audit log", lambda conn: conn.execute(query).all(), write=False)
        return [AuditEntry(*row) for row in rows]


__all__ = ["Accounts", "record_audit"]
