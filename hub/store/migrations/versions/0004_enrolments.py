"""Sealed node bundles waiting for their node's provisioning QR (hub.enrolments).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.store.tables import Time

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "enrolments",
        sa.Column("lookup_id", sa.Text(), primary_key=True),
        sa.Column("sealed", sa.LargeBinary()),
        sa.Column("expires_at", Time(), nullable=False),
        sa.Column("created_at", Time(), nullable=False),
        sa.Column("used_at", Time()),
    )
