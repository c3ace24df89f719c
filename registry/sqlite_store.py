"""``RegistryStore`` on SQLite: one file in WAL mode, one writer, numbered migrations.

Writes go through a single connection behind a lock, each in one ``BEGIN IMMEDIATE``
transaction, so a method either does all it says or nothing. Reads use a connection per
thread: under WAL they never wait for the writer. A CLI command run beside the service
(an import, a key rotation) is another writer; SQLite serialises the two and
``busy_timeout`` makes the second wait instead of failing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

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

_STATUS_BY_LABEL = {status.label: status for status in Status}  # the text the store keeps

# Each entry is applied once, in order, and recorded in schema_migrations. Never edit a
# released entry: add the next number.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE persons (
            subject TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            status TEXT NOT NULL,
            doses INTEGER NOT NULL,
            changed_at INTEGER NOT NULL,
            created_at INTEGER NOT NULL
        );
        CREATE TABLE status_changes (
            cursor INTEGER PRIMARY KEY AUTOINCREMENT,
            subject TEXT NOT NULL,
            status TEXT NOT NULL,
            doses INTEGER NOT NULL,
            changed_at INTEGER NOT NULL
        );
        CREATE TABLE accounts (
            username TEXT PRIMARY KEY,
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL,
            created_at INTEGER NOT NULL
        );
        CREATE TABLE tokens (
            token_hash TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            username TEXT,
            facility_id TEXT,
            created_at INTEGER NOT NULL,
            expires_at INTEGER
        );
        CREATE INDEX tokens_facility ON tokens (facility_id, kind);
        CREATE TABLE facilities (
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
            activation_expires_at INTEGER,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        );
        CREATE INDEX facilities_state ON facilities (state);
        CREATE TABLE doors (
            facility_id TEXT NOT NULL REFERENCES facilities (id),
            door_id TEXT NOT NULL,
            name TEXT NOT NULL,
            direction TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            PRIMARY KEY (facility_id, door_id)
        );
        CREATE TABLE visits (
            facility_id TEXT NOT NULL,
            visit_id TEXT NOT NULL,
            subject TEXT NOT NULL,
            door_id TEXT NOT NULL,
            check_in INTEGER NOT NULL,
            check_out INTEGER NOT NULL,
            received_at INTEGER NOT NULL,
            PRIMARY KEY (facility_id, visit_id)
        );
        -- Tracing: a subject's own visits, then who else was at each facility meanwhile.
        CREATE INDEX visits_subject_time ON visits (subject, check_in);
        CREATE INDEX visits_facility_time ON visits (facility_id, check_in);
        -- Retention: the purge deletes by end time.
        CREATE INDEX visits_check_out ON visits (check_out);
        -- The longest visit stored per facility bounds the overlap scan from below.
        CREATE TABLE visit_bounds (
            facility_id TEXT PRIMARY KEY,
            max_length INTEGER NOT NULL
        );
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at INTEGER NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            detail TEXT NOT NULL
        );
        """,
    ),
)

