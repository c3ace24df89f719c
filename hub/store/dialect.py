"""Where SQLite and PostgreSQL differ, in one place.

The repositories write one statement for both databases; what they cannot say the same
way is here:

* ``insert``: the dialect's own INSERT, for ``ON CONFLICT`` (both speak it, with
  ``RETURNING``);
* ``lock_all``: every facility's lock at once (PostgreSQL);
* ``for_update``: a row lock, which PostgreSQL needs for several writers and SQLite,
  with one writer, neither needs nor has;
* ``bytewise``: an order by the bytes of the text (SQLite's default; PostgreSQL's "C");
* ``any_of``: one parameter for a list: an array in PostgreSQL, JSON in SQLite;
* ``position``: ``strpos`` or ``instr``;
* ``ms``: a time to the millisecond, as the store keeps every time in both;
  ``driver_time`` and ``from_driver_time``: a time as the driver takes and gives it
  (``timestamptz`` in PostgreSQL, RFC 3339 text in SQLite), for ``Prepared`` statements;
* ``upsert``: an INSERT that updates the row its key finds;
* ``insert_rows``: many rows in one go (``COPY`` in PostgreSQL, one statement run for
  each row in SQLite, whose calls cost no round trip).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Table,
    Text,
    any_,
    bindparam,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY

from hub.errors import StoreError
from hub.records import iso
from runtime.db import driver_cursor

if TYPE_CHECKING:
    from hub.config import FacilityConfig

T = TypeVar("T")


class Database(Protocol):
    """What a repository needs of its store: a statement run on a connection."""

    dialect: str  # "sqlite" or "postgresql"
    # Whether other processes write the same database (capacity set through another
    # worker is then read back from it).
    several_writers: bool
    # The facilities of the config file, and their settings in effect (with staff's
    # capacity changes), swapped whole, never changed in place.
    configured: Mapping[str, FacilityConfig]
    facilities: Mapping[str, FacilityConfig]

    def _sa(self, what: str, work: Callable[[Connection], T], *, write: bool = True) -> T:
        """``work`` on a connection, in one transaction when it writes; database errors
        become ``hub.errors.StoreError``."""
        ...

    def _lock_facilities(
        self, conn: Connection, facility_ids: Sequence[str]
    ) -> Mapping[str, FacilityConfig]:
        """Make other writers of these facilities wait until the transaction ends (several
        PostgreSQL workers; SQLite has one writer); the facilities' settings in effect."""
        ...

    def _stream(self, what: str, query: Select[Any]) -> Iterator[Any]:
        """The rows of ``query`` as they come (a server-side cursor where there is a
        server), for a read too long to hold in memory at once."""
        ...


def insert(dialect: str, table: Table) -> Any:
    """An INSERT with ``on_conflict_do_nothing`` / ``on_conflict_do_update``."""
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def for_update(dialect: str, query: Select[Any]) -> Select[Any]:
    """``query`` locking the rows it reads until the transaction ends (PostgreSQL)."""
    return query.with_for_update() if dialect == "postgresql" else query


def lock_all(dialect: str, conn: Connection) -> None:
    """Wait for every transaction holding a facility's lock, and keep new ones out until
    this one ends (PostgreSQL; SQLite's one writer holds the file's lock already)."""
    if dialect == "postgresql":
        conn.exec_driver_sql("LOCK TABLE facility_locks IN EXCLUSIVE MODE")


def bytewise(dialect: str, column: ColumnElement[str]) -> ColumnElement[str]:
    """``column`` to order by its bytes, as SQLite orders text by default."""
    return column.collate("C") if dialect == "postgresql" else column


