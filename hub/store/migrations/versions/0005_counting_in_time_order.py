"""Counting in the events' own time order (hub.counting.rules).

With each event that counts: the facility's count after it, its zones' counts (JSON, NULL
without zones), the highest count of its minute up to it, and the alert its flag was
counted in. The index finds an event's place in that order. Every facility is then
counted again from the start in the new order, by the store that migrates (it hands
``recount`` to the migration context; see hub/store/migrations/env.py).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("occupancy_after", sa.Integer()))
    op.add_column("events", sa.Column("zones_after", sa.Text()))
    op.add_column("events", sa.Column("minute_peak", sa.Integer()))
    op.add_column(
        "events", sa.Column("alert_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"))
    )
    op.create_index("events_counting", "events", ["facility_id", "ts", "seq", "event_id"])
    op.create_index(
        "events_alert",
        "events",
        ["alert_id"],
        sqlite_where=sa.text("alert_id IS NOT NULL"),
        postgresql_where=sa.text("alert_id IS NOT NULL"),
    )
    op.create_index("adjustments_made", "adjustments", ["facility_id", "created_at"])
    recount = op.get_context().opts.get("recount")
    if recount is not None:
        recount(op.get_bind())
