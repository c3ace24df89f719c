"""The first schema (the stores' schema 1 before migrations were Alembic's).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql, sqlite

from hub.store.tables import Time

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
FLAG = sa.Boolean(create_constraint=False).with_variant(sa.Integer(), "sqlite")
FLOAT = (
    sa.Float()
    .with_variant(sqlite.REAL(), "sqlite")
    .with_variant(postgresql.DOUBLE_PRECISION(), "postgresql")
)


def ID() -> sa.Column[int]:
    return sa.Column("id", BIG, sa.Identity(always=False), primary_key=True)


def upgrade() -> None:
    op.create_table(
        "events",
        ID(),
        sa.Column("event_id", sa.Text(), nullable=False, unique=True),
        sa.Column("facility_id", sa.Text(), nullable=False),
        sa.Column("node_id", sa.Text(), nullable=False),
        sa.Column("door_id", sa.Text(), nullable=False),
        sa.Column("seq", BIG, nullable=False),
        sa.Column("ts", Time(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("direction", sa.Text()),
        sa.Column("subject", sa.Text()),
        sa.Column("signal", sa.Text()),
        sa.Column("admit", FLAG),
        sa.Column("reason", sa.Text()),
        sa.Column("message", sa.Text()),
        sa.Column("detail", sa.Text()),
        sa.Column("late", FLAG, server_default=sa.text("false"), nullable=False),
        sa.Column("received_at", Time(), nullable=False),
        sa.Column(
            "delta",
            sa.SmallInteger().with_variant(sa.Integer(), "sqlite"),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column("flag", sa.Text()),
    )
    op.create_index("events_facility", "events", ["facility_id", "id"])
    op.create_index("events_door", "events", ["facility_id", "door_id", "id"])
    op.create_index("events_subject", "events", ["subject", "ts"])
    op.create_table(
        "occupancy",
        sa.Column("facility_id", sa.Text(), primary_key=True),
        sa.Column("zone_id", sa.Text(), primary_key=True),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.Column("updated_at", Time(), nullable=False),
    )
    op.create_table(
        "adjustments",
        ID(),
        sa.Column("facility_id", sa.Text(), nullable=False),
        sa.Column("zone_id", sa.Text()),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.Column("delta", sa.Integer(), nullable=False),
        sa.Column("after_event", BIG, nullable=False),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("created_at", Time(), nullable=False),
    )
    op.create_index("adjustments_facility", "adjustments", ["facility_id", "id"])
    op.create_table(
        "alerts",
        ID(),
        sa.Column("facility_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("node_id", sa.Text()),
        sa.Column("door_id", sa.Text()),
        sa.Column("event_id", sa.Text()),
        sa.Column("count", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("created_at", Time(), nullable=False),
        sa.Column("last_at", Time(), nullable=False),
        sa.Column("acknowledged_by", sa.Text()),
        sa.Column("acknowledged_at", Time()),
        sa.Column("cleared_at", Time()),
    )
    op.create_index(
        "alerts_open", "alerts", ["facility_id", "kind", "acknowledged_at", "cleared_at"]
    )
    op.create_table(
        "nodes",
        sa.Column("facility_id", sa.Text(), primary_key=True),
        sa.Column("node_id", sa.Text(), primary_key=True),
        sa.Column("door_id", sa.Text()),
        sa.Column("state", sa.Text(), server_default=sa.text("'unknown'"), nullable=False),
        sa.Column(
            "problems",
            sa.Text().with_variant(postgresql.JSONB(), "postgresql"),
            server_default=sa.text("'[]'"),
            nullable=False,
        ),
        sa.Column("trust_list_age_s", FLOAT),
        sa.Column("status_list_age_s", FLOAT),
        sa.Column("direction", sa.Text()),
        sa.Column("status_ts", Time()),
        sa.Column("state_since", Time()),
        sa.Column("last_seen", Time()),
        sa.Column("last_event_ts", Time()),
        sa.Column("last_seq", BIG, server_default=sa.text("0"), nullable=False),
    )
    op.create_table(
        "gaps",
        ID(),
        sa.Column("facility_id", sa.Text(), nullable=False),
        sa.Column("node_id", sa.Text(), nullable=False),
        sa.Column("first_seq", BIG, nullable=False),
        sa.Column("last_seq", BIG, nullable=False),
        sa.Column("missing", sa.Integer(), nullable=False),
        sa.Column("detected_at", Time(), nullable=False),
        sa.Column("filled_at", Time()),
        sa.Column("alert_id", BIG),
    )
    op.create_index("gaps_node", "gaps", ["facility_id", "node_id", "filled_at"])
    op.create_table(
        "occupancy_history",
        sa.Column("facility_id", sa.Text(), primary_key=True),
        sa.Column("minute", Time(), primary_key=True),
        sa.Column("occupancy", sa.Integer(), nullable=False),
        sa.Column("peak", sa.Integer(), nullable=False),
    )
    op.create_table(
        "audit",
        ID(),
        sa.Column("ts", Time(), nullable=False),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("facility_id", sa.Text()),
        sa.Column("target", sa.Text()),
        sa.Column("detail", sa.Text(), server_default=sa.text("''"), nullable=False),
    )
    op.create_table(
        "users",
        ID(),
        sa.Column("username", sa.Text(), nullable=False, unique=True),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("created_at", Time(), nullable=False),
        sa.Column("disabled", FLAG, server_default=sa.text("false"), nullable=False),
        sa.CheckConstraint("role IN ('viewer', 'guard', 'admin')", name="users_role"),
    )
    if op.get_bind().dialect.name == "postgresql":
        # The rows a PostgreSQL writer locks to count a facility's events (revision 0007
        # adds the table to SQLite too).
        op.create_table("facility_locks", sa.Column("facility_id", sa.Text(), primary_key=True))