# SQLite allows 32,766 host parameters; stay far below for IN lists.
_CHUNK = 500
_FACILITY_COLUMNS = (
    "id, name, address, type, capacity, pic_name, pic_email, state, created_at, updated_at, "
    "reason, activation_hash, activation_expires_at"
)
_VISIT_COLUMNS = "facility_id, visit_id, subject, door_id, check_in, check_out"


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SqliteStore:
    """The registry's data in one SQLite file."""

    def __init__(self, path: Path, busy_timeout_s: float = 10.0) -> None:
        self.path = path
        self._timeout = busy_timeout_s
        self._lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # People's statuses and names: readable by the registry's user only, whatever
            # the umask of whoever runs it by hand (SQLite gives the -wal and -shm files the
            # database file's mode).
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            self._writer = self._connect()
            self._writer.execute("PRAGMA journal_mode = WAL")
            # Index pages of visits and the feed are written at random places: a larger
            # cache than SQLite's 2 MiB default keeps them from being re-read per batch.
            self._writer.execute("PRAGMA cache_size = -65536")
        except (OSError, sqlite3.Error) as err:
            raise StoreError(f"{path}: cannot open the registry database: {err}") from err
        try:
            self._migrate()
        except BaseException:
            self._writer.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE in _write).
        conn = sqlite3.connect(
            self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def _migrate(self) -> None:
        with self._write() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
            )
            done = {row[0] for row in db.execute("SELECT version FROM schema_migrations")}
            newest = max(done, default=0)
            if newest > MIGRATIONS[-1][0]:
                raise StoreError(
                    f"{self.path}: the database has schema version {newest}, newer than this "
                    f"registry knows ({MIGRATIONS[-1][0]}); upgrade the registry"
                )
            for version, script in MIGRATIONS:
                if version in done:
                    continue
                logger.info("%s: applying migration %d", self.path, version)
                # One statement at a time: executescript() would commit half-way.
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(
                    "INSERT INTO schema_migrations (version, applied_at) "
                    "VALUES (?, CAST(strftime('%s', 'now') AS INTEGER))",
                    (version,),
                )

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise StoreError("the store is closed")
        with self._lock:
            db = self._writer
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as err:
                raise StoreError(f"{self.path}: cannot start a write: {err}") from err
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            try:
                db.execute("COMMIT")
            except sqlite3.Error as err:
                db.execute("ROLLBACK")
                raise StoreError(f"{self.path}: cannot commit: {err}") from err

    def _read(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError("the store is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        with self._lock:
            self._writer.close()

    def ping(self) -> None:
        try:
            self._read().execute("SELECT 1").fetchone()
        except sqlite3.Error as err:
            raise StoreError(f"{self.path}: {err}") from err

    # Persons and the status feed.

    def get_person(self, subject: str) -> Person | None:
        row = (
            self._read()
            .execute(
                "SELECT subject, name, status, doses, changed_at, created_at FROM persons "
                "WHERE subject = ?",
                (subject,),
            )
            .fetchone()
        )
        if row is None:
            return None
        return Person(row[0], row[1], Status.parse(row[2]), row[3], row[4], row[5])

    def apply_persons(self, rows: Sequence[PersonRow], at: int) -> list[Outcome]:
        with self._write() as db:
            # Where each subject stands now: (name, status, doses, changed_at, created_at).
            state: dict[str, PersonState] = {}
            subjects = sorted({row.subject for row in rows})
            for chunk in _chunks(subjects):
                marks = ",".join("?" * len(chunk))
                query = (
                    "SELECT subject, name, status, doses, changed_at, created_at "  # noqa: S608 - placeholders only
                    f"FROM persons WHERE subject IN ({marks})"
                )
                for subject, name, status, doses, changed_at, created_at in db.execute(
                    query, tuple(chunk)
                ):
                    state[subject] = (name, Status.parse(status), doses, changed_at, created_at)
            existed = set(state)
            plan = plan_persons(rows, state, at)
            outcomes, changes, dirty = plan.outcomes, plan.changes, plan.dirty
            db.executemany(
                "INSERT INTO persons (subject, name, status, doses, changed_at, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(s, *self._person_values(state[s])) for s in sorted(dirty - existed)],
            )
            db.executemany(
                "UPDATE persons SET name = ?, status = ?, doses = ?, changed_at = ?, "
                "created_at = ? WHERE subject = ?",
                [(*self._person_values(state[s]), s) for s in sorted(dirty & existed)],
            )
            db.executemany(
                "INSERT INTO status_changes (subject, status, doses, changed_at) "
                "VALUES (?, ?, ?, ?)",
                changes,
            )
        return outcomes

    @staticmethod
    def _person_values(value: tuple[str, Status, int, int, int]) -> tuple[str, str, int, int, int]:
        name, status, doses, changed_at, created_at = value
        return name, status.label, doses, changed_at, created_at

    def changes_since(self, cursor: int, limit: int) -> list[StatusChange]:
        rows = (
            self._read()
            .execute(
                "SELECT cursor, subject, status, doses, changed_at FROM status_changes "
                "WHERE cursor > ? ORDER BY cursor LIMIT ?",
                (cursor, limit),
            )
            .fetchall()
        )
        # A dict of the four labels, not Status[st.upper()]: this runs for every change a
        # fresh hub reads, a million of them.
        by_label = _STATUS_BY_LABEL
        return [StatusChange(c, s, by_label[st], d, t) for c, s, st, d, t in rows]

    def last_cursor(self) -> int:
        row = self._read().execute("SELECT MAX(cursor) FROM status_changes").fetchone()
        return int(row[0] or 0)

    def status_snapshot(self) -> tuple[int, Iterator[tuple[str, str, int]]]:
        # A snapshot needs its own connection: the cursor and the rows must come from one
        # read transaction, and the iterator may outlive other reads on this thread.
        conn = self._connect()
        try:
            conn.execute("BEGIN")
            row = conn.execute("SELECT MAX(cursor) FROM status_changes").fetchone()
            cursor = int(row[0] or 0)
            rows = conn.execute("SELECT subject, status, changed_at FROM persons ORDER BY subject")
        except BaseException:
            conn.close()
            raise

        def iterate() -> Iterator[tuple[str, str, int]]:
            try:
                yield from rows
            finally:
                conn.close()

        return cursor, iterate()

    # Accounts and bearer tokens.

    def add_account(self, account: Account) -> None:
        try:
            with self._write() as db:
                db.execute(
                    "INSERT INTO accounts (username, password_hash, role, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (account.username, account.password_hash, account.role, account.created_at),
                )
        except sqlite3.IntegrityError as err:
            raise AlreadyExists(f"an account named {account.username!r} exists") from err

    def set_password(self, username: str, password_hash: str) -> None:
        with self._write() as db:
            cur = db.execute(
                "UPDATE accounts SET password_hash = ? WHERE username = ?",
                (password_hash, username),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no account named {username!r}")

    def get_account(self, username: str) -> Account | None:
        row = (
            self._read()
            .execute(
                "SELECT username, password_hash, role, created_at FROM accounts WHERE username = ?",
                (username,),
            )
            .fetchone()
        )
        return None if row is None else Account(row[0], row[1], row[2], row[3])

    def add_token(self, token: Token) -> None:
        with self._write() as db:
            self._insert_token(db, token)

    @staticmethod
    def _insert_token(db: sqlite3.Connection, token: Token) -> None:
        db.execute(
            "INSERT INTO tokens (token_hash, kind, username, facility_id, created_at, "
            "expires_at) VALUES (?, ?, ?, ?, ?, ?)",
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
        row = (
            self._read()
            .execute(
                "SELECT token_hash, kind, username, facility_id, created_at, expires_at "
                "FROM tokens WHERE token_hash = ?",
                (token_hash,),
            )
            .fetchone()
        )
        return None if row is None else Token(*row)

    def delete_token(self, token_hash: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM tokens WHERE token_hash = ?", (token_hash,))

    def replace_hub_token(self, token: Token) -> int:
        with self._write() as db:
            dropped = db.execute(
                "DELETE FROM tokens WHERE facility_id = ? AND kind = 'hub'", (token.facility_id,)
            ).rowcount
            self._insert_token(db, token)
        return dropped

    def purge_tokens(self, now: int) -> int:
        with self._write() as db:
            return db.execute(
                "DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
            ).rowcount

    # Facilities and doors.

    def add_facility(self, facility: Facility) -> None:
        try:
            with self._write() as db:
                db.execute(
                    f"INSERT INTO facilities ({_FACILITY_COLUMNS}) "  # noqa: S608 - constant
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        except sqlite3.IntegrityError as err:
            raise AlreadyExists(f"a facility with id {facility.id!r} exists") from err

    def get_facility(self, facility_id: str) -> Facility | None:
        return self._get_facility(self._read(), facility_id)

    @staticmethod
    def _get_facility(db: sqlite3.Connection, facility_id: str) -> Facility | None:
        row = db.execute(
            f"SELECT {_FACILITY_COLUMNS} FROM facilities WHERE id = ?",  # noqa: S608 - constant
            (facility_id,),
        ).fetchone()
        return None if row is None else facility_from_row(row)

    def list_facilities(
        self, state: FacilityState | None = None, pic_email: str | None = None
    ) -> list[Facility]:
        where = ["1 = 1"]
        args: list[str] = []
        if state is not None:
            where.append("state = ?")
            args.append(state.value)
        if pic_email is not None:
            where.append("pic_email = ?")
            args.append(pic_email)
        query = (
            f"SELECT {_FACILITY_COLUMNS} FROM facilities "  # noqa: S608 - constants only
            f"WHERE {' AND '.join(where)} ORDER BY id"
        )
        return [facility_from_row(row) for row in self._read().execute(query, args)]

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
        with self._write() as db:
            current = self._get_facility(db, facility_id)
            if current is None:
                raise NotFound(f"no facility {facility_id!r}")
            if current.state not in from_states:
                raise Conflict(
                    f"facility {facility_id!r} is {current.state.value}", current.state.value
                )
            db.execute(
                "UPDATE facilities SET state = ?, reason = ?, activation_hash = ?, "
                "activation_expires_at = ?, updated_at = ? WHERE id = ?",
                (to_state.value, reason, activation_hash, activation_expires_at, at, facility_id),
            )
            updated = self._get_facility(db, facility_id)
        assert updated is not None  # noqa: S101 - just written in the same transaction
        return updated

    def add_door(self, door: Door) -> None:
        try:
            with self._write() as db:
                db.execute(
                    "INSERT INTO doors (facility_id, door_id, name, direction, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (door.facility_id, door.door_id, door.name, door.direction, door.created_at),
                )
        except sqlite3.IntegrityError as err:
            raise AlreadyExists(
                f"facility {door.facility_id!r} already has a door {door.door_id!r}"
            ) from err

    def list_doors(self, facility_id: str) -> list[Door]:
        rows = self._read().execute(
            "SELECT facility_id, door_id, name, direction, created_at FROM doors "
            "WHERE facility_id = ? ORDER BY door_id",
            (facility_id,),
        )
        return [Door(*row) for row in rows]

    def get_door(self, facility_id: str, door_id: str) -> Door | None:
        row = (
            self._read()
            .execute(
                "SELECT facility_id, door_id, name, direction, created_at FROM doors "
                "WHERE facility_id = ? AND door_id = ?",
                (facility_id, door_id),
            )
            .fetchone()
        )
        return None if row is None else Door(*row)

    # Visits.

    def add_visits(self, facility_id: str, visits: Sequence[Visit], at: int) -> VisitIntake:
        with self._write() as db:
            stored: dict[str, Visit] = {}
            ids = [v.visit_id for v in visits]
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                for row in db.execute(
                    f"SELECT {_VISIT_COLUMNS} FROM visits "  # noqa: S608 - placeholders only
                    f"WHERE facility_id = ? AND visit_id IN ({marks})",
                    (facility_id, *chunk),
                ):
                    stored[row[1]] = visit_from_row(row)
            new: list[Visit] = []
            duplicates: list[str] = []
            for index, visit in enumerate(visits):
                before = stored.get(visit.visit_id)
                if before is None:
                    new.append(visit)
                elif before.same_as(visit):
                    duplicates.append(visit.visit_id)
                else:
                    raise Conflict(
                        f"row {index}: visit_id {visit.visit_id!r} was stored before with "
                        "other content; nothing of this batch was stored"
                    )
            db.executemany(
                f"INSERT INTO visits ({_VISIT_COLUMNS}, received_at) "  # noqa: S608 - constant
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (facility_id, v.visit_id, v.subject, v.door_id, v.check_in, v.check_out, at)
                    for v in new
                ],
            )
            if new:
                longest = max(v.check_out - v.check_in for v in new)
                row = db.execute(
                    "SELECT max_length FROM visit_bounds WHERE facility_id = ?", (facility_id,)
                ).fetchone()
                if row is None or row[0] < longest:
                    db.execute(
                        "INSERT INTO visit_bounds (facility_id, max_length) VALUES (?, ?) "
                        "ON CONFLICT (facility_id) DO UPDATE SET max_length = excluded.max_length",
                        (facility_id, longest),
                    )
        return VisitIntake(len(new), len(duplicates), tuple(duplicates))

    def visits_of(self, subject: str, start: int, end: int) -> list[Visit]:
        # A subject has few visits in a window: the (subject, check_in) index gives them all.
        rows = self._read().execute(
            f"SELECT {_VISIT_COLUMNS} FROM visits "  # noqa: S608 - constant
            "WHERE subject = ? AND check_in < ? AND check_out > ? ORDER BY check_in, visit_id",
            (subject, end, start),
        )
        return [visit_from_row(row) for row in rows]

    def overlapping(
        self, facility_id: str, start: int, end: int, exclude_subject: str
    ) -> list[Visit]:
        db = self._read()
        row = db.execute(
            "SELECT max_length FROM visit_bounds WHERE facility_id = ?", (facility_id,)
        ).fetchone()
        if row is None:
            return []
        # No visit there lasted longer than max_length, so one that began before
        # start - max_length ended before start: the index range stays short.
        rows = db.execute(
            f"SELECT {_VISIT_COLUMNS} FROM visits "  # noqa: S608 - constant
            "WHERE facility_id = ? AND check_in >= ? AND check_in < ? AND check_out > ? "
            "AND subject <> ? ORDER BY check_in, visit_id",
            (facility_id, start - int(row[0]), end, start, exclude_subject),
        )
        return [visit_from_row(r) for r in rows]

    def purge_visits(self, before: int) -> int:
        with self._write() as db:
            return db.execute("DELETE FROM visits WHERE check_out < ?", (before,)).rowcount

    def count_visits(self) -> int:
        return int(self._read().execute("SELECT COUNT(*) FROM visits").fetchone()[0])

    def audit(self, at: int, actor: str, action: str, target: str, detail: str = "") -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                (at, actor, action, target, detail),
            )

    def scrub_audit(self, before: int, actions: Sequence[str]) -> int:
        marks = ", ".join("?" for _ in actions)
        with self._write() as db:
            return db.execute(
                f"UPDATE audit SET target = '-' WHERE at < ? AND target != '-' "  # noqa: S608 - placeholders only
                f"AND action IN ({marks})",
                (before, *actions),
            ).rowcount

    def audit_entries(self) -> list[tuple[int, str, str, str, str]]:
        return (
            self._read()
            .execute("SELECT at, actor, action, target, detail FROM audit ORDER BY id")
            .fetchall()
        )
