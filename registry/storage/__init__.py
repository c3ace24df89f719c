"""The registry's storage: one store on SQLite or PostgreSQL, split by what it keeps.

``Store`` is the ``RegistryStore`` (``registry.store``) of both databases: each repository
mixed in below (persons and the feed, accounts and tokens, facilities and doors, visits,
wallets, phone check-ins, the audit trail) writes its statements once, against the tables
of ``registry.schema``;
``registry.storage.dialect`` holds the engines, the transactions and the few places where
the two databases differ. Opening a store brings its schema to the newest revision of
``registry/migrations`` (a database made before them is stamped first, its rows kept).
"""

from __future__ import annotations

from pathlib import Path

from registry.storage.accounts import Accounts
from registry.storage.audit import Audit
from registry.storage.checkins import Checkins
from registry.storage.database import HEAD, Database
from registry.storage.dialect import PgDatabase, SqliteDatabase
from registry.storage.facilities import Facilities
from registry.storage.hubs import Hubs, hub_statements
from registry.storage.persons import Persons
from registry.storage.visits import Visits, bound_statement
from registry.storage.wallets import Wallets

__all__ = ["HEAD", "PgStore", "SqliteStore", "Store"]


class Store(Persons, Accounts, Facilities, Visits, Hubs, Wallets, Checkins, Audit):
    """The registry's data in the database ``db`` opened (see the module's doc)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._visit_bound = bound_statement(db)
        self._hub_statements = hub_statements(db)

    @property
    def where(self) -> str:
        return self._db.where

    def close(self) -> None:
        self._db.close()

    def ping(self) -> None:
        """Raise ``StoreError`` when the store cannot answer."""
        self._db.read(lambda conn: conn.exec_driver_sql("SELECT 1").scalar())


class SqliteStore(Store):
    """The registry's data in one SQLite file in WAL mode, one writer at a time."""

    def __init__(self, path: Path, busy_timeout_s: float = 10.0) -> None:
        self.path = path
        super().__init__(SqliteDatabase(path, busy_timeout_s))


class PgStore(Store):
    """The registry's data in a PostgreSQL database; ``dsn`` is a libpq connection string
    (its password, if the server needs one, belongs in ``.pgpass``, never in the
    registry's configuration)."""

    def __init__(self, dsn: str, *, max_idle: int = 4) -> None:
        super().__init__(PgDatabase(dsn, pool_size=max_idle))
