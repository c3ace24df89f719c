"""The node's durable event journal: every event stays here until the hub says it is stored.

One SQLite file in WAL mode with ``synchronous=FULL``, so an event whose ``append`` returned
survives a crash *and* a power cut. ``seq`` comes from an AUTOINCREMENT key, so it keeps
rising across restarts and is never reused after acknowledged rows are pruned.

A row's life: appended (never sent) -> sent (``mark_sent``) -> deleted by the hub's ack.
A row sent but not acked becomes due again after a timeout or a reconnect, and goes out
with ``late=True``; the hub de-duplicates by ``event_id``.

An admission that pulses the relay is journaled *before* the pulse, as a row of
``admissions`` (``admit``) holding the decision, the subject, the time it was decided and
the event id its event will have. The event that settles it (``append`` with
``admission=``: the entry, exit, manual open, ``not_passed`` or a refusal) takes that id
and removes the row in the same transaction, so the passage is never counted twice nor
lost. A row still there at the next start is an admission whose passage the node never saw
settled (killed, power lost): ``settle_interrupted`` turns it into its event before
anything else is journaled. Seqs are given when the event is written, so they stay
gapless and in the order events were journaled.

The ``now`` given to ``due`` and ``mark_sent`` may be any clock the caller uses for both,
and the uplink uses a monotonic one. A ``sent_at`` later than ``now`` can only come from an
earlier boot of that clock, so such a row is due at once rather than stuck.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from controller.errors import JournalError
from protocol.events import Event, EventKind, new_event_id, utcnow
from protocol.signals import Signal

logger = logging.getLogger(__name__)

# Numbered schema migrations: entry N (from 1) takes ``PRAGMA user_version`` from N-1 to N.
# Never edit a released entry; append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at REAL NOT NULL,
        sent_at REAL,
        attempts INTEGER NOT NULL DEFAULT 0
    );
    """,
    """
    CREATE TABLE admissions (
        event_id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        direction TEXT,
        subject TEXT,
        signal TEXT,
        reason TEXT,
        message TEXT,
        detail TEXT,
        decided_at REAL NOT NULL
    );
    """,
)

# What an admission interrupted by a stopped node becomes. Entries are counted (the person
# was let through; counting them errs on the safe side for capacity); exits are not, for
# the same reason. Either way the reason tells a guard the passage was never confirmed.
UNCONFIRMED = "unconfirmed"
UNCONFIRMED_MESSAGE = "unconfirmed: the node stopped during the passage"

# Text fields of an event are bounded by the schema; an over-long message must not cost the
# event itself, so it is cut rather than refused.
_TEXT_LIMIT = 200
# Bound on the number of ids in one SQL statement (SQLite's variable limit may be 999).
_CHUNK = 500

_WHY = {
    "SQLITE_FULL": "the disk is full (or the journal reached its size limit)",
    "SQLITE_READONLY": "the journal file is read-only",
    "SQLITE_CANTOPEN": "the journal file cannot be opened (missing directory, or not a file)",
    "SQLITE_IOERR": "disk I/O error",
    "SQLITE_CORRUPT": "the journal file is corrupt",
    "SQLITE_NOTADB": "the file is not an SQLite database",
    "SQLITE_BUSY": "another process holds the journal",
    "SQLITE_PERM": "permission denied",
}


def _why(err: sqlite3.Error) -> str:
    name: str = getattr(err, "sqlite_errorname", "") or ""
    for prefix, text in _WHY.items():
        if name.startswith(prefix):
            return text
    return str(err)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _cut(text: str | None) -> str | None:
    """An event's text as the hub takes it: one line (control characters become spaces),
    at most ``_TEXT_LIMIT`` characters."""
    if text is None:
        return None
    return _CONTROL.sub(" ", text[:_TEXT_LIMIT])


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


Direction = Literal["entry", "exit"]


@dataclass(frozen=True)
class Entry:
    """An event as the door decides it, typed from the decision to the disk: what happened,
    before the journal gives it its event id, seq and node. ``Journal.write`` takes it.

    ``ts`` is when it happened (None: when it is written); ``admission`` is the event id of
    the ``Admission`` it settles, if any.
    """

    kind: EventKind
    direction: Direction | None = None
    subject: str | None = None
    signal: Signal | None = None
    admit: bool | None = None
    reason: str | None = None
    message: str | None = None
    detail: str | None = None
    ts: datetime | None = None
    admission: str | None = None


@dataclass(frozen=True)
class Admission:
    """An admission journaled before its relay pulse; its event will carry ``event_id``."""

    event_id: str
    kind: EventKind
    decided_at: datetime
    direction: Direction | None = None
    subject: str | None = None
    signal: Signal | None = None
    reason: str | None = None
    message: str | None = None
    detail: str | None = None


