"""Sealed node bundles waiting for their door node: the hub's part of the provisioning QR.

A technician leaves a node's bundle here, sealed with a key only the provisioning QR
holds (``protocol.enrolment``); the node, shown the QR, fetches it once by its lookup id.
The hub keeps only the ciphertext, the lookup id, the expiry and when it was used, and drops
the ciphertext on that one use, or once it has expired (swept when the next bundle is
filed): afterwards only the fact that it was used or expired is left.

Mixins of ``SqliteStore`` and ``PgStore`` (migration 4 in ``hub.schema``). A claim checks
and marks the row in one transaction, so two nodes showing the same QR at once get it once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from hub.errors import AlreadyExists, HubError
from hub.records import iso, parse_iso
from protocol.events import utcnow

if TYPE_CHECKING:
    from hub.pg_store import Conn, Row

T = TypeVar("T")


class Refusal(StrEnum):
    """Why a claim was refused; the value is the API's error code."""

    UNKNOWN = "unknown_token"
    USED = "token_used"
    EXPIRED = "token_expired"


class EnrolmentRefused(HubError):
    """A sealed bundle cannot be handed out: no such lookup id, used already, or expired."""

    def __init__(self, reason: Refusal, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class EnrolmentRecord:
    """A sealed bundle as the hub files it (the ciphertext itself is not in here)."""

    lookup_id: str
    expires_at: datetime
    created_at: datetime
    used_at: datetime | None


def _refusal(lookup_id: str, expires_at: datetime, used_at: datetime | None) -> None:
    """Raise why a stored row cannot be claimed now, if it cannot."""
    if used_at is not None:
        raise EnrolmentRefused(
            Refusal.USED, f"this provisioning QR was used at {iso(used_at)}; enrol the node again"
        )
    if utcnow() >= expires_at:
        raise EnrolmentRefused(
            Refusal.EXPIRED,
            f"this provisioning QR expired at {iso(expires_at)}; enrol the node again",
        )


# Filing a bundle also drops the ciphertext of every expired one: nobody can claim it any
# more, and a copy of the database with a QR found later must not give the bundle away.
# The row stays, so a late claim is still told "expired" rather than "unknown".
_SWEEP_SQLITE = "UPDATE enrolments SET sealed = NULL WHERE expires_at <= ? AND sealed IS NOT NULL"
_SWEEP_PG = "UPDATE enrolments SET sealed = NULL WHERE expires_at <= %s AND sealed IS NOT NULL"


def _unknown(lookup_id: str) -> EnrolmentRefused:
    return EnrolmentRefused(Refusal.UNKNOWN, "no enrolment for this provisioning QR")


class SqliteEnrolmentMixin:
    """Sealed bundles for ``SqliteStore``."""

    if TYPE_CHECKING:

        def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...

        def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]: ...

    def add_enrolment(self, lookup_id: str, sealed: bytes, expires_at: datetime) -> EnrolmentRecord:
        """File a sealed bundle under ``lookup_id``; ``AlreadyExists`` if that id is taken."""
        now = utcnow()
        with self._write() as conn:
            if conn.execute(
                "SELECT 1 FROM enrolments WHERE lookup_id = ?", (lookup_id,)
            ).fetchone():
                raise AlreadyExists(f"an enrolment {lookup_id} exists already")
            conn.execute(
                "INSERT INTO enrolments (lookup_id, sealed, expires_at, created_at) "
                "VALUES (?, ?, ?, ?)",
                (lookup_id, sealed, iso(expires_at), iso(now)),
            )
            conn.execute(_SWEEP_SQLITE, (iso(now),))
        return EnrolmentRecord(lookup_id, expires_at, now, None)

    def claim_enrolment(self, lookup_id: str) -> bytes:
        """The sealed bundle, marked used and dropped; ``EnrolmentRefused`` saying why not."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT sealed, expires_at, used_at FROM enrolments WHERE lookup_id = ?",
                (lookup_id,),
            ).fetchone()
            if row is None:
                raise _unknown(lookup_id)
            sealed, expires_at, used_at = row[0], parse_iso(row[1]), row[2]
            _refusal(lookup_id, expires_at, parse_iso(used_at) if used_at else None)
            conn.execute(
                "UPDATE enrolments SET used_at = ?, sealed = NULL WHERE lookup_id = ?",
                (iso(utcnow()), lookup_id),
            )
        return bytes(sealed)

    def enrolment(self, lookup_id: str) -> EnrolmentRecord | None:
        rows = self._rows(
            "SELECT lookup_id, expires_at, created_at, used_at FROM enrolments WHERE lookup_id = ?",
            (lookup_id,),
        )
        if not rows:
            return None
        lid, expires_at, created_at, used_at = tuple(rows[0])
        return EnrolmentRecord(
            lid,
            parse_iso(expires_at),
            parse_iso(created_at),
            parse_iso(used_at) if used_at else None,
        )


class PgEnrolmentMixin:
    """Sealed bundles for ``PgStore``."""

    if TYPE_CHECKING:

        def _run(self, what: str, work: Callable[[Conn], T], *, write: bool = True) -> T: ...

        def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    def add_enrolment(self, lookup_id: str, sealed: bytes, expires_at: datetime) -> EnrolmentRecord:
        now = utcnow()

        def add(conn: Conn) -> None:
            done = conn.execute(
                "INSERT INTO enrolments (lookup_id, sealed, expires_at, created_at) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (lookup_id) DO NOTHING",
                (lookup_id, sealed, expires_at, now),
            )
            if done.rowcount == 0:
                raise AlreadyExists(f"an enrolment {lookup_id} exists already")
            conn.execute(_SWEEP_PG, (now,))

        self._run("file an enrolment", add)
        return EnrolmentRecord(lookup_id, expires_at, now, None)

    def claim_enrolment(self, lookup_id: str) -> bytes:
        def claim(conn: Conn) -> bytes:
            # FOR UPDATE: a second worker claiming the same id waits, then sees it used.
            row = conn.execute(
                "SELECT sealed, expires_at, used_at FROM enrolments WHERE lookup_id = %s "
                "FOR UPDATE",
                (lookup_id,),
            ).fetchone()
            if row is None:
                raise _unknown(lookup_id)
            _refusal(lookup_id, row[1], row[2])
            conn.execute(
                "UPDATE enrolments SET used_at = %s, sealed = NULL WHERE lookup_id = %s",
                (utcnow(), lookup_id),
            )
            return bytes(row[0])

        return self._run("claim an enrolment", claim)

    def enrolment(self, lookup_id: str) -> EnrolmentRecord | None:
        rows = self._rows(
            "SELECT lookup_id, expires_at, created_at, used_at FROM enrolments "
            "WHERE lookup_id = %s",
            (lookup_id,),
        )
        if not rows:
            return None
        lid, expires_at, created_at, used_at = tuple(rows[0])
        return EnrolmentRecord(lid, expires_at, created_at, used_at)
