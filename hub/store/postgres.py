"""The PostgreSQL store: one database that several hub workers write at once.

It keeps the same records and follows the same rules as the SQLite store (``hub.counting.rules``
does the counting for both); what differs is how writers take turns. SQLite has one
writer per file; here each hub worker writes through connections of its own, and:

* Every transaction that counts or changes a facility first locks the facility's row in
  ``facility_locks`` (``SELECT ... FOR UPDATE``), several facilities in id order. Batches
  of one facility therefore take turns however many workers there are: each one reads the
  counters the previous one committed, so a count is exact and never goes below zero, and
  a node's seq numbers are checked against what every worker stored before. Batches of
  different facilities run side by side. Taking the locks in one order means two workers
  never wait for each other in a circle.
* Counting follows the events' own times, not their row ids (``hub.counting.rules``): an event
  one worker stores after another worker stored later ones is counted in its place, under
  the facility's lock, exactly as a late event on one hub.
* ``event_id`` is unique. A batch leaves out the events already stored and copies the
  others in (``COPY``): should one of them be stored meanwhile (an event id some other
  transaction stored), the copy fails, the batch is rolled back and stored again, and that
  event is then a duplicate.
* A deadlock or serialization failure PostgreSQL reports is retried the same way. A
  connection the server closed is dropped; the call is tried again on a new one when
  nothing of it had begun, and otherwise fails (the ingest retries its batch, which is
  safe: what was committed is a duplicate the second time).
* Capacity set by staff through one worker is read by the others from the database, in
  the same transaction that counts.

Connections are kept in a small pool, in autocommit mode: reads see everything committed,
and writes are explicit transactions. Times are ``timestamptz``, kept to the millisecond
as everywhere in the store. The schema is ``hub.store.tables``, migrated by
``hub.store.migrations``; workers starting together migrate one at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from sqlalchemy import Connection, Select
from sqlalchemy.exc import DBAPIError

from hub.config import FacilityConfig
from hub.errors import StoreDataError, StoreError
from hub.store.dialect import StoreConflict, lock_all
from hub.store.events import recount_all
from hub.store.facilities import apply_settings
from hub.store.migrations import migrate
from hub.store.parts import Store
from protocol.events import utcnow
from runtime.db import DatabaseError, open_engine

logger = logging.getLogger(__name__)

T = TypeVar("T")
Row = tuple[Any, ...]
Conn = psycopg.Connection[Row]

_RETRIES = 5

_LOCK = (
    "SELECT l.facility_id, c.capacity, c.capacity_percent, c.nominal_max, "
    "c.soft_threshold_percent FROM facility_locks l "
    "LEFT JOIN capacity_settings c ON c.facility_id = l.facility_id "
    "WHERE l.facility_id = ANY(%s) ORDER BY l.facility_id FOR UPDATE OF l"
)


def _driver(conn: Connection) -> Conn:
    """psycopg's own connection under SQLAlchemy's."""
    return cast(Conn, conn.connection.driver_connection)


class _Pool:
    """Connections from the engine's pool, in autocommit mode: reads see everything
    committed, and writes are explicit transactions. One that broke is dropped."""

    def __init__(self, dsn: str, max_idle: int) -> None:
        try:
            conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as err:
            raise StoreError(f"the store's dsn is not a valid connection string: {err}") from err
        if "=" not in dsn and "://" not in dsn:
            raise StoreError("the store's dsn is not a valid connection string")
        try:
            self.engine = open_engine(
                dsn, pool_size=max_idle, application_name="pintu-hub", isolation_level="AUTOCOMMIT"
            )
        except DatabaseError as err:
            raise StoreError(f"the store's dsn: {err}") from err
        self.closed = False

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        if self.closed:
            raise StoreError("the store is closed")
        try:
            pooled = self.engine.connect()
        except DBAPIError as err:
            raise StoreError(f"cannot connect to the database: {err.orig}") from err
        conn = _driver(pooled)
        try:
            yield pooled
        finally:
            if conn.closed or conn.broken or conn.info.transaction_status != TransactionStatus.IDLE:
                pooled.invalidate()
            pooled.close()

    def close(self) -> None:
        self.closed = True
        self.engine.dispose()


class PgStore(Store):
    """The hub's store in PostgreSQL (see the module's doc). ``dsn`` is a libpq connection
    string; its password, if the server needs one, belongs in a ``.pgpass`` file."""

    dialect = "postgresql"
    several_writers = True

    def __init__(
        self,
        dsn: str,
        facilities: Sequence[FacilityConfig] = (),
        *,
        max_idle: int = 4,
    ) -> None:
        self.configured: Mapping[str, FacilityConfig] = {f.id: f for f in facilities}
        # Swapped whole, never changed in place: a reader sees the old map or the new one.
        self.facilities: Mapping[str, FacilityConfig] = dict(self.configured)
        self._pool = _Pool(dsn, max_idle)
        try:
            self._migrate()
            self._load_capacity_settings()
        except BaseException:
            self._pool.close()
            raise

    # --- plumbing -------------------------------------------------------------------------
    def _sa(self, what: str, work: Callable[[Connection], T], *, write: bool = True) -> T:
        """``work`` on a connection, in one transaction when it writes; PostgreSQL errors
        become ``StoreError``, after retrying the ones that ask for it."""

        def call(conn: Connection) -> T:
            try:
                return work(conn)
            except DBAPIError as err:
                # The driver's own error, for the retries below.
                if isinstance(err.orig, psycopg.Error):
                    raise err.orig from err
                raise

        for attempt in range(1, _RETRIES + 1):
            begun = False
            used: Conn | None = None
            try:
                with self._pool.connection() as pooled:
                    used = conn = _driver(pooled)
                    if not write:
                        return call(pooled)
                    with conn.transaction():
                        begun = True
                        return call(pooled)
            except (
                pg_errors.DeadlockDetected,
                pg_errors.SerializationFailure,
                StoreConflict,
            ) as err:
                if attempt == _RETRIES:
                    raise StoreError(f"cannot {what}: {err}") from err
                logger.info("%s: %s; trying again", what, err)
            except psycopg.OperationalError as err:
                # A pooled connection the server closed meanwhile (a restart, an idle
                # timeout) fails on first use. A read, or a write that did not begin, is
                # safe to try again on a new connection; a write cut off half way is the
                # caller's to retry, as it may or may not have been committed.
                if begun or attempt == _RETRIES or used is None or not used.broken:
                    raise StoreError(f"cannot {what}: {err}") from err
                logger.info("%s: %s; trying again on a new connection", what, err)
            except psycopg.DataError as err:
                # A value the column cannot hold: the same data fails again, every time.
                raise StoreDataError(f"cannot {what}: {err}") from err
            except psycopg.Error as err:
                raise StoreError(f"cannot {what}: {err}") from err
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _stream(self, what: str, query: Select[Any]) -> Iterator[Any]:
        try:
            with self._pool.connection() as pooled, _driver(pooled).transaction():
                # A server-side cursor, which lives in a transaction.
                options = pooled.execution_options(stream_results=True, yield_per=10_000)
                yield from options.execute(query)
        except DBAPIError as err:
            raise StoreError(f"cannot {what}: {err.orig}") from err
        except psycopg.Error as err:
            raise StoreError(f"cannot {what}: {err}") from err

    def _lock_facilities(
        self, conn: Connection, facility_ids: Sequence[str]
    ) -> Mapping[str, FacilityConfig]:
        return self._lock(_driver(conn), facility_ids)

    def _migrate(self) -> None:
        def recount(conn: Connection) -> None:
            # Every worker waits for the recount, as it waits for a facility's lock.
            lock_all(self.dialect, conn)
            recount_all(self, conn, utcnow())

        try:
            migrate(self._pool.engine, recount)
        except DatabaseError as err:
            raise StoreError(f"cannot migrate the store: {err}") from err

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> PgStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- facilities and their locks ---------------------------------------------------------
    def _lock(self, conn: Conn, facility_ids: Iterable[str]) -> Mapping[str, FacilityConfig]:
        """Lock the facilities' rows in id order, until the transaction ends; the facilities'
        settings in effect (capacity staff set through any worker included)."""
        ids = sorted(set(facility_ids))
        rows = conn.execute(_LOCK, (ids,)).fetchall()
        if len(rows) < len(ids):
            # A facility's first transaction makes its row. Locked out of order, but only
            # once per facility, and a deadlock that may cause is retried.
            found = {row[0] for row in rows}
            missing = [f for f in ids if f not in found]
            conn.execute(
                "INSERT INTO facility_locks (facility_id) SELECT unnest(%s::text[]) "
                "ON CONFLICT DO NOTHING",
                (missing,),
            )
            rows += conn.execute(_LOCK, (missing,)).fetchall()
        return apply_settings(self, rows)
