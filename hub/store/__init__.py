"""The hub's store: the interface every backend follows, and how to open the configured one.

The ingest is the store's main writer; the dashboard and the API read. Methods are
synchronous: an asyncio caller runs them with ``asyncio.to_thread``. Methods that record
something a person did (``adjust``, ``ack_alert``) also write the audit row in the same
transaction; other callers record their actions with ``audit()``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Protocol

from hub.config import FacilityConfig, HubConfig, PostgresStoreConfig, SqliteStoreConfig
from hub.enrolments import EnrolmentRecord
from hub.errors import UnsupportedBackend
from hub.records import (
    Adjustment,
    AdjustmentKind,
    Alert,
    AuditEntry,
    BatchResult,
    EventPage,
    Gap,
    HistorySample,
    NodeChange,
    NodeView,
    Occupancy,
    Role,
    StoredEvent,
    User,
)
from hub.upstream.records import (
    OutboxCounts,
    Purged,
    StatusChange,
    SyncState,
    Visit,
    VisitState,
)
from protocol.events import Event, NodeStatus
from protocol.status import Status

__all__ = ["Store", "open_store"]


class Store(Protocol):
    # --- events and occupancy ---------------------------------------------------------
    def store_batch(
        self, events: Sequence[Event], received_at: datetime | None = None
    ) -> BatchResult:
        """Store new events, skip known ones, count them in the order of their own times
        (correcting what a late one changes), track seq gaps: one transaction."""
        ...

    def occupancy(self, facility_id: str) -> Occupancy:
        """The facility's occupancy; ``NotFound`` for a facility neither configured nor seen."""
        ...

    def occupancies(self) -> list[Occupancy]:
        """Every configured facility's occupancy (and any other facility seen in events)."""
        ...

    def rebuild_occupancy(self) -> dict[str, Occupancy]:
        """Count every facility again from its stored events and adjustments, in the
        counting order (``hub.counting.rules``): the same counters live counting keeps."""
        ...

    def events(
        self,
        *,
        facility_id: str | None = None,
        door_id: str | None = None,
        node_id: str | None = None,
        kind: str | None = None,
        subject: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> EventPage:
        """Stored events, newest first; ``since``/``until`` bound the event time ``ts``."""
        ...

    def count_events(self, facility_id: str | None = None, *, since: datetime | None = None) -> int:
        """How many events are stored (for a facility, since an event time)."""
        ...

    def event(self, event_id: str) -> StoredEvent | None: ...

    def last_passage(self, facility_id: str, subject: str) -> StoredEvent | None:
        """The subject's latest passage in or out at the facility (by its time), or None."""
        ...

    def gaps(self, facility_id: str | None = None, *, open_only: bool = True) -> list[Gap]: ...

    # --- alerts -----------------------------------------------------------------------
    def add_alert(
        self,
        facility_id: str,
        kind: str,
        message: str,
        *,
        node_id: str | None = None,
        door_id: str | None = None,
        event_id: str | None = None,
        coalesce: bool = False,
    ) -> Alert:
        """A new alert; with ``coalesce``, an open alert of the same facility, kind and node
        is counted again instead."""
        ...

    def alerts(
        self,
        facility_id: str | None = None,
        *,
        open_only: bool = True,
        kind: str | None = None,
        limit: int = 200,
    ) -> list[Alert]:
        """Alerts, newest first."""
        ...

    def ack_alert(self, alert_id: int, user: str) -> Alert:
        """Acknowledge an alert; ``NotFound`` if there is none with that id."""
        ...

    def clear_alerts(self, facility_id: str, kind: str, node_id: str | None = None) -> list[Alert]:
        """Close the open alerts whose condition has ended (a node came back)."""
        ...

    # --- nodes ------------------------------------------------------------------------
    def upsert_node_status(
        self,
        facility_id: str,
        node_id: str,
        status: NodeStatus,
        *,
        door_id: str | None = None,
        seen_at: datetime | None = None,
    ) -> NodeChange: ...

    def nodes(self, facility_id: str | None = None) -> list[NodeView]: ...

    # --- capacity set by staff -------------------------------------------------------
    def facility_config(self, facility_id: str) -> FacilityConfig | None:
        """The facility's settings in effect: the config's, with staff's capacity changes."""
        ...

    def set_capacity(
        self,
        facility_id: str,
        user: str,
        *,
        capacity: int | None = None,
        capacity_percent: float | None = None,
        nominal_max: int | None = None,
        soft_threshold_percent: float | None = None,
    ) -> FacilityConfig:
        """Set the capacity in effect (absolute, or a percentage of ``nominal_max``), kept
        across restarts and audited; ``ValueError`` for a bad value, nothing changed."""
        ...

    # --- adjustments and history ------------------------------------------------------
    def adjust(
        self,
        facility_id: str,
        kind: AdjustmentKind,
        value: int,
        user: str,
        note: str = "",
        *,
        zone_id: str | None = None,
    ) -> Adjustment:
        """Set a headcount by hand (``correction``) or zero it (``reset``), recording who."""
        ...

    def adjustments(self, facility_id: str, *, limit: int = 100) -> list[Adjustment]: ...

    def history(
        self, facility_id: str, since: datetime | None = None, until: datetime | None = None
    ) -> list[HistorySample]:
        """Occupancy per minute of the events' own time (minutes something was counted
        in only), oldest first."""
        ...

    # --- accounts and audit -----------------------------------------------------------
    def add_user(self, username: str, password_hash: str, role: Role) -> User: ...

    def get_user(self, username: str) -> User | None: ...

    def list_users(self) -> list[User]: ...

    def update_user(
        self,
        username: str,
        *,
        password_hash: str | None = None,
        role: Role | None = None,
        disabled: bool | None = None,
        language: str | None = None,
    ) -> User: ...

    def delete_user(self, username: str) -> None: ...

    def audit(
        self,
        user: str,
        action: str,
        *,
        facility_id: str | None = None,
        target: str | None = None,
        detail: str = "",
    ) -> AuditEntry: ...

    def audit_log(
        self,
        *,
        facility_id: str | None = None,
        user: str | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]: ...

    # --- upstream: synced lists, visits, retention (hub.store.upstream, visits, retention)
    def configure_visits(self, max_visit_s: float) -> None:
        """The longest visit an exit closes (``[retention] max_visit_hours``)."""
        ...

    def sync_state(self) -> SyncState:
        """The feed cursor, the stored trust list and when the registry last confirmed them."""
        ...

    def save_trust(self, body: str | None, etag: str | None, at: datetime) -> None:
        """Keep a new trust list, or (``body`` None) note that the registry confirmed it."""
        ...

    def save_statuses(
        self, changes: Sequence[StatusChange], cursor: int, at: datetime, *, complete: bool
    ) -> int:
        """Upsert one feed page (the highest cursor of a subject wins) and store ``cursor``,
        in one transaction; ``complete``: the feed was read to its end."""
        ...

    def status_of(self, subject: str) -> tuple[Status, int] | None:
        """The subject's latest status from the feed and when it changed, or None."""
        ...

    def status_items(self) -> Iterator[tuple[bytes, Status, int]]:
        """Every subject's latest (subject, status, changed_at), for the doors' status list."""
        ...

    def pending_visits(self, facility_id: str, limit: int = 1000) -> list[Visit]:
        """The facility's visits the registry has not taken yet, oldest first."""
        ...

    def mark_visits(
        self, visit_ids: Sequence[str], state: VisitState, *, reason: str | None = None
    ) -> int:
        """Set visits ``sent``, ``failed`` (with the registry's reason) or ``pending``."""
        ...

    def outbox_counts(self) -> OutboxCounts: ...

    def failed_visits(self, facility_id: str | None = None, limit: int = 100) -> list[Visit]: ...

    def visits_of(
        self, facility_id: str, subject: str, start: datetime, end: datetime
    ) -> list[Visit]:
        """The subject's visits at the facility overlapping ``[start, end)``."""
        ...

    def overlapping(
        self, facility_id: str, start: datetime, end: datetime, exclude_subject: str
    ) -> list[Visit]:
        """Other subjects' visits at the facility overlapping ``[start, end)``."""
        ...

    def purge_before(self, before: datetime) -> Purged:
        """Delete visits ended before ``before``; remove subject ids from older events and
        desk audit entries."""
        ...

    # --- sealed bundles for provisioning QRs (hub.enrolments) ---------------------------
    def add_enrolment(self, lookup_id: str, sealed: bytes, expires_at: datetime) -> EnrolmentRecord:
        """File a sealed node bundle; ``AlreadyExists`` if the lookup id is taken."""
        ...

    def claim_enrolment(self, lookup_id: str) -> bytes:
        """The sealed bundle, once: marked used and dropped; else ``EnrolmentRefused``."""
        ...

    def enrolment(self, lookup_id: str) -> EnrolmentRecord | None: ...

    def close(self) -> None: ...


def open_store(config: HubConfig, facilities: Sequence[FacilityConfig] | None = None) -> Store:
    """The store the config names, opened and migrated."""
    store = config.store
    chosen = config.facilities if facilities is None else facilities
    if isinstance(store, PostgresStoreConfig):
        # Imported here, not at the top: psycopg would cost every SQLite hub about 10 MB of
        # resident memory and 0.7 s of its start (see docs/benchmarks.md, Optimisations).
        from hub.store.postgres import PgStore

        return PgStore(store.dsn, chosen)
    if isinstance(store, SqliteStoreConfig):
        from hub.store.sqlite import SqliteStore

        return SqliteStore(store.path, chosen)
    raise UnsupportedBackend(f"store backend {store.backend!r} is not supported")
