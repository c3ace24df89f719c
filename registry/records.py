"""What the registry keeps, as small frozen records passed between the store and the rest.

Times are whole Unix seconds (UTC); subject ids are 24 lower-case hex digits. Nothing here
holds a NIK: the registry only ever keeps the subject id derived from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, get_args

from protocol.status import Status

Role = Literal["operator", "pic"]
TokenKind = Literal["session", "hub"]
Direction = Literal["entrance", "exit", "both"]
DoorKind = Literal["camera", "poster", "both"]
FacilityType = Literal[
    "office",
    "mall",
    "market",
    "shop",
    "restaurant",
    "clinic",
    "hospital",
    "school",
    "government",
    "worship",
    "transport",
    "sports",
    "tourism",
    "other",
]
FACILITY_TYPES: tuple[str, ...] = get_args(FacilityType)


class FacilityState(StrEnum):
    """The steps of a facility's registration, in order (``rejected`` ends a request)."""

    REQUESTED = "requested"
    VERIFIED = "verified"
    ACTIVE = "active"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Person:
    subject: str
    name: str
    status: Status
    doses: int
    changed_at: int
    created_at: int


@dataclass(frozen=True)
class PersonRow:
    """A person as an import or an operator gives it: the NIK already turned into a subject."""

    subject: str
    name: str
    status: Status
    doses: int


class Outcome(StrEnum):
    """What applying one ``PersonRow`` did."""

    CREATED = "created"
    UPDATED = "updated"  # status or doses changed: a new entry in the feed
    RENAMED = "renamed"  # only the name changed: nothing for the feed
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class StatusChange:
    cursor: int
    subject: str
    status: Status
    doses: int
    changed_at: int


@dataclass(frozen=True)
class Account:
    username: str
    password_hash: str
    role: Role
    created_at: int


@dataclass(frozen=True)
class Token:
    """A bearer credential, kept as the SHA-256 of the token a caller holds."""

    token_hash: str
    kind: TokenKind
    username: str | None  # sessions
    facility_id: str | None  # hub tokens
    created_at: int
    expires_at: int | None


@dataclass(frozen=True)
class WalletLink:
    """A one-time link that puts a person's pass on a phone, kept as its token's hash."""

    token_hash: str
    subject: str
    created_at: int
    expires_at: int
    used_at: int | None


@dataclass(frozen=True)
class Wallet:
    """A phone's wallet: the hash of its credential, its person, and the pass it holds.

    ``retired_at`` is set when the person activated another phone: its refresh then
    answers that the pass moved.
    """

    credential_hash: str
    subject: str
    created_at: int
    retired_at: int | None
    pass_text: str
    pass_status: str
    pass_doses: int
    pass_kid: str
    pass_issued_at: int
    pass_expires_at: int


@dataclass(frozen=True)
class Facility:
    id: str
    name: str
    address: str
    type: str
    capacity: int
    pic_name: str
    pic_email: str
    state: FacilityState
    created_at: int
    updated_at: int
    reason: str | None = None  # why it was rejected
    activation_hash: str | None = None
    activation_expires_at: int | None = None


@dataclass(frozen=True)
class Door:
    facility_id: str
    door_id: str
    name: str
    direction: Direction
    created_at: int
    kind: DoorKind = "camera"


@dataclass(frozen=True)
class HubActivity:
    """What the registry saw of a facility's hub (times in Unix seconds, None: never)."""

    facility_id: str
    statuses_at: int | None = None
    trust_at: int | None = None
    visits_at: int | None = None
    refused_at: int | None = None
    refused: int = 0
    refused_reason: str | None = None
    channel_at: int | None = None


@dataclass(frozen=True)
class Visit:
    facility_id: str
    visit_id: str
    subject: str
    door_id: str
    check_in: int
    check_out: int

    def same_as(self, other: Visit) -> bool:
        return (self.subject, self.door_id, self.check_in, self.check_out) == (
            other.subject,
            other.door_id,
            other.check_in,
            other.check_out,
        )


@dataclass(frozen=True)
class VisitIntake:
    """What a batch of visits did: ``stored`` new ones, ``duplicates`` seen before."""

    stored: int
    duplicates: int
    duplicate_ids: tuple[str, ...] = ()


# A stored person as the import sees it: (name, status, doses, changed_at, created_at).
PersonState = tuple[str, Status, int, int, int]


@dataclass
class PersonsPlan:
    """What applying a batch of rows does, decided before either store writes it."""

    outcomes: list[Outcome]
    changes: list[tuple[str, str, int, int]]  # feed entries: (subject, status, doses, at)
    dirty: set[str]  # subjects whose row is written


def plan_persons(rows: Sequence[PersonRow], state: dict[str, PersonState], at: int) -> PersonsPlan:
    """Apply ``rows`` in order to ``state`` (the stored persons they name, updated in place).

    A change of status or doses is a feed entry at ``at``; a new name alone is not (the
    feed carries no names); a row equal to what is stored changes nothing.
    """
    plan = PersonsPlan([], [], set())
    for row in rows:
        before = state.get(row.subject)
        if before is None:
            outcome = Outcome.CREATED
            state[row.subject] = (row.name, row.status, row.doses, at, at)
        elif (before[1], before[2]) != (row.status, row.doses):
            outcome = Outcome.UPDATED
            state[row.subject] = (row.name, row.status, row.doses, at, before[4])
        elif before[0] != row.name:
            outcome = Outcome.RENAMED
            state[row.subject] = (row.name, *before[1:])
        else:
            outcome = Outcome.UNCHANGED
        if outcome in (Outcome.CREATED, Outcome.UPDATED):
            plan.changes.append((row.subject, row.status.label, row.doses, at))
        if outcome is not Outcome.UNCHANGED:
            plan.dirty.add(row.subject)
        plan.outcomes.append(outcome)
    return plan


def facility_from_row(row: Sequence[Any]) -> Facility:
    """A facility from a row of the stores' facility columns, in their order."""
    return Facility(
        id=row[0],
        name=row[1],
        address=row[2],
        type=row[3],
        capacity=row[4],
        pic_name=row[5],
        pic_email=row[6],
        state=FacilityState(row[7]),
        created_at=row[8],
        updated_at=row[9],
        reason=row[10],
        activation_hash=row[11],
        activation_expires_at=row[12],
    )


def visit_from_row(row: Sequence[Any]) -> Visit:
    """A visit from a row of the stores' visit columns, in the order of its fields."""
    return Visit(*row)


@dataclass(frozen=True)
class Checkin:
    """A phone's check-in at a door, on its way to the facility's hub (``answer``: the
    hub's decision as JSON, once it came)."""

    id: str
    wallet_hash: str
    facility_id: str
    door_id: str
    pass_text: str
    at_ms: int
    queued: bool = False
    leased_until_ms: int | None = None
    answer: str | None = None
    answered_at: int | None = None
