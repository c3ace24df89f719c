"""The registry's schema history: a fresh database is built to the metadata of
``registry.schema``, and one made by the numbered migrations before Alembic is stamped at
the revision it matches and migrated forward with every row kept.

The legacy databases are SQL files in ``legacy/``, one per dialect, written by the
registry as it was (schema version 1, a ``schema_migrations`` table, a few rows of each
table).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, inspect

from protocol.status import Status
from registry.records import FacilityState, PersonRow
from registry.schema import metadata
from registry.storage import HEAD, PgStore, SqliteStore, Store
from registry.storage.database import MIGRATIONS_DIR

LEGACY = Path(__file__).parent / "legacy"
DEWI, BUDI = "0" * 23 + "1", "0" * 23 + "2"


@pytest.fixture(params=["sqlite", "postgresql"])
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def where(dialect: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A path to a SQLite file, or a PostgreSQL DSN of a fresh schema."""
    if dialect == "sqlite":
        return str(tmp_path / "registry.db")
    return str(request.getfixturevalue("pg_dsn"))


def load_legacy(dialect: str, where: str) -> None:
    script = (LEGACY / f"{dialect}.sql").read_text()
    if dialect == "sqlite":
        with sqlite3.connect(where) as db:
            db.executescript(script)
        db.close()
    else:
        with psycopg.connect(where, autocommit=True) as conn:
            conn.execute(script.encode())


def open_store(dialect: str, where: str) -> Store:
    return SqliteStore(Path(where)) if dialect == "sqlite" else PgStore(where)


@pytest.fixture
def connection(dialect: str, where: str) -> Iterator[Connection]:
    """A plain SQLAlchemy connection to the same database, for looking at its schema."""
    if dialect == "sqlite":
        engine = create_engine(f"sqlite:///{where}")
    else:
        engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(where))
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def differences(conn: Connection) -> list[object]:
    """What the database's schema lacks or has beyond ``registry.schema``'s metadata."""
    found = compare_metadata(MigrationContext.configure(conn), metadata)
    if conn.dialect.name == "sqlite":
        # SQLite lets a TEXT primary key hold NULL unless told otherwise, and reports it so;
        # the registry never writes one (every insert names the key).
        found = [
            diff
            for diff in found
            if not (
                isinstance(diff, list)
                and diff[0][0] == "modify_nullable"
                and diff[0][3] in _primary_keys(conn, diff[0][2])
            )
        ]
    return found


def _primary_keys(conn: Connection, table: str) -> list[str]:
    return list(inspect(conn).get_pk_constraint(table)["constrained_columns"])


def test_the_head_is_the_newest_revision() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(config).get_heads() == [HEAD]


def test_a_fresh_database_matches_the_metadata(
    dialect: str, where: str, connection: Connection
) -> None:
    open_store(dialect, where).close()
    assert differences(connection) == []
    assert set(inspect(connection).get_table_names()) == {*metadata.tables, "alembic_version"}


def test_a_legacy_database_is_stamped_and_migrated_keeping_its_rows(
    dialect: str, where: str, connection: Connection
) -> None:
    load_legacy(dialect, where)
    store = open_store(dialect, where)
    try:
        person = store.get_person(BUDI)
        assert person is not None and person.status is Status.RED and person.name == "Budi"
        assert [(c.cursor, c.subject, c.status) for c in store.changes_since(0, 10)] == [
            (1, DEWI, Status.GREEN),
            (2, BUDI, Status.YELLOW),
            (3, BUDI, Status.RED),
        ]
        account = store.get_account("siti")
        assert account is not None and account.role == "operator"
        token = store.get_token("tokenhash1")
        assert token is not None and token.facility_id == "mall-a"
        facility = store.get_facility("mall-a")
        assert facility is not None and facility.state is FacilityState.ACTIVE
        assert [d.door_id for d in store.list_doors("mall-a")] == ["main-in"]
        assert [v.visit_id for v in store.visits_of(DEWI, 0, 2_000_000_000)] == ["v1"]
        assert [
            v.visit_id for v in store.overlapping("mall-a", 1_700_000_300, 1_700_000_400, BUDI)
        ] == ["v1"]
        assert store.audit_entries() == [(1_700_000_000, "siti", "person.set", DEWI, "")]
        # The feed and the audit trail go on from where they were.
        store.apply_persons([PersonRow(DEWI, "Dewi", Status.BLACK, 2)], 1_700_000_500)
        assert store.last_cursor() == 4
        store.audit(1_700_000_600, "siti", "person.set", BUDI)
        assert len(store.audit_entries()) == 2
    finally:
        store.close()
    assert differences(connection) == []
    assert "schema_migrations" not in inspect(connection).get_table_names()
    # A second open finds it at the head and changes nothing.
    open_store(dialect, where).close()
    assert differences(connection) == []
