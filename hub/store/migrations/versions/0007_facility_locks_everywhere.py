"""The facility locks table in SQLite too, so that both databases have one schema.

SQLite has one writer and never locks a row: the table stays empty there.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.create_table("facility_locks", sa.Column("facility_id", sa.Text(), primary_key=True))
