"""What the registry saw of each facility's hub: its last reads of the lists, its last
pushed visits and its refused pushes, for the operators' console.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Unix seconds: BIGINT on PostgreSQL, INTEGER on SQLite (as in registry/schema.py).
_SECONDS = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "hub_activity",
        sa.Column("facility_id", sa.Text(), primary_key=True),
        sa.Column("statuses_at", _SECONDS),
        sa.Column("trust_at", _SECONDS),
        sa.Column("visits_at", _SECONDS),
        sa.Column("refused_at", _SECONDS),
        sa.Column("refused", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("refused_reason", sa.Text()),
    )


def downgrade() -> None:
    op.drop_table("hub_activity")
