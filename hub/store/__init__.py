"""The hub's store (``Store``, its parts in ``hub.store.parts``), and how to open the
configured one. The ingest is the store's main writer; the dashboard and the API read."""

from __future__ import annotations

from collections.abc import Sequence

from hub.config import FacilityConfig, HubConfig, PostgresStoreConfig, SqliteStoreConfig
from hub.errors import UnsupportedBackend
from hub.store.parts import Store

__all__ = ["Store", "open_store"]


def open_store(config: HubConfig, facilities: Sequence[FacilityConfig] | None = None) -> Store:
    """The store the config names, opened and migrated."""
    store = config.store
    chosen = config.facilities if facilities is None else facilities
    if isinstance(store, PostgresStoreConfig):
        # Imported here, not at the top: psycopg would cost every SQLite hub about 10 MB of
        # resident memory and 0.7 s of its start (see docs/benchmarks.md, Optimisations).
        from hub.store.postgres import PgStore

        return PgStore(store.dsn, chosen)
    if isinstance(store, SqliteStoreConfig):
        from hub.store.sqlite import SqliteStore

        return SqliteStore(store.path, chosen)
    raise UnsupportedBackend(f"store backend {store.backend!r} is not supported")
