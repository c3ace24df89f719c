"""The hub's one migration history: a database made by any earlier hub migrates forward
and keeps its rows; every way to head ends at exactly the schema of ``hub.store.tables``."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from hub.config import FacilityConfig
from hub.store.migrations import DIRECTORY, HEAD, migrate
from hub.store.postgres import PgStore
from hub.store.sqlite import SqliteStore
from hub.store.tables import EVENTS_FILLFACTOR, metadata
from runtime.db import migrate as migrate_to_head
from runtime.db import open_engine, revision

from .legacy_schema import MIGRATIONS, PG_MIGRATIONS

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
FACILITY = FacilityConfig.model_validate(
    {
        "id": "pasar-baru",
        "name": "Pasar Baru",
        "capacity": 10,
        "doors": [{"id": "main", "name": "Main", "direction": "both"}],
    }
)


def _iso(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "hub.db")
    dsn: str = request.getfixturevalue("pg_dsn")
    return dsn


@pytest.fixture
def engine(where: str) -> Iterator[Engine]:
    made = open_engine(where if "=" in where else Path(where))
    yield made
    made.dispose()


def _differences(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def _sqlite_text_key(difference: Any) -> bool:
    """SQLite's one quirk the migration leaves: a single TEXT primary key made by the
    earlier SQL (``visit_id TEXT PRIMARY KEY``) reads back as nullable, though SQLite keeps
    it unique and the store never writes NULL to it; rebuilding the table to say so would
    copy every visit."""
    if not isinstance(difference, list) or len(difference) != 1:
        return False
    kind, _, table, column, *_ = difference[0]
    return kind == "modify_nullable" and metadata.tables[table].c[column].primary_key


def _room_for_recounts(engine: Engine) -> bool:
    """PostgreSQL fills the events' pages only to ``EVENTS_FILLFACTOR`` (below its default
    of 100), leaving room for a recount's updates; SQLite has no such setting."""
    if engine.dialect.name != "postgresql":
        return True
    with engine.connect() as conn:
        options = conn.exec_driver_sql(
            "SELECT reloptions FROM pg_class WHERE oid = 'events'::regclass"
        ).scalar()
    return EVENTS_FILLFACTOR < 100 and f"fillfactor={EVENTS_FILLFACTOR}" in (options or [])


def test_head_is_the_newest_revision() -> None:
    config = Config()
    config.set_main_option("script_location", str(DIRECTORY))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD


def test_a_new_database_is_the_metadata(engine: Engine) -> None:
    assert migrate(engine) is True
    assert revision(engine) == HEAD
    assert _differences(engine) == []
    assert _room_for_recounts(engine)
    assert migrate(engine) is False


def test_every_revision_from_empty_ends_at_the_metadata(engine: Engine) -> None:
    # Without the shortcut for an empty database: the whole history, revision by revision.
    assert migrate_to_head(engine, DIRECTORY, HEAD) is True
    assert revision(engine) == HEAD
    assert _differences(engine) == []
    assert _room_for_recounts(engine)


def _legacy_sqlite(path: str, version: int) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        for statements in MIGRATIONS[:version]:
            for statement in statements:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version}")
        conn.execute(
            "INSERT INTO events (event_id, facility_id, node_id, door_id, seq, ts, kind, "
            "received_at, delta, late, admit) VALUES (?, ?, 'n1', 'main', 1, ?, 'entry', ?, 1, "
            "0, 1)",
            ("a" * 32, FACILITY.id, _iso(T0), _iso(T0)),
        )
        conn.execute("INSERT INTO occupancy VALUES (?, '', 1, ?)", (FACILITY.id, _iso(T0)))
        conn.execute(
            "INSERT INTO users (username, password_hash, role, created_at) "
            "VALUES ('ayu', 'h', 'admin', ?)",
            (_iso(T0),),
        )
        if version >= 3:
            conn.execute(
                "INSERT INTO statuses VALUES ('s1', 1, 2, 5, 7)",
            )
            conn.execute("UPDATE registry_sync SET cursor = 7")


def _legacy_pg(dsn: str, version: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as pg, pg.transaction():
        for statements in PG_MIGRATIONS[:version]:
            for statement in statements:
                pg.execute(statement.encode())
        pg.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        pg.execute("INSERT INTO schema_version VALUES (%s)", (version,))
        pg.execute(
            "INSERT INTO events (event_id, facility_id, node_id, door_id, seq, ts, kind, "
            "received_at, delta, late, admit) VALUES (%s, %s, 'n1', 'main', 1, %s, 'entry', "
            "%s, 1, false, true)",
            ("a" * 32, FACILITY.id, T0, T0),
        )
        pg.execute("INSERT INTO occupancy VALUES (%s, '', 1, %s)", (FACILITY.id, T0))
        pg.execute(
            "INSERT INTO users (username, password_hash, role, created_at) "
            "VALUES ('ayu', 'h', 'admin', %s)",
            (T0,),
        )
        if version >= 3:
            pg.execute("INSERT INTO statuses VALUES ('s1', 1, 2, 5, 7)")
            pg.execute("UPDATE registry_sync SET cursor = 7")


@pytest.mark.parametrize("version", [1, 3, 4, 6])
def test_a_database_of_an_earlier_hub_migrates_forward_with_its_rows(
    where: str, version: int
) -> None:
    if "=" in where:
        _legacy_pg(where, version)
        store: SqliteStore | PgStore = PgStore(where, [FACILITY])
    else:
        _legacy_sqlite(where, version)
        store = SqliteStore(where, [FACILITY])
    with store:
        assert store.schema_version == HEAD
        stored = store.event("a" * 32)
        assert stored is not None
        event = stored.event
        assert (event.ts, event.kind, event.admit, event.late) == (T0, "entry", True, False)
        assert store.occupancy(FACILITY.id).occupancy == 1
        user = store.get_user("ayu")
        assert user is not None and user.role == "admin" and user.language is None
        if version >= 3:
            assert store.sync_state().cursor == 7
    engine = open_engine(where if "=" in where else Path(where))
    try:
        assert [d for d in _differences(engine) if not _sqlite_text_key(d)] == []
        assert revision(engine) == HEAD
        assert _room_for_recounts(engine)
    finally:
        engine.dispose()
