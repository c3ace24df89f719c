"""``RegistryStore`` on PostgreSQL: for a registry that outgrows one machine's SQLite file.

It keeps the same tables and follows the same rules as ``registry.sqlite_store``; what
differs is that several writers (registry processes, a CLI import beside the service) run
at once instead of one after the other, so:

* Every method runs in one transaction (or is a single read), so it does all it says or
  nothing; a PostgreSQL error becomes ``StoreError``.
* Writes to the status feed take the feed's advisory lock first and hold it until they
  commit. Cursors come from an identity column, drawn under that lock, so a later cursor
  is never visible before an earlier one: a hub that read up to cursor ``n`` misses nothing
  that commits later. (Without the lock, two imports could commit cursors 6 then 5, and a
  hub that had read 6 would never see 5.) The lock also makes two imports of the same
  person take turns, as SQLite's single writer does.
* Visits are inserted with ``ON CONFLICT DO NOTHING``: a visit id another transaction
  stored meanwhile (two pushes of the same batch at once) waits for that one, then counts
  as already stored, and its content is compared as for any duplicate. Rows go in by
  visit id, so two such batches take their row locks in one order.
* A facility's state changes read its row ``FOR UPDATE``: two operators acting at once
  take turns, and the second sees what the first did.
* A pooled connection the server closed (a restart, an idle timeout) is dropped, and the
  call tried again on a new one when nothing of it had begun; a write cut off half way
  fails, since it may or may not have been committed.
* The status snapshot reads in one ``REPEATABLE READ`` transaction on a connection of its
  own, through a server-side cursor, so a million persons are streamed, not held.

Schema changes are the numbered ``MIGRATIONS``, recorded in ``schema_migrations``;
processes starting together migrate one at a time under an advisory lock. Times are
integer Unix seconds, as in the SQLite store.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus

from protocol.status import Status
from registry.errors import AlreadyExists, Conflict, NotFound, StoreError
from registry.records import (
    Account,
    Door,
    Facility,
    FacilityState,
    Outcome,
    Person,
    PersonRow,
    PersonState,
    StatusChange,
    Token,
    Visit,
    VisitIntake,
    facility_from_row,
    plan_persons,
    visit_from_row,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
Row = tuple[Any, ...]
Conn = psycopg.Connection[Row]

# Each entry is applied once, in order, and recorded in schema_migrations. Never edit a
# released entry: add the next number.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """CREATE TABLE persons (
                subject TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                status TEXT NOT NULL,
                doses INTEGER NOT NULL,
                changed_at BIGINT NOT NULL,
                created_at BIGINT NOT NULL
            )""",
            # No sequence cache: cursors are handed out in order whichever connection asks.
            """CREATE TABLE status_changes (
                cursor BIGINT GENERATED ALWAYS AS IDENTITY (CACHE 1) PRIMARY KEY,
                subject TEXT NOT NULL,
                status TEXT NOT NULL,
                doses INTEGER NOT NULL,
                changed_at BIGINT NOT NULL
            )""",
            """CREATE TABLE accounts (
                username TEXT PRIMARY KEY,
                password_hash TEXT NOT NULL,
                role TEXT NOT NULL,
                created_at BIGINT NOT NULL
            )""",
            """CREATE TABLE tokens (
                token_hash TEXT PRIMARY KEY,
                kind TEXT NOT NULL,
                username TEXT,
                facility_id TEXT,
                created_at BIGINT NOT NULL,
                expires_at BIGINT
            )""",
            "CREATE INDEX tokens_facility ON tokens (facility_id, kind)",
            "CREATE INDEX tokens_expires_at ON tokens (expires_at)",
            """CREATE TABLE facilities (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                address TEXT NOT NULL,
                type TEXT NOT NULL,
                capacity INTEGER NOT NULL,
                pic_name TEXT NOT NULL,
                pic_email TEXT NOT NULL,
                state TEXT NOT NULL,
                reason TEXT,
                activation_hash TEXT,
                activation_expires_at BIGINT,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL
            )""",
            "CREATE INDEX facilities_state ON facilities (state)",
            "CREATE INDEX facilities_pic_email ON facilities (pic_email)",
            """CREATE TABLE doors (
                facility_id TEXT NOT NULL REFERENCES facilities (id),
                door_id TEXT NOT NULL,
                name TEXT NOT NULL,
                direction TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (facility_id, door_id)
            )""",
            """CREATE TABLE visits (
                facility_id TEXT NOT NULL,
                visit_id TEXT NOT NULL,
                subject TEXT NOT NULL,
                door_id TEXT NOT NULL,
                check_in BIGINT NOT NULL,
                check_out BIGINT NOT NULL,
                received_at BIGINT NOT NULL,
                PRIMARY KEY (facility_id, visit_id)
            )""",
            # Tracing: a subject's own visits, then who else was at each facility meanwhile.
            "CREATE INDEX visits_subject_time ON visits (subject, check_in)",
            "CREATE INDEX visits_facility_time ON visits (facility_id, check_in)",
            # Retention: the purge deletes by end time.
            "CREATE INDEX visits_check_out ON visits (check_out)",
            # The longest visit stored per facility bounds the overlap scan from below.
            """CREATE TABLE visit_bounds (
                facility_id TEXT PRIMARY KEY,
                max_length BIGINT NOT NULL
            )""",
            """CREATE TABLE audit (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                at BIGINT NOT NULL,
                actor TEXT NOT NULL,
                action TEXT NOT NULL,
                target TEXT NOT NULL,
                detail TEXT NOT NULL
            )""",
        ),
    ),
)

_RETRIES = 5
# Rows a server-side cursor brings over per round trip while a snapshot is read.
_SNAPSHOT_ROWS = 10_000
_FACILITY_COLUMNS = (
    "id, name, address, type, capacity, pic_name, pic_email, state, created_at, updated_at, "
    "reason, activation_hash, activation_expires_at"
)
_VISIT_COLUMNS = "facility_id, visit_id, subject, door_id, check_in, check_out"
_PERSON_COLUMNS = "subject, name, status, doses, changed_at, created_at"
_TOKEN_COLUMNS = "token_hash, kind, username, facility_id, created_at, expires_at"  # noqa: S105
_INSERT_VISITS = (
    f"INSERT INTO visits ({_VISIT_COLUMNS}, received_at) "  # noqa: S608 - constant
    "SELECT v.f, v.i, v.s, v.d, v.a, v.b, %s::bigint "
    "FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[]) "
    "AS v(f, i, s, d, a, b) ORDER BY v.i "
    "ON CONFLICT (facility_id, visit_id) DO NOTHING RETURNING visit_id"
)
# A batch's persons are read and updated by joining an unnest() of their subjects: with a
# million persons the planner looks each one up in the primary key, where
# ``subject = ANY(...)`` of a few thousand would scan the whole table.
_SELECT_PERSONS = (
    "SELECT p.subject, p.name, p.status, p.doses, p.changed_at, p.created_at "
    "FROM unnest(%s::text[]) AS s(subject) JOIN persons AS p ON p.subject = s.subject"
)
_UPDATE_PERSONS = (
    "UPDATE persons AS p SET name = u.name, status = u.status, doses = u.doses, "
    "changed_at = u.changed_at, created_at = u.created_at "
    "FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[], %s::bigint[], %s::bigint[]) "
    "AS u(subject, name, status, doses, changed_at, created_at) WHERE p.subject = u.subject"
)


def conninfo(dsn: str) -> str:
    """The DSN with a connect timeout and an application name, unless it sets its own."""
    try:
        params: dict[str, Any] = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as err:
        raise StoreError(f"the store's dsn is not a valid connection string: {err}") from err
    params.setdefault("connect_timeout", 10)
    params.setdefault("application_name", "pintu-registry")
    return make_conninfo("", **params)


def _where(info: str) -> str:
    """``host:port/dbname`` of a connection string, for messages (never its password)."""
    params = conninfo_to_dict(info)
    host = params.get("host", "localhost")
    return f"{host}:{params.get('port', 5432)}/{params.get('dbname', params.get('user', ''))}"


class _Pool:
    """Open connections, reused; one that broke is closed instead of handed out again."""

    def __init__(self, info: str, max_idle: int) -> None:
        self.info = info
        self.where = _where(info)
        self.max_idle = max_idle
        self._idle: list[Conn] = []
        self._lock = threading.Lock()
        self.closed = False

    def connect(self, *, autocommit: bool = True) -> Conn:
        try:
            return psycopg.connect(self.info, autocommit=autocommit)
        except psycopg.Error as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise StoreError(f"cannot connect to PostgreSQL at {self.where}: {reason}") from err

    @contextmanager
    def connection(self) -> Iterator[Conn]:
        with self._lock:
            if self.closed:
                raise StoreError("the store is closed")
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self.connect()
        try:
            yield conn
        finally:
            reusable = (
                not conn.closed
                and not conn.broken
                and conn.info.transaction_status == TransactionStatus.IDLE
            )
            with self._lock:
                if reusable and not self.closed and len(self._idle) < self.max_idle:
                    self._idle.append(conn)
                    conn = None
            if conn is not None:
                conn.close()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class PgStore:
    """The registry's data in a PostgreSQL database (see the module's doc).

    ``dsn`` is a libpq connection string; its password, if the server needs one, belongs
    in a ``.pgpass`` file (or ``PGPASSFILE``), never in the registry's configuration.
    """

    def __init__(self, dsn: str, *, max_idle: int = 4) -> None:
        self._pool = _Pool(conninfo(dsn), max_idle)
        self.where = self._pool.where
        try:
            self._migrate()
        except BaseException:
            self._pool.close()
            raise

    # Plumbing.

    def _run(self, what: str, work: Callable[[Conn], T], *, write: bool = True) -> T:
        """``work`` on a pooled connection, in one transaction when it writes; PostgreSQL
        errors become ``StoreError``, after retrying the ones that ask for it."""
        for attempt in range(1, _RETRIES + 1):
            begun = False
            used: Conn | None = None
            try:
                with self._pool.connection() as conn:
                    used = conn
                    if not write:
                        return work(conn)
                    with conn.transaction():
                        begun = True
                        return work(conn)
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure) as err:
                if attempt == _RETRIES:
                    raise StoreError(f"cannot {what}: {err}") from err
                logger.info("%s: %s; trying again", what, err)
            except psycopg.OperationalError as err:
                # A read, or a write whose transaction did not begin, is safe to try again
                # on a new connection; a write cut off half way is the caller's to retry.
                if begun or attempt == _RETRIES or used is None or not used.broken:
                    raise StoreError(f"cannot {what}: {err}") from err
                logger.info("%s: %s; trying again on a new connection", what, err)
            except psycopg.Error as err:
                raise StoreError(f"cannot {what}: {err}") from err
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return self._run("read the store", lambda c: c.execute(sql, params).fetchone(), write=False)

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._run("read the store", lambda c: c.execute(sql, params).fetchall(), write=False)

    def _migrate(self) -> None:
        def migrate(conn: Conn) -> list[int]:
            # Registry processes starting together migrate one at a time; the lock is the
            # schema's, so registries in other schemas of the database do not wait.
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('pintu-registry:' || current_schema()))"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            newest = max(done, default=0)
            if newest > MIGRATIONS[-1][0]:
                raise StoreError(
                    f"{self.where}: the database has schema version {newest}, newer than this "
                    f"registry knows ({MIGRATIONS[-1][0]}); upgrade the registry"
                )
            applied = []
            for version, statements in MIGRATIONS:
                if version in done:
                    continue
                for statement in statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) "
                    "VALUES (%s, extract(epoch FROM now())::bigint)",
                    (version,),
                )
                applied.append(version)
            return applied

        for version in self._run("migrate the store", migrate):
            logger.info("%s: applied migration %d", self.where, version)

    def close(self) -> None:
        self._pool.close()

    def ping(self) -> None:
        self._one("SELECT 1")

    # Persons and the status feed.

    def get_person(self, subject: str) -> Person | None:
        row = self._one(
            f"SELECT {_PERSON_COLUMNS} FROM persons WHERE subject = %s",  # noqa: S608 - constant
            (subject,),
        )
        if row is None:
            return None
        return Person(row[0], row[1], Status.parse(row[2]), row[3], row[4], row[5])

    def apply_persons(self, rows: Sequence[PersonRow], at: int) -> list[Outcome]:
        if not rows:
            return []
        return self._run("apply persons", lambda conn: self._apply_persons(conn, rows, at))

    def _apply_persons(self, conn: Conn, rows: Sequence[PersonRow], at: int) -> list[Outcome]:
        self._lock_feed(conn)
        # Where each subject stands now: (name, status, doses, changed_at, created_at).
        state: dict[str, PersonState] = {}
        subjects = sorted({row.subject for row in rows})
        for subject, name, status, doses, changed_at, created_at in conn.execute(
            _SELECT_PERSONS, (subjects,)
        ):
            state[subject] = (name, Status.parse(status), doses, changed_at, created_at)
        existed = set(state)
        plan = plan_persons(rows, state, at)
        outcomes, changes, dirty = plan.outcomes, plan.changes, plan.dirty
        created = [(s, *_person_values(state[s])) for s in sorted(dirty - existed)]
        if created:
            # COPY: a first import of a million persons is mostly new rows.
            with (
                conn.cursor() as cur,
                cur.copy(f"COPY persons ({_PERSON_COLUMNS}) FROM STDIN") as copy,
            ):
                for record in created:
                    copy.write_row(record)
        updated = [(s, *_person_values(state[s])) for s in sorted(dirty & existed)]
        if updated:
            conn.execute(_UPDATE_PERSONS, [list(column) for column in zip(*updated, strict=True)])
        if changes:
            # COPY takes the rows in order, so the feed's cursors follow the batch's order.
            with (
                conn.cursor() as cur,
                cur.copy(
                    "COPY status_changes (subject, status, doses, changed_at) FROM STDIN"
                ) as copy,
            ):
                for change in changes:
                    copy.write_row(change)
        return outcomes

    @staticmethod
    def _lock_feed(conn: Conn) -> None:
        """Hold the feed's lock until this transaction ends (see the module's doc)."""
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('pintu-registry-feed:' || current_schema()))"
        )

    def changes_since(self, cursor: int, limit: int) -> list[StatusChange]:
        rows = self._all(
            "SELECT cursor, subject, status, doses, changed_at FROM status_changes "
            "WHERE cursor > %s ORDER BY cursor LIMIT %s",
            (cursor, limit),
        )
        return [StatusChange(c, s, Status[st.upper()], d, t) for c, s, st, d, t in rows]

    def last_cursor(self) -> int:
        row = self._one("SELECT MAX(cursor) FROM status_changes")
        return int(row[0] or 0) if row else 0

    def status_snapshot(self) -> tuple[int, Iterator[tuple[str, str, int]]]:
        # A connection of its own: the cursor and the rows come from one snapshot, and the
        # iterator may outlive other calls.
        conn = self._pool.connect(autocommit=False)
        rows: psycopg.ServerCursor[Row] | None = None
        try:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            row = conn.execute("SELECT MAX(cursor) FROM status_changes").fetchone()
            cursor = int(row[0] or 0) if row else 0
            rows = conn.cursor(name="status_snapshot")
            rows.itersize = _SNAPSHOT_ROWS
            rows.execute("SELECT subject, status, changed_at FROM persons ORDER BY subject")
        except BaseException as err:
            self._end_snapshot(conn, rows)
            if isinstance(err, psycopg.Error):
                raise StoreError(f"cannot read the status snapshot: {err}") from err
            raise
        server_rows = rows

        def iterate() -> Iterator[tuple[str, str, int]]:
            try:
                yield from server_rows
            except psycopg.Error as err:
                raise StoreError(f"cannot read the status snapshot: {err}") from err
            finally:
                self._end_snapshot(conn, server_rows)

        return cursor, iterate()

    @staticmethod
    def _end_snapshot(conn: Conn, rows: psycopg.ServerCursor[Row] | None) -> None:
        # The server-side cursor first: left to the garbage collector, it would try to close
        # itself on a connection already gone.
        try:
            if rows is not None and not rows.closed and not conn.broken:
                rows.close()
        except psycopg.Error as err:
            logger.debug("closing the snapshot's cursor: %s", err)
        finally:
            conn.close()

    # Accounts and bearer tokens.

    def add_account(self, account: Account) -> None:
        def work(conn: Conn) -> None:
            try:
                conn.execute(
                    "INSERT INTO accounts (username, password_hash, role, created_at) "
                    "VALUES (%s, %s, %s, %s)",
                    (account.username, account.password_hash, account.role, account.created_at),
                )
            except pg_errors.UniqueViolation as err:
                raise AlreadyExists(f"an account named {account.username!r} exists") from err

        self._run("add an account", work)

    def set_password(self, username: str, password_hash: str) -> None:
        def work(conn: Conn) -> None:
            cur = conn.execute(
                "UPDATE accounts SET password_hash = %s WHERE username = %s",
                (password_hash, username),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no account named {username!r}")

        self._run("set a password", work)

    def get_account(self, username: str) -> Account | None:
        row = self._one(
            "SELECT username, password_hash, role, created_at FROM accounts WHERE username = %s",
            (username,),
        )
        return None if row is None else Account(row[0], row[1], row[2], row[3])

    def add_token(self, token: Token) -> None:
        self._run("add a token", lambda conn: self._insert_token(conn, token))

    @staticmethod
    def _insert_token(conn: Conn, token: Token) -> None:
        conn.execute(
            f"INSERT INTO tokens ({_TOKEN_COLUMNS}) "  # noqa: S608 - constant
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (
                token.token_hash,
                token.kind,
                token.username,
                token.facility_id,
                token.created_at,
                token.expires_at,
            ),
        )

    def get_token(self, token_hash: str) -> Token | None:
        row = self._one(
            f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE token_hash = %s",  # noqa: S608 - constant
            (token_hash,),
        )
        return None if row is None else Token(*row)

    def delete_token(self, token_hash: str) -> None:
        self._run(
            "delete a token",
            lambda conn: conn.execute("DELETE FROM tokens WHERE token_hash = %s", (token_hash,)),
        )

    def replace_hub_token(self, token: Token) -> int:
        def work(conn: Conn) -> int:
            dropped = conn.execute(
                "DELETE FROM tokens WHERE facility_id = %s AND kind = 'hub'", (token.facility_id,)
            ).rowcount
            self._insert_token(conn, token)
            return dropped

        return self._run("replace a hub token", work)

    def purge_tokens(self, now: int) -> int:
        return self._run(
            "purge tokens",
            lambda conn: (
                conn.execute(
                    "DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at <= %s", (now,)
                ).rowcount
            ),
        )

    # Facilities and doors.

    def add_facility(self, facility: Facility) -> None:
        def work(conn: Conn) -> None:
            try:
                conn.execute(
                    f"INSERT INTO facilities ({_FACILITY_COLUMNS}) "  # noqa: S608 - constant
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        facility.id,
                        facility.name,
                        facility.address,
                        facility.type,
                        facility.capacity,
                        facility.pic_name,
                        facility.pic_email,
                        facility.state.value,
                        facility.created_at,
                        facility.updated_at,
                        facility.reason,
                        facility.activation_hash,
                        facility.activation_expires_at,
                    ),
                )
            except pg_errors.UniqueViolation as err:
                raise AlreadyExists(f"a facility with id {facility.id!r} exists") from err

        self._run("add a facility", work)

    def get_facility(self, facility_id: str) -> Facility | None:
        row = self._one(
            f"SELECT {_FACILITY_COLUMNS} FROM facilities WHERE id = %s",  # noqa: S608 - constant
            (facility_id,),
        )
        return None if row is None else facility_from_row(row)

    def list_facilities(
        self, state: FacilityState | None = None, pic_email: str | None = None
    ) -> list[Facility]:
        where = ["TRUE"]
        args: list[str] = []
        if state is not None:
            where.append("state = %s")
            args.append(state.value)
        if pic_email is not None:
            where.append("pic_email = %s")
            args.append(pic_email)
        query = (
            f"SELECT {_FACILITY_COLUMNS} FROM facilities "  # noqa: S608 - constants only
            f"WHERE {' AND '.join(where)} ORDER BY id"
        )
        return [facility_from_row(row) for row in self._all(query, args)]

    def transition(
        self,
        facility_id: str,
        from_states: Sequence[FacilityState],
        to_state: FacilityState,
        at: int,
        *,
        reason: str | None = None,
        activation_hash: str | None = None,
        activation_expires_at: int | None = None,
    ) -> Facility:
        def work(conn: Conn) -> Facility:
            # FOR UPDATE: a second operator acting at once waits here, then reads the
            # state the first one left.
            row = conn.execute(
                "SELECT state FROM facilities WHERE id = %s FOR UPDATE", (facility_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no facility {facility_id!r}")
            current = FacilityState(row[0])
            if current not in from_states:
                raise Conflict(f"facility {facility_id!r} is {current.value}", current.value)
            updated = conn.execute(
                "UPDATE facilities SET state = %s, reason = %s, activation_hash = %s, "  # noqa: S608 - constant
                "activation_expires_at = %s, updated_at = %s WHERE id = %s "
                f"RETURNING {_FACILITY_COLUMNS}",
                (to_state.value, reason, activation_hash, activation_expires_at, at, facility_id),
            ).fetchone()
            assert updated is not None  # noqa: S101 - the row is locked by this transaction
            return facility_from_row(updated)

        return self._run("change a facility's state", work)

    def add_door(self, door: Door) -> None:
        def work(conn: Conn) -> None:
            try:
                conn.execute(
                    "INSERT INTO doors (facility_id, door_id, name, direction, created_at) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    (door.facility_id, door.door_id, door.name, door.direction, door.created_at),
                )
            except pg_errors.UniqueViolation as err:
                raise AlreadyExists(
                    f"facility {door.facility_id!r} already has a door {door.door_id!r}"
                ) from err
            except pg_errors.ForeignKeyViolation as err:
                raise NotFound(f"no facility {door.facility_id!r}") from err

        self._run("add a door", work)

    def list_doors(self, facility_id: str) -> list[Door]:
        rows = self._all(
            "SELECT facility_id, door_id, name, direction, created_at FROM doors "
            "WHERE facility_id = %s ORDER BY door_id",
            (facility_id,),
        )
        return [Door(*row) for row in rows]

    def get_door(self, facility_id: str, door_id: str) -> Door | None:
        row = self._one(
            "SELECT facility_id, door_id, name, direction, created_at FROM doors "
            "WHERE facility_id = %s AND door_id = %s",
            (facility_id, door_id),
        )
        return None if row is None else Door(*row)

    # Visits.

    def add_visits(self, facility_id: str, visits: Sequence[Visit], at: int) -> VisitIntake:
        if not visits:
            return VisitIntake(0, 0, ())
        return self._run(
            "store visits", lambda conn: self._add_visits(conn, facility_id, visits, at)
        )

    def _add_visits(
        self, conn: Conn, facility_id: str, visits: Sequence[Visit], at: int
    ) -> VisitIntake:
        # One statement for the batch; what it skipped was stored before (or by another
        # push of the same batch that committed meanwhile), and is compared below.
        inserted = {
            row[0]
            for row in conn.execute(
                _INSERT_VISITS,
                (
                    at,
                    [facility_id] * len(visits),
                    [v.visit_id for v in visits],
                    [v.subject for v in visits],
                    [v.door_id for v in visits],
                    [v.check_in for v in visits],
                    [v.check_out for v in visits],
                ),
            )
        }
        skipped = [v.visit_id for v in visits if v.visit_id not in inserted]
        stored: dict[str, Visit] = {}
        if skipped:
            for row in conn.execute(
                f"SELECT {_VISIT_COLUMNS} FROM visits "  # noqa: S608 - constant
                "WHERE facility_id = %s AND visit_id = ANY(%s)",
                (facility_id, skipped),
            ):
                stored[row[1]] = visit_from_row(row)
        duplicates: list[str] = []
        for index, visit in enumerate(visits):
            if visit.visit_id in inserted:
                continue
            before = stored.get(visit.visit_id)
            if before is None or not before.same_as(visit):
                # Raising rolls back what this batch inserted: nothing of it is stored.
                raise Conflict(
                    f"row {index}: visit_id {visit.visit_id!r} was stored before with "
                    "other content; nothing of this batch was stored"
                )
            duplicates.append(visit.visit_id)
        new = [v for v in visits if v.visit_id in inserted]
        if new:
            longest = max(v.check_out - v.check_in for v in new)
            conn.execute(
                "INSERT INTO visit_bounds (facility_id, max_length) VALUES (%s, %s) "
                "ON CONFLICT (facility_id) DO UPDATE "
                "SET max_length = GREATEST(visit_bounds.max_length, excluded.max_length)",
                (facility_id, longest),
            )
        return VisitIntake(len(new), len(duplicates), tuple(duplicates))

    def visits_of(self, subject: str, start: int, end: int) -> list[Visit]:
        # A subject has few visits in a window: the (subject, check_in) index gives them all.
        rows = self._all(
            f"SELECT {_VISIT_COLUMNS} FROM visits "  # noqa: S608 - constant
            "WHERE subject = %s AND check_in < %s AND check_out > %s "
            "ORDER BY check_in, visit_id",
            (subject, end, start),
        )
        return [visit_from_row(row) for row in rows]

    def overlapping(
        self, facility_id: str, start: int, end: int, exclude_subject: str
    ) -> list[Visit]:
        # No visit there lasted longer than max_length, so one that began before
        # start - max_length ended before start: the index range stays short. The bound is
        # read in the same statement (one round trip); without one, nothing was stored.
        rows = self._all(
            f"SELECT {_VISIT_COLUMNS} FROM visits "  # noqa: S608 - constant
            "WHERE facility_id = %s AND check_in >= %s - "
            "(SELECT max_length FROM visit_bounds WHERE facility_id = %s) "
            "AND check_in < %s AND check_out > %s AND subject <> %s "
            "ORDER BY check_in, visit_id",
            (facility_id, start, facility_id, end, start, exclude_subject),
        )
        return [visit_from_row(r) for r in rows]

    def purge_visits(self, before: int) -> int:
        return self._run(
            "purge visits",
            lambda conn: (
                conn.execute("DELETE FROM visits WHERE check_out < %s", (before,)).rowcount
            ),
        )

    def count_visits(self) -> int:
        row = self._one("SELECT COUNT(*) FROM visits")
        return int(row[0]) if row else 0

    # Audit trail.

    def audit(self, at: int, actor: str, action: str, target: str, detail: str = "") -> None:
        self._run(
            "write the audit trail",
            lambda conn: conn.execute(
                "INSERT INTO audit (at, actor, action, target, detail) VALUES (%s, %s, %s, %s, %s)",
                (at, actor, action, target, detail),
            ),
        )

    def scrub_audit(self, before: int, actions: Sequence[str]) -> int:
        return self._run(
            "scrub the audit trail",
            lambda conn: (
                conn.execute(
                    "UPDATE audit SET target = '-' WHERE at < %s AND target != '-' "
                    "AND action = ANY(%s)",
                    (before, list(actions)),
                ).rowcount
            ),
        )

    def audit_entries(self) -> list[tuple[int, str, str, str, str]]:
        rows = self._all("SELECT at, actor, action, target, detail FROM audit ORDER BY id")
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]


def _person_values(value: tuple[str, Status, int, int, int]) -> tuple[str, str, int, int, int]:
    name, status, doses, changed_at, created_at = value
    return name, status.label, doses, changed_at, created_at
