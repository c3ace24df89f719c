"""Where SQLite and PostgreSQL differ, in one place.

The repositories write one statement for both databases; what they cannot say the same
way is here:

* ``insert``: the dialect's own INSERT, for ``ON CONFLICT`` (both speak it, with
  ``RETURNING``);
* ``for_update``: a row lock, which PostgreSQL needs for several writers and SQLite,
  with one writer, neither needs nor has;
* ``bytewise``: an order by the bytes of the text (SQLite's default; PostgreSQL's "C");
* ``ms``: a time to the millisecond, as the store keeps every time in both.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import ColumnElement, Connection, Select, Table
from sqlalchemy.dialects import postgresql, sqlite

T = TypeVar("T")


class Database(Protocol):
    """What a repository needs of its store: a statement run on a connection."""

    dialect: str  # "sqlite" or "postgresql"

    def _sa(self, what: str, work: Callable[[Connection], T], *, write: bool = True) -> T:
        """``work`` on a connection, in one transaction when it writes; database errors
        become ``hub.errors.StoreError``."""
        ...


def insert(dialect: str, table: Table) -> Any:
    """An INSERT with ``on_conflict_do_nothing`` / ``on_conflict_do_update``."""
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def for_update(dialect: str, query: Select[Any]) -> Select[Any]:
    """``query`` locking the rows it reads until the transaction ends (PostgreSQL)."""
    return query.with_for_update() if dialect == "postgresql" else query


def bytewise(dialect: str, column: ColumnElement[str]) -> ColumnElement[str]:
    """``column`` to order by its bytes, as SQLite orders text by default."""
    return column.collate("C") if dialect == "postgresql" else column


def ms(ts: datetime) -> datetime:
    """``ts`` in UTC to the millisecond, as the store keeps every time."""
    ts = ts.astimezone(UTC)
    return ts.replace(microsecond=ts.microsecond // 1000 * 1000)
