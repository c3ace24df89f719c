"""One database engine for every service: SQLite or PostgreSQL, and migrations to head.

``open_engine`` gives a SQLAlchemy engine set up the way Pintu's stores need it:

* SQLite: WAL, a busy timeout, foreign keys, and ``synchronous = FULL`` (a batch is acked
  to its door right after the commit and the door then forgets it, so a commit must
  survive a power cut, not just a crash). Transactions start with ``BEGIN IMMEDIATE``, so
  a writer takes the file's write lock at once instead of failing half way with
  ``SQLITE_BUSY``; a connection in ``AUTOCOMMIT`` reads without any lock.
* PostgreSQL through psycopg 3, pooled by SQLAlchemy's own pool; every connection talks
  UTC. ``url`` may be a SQLAlchemy URL or a libpq connection string (``host=... dbname=...``
  or ``postgresql://...``); a password belongs in ``.pgpass``, not in the string.

``migrate`` runs Alembic to head. Several workers may start at once: on PostgreSQL they
take turns under an advisory lock, on SQLite under the file's write lock. A database
already at head is left alone without Alembic being loaded at all (a worker's start
stays cheap), and a database made before Alembic (one with a service's own version
table) is stamped at the revision matching its schema first, then upgraded.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import (
    URL,
    Connection,
    Engine,
    MetaData,
    create_engine,
    event,
    inspect,
    make_url,
    text,
)
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

logger = logging.getLogger(__name__)

VERSION_TABLE = "alembic_version"
# How long a SQLite connection waits for another one's write lock before it gives up.
BUSY_TIMEOUT_S = 30.0

# Called inside the migration's transaction on a database that has no Alembic version
# yet: the revision its schema matches (after dropping its own version table, if it
# likes), or None for an empty database. Raise to refuse a database it cannot place.
Legacy = Callable[[Connection], str | None]


class DatabaseError(Exception):
    """The database cannot be opened or migrated."""


def database_url(url: str | Path) -> URL:
    """``url`` as a SQLAlchemy URL: a path is a SQLite file, a libpq string PostgreSQL."""
    if isinstance(url, Path):
        return URL.create("sqlite+pysqlite", database=str(url))
    text_url = url.strip()
    if text_url.startswith(("postgresql://", "postgres://")):
        return URL.create("postgresql+psycopg")  # the libpq string goes to psycopg whole
    if "://" not in text_url:
        if "=" in text_url:
            return URL.create("postgresql+psycopg")
        return URL.create("sqlite+pysqlite", database=text_url)
    try:
        parsed = make_url(text_url)
    except ArgumentError as err:
        raise DatabaseError(f"not a database URL: {err}") from None
    if parsed.get_backend_name() == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    return parsed


def open_engine(
    url: str | Path,
    *,
    pool_size: int = 4,
    application_name: str = "pintu",
    connect_timeout_s: int = 10,
    read_only: bool = False,
    **engine_args: Any,
) -> Engine:
    """An engine on ``url`` (see the module's doc). ``pool_size`` connections stay open
    between uses; more are opened when more threads need one at once, and closed after.
    ``engine_args`` go to ``sqlalchemy.create_engine`` (``isolation_level`` for example).
    """
    target = database_url(url)
    try:
        if target.get_backend_name() == "sqlite":
            return _sqlite_engine(target, pool_size, read_only, engine_args)
        if target.get_backend_name() == "postgresql":
            return _pg_engine(
                target,
                url if isinstance(url, str) else "",
                pool_size,
                application_name,
                connect_timeout_s,
                engine_args,
            )
    except (ArgumentError, SQLAlchemyError) as err:
        raise DatabaseError(f"cannot open the database: {err}") from err
    raise DatabaseError(f"unsupported database: {target.get_backend_name()}")


def _sqlite_engine(
    target: URL, pool_size: int, read_only: bool, engine_args: dict[str, Any]
) -> Engine:
    database = target.database or ""
    connect_args: dict[str, Any] = {"check_same_thread": False, "timeout": BUSY_TIMEOUT_S}
    if database and database != ":memory:":
        path = Path(database)
        if read_only:
            target = target.set(
                database=f"file:{path.resolve()}", query={"mode": "ro", "uri": "true"}
            )
        else:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                # People's data: a new file is readable by the service's user only,
                # whatever the umask of whoever runs it by hand (SQLite gives the -wal and
                # -shm files the database file's mode).
                with contextlib.suppress(FileExistsError):
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except OSError as err:
                raise DatabaseError(f"{path}: cannot make it: {err}") from err
    engine = create_engine(
        target,
        pool_size=pool_size,
        max_overflow=-1,
        connect_args=connect_args,
        **engine_args,
    )

    @event.listens_for(engine, "connect")
    def _prepare(dbapi_conn: Any, _record: Any) -> None:
        # The driver's own transaction handling stays out of the way: the "begin"
        # listener below starts every transaction, and AUTOCOMMIT starts none.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if not read_only:
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = FULL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            return
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def _pg_engine(
    target: URL,
    given: str,
    pool_size: int,
    application_name: str,
    connect_timeout_s: int,
    engine_args: dict[str, Any],
) -> Engine:
    from psycopg import ProgrammingError  # only PostgreSQL needs it
    from psycopg.conninfo import conninfo_to_dict

    connect_args: dict[str, Any] = {}
    own: set[str] = set(target.query)
    if not target.host and not target.database and given:
        # A libpq string: its keywords go to psycopg as they are.
        try:
            connect_args.update(conninfo_to_dict(given.strip()))
        except ProgrammingError as err:
            raise DatabaseError(f"not a valid connection string: {err}") from None
        own |= set(connect_args)
    # Defaults the string may set otherwise (psycopg's keywords override the string's).
    if "connect_timeout" not in own:
        connect_args["connect_timeout"] = connect_timeout_s
    if "application_name" not in own:
        connect_args["application_name"] = application_name
    engine = create_engine(
        target,
        pool_size=pool_size,
        max_overflow=-1,
        connect_args=connect_args,
        **engine_args,
    )

    @event.listens_for(engine, "connect")
    def _utc(dbapi_conn: Any, _record: Any) -> None:
        # Times come back as UTC datetimes, whatever the server's own time zone.
        with dbapi_conn.cursor() as cursor:
            cursor.execute("SET TIME ZONE 'UTC'")
        if not dbapi_conn.autocommit:
            dbapi_conn.commit()

    return engine


@contextlib.contextmanager
def driver_cursor(conn: Connection) -> Iterator[Any]:
    """A cursor of the driver under ``conn`` (sqlite3 or psycopg), closed after use: for
    statements compiled once and run past SQLAlchemy's per-statement work."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        yield cursor
    finally:
        cursor.close()


def revision(engine_or_conn: Engine | Connection) -> str | None:
    """The Alembic revision the database is at; None before its first migration."""
    if isinstance(engine_or_conn, Engine):
        with engine_or_conn.connect() as conn:
            return revision(conn)
    conn = engine_or_conn
    if not conn.dialect.has_table(conn, VERSION_TABLE):
        return None
    row = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).first()  # noqa: S608
    return str(row[0]) if row else None


