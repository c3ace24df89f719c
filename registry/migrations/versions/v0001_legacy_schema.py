"""The registry's schema as the numbered migrations left it (their version 1).

A database made before Alembic (with a ``schema_migrations`` table) is stamped at this
revision, not built again. The statements are the ones that version ran, per dialect, so a
fresh database and an old one start from the same tables.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_SQLITE = (
    """CREATE TABLE persons (
        subject TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        doses INTEGER NOT NULL,
        changed_at INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    )""",
    """CREATE TABLE status_changes (
        cursor INTEGER PRIMARY KEY AUTOINCREMENT,
        subject TEXT NOT NULL,
        status TEXT NOT NULL,
        doses INTEGER NOT NULL,
        changed_at INTEGER NOT NULL
    )""",
    """CREATE TABLE accounts (
        username TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL,
        created_at INTEGER NOT NULL
    )""",
    """CREATE TABLE tokens (
        token_hash TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        username TEXT,
        facility_id TEXT,
        created_at INTEGER NOT NULL,
        expires_at INTEGER
    )""",
    "CREATE INDEX tokens_facility ON tokens (facility_id, kind)",
    """CREATE TABLE facilities (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        address TEXT NOT NULL,
        type TEXT NOT NULL,
        capacity INTEGER NOT NULL,
        pic_name TEXT NOT NULL,
        pic_email TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        activation_hash TEXT,
        activation_expires_at INTEGER,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    )""",
    "CREATE INDEX facilities_state ON facilities (state)",
    """CREATE TABLE doors (
        facility_id TEXT NOT NULL REFERENCES facilities (id),
        door_id TEXT NOT NULL,
        name TEXT NOT NULL,
        direction TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (facility_id, door_id)
    )""",
    """CREATE TABLE visits (
        facility_id TEXT NOT NULL,
        visit_id TEXT NOT NULL,
        subject TEXT NOT NULL,
        door_id TEXT NOT NULL,
        check_in INTEGER NOT NULL,
        check_out INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        PRIMARY KEY (facility_id, visit_id)
    )""",
    # Tracing: a subject's own visits, then who else was at each facility meanwhile.
    "CREATE INDEX visits_subject_time ON visits (subject, check_in)",
    "CREATE INDEX visits_facility_time ON visits (facility_id, check_in)",
    # Retention: the purge deletes by end time.
    "CREATE INDEX visits_check_out ON visits (check_out)",
    # The longest visit stored per facility bounds the overlap scan from below.
    """CREATE TABLE visit_bounds (
        facility_id TEXT PRIMARY KEY,
        max_length INTEGER NOT NULL
    )""",
    """CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL
    )""",
)

_POSTGRESQL = (
    """CREATE TABLE persons (
        subject TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        doses INTEGER NOT NULL,
        changed_at BIGINT NOT NULL,
        created_at BIGINT NOT NULL
    )""",
    """CREATE TABLE status_changes (
        cursor BIGINT GENERATED ALWAYS AS IDENTITY (CACHE 1) PRIMARY KEY,
        subject TEXT NOT NULL,
        status TEXT NOT NULL,
        doses INTEGER NOT NULL,
        changed_at BIGINT NOT NULL
    )""",
    """CREATE TABLE accounts (
        username TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL,
        created_at BIGINT NOT NULL
    )""",
    """CREATE TABLE tokens (
        token_hash TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        username TEXT,
        facility_id TEXT,
        created_at BIGINT NOT NULL,
        expires_at BIGINT
    )""",
    "CREATE INDEX tokens_facility ON tokens (facility_id, kind)",
    "CREATE INDEX tokens_expires_at ON tokens (expires_at)",
    """CREATE TABLE facilities (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        address TEXT NOT NULL,
        type TEXT NOT NULL,
        capacity INTEGER NOT NULL,
        pic_name TEXT NOT NULL,
        pic_email TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        activation_hash TEXT,
        activation_expires_at BIGINT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )""",
    "CREATE INDEX facilities_state ON facilities (state)",
    "CREATE INDEX facilities_pic_email ON facilities (pic_email)",
    """CREATE TABLE doors (
        facility_id TEXT NOT NULL REFERENCES facilities (id),
        door_id TEXT NOT NULL,
        name TEXT NOT NULL,
        direction TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (facility_id, door_id)
    )""",
    """CREATE TABLE visits (
        facility_id TEXT NOT NULL,
        visit_id TEXT NOT NULL,
        subject TEXT NOT NULL,
        door_id TEXT NOT NULL,
        check_in BIGINT NOT NULL,
        check_out BIGINT NOT NULL,
        received_at BIGINT NOT NULL,
        PRIMARY KEY (facility_id, visit_id)
    )""",
    "CREATE INDEX visits_subject_time ON visits (subject, check_in)",
    "CREATE INDEX visits_facility_time ON visits (facility_id, check_in)",
    "CREATE INDEX visits_check_out ON visits (check_out)",
    """CREATE TABLE visit_bounds (
        facility_id TEXT PRIMARY KEY,
        max_length BIGINT NOT NULL
    )""",
    """CREATE TABLE audit (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at BIGINT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL
    )""",
)


def upgrade() -> None:
    statements = _SQLITE if op.get_bind().dialect.name == "sqlite" else _POSTGRESQL
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("the registry's first schema has nothing before it")
