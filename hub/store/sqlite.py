"""The SQLite store: one file in WAL mode, one writer, any number of readers.

Every write goes through one connection, one transaction at a time, under a lock: SQLite
allows one writer per database, and queuing the writers here is cheaper than making them
retry on ``SQLITE_BUSY``. Readers take read-only connections from a small pool, so the
dashboard never waits for a batch of events being written.

The SQL is kept to what PostgreSQL also understands (``ON CONFLICT ... DO UPDATE``, no
SQLite-only functions in queries), so a second backend is a port of the schema, not of
the logic. The schema is ``hub.store.tables``, migrated by ``hub.store.migrations``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Select
from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import SQLAlchemyError

from hub.config import FacilityConfig
from hub.errors import StoreDataError, StoreError
from hub.store.events import recount_all
from hub.store.migrations import migrate
from hub.store.parts import Store
from protocol.events import utcnow
from runtime.db import DatabaseError, open_engine

logger = logging.getLogger(__name__)

T = TypeVar("T")


class SqliteStore(Store):
    """The hub's store in one SQLite file (see the module's doc)."""

    dialect = "sqlite"
    several_writers = False

    def __init__(
        self,
        path: str | Path,
        facilities: Sequence[FacilityConfig] = (),
        *,
        max_readers: int = 4,
    ) -> None:
        self.path = Path(path)
        self.configured: Mapping[str, FacilityConfig] = {f.id: f for f in facilities}
        # Swapped whole, never changed in place: a reader sees the old map or the new one.
        self.facilities: Mapping[str, FacilityConfig] = dict(self.configured)
        self._lock = threading.Lock()
        self._closed = False
        # Each reading thread's own read-only connection (``_reader``), closed with the store.
        self._local = threading.local()
        self._reader_conns: list[Connection] = []
        self._readers_lock = threading.Lock()
        try:
            # One writer connection, held open; readers from a read-only pool of their own,
            # so the dashboard never waits for a batch of events being written.
            self._engine = open_engine(self.path, pool_size=1)
            self._writer = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except (DatabaseError, SQLAlchemyError) as err:
            raise StoreError(f"{self.path}: cannot open the database: {err}") from err
        self._readers = open_engine(self.path, read_only=True, pool_size=max_readers)
        try:
            self._migrate()
            self._load_capacity_settings()
        except sqlite3.Error as err:
            self.close()
            raise StoreError(f"{self.path}: cannot prepare the database: {err}") from err
        except StoreError:
            self.close()
            raise

    @property
    def conn(self) -> sqlite3.Connection:
        """The writer's own connection."""
        return cast(sqlite3.Connection, self._writer.connection.driver_connection)

    # --- plumbing -------------------------------------------------------------------------
    def _migrate(self) -> None:
        def recount(conn: Connection) -> None:
            recount_all(self, conn, utcnow())

        try:
            migrate(self._engine, recount)
        except DatabaseError as err:
            raise StoreError(f"{self.path}: cannot migrate the store: {err}") from err

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """The writer inside one transaction, committed when the block ends."""
        with self._lock:
            if self._closed:
                raise StoreError("the store is closed")
            conn = self.conn
            try:
                # IMMEDIATE takes the write lock now, so a reader in another process never
                # turns this transaction into a busy error half way through.
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as err:
                raise StoreError(f"{self.path}: cannot start a transaction: {err}") from err
            try:
                yield self._writer
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as err:
                conn.execute("ROLLBACK")
                raise StoreError(f"{self.path}: cannot commit: {err}") from err

    @contextmanager
    def _reader(self) -> Iterator[Connection]:
        """A read-only connection of this thread's own, kept open: it sees every committed
        write (it never holds a transaction open), and a read costs no checkout from a
        pool, which on the API's path cost more than the read itself."""
        if self._closed:
            raise StoreError("the store is closed")
        conn: Connection | None = getattr(self._local, "reader", None)
        if conn is None or conn.closed:
            try:
                conn = self._readers.connect().execution_options(isolation_level="AUTOCOMMIT")
            except SQLAlchemyError as err:
                raise StoreError(f"{self.path}: cannot open for reading: {err}") from err
            driver = cast(sqlite3.Connection, conn.connection.driver_connection)
            driver.row_factory = sqlite3.Row
            with self._readers_lock:
                if self._closed:
                    conn.close()
                    raise StoreError("the store is closed")
                self._reader_conns.append(conn)
            self._local.reader = conn
        yield conn

    def _sa(self, what: str, work: Callable[[Connection], T], *, write: bool = True) -> T:
        """``work`` on a connection, in one transaction when it writes; database errors
        become ``StoreError`` (``StoreDataError`` for a value a column cannot hold)."""
        try:
            if write:
                with self._transaction() as conn:
                    return work(conn)
            with self._reader() as conn:
                return work(conn)
        except (OverflowError, sa_exc.DataError, sqlite3.DataError) as err:
            # A value SQLite cannot hold (an integer past 64 bits): the same data fails
            # again, every time.
            raise StoreDataError(f"{self.path}: cannot {what}: {err}") from err
        except (sa_exc.SQLAlchemyError, sqlite3.Error) as err:
            # Statements of the ingest path run on the driver's own cursor (``Prepared``).
            raise StoreError(f"{self.path}: cannot {what}: {err}") from err

    def _stream(self, what: str, query: Select[Any]) -> Iterator[Any]:
        # A connection of the pool's, not the thread's own: a stream left unfinished keeps
        # its statement, and with it a read snapshot, until the connection goes back.
        if self._closed:
            raise StoreError("the store is closed")
        try:
            conn = self._readers.connect().execution_options(isolation_level="AUTOCOMMIT")
        except SQLAlchemyError as err:
            raise StoreError(f"{self.path}: cannot open for reading: {err}") from err
        with conn:
            try:
                yield from conn.execution_options(yield_per=10_000).execute(query)
            except sa_exc.SQLAlchemyError as err:
                raise StoreError(f"{self.path}: cannot {what}: {err}") from err

    def _lock_facilities(
        self, conn: Connection, facility_ids: Sequence[str]
    ) -> Mapping[str, FacilityConfig]:
        """Nothing to lock: the store's one writer takes the file's lock."""
        return self.facilities

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._writer.close()
            self._engine.dispose()
        with self._readers_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        self._readers.dispose()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
