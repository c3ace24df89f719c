"""Sealed node bundles waiting for their door node (``hub.enrolments`` says why and how)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, select, update

from hub.enrolments import EnrolmentRecord, refusal, unknown
from hub.errors import AlreadyExists
from hub.store.dialect import for_update, insert, ms
from hub.store.tables import enrolments
from protocol.events import utcnow

if TYPE_CHECKING:
    from hub.store.dialect import Database

_E = enrolments.c


class Enrolments:
    """Sealed bundles: a part of the store (``hub.store.Store``)."""

    def add_enrolment(
        self: Database, lookup_id: str, sealed: bytes, expires_at: datetime
    ) -> EnrolmentRecord:
        """File a sealed bundle under ``lookup_id``; ``AlreadyExists`` if that id is taken."""
        now = ms(utcnow())
        add = (
            insert(self.dialect, enrolments)
            .values(lookup_id=lookup_id, sealed=sealed, expires_at=expires_at, created_at=now)
            .on_conflict_do_nothing(index_elements=["lookup_id"])
            .returning(_E.lookup_id)
        )
        # Filing a bundle also drops the ciphertext of every expired one: nobody can claim
        # it any more, and a copy of the database with a QR found later must not give the
        # bundle away. The row stays, so a late claim is still told "expired", not "unknown".
        sweep = (
            update(enrolments)
            .where(_E.expires_at <= now, _E.sealed.is_not(None))
            .values(sealed=None)
        )

        def file(conn: Connection) -> None:
            if conn.execute(add).first() is None:
                raise AlreadyExists(f"an enrolment {lookup_id} exists already")
            conn.execute(sweep)

        self._sa("file an enrolment", file)
        return EnrolmentRecord(lookup_id, expires_at, now, None)

    def claim_enrolment(self: Database, lookup_id: str) -> bytes:
        """The sealed bundle, marked used and dropped; ``EnrolmentRefused`` saying why not."""
        # Locked: a second worker claiming the same id waits, then sees it used.
        read = for_update(
            self.dialect,
            select(_E.sealed, _E.expires_at, _E.used_at).where(_E.lookup_id == lookup_id),
        )

        def claim(conn: Connection) -> bytes:
            row = conn.execute(read).first()
            if row is None:
                raise unknown(lookup_id)
            refusal(lookup_id, row.expires_at, row.used_at)
            conn.execute(
                update(enrolments)
                .where(_E.lookup_id == lookup_id)
                .values(used_at=ms(utcnow()), sealed=None)
            )
            return bytes(row.sealed)

        return self._sa("claim an enrolment", claim)

    def enrolment(self: Database, lookup_id: str) -> EnrolmentRecord | None:
        query = select(_E.lookup_id, _E.expires_at, _E.created_at, _E.used_at).where(
            _E.lookup_id == lookup_id
        )
        row = self._sa("read an enrolment", lambda conn: conn.execute(query).first(), write=False)
        return EnrolmentRecord(*row) if row else None
