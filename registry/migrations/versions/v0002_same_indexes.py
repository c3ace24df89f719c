"""The same indexes on both dialects: SQLite gets the two PostgreSQL already had.

``tokens_expires_at`` serves the purge of expired tokens, ``facilities_pic_email`` a PIC's
list of their own facilities.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.create_index("tokens_expires_at", "tokens", ["expires_at"])
        op.create_index("facilities_pic_email", "facilities", ["pic_email"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.drop_index("facilities_pic_email", "facilities")
        op.drop_index("tokens_expires_at", "tokens")
