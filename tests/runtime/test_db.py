"""runtime.db: one engine for SQLite and PostgreSQL, and migrations to head."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, text

from runtime.db import DatabaseError, database_url, migrate, open_engine, revision

ENV = """
from alembic import context
from sqlalchemy import MetaData

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=MetaData())
with context.begin_transaction():
    context.run_migrations()
"""

REVISION = """
from alembic import op

revision = {revision!r}
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute({statement!r})
"""


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    """Two revisions: a table, then a row in it."""
    where = tmp_path / "migrations"
    (where / "versions").mkdir(parents=True)
    (where / "env.py").write_text(ENV)
    (where / "versions" / "0001_things.py").write_text(
        REVISION.format(
            revision="0001", down=None, statement="CREATE TABLE things (n INTEGER NOT NULL)"
        )
    )
    (where / "versions" / "0002_one.py").write_text(
        REVISION.format(revision="0002", down="0001", statement="INSERT INTO things VALUES (2)")
    )
    return where


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = open_engine(tmp_path / "db" / "store.db")
    yield engine
    engine.dispose()


@pytest.fixture
def pg_engine(pg_dsn: str) -> Iterator[Engine]:
    engine = open_engine(pg_dsn)
    yield engine
    engine.dispose()


def _things(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(text("SELECT n FROM things ORDER BY n"))]


def test_urls() -> None:
    assert database_url(Path("/tmp/x.db")).get_backend_name() == "sqlite"
    assert database_url("hub.db").get_backend_name() == "sqlite"
    assert database_url("sqlite:///hub.db").database == "hub.db"
    assert database_url("host=db dbname=hub").drivername == "postgresql+psycopg"
    assert database_url("postgresql://db/hub").drivername == "postgresql+psycopg"
    assert database_url("postgresql+psycopg://u@db/hub").host == "db"
    with pytest.raises(DatabaseError):
        open_engine("mysql://db/hub")


def test_sqlite_settings(sqlite_engine: Engine) -> None:
    with sqlite_engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_sqlite_writers_take_the_lock_when_they_begin(sqlite_engine: Engine) -> None:
    with sqlite_engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
    other = open_engine(sqlite_engine.url.database or "", connect_timeout_s=1)
    with sqlite_engine.begin() as conn:
        conn.exec_driver_sql("SELECT 1")  # BEGIN IMMEDIATE: the write lock is held now
        probe = other.raw_connection()
        try:
            probe.driver_connection.execute("PRAGMA busy_timeout = 0")  # type: ignore[union-attr]
            with pytest.raises(Exception, match="locked"):
                probe.driver_connection.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
        finally:
            probe.close()
        # A reader in AUTOCOMMIT takes no lock and sees the committed table.
        with other.connect().execution_options(isolation_level="AUTOCOMMIT") as reader:
            assert reader.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
    other.dispose()


def test_sqlite_read_only(sqlite_engine: Engine, tmp_path: Path) -> None:
    with sqlite_engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
    reader = open_engine(tmp_path / "db" / "store.db", read_only=True)
    try:
        with reader.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
            with pytest.raises(Exception, match="readonly"):
                conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    finally:
        reader.dispose()


def test_pg_talks_utc(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW TIME ZONE").scalar() == "UTC"
        now = conn.exec_driver_sql("SELECT now()").scalar()
        assert now.tzinfo is not None and now.utcoffset() == UTC.utcoffset(now)
        name = conn.exec_driver_sql("SHOW application_name").scalar()
        assert name == "pintu"


def test_pg_bad_dsn() -> None:
    with pytest.raises(DatabaseError):
        open_engine("host=db dbname")


@pytest.mark.parametrize("which", ["sqlite_engine", "pg_engine"])
def test_migrate_to_head_once(which: str, scripts: Path, request: pytest.FixtureRequest) -> None:
    engine: Engine = request.getfixturevalue(which)
    assert revision(engine) is None
    assert migrate(engine, scripts, "0002") is True
    assert revision(engine) == "0002"
    assert _things(engine) == [2]
    assert migrate(engine, scripts, "0002") is False  # at head: nothing runs again
    assert _things(engine) == [2]


@pytest.mark.parametrize("which", ["sqlite_engine", "pg_engine"])
def test_legacy_database_is_stamped_then_upgraded(
    which: str, scripts: Path, request: pytest.FixtureRequest
) -> None:
    engine: Engine = request.getfixturevalue(which)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE things (n INTEGER NOT NULL)")
        conn.exec_driver_sql("INSERT INTO things VALUES (1)")
        conn.exec_driver_sql("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.exec_driver_sql("INSERT INTO schema_version VALUES (1)")

    def legacy(conn: Connection) -> str | None:
        version = conn.exec_driver_sql("SELECT version FROM schema_version").scalar()
        conn.exec_driver_sql("DROP TABLE schema_version")
        return {1: "0001"}[version]

    assert migrate(engine, scripts, "0002", legacy=legacy) is True
    assert _things(engine) == [1, 2]
    assert revision(engine) == "0002"


def test_newer_database_is_refused(sqlite_engine: Engine, scripts: Path) -> None:
    migrate(sqlite_engine, scripts, "0002")
    with sqlite_engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    with pytest.raises(DatabaseError, match="newer"):
        migrate(sqlite_engine, scripts, "0002")


def test_pg_workers_starting_together_migrate_once(pg_dsn: str, scripts: Path) -> None:
    engines = [open_engine(pg_dsn) for _ in range(4)]
    results: list[bool] = []
    errors: list[BaseException] = []

    def start(engine: Engine) -> None:
        try:
            results.append(migrate(engine, scripts, "0002"))
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=start, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert not errors
        assert sorted(results) == [False, False, False, True]
        assert _things(engines[0]) == [2]
    finally:
        for engine in engines:
            engine.dispose()


def test_empty_database_is_made_from_the_metadata(sqlite_engine: Engine, scripts: Path) -> None:
    from sqlalchemy import Column, Integer, MetaData, Table

    fresh = MetaData()
    Table("things", fresh, Column("n", Integer, nullable=False))
    assert migrate(sqlite_engine, scripts, "0002", fresh=fresh) is True
    assert revision(sqlite_engine) == "0002"
    assert _things(sqlite_engine) == []  # made whole at head: no revision ran


def test_pg_migrates_in_one_transaction_on_an_autocommit_engine(pg_dsn: str, scripts: Path) -> None:
    engine = open_engine(pg_dsn, isolation_level="AUTOCOMMIT")
    try:
        assert migrate(engine, scripts, "0002") is True
        assert _things(engine) == [2]
    finally:
        engine.dispose()
