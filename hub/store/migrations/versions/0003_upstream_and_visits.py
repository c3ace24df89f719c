"""The sync with the registry service (the stored trust list, every subject's latest
status, the feed's cursor) and the visits derived from the events, also their outbox.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.store.tables import Time

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
SMALL = sa.SmallInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "registry_sync",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("cursor", BIG, server_default=sa.text("0"), nullable=False),
        sa.Column("statuses_changed_at", Time()),
        sa.Column("statuses_checked_at", Time()),
        sa.Column("trust_body", sa.Text()),
        sa.Column("trust_etag", sa.Text()),
        sa.Column("trust_changed_at", Time()),
        sa.Column("trust_checked_at", Time()),
        sa.CheckConstraint("id = 1", name="registry_sync_one_row"),
    )
    op.execute("INSERT INTO registry_sync (id) VALUES (1)")
    op.create_table(
        "statuses",
        sa.Column("subject", sa.Text(), primary_key=True),
        sa.Column("status", SMALL, nullable=False),
        sa.Column("doses", SMALL, nullable=False),
        sa.Column("changed_at", BIG, nullable=False),
        sa.Column("cursor", BIG, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "visits",
        sa.Column("visit_id", sa.Text(), primary_key=True),
        sa.Column("facility_id", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("door_id", sa.Text(), nullable=False),
        sa.Column("check_in", Time(), nullable=False),
        sa.Column("check_out", Time(), nullable=False),
        sa.Column("exit_event_id", sa.Text(), nullable=False, unique=True),
        sa.Column("state", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("created_at", Time(), nullable=False),
        sa.Column("sent_at", Time()),
        sa.CheckConstraint("state IN ('pending', 'sent', 'failed')", name="visits_state"),
    )
    op.create_index("visits_outbox", "visits", ["state", "facility_id", "created_at"])
    op.create_index("visits_facility", "visits", ["facility_id", "check_in"])
    op.create_index("visits_subject", "visits", ["subject", "check_in"])
    op.create_index("visits_check_out", "visits", ["check_out"])
