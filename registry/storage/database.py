"""The plumbing under the registry's repositories, the same on both databases.

``Database`` runs a repository's work in one transaction (``write``) or as a read, turns a
database error into ``StoreError``, retries a write PostgreSQL asks to retry, and brings
the schema to ``HEAD`` when a store opens. ``Compiled`` keeps a statement compiled once.
What differs between SQLite and PostgreSQL is in ``registry.storage.dialect``.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Table, bindparam, select, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from registry.errors import StoreError
from runtime.db import DatabaseError, driver_cursor, migrate

logger = logging.getLogger(__name__)

T = TypeVar("T")
Row = tuple[Any, ...]

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# The newest revision in registry/migrations/versions (a test checks it is the head).
HEAD = "0006"
# The numbered migrations before Alembic: the revision each version's schema matches.
_LEGACY_REVISIONS = {1: "0001"}

_RETRIES = 5


class Compiled:
    """A statement compiled once for one dialect: its SQL text, and how a dict of values
    becomes the driver's parameters. Reads and the visit intake run it on the driver's
    own cursor; SQLAlchemy's execution path cost more than the SQL itself there (the
    feed's pages, a token looked up per request, a hub's batch of visits)."""

    def __init__(self, statement: Any, dialect: Any) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql: str = compiled.string
        self.defaults: dict[str, Any] = {
            name: value for name, value in compiled.params.items() if value is not None
        }
        self.positions: list[str] | None = compiled.positiontup
        self._pick: Callable[[dict[str, Any]], tuple[Any, ...]] | None = None
        if self.positions:
            pick = operator.itemgetter(*self.positions)
            if len(self.positions) == 1:
                self._pick = lambda values: (pick(values),)
            else:
                self._pick = pick

    def args(self, values: dict[str, Any]) -> Any:
        merged = {**self.defaults, **values} if self.defaults else values
        if self.positions is None:
            return merged
        return self._pick(merged) if self._pick is not None else ()


class Database:
    """The engines of one store and the ways its repositories reach them."""

    name: str
    label: str  # the database's name for messages
    where: str
    # The driver's own errors, met where a statement runs on its cursor.
    driver_error: type[Exception]

    def __init__(self) -> None:
        self.closed = False
        self._compiled: dict[int, Compiled] = {}
        self._statements: dict[tuple[str, ...], Any] = {}
        self._compiling = threading.Lock()

    def compiled(self, statement: Any) -> Compiled:
        """``statement`` (a module-level constant) compiled for this database, once."""
        found = self._compiled.get(id(statement))
        if found is None:
            with self._compiling:
                found = self._compiled.setdefault(
                    id(statement), Compiled(statement, self._dialect())
                )
        return found

    def _dialect(self) -> Any:
        raise NotImplementedError

    def _raw_read(self) -> contextlib.AbstractContextManager[Any]:
        """A driver connection (not in a transaction) for one read."""
        raise NotImplementedError

    def fetch(self, statement: Any, values: dict[str, Any] | None = None) -> list[Row]:
        """The rows of ``statement`` (a constant) with ``values``, as plain tuples."""
        compiled = self.compiled(statement)
        args = compiled.args(values or {})
        for attempt in (1, 2):
            if self.closed:
                raise StoreError("the store is closed")
            try:
                with self._raw_read() as raw:
                    cursor = raw.cursor()
                    try:
                        cursor.execute(compiled.sql, args)
                        return list(cursor.fetchall())
                    finally:
                        cursor.close()
            except self.driver_error as err:
                if attempt == 1 and self.stale(err):
                    logger.info("read the store: %s; trying again on a new connection", err)
                    continue
                raise StoreError(f"{self.where}: cannot read the store: {err}") from err
            except SQLAlchemyError as err:
                raise StoreError(f"{self.where}: cannot read the store: {err}") from err
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def stale(self, err: Exception) -> bool:
        """Whether a read failed on a connection gone stale (worth one more try)."""
        return False

    def fetch_one(self, statement: Any, values: dict[str, Any] | None = None) -> Row | None:
        rows = self.fetch(statement, values)
        return rows[0] if rows else None

    def inserted(
        self, conn: Connection, table: Table, rows: list[dict[str, Any]], key: str
    ) -> set[Any]:
        """Insert ``rows`` (every column of ``table``) in their order, skipping those whose
        primary key is stored; the ``key`` of those that went in."""
        raise NotImplementedError

    def select_by_keys(
        self, conn: Connection, table: Table, column: str, keys: Sequence[Any]
    ) -> list[Row]:
        """The rows (all columns, in the table's order) whose ``column`` is one of ``keys``."""
        raise NotImplementedError

    def _insert_new(self, table: Table) -> Any:
        """``INSERT`` into ``table`` that skips a row whose primary key is stored (a constant
        per table, so that it is compiled once)."""
        found = self._statements.get(("insert_new", table.name))
        if found is None:
            found = self.insert(table).on_conflict_do_nothing(
                index_elements=[c.name for c in table.primary_key.columns]
            )
            self._statements[("insert_new", table.name)] = found
        return found

    def _by_keys(self, table: Table, column: str) -> Any:
        found = self._statements.get(("by_keys", table.name, column))
        if found is None:
            found = select(table).where(table.c[column].in_(bindparam("keys", expanding=True)))
            self._statements[("by_keys", table.name, column)] = found
        return found

    # What each dialect provides.

    def _writing(self) -> contextlib.AbstractContextManager[Connection]:
        raise NotImplementedError

    def _reading(self) -> contextlib.AbstractContextManager[Connection]:
        raise NotImplementedError

    def snapshot(self) -> Connection:
        """A connection in a read transaction of its own; the caller closes it."""
        raise NotImplementedError

    def lock_feed(self, conn: Connection) -> None:
        """Hold the status feed's lock until ``conn``'s transaction ends."""

    def insert(self, table: Table) -> Any:
        """The dialect's ``INSERT`` of ``table``, which can say ``ON CONFLICT``."""
        raise NotImplementedError

    def bulk_insert(
        self, conn: Connection, statement: Any, columns: Sequence[str], rows: Sequence[Row]
    ) -> None:
        """Insert ``rows`` in their order with ``statement``, an ``INSERT`` of ``columns``
        (tuples in that order)."""
        self.execute_many(conn, statement, [dict(zip(columns, r, strict=True)) for r in rows])

    def execute_many(
        self, conn: Connection, statement: Any, rows: Sequence[dict[str, Any]]
    ) -> None:
        """``statement`` once for each of ``rows``, on the driver's cursor of ``conn``."""
        compiled = self.compiled(statement)
        with driver_cursor(conn) as cursor:
            cursor.executemany(compiled.sql, [compiled.args(row) for row in rows])

    def close(self) -> None:
        self.closed = True

    # What the repositories call.

    def read(self, work: Callable[[Connection], T]) -> T:
        return self._run("read the store", work, write=False)

    def write(self, what: str, work: Callable[[Connection], T]) -> T:
        return self._run(what, work, write=True)

    def _run(self, what: str, work: Callable[[Connection], T], *, write: bool) -> T:
        for attempt in range(1, _RETRIES + 1):
            if self.closed:
                raise StoreError("the store is closed")
            try:
                with self._writing() if write else self._reading() as conn:
                    return work(conn)
            except DBAPIError as err:
                if write and attempt < _RETRIES and _worth_retrying(err):
                    logger.info("%s: %s; trying again", what, err.orig)
                    continue
                raise StoreError(f"{self.where}: cannot {what}: {_reason(err)}") from err
            except SQLAlchemyError as err:
                raise StoreError(f"{self.where}: cannot {what}: {err}") from err
            except self.driver_error as err:
                raise StoreError(f"{self.where}: cannot {what}: {err}") from err
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def migrate(self, engine: Engine) -> None:
        try:
            if migrate(
                engine,
                MIGRATIONS_DIR,
                HEAD,
                legacy=_legacy_revision,
                lock_name="pintu-registry",
            ):
                logger.info("%s: the schema is now at revision %s", self.where, HEAD)
        except DatabaseError as err:
            cause = err.__cause__
            if isinstance(cause, DBAPIError) and _unreachable(cause):
                raise StoreError(
                    f"cannot connect to {self.label} at {self.where}: {_reason(cause)}"
                ) from err
            raise StoreError(f"{self.where}: {err}") from err


def _legacy_revision(conn: Connection) -> str | None:
    """The revision a database made by the numbered migrations matches; their table goes."""
    if not conn.dialect.has_table(conn, "schema_migrations"):
        return None
    newest = conn.execute(text("SELECT MAX(version) FROM schema_migrations")).scalar() or 0
    if newest not in _LEGACY_REVISIONS:
        raise DatabaseError(
            f"the database has schema version {newest}, newer than this registry knows "
            f"({max(_LEGACY_REVISIONS)}); upgrade the registry"
        )
    conn.execute(text("DROP TABLE schema_migrations"))
    return _LEGACY_REVISIONS[newest]


def _worth_retrying(err: DBAPIError) -> bool:
    # deadlock_detected, serialization_failure: PostgreSQL rolled it all back. A write cut
    # off half way is not retried, as it may or may not have been committed (a connection
    # already dead when taken from the pool is replaced by the pool's ping before any of it).
    return getattr(err.orig, "sqlstate", None) in ("40P01", "40001")


def _unreachable(err: DBAPIError) -> bool:
    return "connect" in str(err.orig).lower()


def _reason(err: DBAPIError) -> str:
    lines = str(err.orig).strip().splitlines()
    return lines[0] if lines else type(err.orig).__name__
