"""What differs between SQLite and PostgreSQL under the registry's store, and nothing else.

The repositories beside this module write each statement once; this module holds the
engines and transactions, and the few places where the two databases need different SQL:

* **Transactions.** SQLite: one writer connection behind a lock, each write a ``BEGIN
  IMMEDIATE`` transaction, reads on connections of their own that under WAL never wait for
  it; ``synchronous = NORMAL`` and a 64 MiB writer page cache, as the registry always had.
  PostgreSQL: several writers at once (registry processes, a CLI import beside the
  service), each write one transaction, retried on a deadlock or a serialization failure;
  a pooled connection the server closed is found by a ping on checkout and replaced.
* **The feed's lock.** On PostgreSQL a write to the status feed takes an advisory lock
  held until it commits, so a later cursor is never visible before an earlier one (a hub
  that read up to ``n`` misses nothing that commits later); SQLite's single writer gives
  that already.
* **Upserts.** ``ON CONFLICT`` is spelled by each dialect's own ``insert``; the larger of
  two values is ``max()`` on SQLite and ``GREATEST`` on PostgreSQL.
* **Bulk import.** PostgreSQL takes new persons and feed entries with ``COPY``; SQLite
  with ``executemany``.
* **A consistent snapshot.** One read transaction on a connection of its own (``REPEATABLE
  READ`` and a server-side cursor on PostgreSQL, so a million persons are streamed).

A database error becomes ``StoreError``; what a method raises on purpose passes through.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Engine, Table, event, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import GenericFunction

from registry.errors import StoreError
from registry.storage.database import Database, Row
from runtime.db import DatabaseError, driver_cursor, open_engine

# Rows a server-side cursor brings over per round trip while a snapshot is read.
_SNAPSHOT_ROWS = 10_000
# Index pages of visits and the feed are written at random places: a larger cache than
# SQLite's 2 MiB default keeps them from being re-read per batch.
_WRITER_CACHE_KIB = 65_536
# Stay far below SQLite's 32,766 host parameters for IN lists.
_IN_CHUNK = 500

Violation = Literal["unique", "foreign_key", "other"]


class greatest(GenericFunction[Any]):
    """The larger of its arguments: ``GREATEST`` on PostgreSQL, ``max()`` on SQLite."""

    name = "greatest"
    inherit_cache = True


@compiles(greatest, "sqlite")
def _greatest_sqlite(element: greatest, compiler: Any, **kw: Any) -> str:
    return f"max({compiler.process(element.clauses, **kw)})"


def violation(err: Exception) -> Violation:
    """Which kind of constraint a failed write broke."""
    message = str(getattr(err, "orig", err)).lower()
    if "unique" in message or "duplicate key" in message:
        return "unique"
    if "foreign key" in message:
        return "foreign_key"
    return "other"


class SqliteDatabase(Database):
    """One file; one writer connection behind a lock, readers in autocommit."""

    name = "sqlite"
    label = "SQLite"
    driver_error = sqlite3.Error

    def __init__(self, path: Path, busy_timeout_s: float = 10.0) -> None:
        super().__init__()
        self.path = path
        # Each thread keeps its reading connection, as a thread of the web server reads often.
        self._local = threading.local()
        self._raws: list[Any] = []
        self._raws_lock = threading.Lock()
        self.where = str(path)
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = open_engine(path, pool_size=1)
            # Reads take no lock: runtime.db starts no transaction in AUTOCOMMIT.
            self._reader = open_engine(
                path,
                pool_size=4,
                isolation_level="AUTOCOMMIT",
                execution_options={"isolation_level": "AUTOCOMMIT"},
            )
        except (OSError, DatabaseError) as err:
            raise StoreError(f"{path}: cannot open the registry database: {err}") from err
        busy_ms = int(busy_timeout_s * 1000)
        _pragmas(self._writer, busy_ms, f"PRAGMA cache_size = -{_WRITER_CACHE_KIB}")
        _pragmas(self._reader, busy_ms)
        try:
            with self._lock:
                self.migrate(self._writer)
        except BaseException:
            self.close()
            raise

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Connection]:
        with self._lock, self._writer.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self._reader.connect() as conn:
            yield conn

    def snapshot(self) -> Connection:
        conn = self._reader.connect()
        try:
            conn.exec_driver_sql("BEGIN")
        except BaseException:
            conn.close()
            raise
        return conn

    def insert(self, table: Table) -> Any:
        return sqlite.insert(table)

    def _dialect(self) -> Any:
        return self._writer.dialect

    @contextlib.contextmanager
    def _raw_read(self) -> Iterator[Any]:
        raw = getattr(self._local, "raw", None)
        if raw is None:
            raw = self._reader.raw_connection()
            self._local.raw = raw
            with self._raws_lock:
                self._raws.append(raw)
        yield raw.driver_connection

    def bulk_insert(
        self, conn: Connection, statement: Any, columns: Sequence[str], rows: Sequence[Row]
    ) -> None:
        compiled = self.compiled(statement)
        if compiled.positions != list(columns):
            super().bulk_insert(conn, statement, columns, rows)
            return
        with driver_cursor(conn) as cursor:
            cursor.executemany(compiled.sql, rows)

    def inserted(
        self, conn: Connection, table: Table, rows: list[dict[str, Any]], key: str
    ) -> set[Any]:
        # A statement a row: SQLite's executemany() tells only how many went in in all.
        compiled = self.compiled(self._insert_new(table))
        with driver_cursor(conn) as cursor:
            return {
                row[key]
                for row in rows
                if cursor.execute(compiled.sql, compiled.args(row)).rowcount
            }

    def select_by_keys(
        self, conn: Connection, table: Table, column: str, keys: Sequence[Any]
    ) -> list[Row]:
        statement = self._by_keys(table, column)
        found: list[Row] = []
        for start in range(0, len(keys), _IN_CHUNK):
            found.extend(conn.execute(statement, {"keys": list(keys[start : start + _IN_CHUNK])}))
        return found

    def close(self) -> None:
        super().close()
        with self._raws_lock:
            raws, self._raws = self._raws, []
        for raw in raws:
            raw.close()
        for engine in ("_reader", "_writer"):
            if hasattr(self, engine):
                getattr(self, engine).dispose()


def _pragmas(engine: Engine, busy_ms: int, *more: str) -> None:
    # After runtime.db's own: the registry keeps synchronous = NORMAL (a visit batch a hub
    # pushed again after a power cut is stored once; nothing is acked to a door from here).
    @event.listens_for(engine, "connect")
    def _prepare(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            for statement in more:
                cursor.execute(statement)
        finally:
            cursor.close()


class PgDatabase(Database):
    """A PostgreSQL database (or one schema of it, by the DSN's ``search_path``)."""

    name = "postgresql"
    label = "PostgreSQL"

    def __init__(self, dsn: str, *, pool_size: int = 4) -> None:
        super().__init__()
        import psycopg  # loaded by a PostgreSQL store only
        from psycopg.conninfo import conninfo_to_dict

        self.driver_error = psycopg.Error

        try:
            params = conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as err:
            raise StoreError(f"the store's dsn is not a valid connection string: {err}") from err
        host = params.get("host", "localhost")
        dbname = params.get("dbname", params.get("user", ""))
        self.where = f"{host}:{params.get('port', 5432)}/{dbname}"
        try:
            self._engine = open_engine(
                dsn, pool_size=pool_size, application_name="pintu-registry", pool_pre_ping=True
            )
        except DatabaseError as err:
            raise StoreError(f"{self.where}: {err}") from err
        # Reads skip the pool's ping (a round trip each); one on a connection the server
        # closed meanwhile is tried again on a new one (see Database.fetch).
        self._reads = open_engine(
            dsn,
            pool_size=pool_size,
            application_name="pintu-registry",
            isolation_level="AUTOCOMMIT",
        )
        self._unnests: dict[tuple[str, str], str] = {}
        try:
            self.migrate(self._engine)
        except BaseException:
            self.close()
            raise

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Connection]:
        with self._engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self._reads.connect() as conn:
            yield conn

    def snapshot(self) -> Connection:
        conn = self._engine.connect().execution_options(
            isolation_level="REPEATABLE READ",
            postgresql_readonly=True,
            stream_results=True,
            max_row_buffer=_SNAPSHOT_ROWS,
            yield_per=_SNAPSHOT_ROWS,
        )
        try:
            conn.begin()
        except BaseException:
            conn.close()
            raise
        return conn

    def lock_feed(self, conn: Connection) -> None:
        conn.execute(
            text(
                "SELECT pg_advisory_xact_lock(hashtext('pintu-registry-feed:' || current_schema()))"
            )
        )

    def insert(self, table: Table) -> Any:
        from sqlalchemy.dialects import postgresql  # loaded by a PostgreSQL store only

        return postgresql.insert(table)

    def _dialect(self) -> Any:
        return self._engine.dialect

    @contextlib.contextmanager
    def _raw_read(self) -> Iterator[Any]:
        with self._reads.connect() as conn:
            raw = conn.connection.driver_connection
            try:
                yield raw
            except self.driver_error:
                if raw is None or raw.broken or raw.closed:
                    conn.invalidate()
                raise

    def stale(self, err: Exception) -> bool:
        import psycopg

        return isinstance(err, psycopg.OperationalError)

    def inserted(
        self, conn: Connection, table: Table, rows: list[dict[str, Any]], key: str
    ) -> set[Any]:
        # One statement for the batch: a column array each, unnested in their order.
        sql = self._unnest_sql(table, key)
        arrays = [[row[c.name] for row in rows] for c in table.columns]
        raw = conn.connection.driver_connection
        with raw.cursor() as cursor:  # type: ignore[union-attr]
            return {found[0] for found in cursor.execute(sql, arrays)}

    def _unnest_sql(self, table: Table, key: str) -> str:
        found = self._unnests.get((table.name, key))
        if found is None:
            types = [c.type.compile(dialect=self._engine.dialect) for c in table.columns]
            found = (
                f"INSERT INTO {table.name} ({', '.join(c.name for c in table.columns)}) "  # noqa: S608 - names from the schema
                f"SELECT * FROM unnest({', '.join(f'%s::{t}[]' for t in types)}) "
                f"ON CONFLICT ({', '.join(c.name for c in table.primary_key.columns)}) "
                f"DO NOTHING RETURNING {key}"
            )
            self._unnests[(table.name, key)] = found
        return found

    def select_by_keys(
        self, conn: Connection, table: Table, column: str, keys: Sequence[Any]
    ) -> list[Row]:
        # Joined to an unnest() of the keys: with a million rows the planner looks each one
        # up in the index, where an IN list of a few thousand would scan the whole table.
        sql = (
            f"SELECT t.* FROM unnest(%s::text[]) AS k(key) "  # noqa: S608 - names from the schema
            f"JOIN {table.name} AS t ON t.{column} = k.key"
        )
        raw = conn.connection.driver_connection
        with raw.cursor() as cursor:  # type: ignore[union-attr]
            return list(cursor.execute(sql, [list(keys)]))

    def bulk_insert(
        self, conn: Connection, statement: Any, columns: Sequence[str], rows: Sequence[Row]
    ) -> None:
        table = statement.table
        # COPY: a first import of a million persons is mostly new rows. It takes the rows in
        # order, so the feed's cursors follow the batch's.
        raw = conn.connection.driver_connection
        assert raw is not None  # noqa: S101 - a checked-out connection has one
        with (
            raw.cursor() as cur,
            cur.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)

    def close(self) -> None:
        super().close()
        for engine in ("_reads", "_engine"):
            if hasattr(self, engine):
                getattr(self, engine).dispose()