def ms(ts: datetime) -> datetime:
    """``ts`` in UTC to the millisecond, as the store keeps every time."""
    ts = ts.astimezone(UTC)
    return ts.replace(microsecond=ts.microsecond // 1000 * 1000)


def driver_time(dialect: str, ts: datetime) -> Any:
    """``ts`` as the driver takes it for a time column: a ``datetime`` to the millisecond
    in PostgreSQL, RFC 3339 text in SQLite (``hub.store.tables.Time``)."""
    return ms(ts) if dialect == "postgresql" else iso(ts)


def from_driver_time(dialect: str, value: Any) -> datetime:
    """A time column's value as the driver gives it, as a ``datetime``."""
    return value if dialect == "postgresql" else datetime.fromisoformat(value)


def upsert(dialect: str, table: Table, keys: Sequence[str], **values: Any) -> Any:
    """An INSERT of ``values`` that, where a row with the same ``keys`` exists, sets the
    others on it instead."""
    statement = insert(dialect, table).values(**values)
    return statement.on_conflict_do_update(
        index_elements=list(keys),
        set_={name: statement.excluded[name] for name in values if name not in keys},
    )


class StoreConflict(StoreError):
    """A row the transaction meant to insert was stored by another writer meanwhile: the
    transaction is rolled back and tried again (several PostgreSQL workers)."""


def _pg_array_params(table: Table, columns: Sequence[str]) -> str:
    """One ``%b`` parameter a column, cast to an array of its type, for ``unnest``. ``%b``:
    the arrays go in the binary format, which the driver writes without looking at each
    text for characters to quote (a third of the insert's CPU)."""
    pg = postgresql.dialect()  # type: ignore[no-untyped-call]
    return ", ".join(f"%b::{table.c[c].type.compile(dialect=pg)}[]" for c in columns)


# Each statement's text is built once per dialect, table and columns (the tables are the
# module's own, so the cache stays as small as the statements are few).
@functools.cache
def _insert_sql(dialect: str, table: Table, columns: tuple[str, ...], unique: str) -> str:
    names = ", ".join(columns)
    if dialect == "postgresql":
        # COPY: the way in that costs the server least (less than an INSERT from arrays);
        # it has no ON CONFLICT, so a taken value fails it.
        return f"COPY {table.name} ({names}) FROM STDIN"
    marks = ", ".join("?" for _ in columns)
    return (
        f"INSERT INTO {table.name} ({names}) VALUES ({marks}) "  # noqa: S608 - the table's own names
        f"ON CONFLICT ({unique}) DO NOTHING"
    )


def insert_rows(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    rows: Sequence[Sequence[Any]],
    *,
    unique: str,
) -> None:
    """Insert ``rows`` (driver values, in the order of ``columns``), their ids in the
    rows' order. ``StoreConflict`` when another writer has stored a row with the same
    ``unique`` value meanwhile: the transaction is then spoilt, to be rolled back and
    tried again."""
    if not rows:
        return
    dialect = conn.dialect.name
    sql = _insert_sql(dialect, table, columns, unique)
    with driver_cursor(conn) as cursor:
        if dialect == "postgresql":
            from psycopg.errors import UniqueViolation  # loaded by a PostgreSQL store only

            try:
                with cursor.copy(sql) as copy:
                    for row in rows:
                        copy.write_row(row)
            except UniqueViolation as err:
                raise StoreConflict(
                    f"a row of {table.name} with the same {unique} was stored meanwhile"
                ) from err
            return
        cursor.executemany(sql, rows)
        if cursor.rowcount != len(rows):
            missing = len(rows) - cursor.rowcount
            raise StoreConflict(
                f"{missing} rows of {table.name} with the same {unique} were stored meanwhile"
            )


def insert_returning(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    rows: Sequence[Sequence[Any]],
    returning: tuple[str, ...],
) -> list[tuple[Any, ...]]:
    """Insert ``rows`` (driver values, in the order of ``columns``); the ``returning``
    columns of each new row, in no promised order (return a key with them to match them
    up). On PostgreSQL one statement for them all."""
    if not rows:
        return []
    dialect = conn.dialect.name
    sql = _returning_sql(dialect, table, columns, returning)
    with driver_cursor(conn) as cursor:
        if dialect == "postgresql":
            cursor.execute(sql, _pg_arrays(rows))
            return [tuple(row) for row in cursor.fetchall()]
        returned = []
        for row in rows:
            cursor.execute(sql, row)
            returned.append(tuple(cursor.fetchone()))
        return returned


@functools.cache
def _returning_sql(
    dialect: str, table: Table, columns: tuple[str, ...], returning: tuple[str, ...]
) -> str:
    names, back = ", ".join(columns), ", ".join(returning)
    if dialect == "postgresql":
        return (
            f"INSERT INTO {table.name} ({names}) SELECT {names} "  # noqa: S608 - the table's own names
            f"FROM unnest({_pg_array_params(table, columns)}) AS r({names}) RETURNING {back}"
        )
    marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {table.name} ({names}) VALUES ({marks}) RETURNING {back}"  # noqa: S608 - the table's own names


@functools.cache
def _update_sql(dialect: str, table: Table, key: str, columns: tuple[str, ...]) -> str:
    if dialect == "postgresql":
        names = (key, *columns)
        sets = ", ".join(f"{c} = r.{c}" for c in columns)
        return (
            f"UPDATE {table.name} SET {sets} FROM unnest({_pg_array_params(table, names)}) "  # noqa: S608 - the table's own names
            f"AS r({', '.join(names)}) WHERE {table.name}.{key} = r.{key}"
        )
    sets = ", ".join(f"{c} = ?" for c in columns)
    return f"UPDATE {table.name} SET {sets} WHERE {key} = ?"  # noqa: S608 - the table's own names


def _pg_arrays(rows: Sequence[Sequence[Any]]) -> list[list[Any] | None]:
    """The columns of ``rows`` as arrays for ``unnest``. A column with no value in any row
    goes as one NULL, not an array of them: unnest pads it with NULLs all the same, and
    the driver need not look at each."""
    return [
        None if all(value is None for value in column) else list(column)
        for column in zip(*rows, strict=True)
    ]


def update_rows(
    conn: Connection,
    table: Table,
    key: str,
    columns: tuple[str, ...],
    rows: Sequence[Sequence[Any]],
) -> None:
    """Set ``columns`` of the rows whose ``key`` column is each row's first value (driver
    values: the key, then ``columns`` in order). On PostgreSQL one statement for them all,
    from arrays, not one a row."""
    if not rows:
        return
    dialect = conn.dialect.name
    sql = _update_sql(dialect, table, key, columns)
    with driver_cursor(conn) as cursor:
        if dialect == "postgresql":
            cursor.execute(sql, _pg_arrays(rows))
        else:
            cursor.executemany(sql, [(*row[1:], row[0]) for row in rows])


def any_of(
    dialect: str, column: ColumnElement[Any], values: Sequence[Any] | str
) -> ColumnElement[bool]:
    """``column`` is one of ``values``, given as one parameter however many there are (an
    array in PostgreSQL, a JSON array read by ``json_each`` in SQLite): the statement is
    compiled once, and no value costs a parameter of its own. ``values`` may be the name
    of a parameter given later (as ``listed`` makes it)."""
    if dialect == "postgresql":
        if isinstance(values, str):
            return column == any_(bindparam(values, type_=ARRAY(column.type)))
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    param = (
        bindparam(values, type_=Text)
        if isinstance(values, str)
        else bindparam(None, json.dumps(list(values)), type_=Text)
    )
    return column.in_(select(func.json_each(param).table_valued("value").c.value))


def position(dialect: str, needle: Any, haystack: ColumnElement[str]) -> ColumnElement[int]:
    """Where ``needle`` starts in ``haystack``, from 1; 0 when it is not in there."""
    if dialect == "postgresql":
        return func.strpos(haystack, needle)
    return func.instr(haystack, needle)


def listed(dialect: str, items: Sequence[Any]) -> Any:
    """``items`` as the one parameter ``any_of(dialect, column, "name")`` takes."""
    return list(items) if dialect == "postgresql" else json.dumps(list(items))


_PG_ARRAY_PARAM = re.compile(r"%\((\w+)\)s::(\w+)\[\]")


class PreparedFamily:
    """The ``Prepared`` statements of one read whose filters vary: one for each set of the
    parameters given (a parameter given as None is left out), each compiled once per
    database. ``build(dialect, given)`` makes the statement for the names in ``given``."""

    def __init__(self, build: Callable[[str, frozenset[str]], Any]) -> None:
        self._build = build
        self._members: dict[frozenset[str], Prepared] = {}

    def rows(self, conn: Connection, **params: Any) -> list[Any]:
        given = {name: value for name, value in params.items() if value is not None}
        names = frozenset(given)
        member = self._members.get(names)
        if member is None:
            member = self._members[names] = Prepared(lambda dialect: self._build(dialect, names))
        return member.rows(conn, **given)


class Prepared:
    """A statement of the ingest path compiled once per database by SQLAlchemy and run on
    the driver's own cursor: nothing is built, compiled or wrapped per batch or per row.
    ``build(dialect)`` makes it, with named parameters given to ``rows``."""

    def __init__(self, build: Callable[[str], Any]) -> None:
        self._build = build
        self._compiled: dict[str, tuple[str, tuple[str, ...], bool, dict[str, Any]]] = {}

    def rows(self, conn: Connection, **params: Any) -> list[Any]:
        """The rows the statement returns."""
        return self._execute(conn, params, fetch=True)

    def run(self, conn: Connection, **params: Any) -> None:
        """The statement run, for what it changes (it returns no rows)."""
        self._execute(conn, params, fetch=False)

    def many(self, conn: Connection, params: Sequence[Mapping[str, Any]]) -> None:
        """The statement run once for each set of parameters (none for none)."""
        if not params:
            return
        sql, args = self._arguments(conn, params)
        with driver_cursor(conn) as cursor:
            cursor.executemany(sql, args)

    def _arguments(
        self, conn: Connection, params: Sequence[Mapping[str, Any]]
    ) -> tuple[str, list[Any]]:
        dialect = conn.dialect
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self._build(dialect.name).compile(dialect=dialect)
            positional = bool(compiled.positional)
            names = tuple(compiled.positiontup or ()) if positional else tuple(compiled.params)
            sql = str(compiled)
            if dialect.name == "postgresql":
                # Arrays (``= ANY(...)``) go in the binary format, which the driver writes
                # without looking at each text for characters to quote.
                sql = _PG_ARRAY_PARAM.sub(r"%(\1)b::\2[]", sql)
            found = self._compiled[dialect.name] = (
                sql,
                names,
                positional,
                dict(compiled.params),
            )
        sql, names, positional, constants = found
        args: list[Any] = []
        for given in params:
            merged = {**constants, **given}
            if positional:
                args.append([merged[name] for name in names])
            else:
                args.append({name: merged[name] for name in names})
        return sql, args

    def _execute(self, conn: Connection, params: dict[str, Any], *, fetch: bool) -> list[Any]:
        sql, args = self._arguments(conn, [params])
        with driver_cursor(conn) as cursor:
            cursor.execute(sql, args[0])
            return list(cursor.fetchall()) if fetch else []
