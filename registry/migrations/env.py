"""Alembic's entry to the registry's migrations.

The registry runs them itself when its store opens (``registry.storage.database``),
on a connection it already holds; ``alembic -c registry/migrations/alembic.ini`` with
``-x url=...`` runs them by hand, or writes a new revision (see docs/registry.md).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from registry.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    url = context.get_x_argument(as_dictionary=True).get("url", "sqlite:///registry.db")
    with create_engine(url).begin() as opened:
        context.configure(connection=opened, target_metadata=metadata)
        context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
