"""Write a new migration: ``python -m hub.store.migrations "what changes"``.

A scratch SQLite database is brought to head; Alembic compares it with
``hub.store.tables`` and writes what differs as the next revision in ``versions/``.
Differences only PostgreSQL has (a type variant, a lock) are added by hand.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from alembic import command

from hub.store.migrations import DIRECTORY, HEAD
from runtime.db import alembic_config, migrate, open_engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("message", help='what the revision changes, e.g. "visits: a note"')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "head.db"
        engine = open_engine(path)
        try:
            migrate(engine, DIRECTORY, HEAD)  # every revision, no shortcut: the real history
        finally:
            engine.dispose()
        next_id = f"{int(HEAD) + 1:04d}"
        command.revision(
            alembic_config(DIRECTORY, path), message=args.message, autogenerate=True, rev_id=next_id
        )


if __name__ == "__main__":
    main()
