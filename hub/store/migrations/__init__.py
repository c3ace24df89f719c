"""The hub's one migration history (Alembic), for SQLite and PostgreSQL alike.

``migrate(engine)`` brings a database to ``HEAD``: an empty one is made from
``hub.store.tables`` at once, one made before these migrations is stamped at the revision
its schema matches, and the revisions after run in order. A new revision:

    python -m hub.store.migrations "what changes"

compares ``hub.store.tables`` with a database at head and writes the revision to
``versions/``; read it, and set ``HEAD`` to its id.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Connection, Engine

from runtime.db import DatabaseError
from runtime.db import migrate as migrate_to_head

DIRECTORY = Path(__file__).parent
HEAD = "0008"

# The version the stores recorded before Alembic (SQLite ``PRAGMA user_version``,
# PostgreSQL ``schema_version``) and the revision with the same schema.
_LEGACY = {n: f"{n:04d}" for n in range(1, 7)}


def legacy(conn: Connection) -> str | None:
    """The revision of a database made before Alembic; None for an empty one."""
    if conn.dialect.name == "sqlite":
        version = int(conn.exec_driver_sql("PRAGMA user_version").scalar() or 0)
        if version:
            conn.exec_driver_sql("PRAGMA user_version = 0")
    elif conn.dialect.has_table(conn, "schema_version"):
        version = int(conn.exec_driver_sql("SELECT max(version) FROM schema_version").scalar() or 0)
        conn.exec_driver_sql("DROP TABLE schema_version")
    else:
        return None
    if not version:
        return None
    if version not in _LEGACY:
        raise DatabaseError(
            f"the database's schema version {version} is newer than this hub knows; upgrade the hub"
        )
    return _LEGACY[version]


def migrate(engine: Engine, recount: Callable[[Connection], None] | None = None) -> bool:
    """Bring the hub's database to ``HEAD``; True when something was done. ``recount``
    counts every facility again, in the migration's transaction, after a revision that
    changes how events are counted."""
    from hub.store.tables import metadata

    return migrate_to_head(
        engine,
        DIRECTORY,
        HEAD,
        legacy=legacy,
        fresh=metadata,
        lock_name="pintu-hub",
        attributes={"recount": recount},
    )