def migrate(
    engine: Engine,
    alembic_dir: str | Path,
    head: str,
    *,
    legacy: Legacy | None = None,
    fresh: MetaData | None = None,
    lock_name: str = "pintu",
    attributes: Mapping[str, Any] | None = None,
) -> bool:
    """Bring the database to ``head``, the newest revision in ``alembic_dir`` (the caller
    keeps it as a constant; its tests check it is the scripts' head). True when something
    was done.

    A database with no tables at all is made from ``fresh``, the metadata at head, and
    stamped at head: Alembic runs only for a database that has revisions to go through.
    ``attributes`` reach the migrations' ``env.py`` in ``config.attributes``, beside the
    connection as ``"connection"``."""
    # The cheap path first: a worker of a database at head never loads Alembic.
    try:
        conn = engine.connect()
    except DBAPIError as err:
        raise DatabaseError(f"cannot connect to the database: {err.orig}") from err
    try:
        with conn:
            if revision(conn) == head:
                return False
    except SQLAlchemyError as err:
        raise DatabaseError(f"cannot read the schema's revision: {err}") from err
    if engine.dialect.name == "postgresql":
        # One transaction, even on an engine whose connections are in autocommit mode.
        engine = engine.execution_options(isolation_level="READ COMMITTED")
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # One worker migrates at a time; the others wait, then find it done.
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext(:name || current_schema()))"),
                    {"name": lock_name + ":"},
                )
            current = revision(conn)
            if current == head:
                return False
            if current is None:
                current = legacy(conn) if legacy is not None else None
                if current is None and fresh is not None and not inspect(conn).get_table_names():
                    fresh.create_all(conn)
                    current = head
                    logger.info("made the database's tables at revision %s", head)
                elif current is not None:
                    logger.info("database made before migrations: stamped at %s", current)
                if current is not None:
                    _stamp(conn, current)
                if current == head:
                    return True
            _upgrade(conn, Path(alembic_dir), current, attributes or {})
    except SQLAlchemyError as err:
        raise DatabaseError(f"cannot migrate the database: {err}") from err
    return True


def _stamp(conn: Connection, at: str) -> None:
    """Record revision ``at`` as Alembic does, without loading it."""
    conn.exec_driver_sql(
        f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL, "
        f"CONSTRAINT {VERSION_TABLE}_pkc PRIMARY KEY (version_num))"
    )
    conn.execute(text(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (:at)"), {"at": at})  # noqa: S608


def _upgrade(
    conn: Connection, alembic_dir: Path, current: str | None, attributes: Mapping[str, Any]
) -> None:
    from alembic import command  # loaded only when there is work to do
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    config = Config()
    config.set_main_option("script_location", str(alembic_dir))
    config.attributes.update(attributes)
    config.attributes["connection"] = conn
    script = ScriptDirectory.from_config(config)
    try:
        known = current is None or script.get_revision(current) is not None
    except CommandError:
        known = False
    if not known:
        raise DatabaseError(
            f"the database is at revision {current}, newer than this service knows "
            f"({script.get_current_head()}); upgrade the service"
        )
    command.upgrade(config, "head")
    logger.info("migrated the database to revision %s", script.get_current_head())


def alembic_config(alembic_dir: str | Path, url: str | Path) -> Any:
    """An Alembic ``Config`` for the command line (``revision``, ``history``...)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(alembic_dir))
    config.attributes["url"] = url
    return config
