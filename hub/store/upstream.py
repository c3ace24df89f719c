"""The sync with the registry service, upstream of the hub: the stored trust list, every
subject's latest status and the feed's cursor (``hub.upstream.sync`` fetches them)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select, update

from hub.store.dialect import insert
from hub.store.tables import statuses, upstream
from hub.upstream.records import StatusChange, SyncState, TrustCopy
from protocol.status import Status

if TYPE_CHECKING:
    from hub.store.dialect import Database

_S = statuses.c
_U = upstream.c
_ONE = _U.id == 1


class Upstream:
    """The synced lists: a part of the store (``hub.store.Store``)."""

    def sync_state(self: Database) -> SyncState:
        """The feed cursor, the stored trust list and when the registry last confirmed them."""

        def read(conn: Connection) -> tuple[Any, int]:
            row = conn.execute(
                select(
                    _U.cursor,
                    _U.statuses_changed_at,
                    _U.statuses_checked_at,
                    _U.trust_body,
                    _U.trust_etag,
                    _U.trust_changed_at,
                    _U.trust_checked_at,
                ).where(_ONE)
            ).first()
            return row, int(conn.execute(select(func.count()).select_from(statuses)).scalar_one())

        row, count = self._sa("read the sync state", read, write=False)
        if row is None:
            return SyncState(statuses=count)
        cursor, s_changed, s_checked, body, etag, t_changed, t_checked = row
        trust = None
        if body is not None and t_changed and t_checked:
            trust = TrustCopy(body, etag, t_changed, t_checked)
        return SyncState(cursor, count, s_changed, s_checked, trust)

    def save_trust(self: Database, body: str | None, etag: str | None, at: datetime) -> None:
        """Keep a new trust list (``body``), or note that the registry confirmed ours."""
        if body is None:
            query = (
                update(upstream)
                .where(_ONE)
                .values(trust_checked_at=at, trust_etag=func.coalesce(etag, _U.trust_etag))
            )
        else:
            query = (
                update(upstream)
                .where(_ONE)
                .values(trust_body=body, trust_etag=etag, trust_changed_at=at, trust_checked_at=at)
            )
        self._sa("store the trust list", lambda conn: conn.execute(query))

    def save_statuses(
        self: Database,
        changes: Sequence[StatusChange],
        cursor: int,
        at: datetime,
        *,
        complete: bool,
    ) -> int:
        """Store one feed page and its cursor in one transaction; ``complete``: the feed
        was read to its end. Returns the number of changes stored."""
        # In key order: a page of random subjects then walks the table's b-tree once, in
        # order, instead of jumping about it (a third less time for a fresh hub's million).
        # The order within a subject does not matter: the highest cursor wins either way.
        rows = [
            {"subject": s, "status": st, "doses": d, "changed_at": ch, "cursor": cu}
            for s, st, d, ch, cu in sorted(
                (c.subject, int(c.status), c.doses, c.changed_at, c.cursor) for c in changes
            )
        ]
        upsert = insert(self.dialect, statuses)
        # One statement per change (executemany): a page may change a subject twice.
        upsert = upsert.on_conflict_do_update(
            index_elements=["subject"],
            set_={name: upsert.excluded[name] for name in ("status", "doses", "changed_at",
                                                          "cursor")},
            where=upsert.excluded.cursor > _S.cursor,
        )  # fmt: skip
        mark = (
            update(upstream)
            .where(_ONE)
            .values(
                cursor=cursor,
                statuses_changed_at=at if rows else _U.statuses_changed_at,
                statuses_checked_at=at if complete else _U.statuses_checked_at,
            )
        )

        def save(conn: Connection) -> None:
            if rows:
                conn.execute(upsert, rows)
            conn.execute(mark)

        self._sa("store statuses", save)
        return len(rows)

    def status_of(self: Database, subject: str) -> tuple[Status, int] | None:
        """The subject's latest status from the feed and when it changed, or None."""
        query = select(_S.status, _S.changed_at).where(_S.subject == subject)
        rows = self._sa("read a status", lambda conn: conn.execute(query).all(), write=False)
        return (tuple(Status)[rows[0][0]], int(rows[0][1])) if rows else None

    def status_items(self: Database) -> Iterator[tuple[bytes, Status, int]]:
        """Every subject's latest status, as ``StatusList.from_items`` takes them."""
        by_code = tuple(Status)  # indexing a tuple is cheaper than Status(code), a million times
        query = select(_S.subject, _S.status, _S.changed_at)
        for subject, status, changed_at in self._stream("read statuses", query):
            yield bytes.fromhex(subject), by_code[status], changed_at
