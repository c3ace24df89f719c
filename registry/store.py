"""The registry's storage seam: everything it keeps goes through ``RegistryStore``.

``registry.storage`` implements it once for both databases: ``SqliteStore``, one file on
one machine, is the default; ``PgStore`` keeps the same tables in PostgreSQL for a registry
that outgrows it. The configuration's ``[store] kind`` chooses; both pass the same tests.

Every method is synchronous and either does all it says or nothing: a method that raises
has changed nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from registry.config import PostgresStoreConfig, StoreConfig
from registry.records import (
    Account,
    Checkin,
    Door,
    Facility,
    FacilityState,
    HubActivity,
    Outcome,
    Person,
    PersonRow,
    StatusChange,
    Token,
    Visit,
    VisitIntake,
    Wallet,
    WalletLink,
)


class RegistryStore(Protocol):
    def close(self) -> None: ...

    def ping(self) -> None:
        """Raise ``StoreError`` when the store cannot answer."""
        ...

    # Persons and the status feed.
    def get_person(self, subject: str) -> Person | None: ...

    def apply_persons(self, rows: Sequence[PersonRow], at: int) -> list[Outcome]:
        """Create or update each person in order, in one transaction.

        A change of status or doses appends to the feed with ``changed_at = at``; a new
        name alone does not (the feed carries no names).
        """
        ...

    def changes_since(self, cursor: int, limit: int) -> list[StatusChange]:
        """Feed entries after ``cursor``, oldest first, at most ``limit``."""
        ...

    def last_cursor(self) -> int: ...

    def status_snapshot(self) -> tuple[int, Iterator[tuple[str, str, int]]]:
        """The feed's last cursor and every person's ``(subject, status, changed_at)``.

        Both are read in one consistent view; the iterator must be consumed before the
        next call.
        """
        ...

    # Accounts and bearer tokens.
    def add_account(self, account: Account) -> None:
        """``AlreadyExists`` when the user name is taken."""
        ...

    def set_password(self, username: str, password_hash: str) -> None: ...

    def get_account(self, username: str) -> Account | None: ...

    def add_token(self, token: Token) -> None: ...

    def get_token(self, token_hash: str) -> Token | None: ...

    def delete_token(self, token_hash: str) -> None: ...

    def replace_hub_token(self, token: Token) -> int:
        """Store a facility's new hub token and drop its older ones; how many were dropped."""
        ...

    def hub_tokens_issued(self) -> dict[str, int]:
        """When each facility's current hub token was issued, by facility id."""
        ...

    def purge_tokens(self, now: int) -> int:
        """Delete expired tokens; how many."""
        ...

    # Facilities and doors.
    def add_facility(self, facility: Facility) -> None: ...

    def get_facility(self, facility_id: str) -> Facility | None: ...

    def list_facilities(
        self, state: FacilityState | None = None, pic_email: str | None = None
    ) -> list[Facility]:
        """Facilities by id, optionally only those in ``state`` or of one PIC."""
        ...

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
        """Move a facility to ``to_state`` if it is in one of ``from_states``.

        The check and the change are one step, so two operators acting at once cannot both
        succeed. ``NotFound`` for an unknown id; ``Conflict`` naming the current state.
        ``reason`` and the activation fields are set as given (None clears them).
        """
        ...

    def add_door(self, door: Door) -> None:
        """``AlreadyExists`` when the facility has a door with that id."""
        ...

    def rename_door(self, facility_id: str, door_id: str, name: str) -> Door:
        """The door with its new name; ``NotFound`` when the facility has no such door."""
        ...

    def list_doors(self, facility_id: str) -> list[Door]: ...

    def get_door(self, facility_id: str, door_id: str) -> Door | None: ...

    # Visits.
    def add_visits(self, facility_id: str, visits: Sequence[Visit], at: int) -> VisitIntake:
        """Store the batch, skipping visits already stored with the same content.

        ``Conflict`` (naming the 0-based row) when a visit id was stored before with other
        content; then nothing of the batch is stored.
        """
        ...

    def visits_of(self, subject: str, start: int, end: int) -> list[Visit]:
        """The subject's visits that overlap ``[start, end)``, by check-in time."""
        ...

    def overlapping(
        self, facility_id: str, start: int, end: int, exclude_subject: str
    ) -> list[Visit]:
        """Other subjects' visits at the facility overlapping ``(start, end)``."""
        ...

    def purge_visits(self, before: int) -> int:
        """Delete visits that ended before ``before``; how many."""
        ...

    def visits_received(self, facility_id: str | None = None) -> dict[str, tuple[int, int]]:
        """Per facility (or only ``facility_id``): visits kept and when the last arrived."""
        ...

    def count_visits(self) -> int: ...

    # What the registry saw of each facility's hub.
    def note_hub(self, facility_id: str, kind: str, at: int, reason: str | None = None) -> None:
        """A hub's read of the ``statuses`` or ``trust`` list or its ``visits`` at ``at``;
        or a ``refused`` push (with its reason), counted."""
        ...

    def hub_activity(self) -> dict[str, HubActivity]:
        """What was seen of each facility's hub, by facility id."""
        ...

    def hub_activity_of(self, facility_id: str) -> HubActivity | None:
        """What the registry saw of one facility's hub, or None."""
        ...

    # The visitors' wallets.
    def add_wallet_link(self, link: WalletLink) -> None: ...

    def get_wallet_link(self, token_hash: str) -> WalletLink | None: ...

    def use_wallet_link(self, token_hash: str, wallet: Wallet) -> int:
        """Spend the link and add ``wallet`` (made at ``wallet.created_at``), retiring the
        person's other wallets; how many were retired. ``Conflict`` when the link was used
        or has expired by then (of two uses at once, one wins)."""
        ...

    def get_wallet(self, credential_hash: str) -> Wallet | None: ...

    def set_wallet_pass(self, wallet: Wallet) -> bool:
        """Keep the wallet's new pass; False (nothing kept) when it was retired."""
        ...

    def purge_wallet_links(self, before: int) -> int:
        """Delete the links that expired before ``before``; how many."""
        ...

    # Phone check-ins on their way to a facility's hub.
    def add_checkin(self, checkin: Checkin) -> Checkin:
        """Store ``checkin`` unless its id is stored; the stored one either way.
        ``Conflict`` if the id is another wallet's or another door's."""
        ...

    def waiting_checkins(self, wallet_hash: str) -> int:
        """How many of a wallet's check-ins no hub has answered yet."""
        ...

    def get_checkin(self, checkin_id: str) -> Checkin | None: ...

    def take_checkins(
        self, facility_id: str, now_ms: int, lease_ms: int, limit: int
    ) -> list[Checkin]:
        """Lease the facility's due check-ins to its hub for ``lease_ms``, oldest first."""
        ...

    def answer_checkins(self, facility_id: str, answers: dict[str, str], at: int) -> list[str]:
        """Keep the hub's answers by check-in id; the ids that took one."""
        ...

    def mark_checkin_queued(self, checkin_id: str) -> None: ...

    def delete_checkin(self, checkin_id: str) -> None: ...

    def purge_checkins(self, answered_before: int, before_ms: int) -> int: ...

    # Audit trail of what operators and PICs did.
    def audit(self, at: int, actor: str, action: str, target: str, detail: str = "") -> None: ...

    def audit_entries(self) -> list[tuple[int, str, str, str, str]]:
        """The audit trail, oldest first: (at, actor, action, target, detail)."""
        ...

    def audit_search(
        self, actor: str = "", action: str = "", text: str = "", limit: int = 200
    ) -> list[tuple[int, str, str, str, str]]:
        """The newest ``limit`` entries, newest first, whose actor holds ``actor``, whose
        action is ``action`` and whose target or detail holds ``text`` (case aside; an
        empty filter takes everything)."""
        ...

    def audit_actions(self) -> list[str]:
        """The actions the trail holds, in order."""
        ...

    def scrub_audit(self, before: int, actions: Sequence[str]) -> int:
        """Blank the subject id of ``actions`` rows written before ``before``; how many."""
        ...


def open_store(config: StoreConfig) -> RegistryStore:
    """The store the configuration names, opened and migrated."""
    if isinstance(config, PostgresStoreConfig):
        from registry.storage import PgStore

        return PgStore(config.dsn)
    from registry.storage import SqliteStore

    return SqliteStore(config.path, busy_timeout_s=config.busy_timeout_s)
