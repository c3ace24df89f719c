"""Phone check-ins on their way to a facility's hub, and when each hub last kept its
channel open.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Unix seconds (or milliseconds): BIGINT on PostgreSQL, INTEGER on SQLite.
_SECONDS = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "checkins",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("wallet_hash", sa.Text(), nullable=False),
        sa.Column("facility_id", sa.Text(), nullable=False),
        sa.Column("door_id", sa.Text(), nullable=False),
        sa.Column("pass_text", sa.Text(), nullable=False),
        sa.Column("at_ms", _SECONDS, nullable=False),
        sa.Column("queued", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("leased_until_ms", _SECONDS),
        sa.Column("answer", sa.Text()),
        sa.Column("answered_at", _SECONDS),
    )
    op.create_index("checkins_facility", "checkins", ["facility_id", "at_ms"])
    op.create_index("checkins_wallet", "checkins", ["wallet_hash"])
    op.add_column("hub_activity", sa.Column("channel_at", _SECONDS))


def downgrade() -> None:
    with op.batch_alter_table("hub_activity") as batch:
        batch.drop_column("channel_at")
    op.drop_index("checkins_wallet", "checkins")
    op.drop_index("checkins_facility", "checkins")
    op.drop_table("checkins")
