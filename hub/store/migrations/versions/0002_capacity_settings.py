"""Capacity set by staff at run time; it overrides the config file's until changed.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql, sqlite

from hub.store.tables import Time

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

FLOAT = (
    sa.Float()
    .with_variant(sqlite.REAL(), "sqlite")
    .with_variant(postgresql.DOUBLE_PRECISION(), "postgresql")
)


def upgrade() -> None:
    op.create_table(
        "capacity_settings",
        sa.Column("facility_id", sa.Text(), primary_key=True),
        sa.Column("capacity", sa.Integer()),
        sa.Column("capacity_percent", FLOAT),
        sa.Column("nominal_max", sa.Integer()),
        sa.Column("soft_threshold_percent", FLOAT, nullable=False),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("updated_at", Time(), nullable=False),
    )
