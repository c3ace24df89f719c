"""A door's kind: ``camera`` (a door node scans the visitor's pass) or ``poster`` (the
visitor's phone scans the door's poster). Doors registered before were camera doors.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("doors", sa.Column("kind", sa.Text(), nullable=False, server_default="camera"))


def downgrade() -> None:
    with op.batch_alter_table("doors") as batch:
        batch.drop_column("kind")