def _millis(when: datetime | None) -> datetime:
    when = utcnow() if when is None else when
    if when.tzinfo is None:
        raise ValueError("an event time must carry its time zone")
    # The wire keeps milliseconds; cut here so the event returned is the one published.
    return when.astimezone(UTC).replace(microsecond=when.microsecond // 1000 * 1000)


class Journal:
    """The event journal of one node. Thread-safe: one connection behind one lock."""

    def __init__(
        self,
        path: Path,
        *,
        node_id: str,
        facility_id: str,
        door_id: str,
        max_bytes: int | None = None,
    ) -> None:
        """Open (or create) the journal at ``path``.

        ``max_bytes`` caps the database file, so a long outage cannot fill a small SD card;
        past it ``append`` raises ``JournalError`` as for a full disk.
        """
        self.path = Path(path)
        self.node_id = node_id
        self.facility_id = facility_id
        self.door_id = door_id
        self._lock = threading.Lock()
        try:
            # One connection shared by the node's threads; the lock serialises them.
            self._conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=5.0
            )
        except sqlite3.Error as err:
            raise JournalError(f"event journal {self.path}: cannot open: {_why(err)}") from err
        try:
            self._setup(max_bytes)
            self._last_seq = self._read_last_seq()
        except sqlite3.Error as err:
            self._conn.close()
            raise JournalError(f"event journal {self.path}: cannot open: {_why(err)}") from err
        except JournalError:
            self._conn.close()
            raise
        logger.info(
            "journal %s open: %d pending, last seq %d, %d admissions unsettled",
            self.path,
            self.pending_count(),
            self._last_seq,
            len(self.admissions()),
        )

    # -- set-up ------------------------------------------------------------------------

    def _setup(self, max_bytes: int | None) -> None:
        conn = self._conn
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            logger.warning("journal %s: WAL mode refused, running in %s mode", self.path, mode)
        # FULL: the WAL is synced at every commit, so a committed event survives power loss.
        conn.execute("PRAGMA synchronous=FULL")
        if max_bytes is not None:
            page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
            conn.execute(f"PRAGMA max_page_count={max(2, max_bytes // page_size)}")
        self._migrate()

    def _migrate(self) -> None:
        conn = self._conn
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > len(MIGRATIONS):
            raise JournalError(
                f"event journal {self.path}: schema version {version} is newer than this "
                f"software knows ({len(MIGRATIONS)}); upgrade the node software"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            # executescript commits any open transaction first, so the script carries its own.
            try:
                conn.executescript(
                    f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;"
                )
            except sqlite3.Error:
                self._rollback()
                raise
            logger.info("journal %s: schema migrated to version %d", self.path, number)

    def _read_last_seq(self) -> int:
        row = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return int(row[0]) if row else 0

    def _rollback(self) -> None:
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error as err:
            # SQLite may already have rolled back on its own (disk full, I/O error), or the
            # journal is closed; either way nothing is left to undo.
            logger.debug("journal rollback: %s", err)

    def _error(self, action: str, err: sqlite3.Error) -> JournalError:
        return JournalError(f"event journal {self.path}: cannot {action}: {_why(err)}")

    # -- writing -----------------------------------------------------------------------

    def append(
        self,
        kind: EventKind,
        *,
        direction: Direction | None = None,
        subject: str | None = None,
        signal: Signal | None = None,
        admit: bool | None = None,
        reason: str | None = None,
        message: str | None = None,
        detail: str | None = None,
        ts: datetime | None = None,
        admission: str | None = None,
    ) -> Event:
        """``write`` an :class:`Entry` made of these fields."""
        return self.write(
            Entry(
                kind,
                direction=direction,
                subject=subject,
                signal=signal,
                admit=admit,
                reason=reason,
                message=message,
                detail=detail,
                ts=ts,
                admission=admission,
            )
        )

    def write(self, entry: Entry) -> Event:
        """Journal ``entry`` durably as a new event and return the event; ``JournalError``
        if the disk refuses.

        With ``entry.admission`` (an :class:`Admission`'s event id) the event settles that
        admission: it takes its event id, and the admission row goes in the same commit.
        """
        when = _millis(entry.ts)
        admission = entry.admission
        with self._lock:
            seq = self._last_seq + 1
            event = Event(
                event_id=new_event_id() if admission is None else admission,
                node_id=self.node_id,
                facility_id=self.facility_id,
                door_id=self.door_id,
                seq=seq,
                ts=when,
                kind=entry.kind,
                direction=entry.direction,
                subject=entry.subject,
                signal=entry.signal,
                admit=entry.admit,
                reason=_cut(entry.reason),
                message=_cut(entry.message),
                detail=_cut(entry.detail),
            )
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                self._insert(event)
                if admission is not None:
                    self._conn.execute("DELETE FROM admissions WHERE event_id = ?", (admission,))
                self._conn.execute("COMMIT")
            except sqlite3.Error as err:
                self._rollback()
                self._resync_seq()
                raise self._error("append an event", err) from err
            self._last_seq = seq
        return event

    def _insert(self, event: Event) -> None:
        self._conn.execute(
            "INSERT INTO events (seq, event_id, kind, payload, created_at) VALUES (?, ?, ?, ?, ?)",
            (
                event.seq,
                event.event_id,
                event.kind.value,
                event.dumps().decode(),
                event.ts.timestamp(),
            ),
        )

    def admit(
        self,
        kind: EventKind,
        *,
        direction: Direction | None = None,
        subject: str | None = None,
        signal: Signal | None = None,
        reason: str | None = None,
        message: str | None = None,
        detail: str | None = None,
        ts: datetime | None = None,
    ) -> Admission:
        """Journal an admission durably before its relay pulse; ``JournalError`` if the
        disk refuses. Its event is written later by ``append(..., admission=event_id)``."""
        admission = Admission(
            event_id=new_event_id(),
            kind=kind,
            decided_at=_millis(ts),
            direction=direction,
            subject=subject,
            signal=signal,
            reason=_cut(reason),
            message=_cut(message),
            detail=_cut(detail),
        )
        with self._lock:
            try:
                # One statement in autocommit mode: its own durable transaction.
                self._conn.execute(
                    "INSERT INTO admissions (event_id, kind, direction, subject, signal, reason,"
                    " message, detail, decided_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        admission.event_id,
                        kind.value,
                        direction,
                        subject,
                        admission.signal,
                        admission.reason,
                        admission.message,
                        admission.detail,
                        admission.decided_at.timestamp(),
                    ),
                )
            except sqlite3.Error as err:
                self._rollback()
                raise self._error("record an admission", err) from err
        return admission

    def withdraw(self, event_id: str) -> None:
        """Forget an admission whose gate never opened; no event is written for it."""
        with self._lock:
            try:
                self._conn.execute("DELETE FROM admissions WHERE event_id = ?", (event_id,))
            except sqlite3.Error as err:
                raise self._error("withdraw an admission", err) from err

    def admissions(self) -> list[Admission]:
        """Admissions journaled whose event is not written yet, oldest first."""
        with self._lock:
            try:
                rows = self._conn.execute(
                    "SELECT event_id, kind, direction, subject, signal, reason, message, detail,"
                    " decided_at FROM admissions ORDER BY decided_at, rowid"
                ).fetchall()
            except sqlite3.Error as err:
                raise self._error("read admissions", err) from err
        return [
            Admission(
                event_id=row[0],
                kind=EventKind(row[1]),
                direction=row[2],
                subject=row[3],
                signal=None if row[4] is None else Signal(row[4]),
                reason=row[5],
                message=row[6],
                detail=row[7],
                decided_at=datetime.fromtimestamp(row[8], UTC),
            )
            for row in rows
        ]

    def settle_interrupted(self) -> list[Event]:
        """Turn the admissions a stopped node left (killed, power lost) into their events.

        Call it at start-up, before anything else is journaled. The relay is not touched:
        the person was let through once, and whether they passed is unknown. An entry (or
        a manual open at an entrance) is counted with reason ``unconfirmed``; an exit
        becomes ``not_passed`` with that reason, so the count errs on the high side.
        """
        events = []
        for admission in self.admissions():
            way = admission.direction
            counted = way != "exit"
            event = self.write(
                Entry(
                    admission.kind if counted else EventKind.NOT_PASSED,
                    direction=way if counted else None,
                    subject=admission.subject,
                    signal=admission.signal,
                    admit=True,
                    reason=UNCONFIRMED,
                    message=UNCONFIRMED_MESSAGE,
                    detail=admission.detail,
                    ts=admission.decided_at,
                    admission=admission.event_id,
                )
            )
            logger.warning(
                "admission %s (%s, decided %s) was interrupted by a stop: journaled as %s seq %d",
                admission.event_id,
                admission.kind.value,
                admission.decided_at.isoformat(),
                event.kind.value,
                event.seq,
            )
            events.append(event)
        return events

    def _resync_seq(self) -> None:
        # A failed COMMIT may still have reached the disk; re-read so a seq is never reused.
        try:
            self._last_seq = max(self._last_seq, self._read_last_seq())
        except sqlite3.Error as err:
            logger.debug("journal: last seq not re-read: %s", err)

    def mark_sent(self, event_ids: Iterable[str], now: float) -> None:
        """Record that these events were published at ``now``."""
        ids = list(event_ids)
        if not ids:
            return
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany(
                    "UPDATE events SET sent_at = ?, attempts = attempts + 1 WHERE event_id = ?",
                    ((now, event_id) for event_id in ids),
                )
                self._conn.execute("COMMIT")
            except sqlite3.Error as err:
                self._rollback()
                raise self._error("mark events sent", err) from err

    def ack(self, event_ids: Iterable[str]) -> int:
        """Forget the events the hub has stored; unknown ids are ignored. Returns how many."""
        ids = list(event_ids)
        if not ids:
            return 0
        with self._lock:
            try:
                before = self._conn.total_changes
                self._conn.execute("BEGIN IMMEDIATE")
                for chunk in _chunks(ids):
                    marks = ",".join("?" * len(chunk))
                    self._conn.execute(
                        f"DELETE FROM events WHERE event_id IN ({marks})",  # noqa: S608 - only "?"
                        tuple(chunk),
                    )
                self._conn.execute("COMMIT")
                return int(self._conn.total_changes - before)
            except sqlite3.Error as err:
                self._rollback()
                raise self._error("remove acknowledged events", err) from err

    def expire(self, max_age_s: float, now: float) -> int:
        """Drop the unacknowledged events that happened more than ``max_age_s`` before
        ``now`` (Unix time). Returns how many."""
        with self._lock:
            try:
                cursor = self._conn.execute(
                    "DELETE FROM events WHERE created_at < ?", (now - max_age_s,)
                )
                return max(0, cursor.rowcount)
            except sqlite3.Error as err:
                raise self._error("drop expired events", err) from err

    def unsend_all(self) -> int:
        """Make every unacknowledged event due again (after a reconnect). Returns how many."""
        with self._lock:
            try:
                cursor = self._conn.execute(
                    "UPDATE events SET sent_at = NULL WHERE sent_at IS NOT NULL"
                )
                return max(0, cursor.rowcount)
            except sqlite3.Error as err:
                raise self._error("reset sent events", err) from err

    # -- reading -----------------------------------------------------------------------

    def due(self, limit: int, resend_after_s: float, now: float) -> list[Event]:
        """Events to publish now, in seq order: never sent, or sent over ``resend_after_s``
        ago. An event that was sent before comes back with ``late=True``."""
        with self._lock:
            try:
                rows = self._conn.execute(
                    "SELECT payload, attempts FROM events"
                    " WHERE sent_at IS NULL OR sent_at <= ? OR sent_at > ?"
                    " ORDER BY seq LIMIT ?",
                    (now - resend_after_s, now, limit),
                ).fetchall()
            except sqlite3.Error as err:
                raise self._error("read due events", err) from err
        return [self._event(payload, attempts) for payload, attempts in rows]

    def pending(self, limit: int = 1000) -> list[Event]:
        """The oldest unacknowledged events, in seq order, whether sent or not."""
        with self._lock:
            try:
                rows = self._conn.execute(
                    "SELECT payload, attempts FROM events ORDER BY seq LIMIT ?", (limit,)
                ).fetchall()
            except sqlite3.Error as err:
                raise self._error("read pending events", err) from err
        return [self._event(payload, attempts) for payload, attempts in rows]

    @staticmethod
    def _event(payload: str, attempts: int) -> Event:
        event: Event = Event.model_validate_json(payload)
        return event.model_copy(update={"late": True}) if attempts > 0 else event

    def pending_count(self) -> int:
        """How many events the hub has not acknowledged yet."""
        return int(self._scalar("SELECT count(*) FROM events", "count pending events") or 0)

    def last_seq(self) -> int:
        """The highest seq ever given out (0 for a new journal), pruned rows included."""
        with self._lock:
            return self._last_seq

    def oldest_pending_age_s(self, now: float) -> float | None:
        """Seconds since the oldest unacknowledged event happened (``now``: Unix time)."""
        created = self._scalar(
            "SELECT created_at FROM events ORDER BY seq LIMIT 1", "read the oldest event"
        )
        return None if created is None else max(0.0, now - created)

    def _scalar(self, sql: str, action: str) -> float | None:
        with self._lock:
            try:
                row = self._conn.execute(sql).fetchone()
            except sqlite3.Error as err:
                raise self._error(action, err) from err
        value: float | None = None if row is None else row[0]
        return value

    def integrity_ok(self) -> bool:
        """True if SQLite's full integrity check finds nothing wrong."""
        with self._lock:
            try:
                rows = self._conn.execute("PRAGMA integrity_check").fetchall()
            except sqlite3.Error as err:
                logger.error("journal %s: integrity check failed: %s", self.path, err)
                return False
        ok = rows == [("ok",)]
        if not ok:
            logger.error("journal %s: integrity check: %s", self.path, rows[:5])
        return ok

    def close(self) -> None:
        with self._lock:
            self._conn.close()
