"""The visitors' wallets: one-time activation links and the phones' wallet credentials,
each kept as the hash of its secret, with the pass a wallet holds.

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

# Unix seconds: BIGINT on PostgreSQL, INTEGER on SQLite (as in registry/schema.py).
_SECONDS = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "wallet_links",
        sa.Column("token_hash", sa.Text(), primary_key=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("created_at", _SECONDS, nullable=False),
        sa.Column("expires_at", _SECONDS, nullable=False),
        sa.Column("used_at", _SECONDS),
    )
    op.create_index("wallet_links_expires_at", "wallet_links", ["expires_at"])
    op.create_table(
        "wallets",
        sa.Column("credential_hash", sa.Text(), primary_key=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("created_at", _SECONDS, nullable=False),
        sa.Column("retired_at", _SECONDS),
        sa.Column("pass_text", sa.Text(), nullable=False),
        sa.Column("pass_status", sa.Text(), nullable=False),
        sa.Column("pass_doses", sa.Integer(), nullable=False),
        sa.Column("pass_kid", sa.Text(), nullable=False),
        sa.Column("pass_issued_at", _SECONDS, nullable=False),
        sa.Column("pass_expires_at", _SECONDS, nullable=False),
    )
    op.create_index("wallets_subject", "wallets", ["subject"])


def downgrade() -> None:
    op.drop_index("wallets_subject", "wallets")
    op.drop_table("wallets")
    op.drop_index("wallet_links_expires_at", "wallet_links")
    op.drop_table("wallet_links")
