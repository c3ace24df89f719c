"""Room on the events' pages for their recounts, on PostgreSQL (``hub.store.tables``).

Pages written from now on are filled to half; those written before stay as
they are (a ``VACUUM FULL`` would rewrite them, and is not needed). SQLite has no such
setting.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE events SET (fillfactor = 50)")
