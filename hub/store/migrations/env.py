"""Alembic's entry to the hub's migrations: run on the connection the hub hands over
(``runtime.db.migrate``), or on ``config.attributes["url"]`` from the command line."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from hub.store.tables import metadata
from runtime.db import open_engine


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        # What a revision may call on the hub's store (0005: count every facility again).
        recount=context.config.attributes.get("recount"),
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = open_engine(context.config.attributes["url"])
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()
