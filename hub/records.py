"""What the store hands back: small frozen records, the same for every backend.

Times are timezone-aware UTC datetimes. ``as_dict()`` gives a JSON-ready dict (times as
RFC 3339 text) for the API and the live feed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from protocol.events import Event, wire_time

Role = Literal["viewer", "guard", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "guard", "admin")
AdjustmentKind = Literal["reset", "correction"]


class AlertKind(StrEnum):
    BLACK_PASS = "black_pass"  # noqa: S105 - a black (positive/close contact) pass was shown
    FORCED_DOOR = "forced_door"  # a door opened or a passage happened without a decision
    CAMERA_FAILED = "camera_failed"
    ALARM = "alarm"  # any other alarm a node raises
    NODE_OFFLINE = "node_offline"
    STALE_LISTS = "stale_lists"  # a node's trust or status list is too old
    SEQ_GAP = "seq_gap"  # events of a node are missing
    SEQ_RESET = "seq_reset"  # a node's sequence went back: its journal was reset
    EXIT_WITHOUT_ENTRY = "exit_without_entry"  # an exit counted while nobody was inside
    VISITS_REFUSED = "visits_refused"  # the registry refuses the facility's visits


def iso(ts: datetime) -> str:
    """RFC 3339 UTC with milliseconds; the one text form of a time in the store.

    One fixed width means the text sorts like the time, so range queries work on it.
    """
    if ts.tzinfo is None:
        raise ValueError("naive datetime: give a timezone-aware time")
    return wire_time(ts)


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Event):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


class Record:
    """The base of the records below: plain dataclasses that know their JSON form."""

    def as_dict(self) -> dict[str, Any]:
        return {name: _jsonable(value) for name, value in vars(self).items()}


@dataclass(frozen=True)
class Occupancy(Record):
    facility_id: str
    occupancy: int
    capacity: int | None  # None: the facility has no limit
    zones: dict[str, int] = field(default_factory=dict)
    full: bool = False  # occupancy has reached capacity: entry nodes refuse entry
    soft: bool = False  # at or past the soft threshold: the dashboard shows it nearly full
    updated_at: datetime | None = None


@dataclass(frozen=True)
class StoredEvent(Record):
    id: int  # the store's row number: increases with arrival, the paging cursor
    event: Event
    received_at: datetime
    delta: int  # what this event changed the facility's occupancy by: -1, 0 or +1
    flag: str | None = None  # e.g. "exit_without_entry": counted as nothing, see alerts

    def as_dict(self) -> dict[str, Any]:
        data = self.event.model_dump(mode="json", exclude_none=True)
        data.update(id=self.id, received_at=iso(self.received_at), delta=self.delta, flag=self.flag)
        return data


@dataclass(frozen=True)
class EventPage(Record):
    events: list[StoredEvent]
    next_before: int | None  # pass as ``before`` to get the next (older) page; None: no more


@dataclass(frozen=True)
class Gap(Record):
    id: int
    facility_id: str
    node_id: str
    first_seq: int
    last_seq: int
    missing: int  # how many of first_seq..last_seq have still not arrived
    detected_at: datetime
    filled_at: datetime | None = None
    alert_id: int | None = None


@dataclass(frozen=True)
class Flagged(Record):
    event_id: str
    facility_id: str
    door_id: str
    flag: str


@dataclass(frozen=True)
class Alert(Record):
    id: int
    facility_id: str
    kind: str
    message: str
    created_at: datetime
    last_at: datetime  # when it last happened again (repeats of an open alert are counted)
    count: int = 1
    node_id: str | None = None
    door_id: str | None = None
    event_id: str | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    cleared_at: datetime | None = None  # the condition ended by itself (a node came back)

    @property
    def open(self) -> bool:
        return self.acknowledged_at is None and self.cleared_at is None


@dataclass(frozen=True)
class BatchResult(Record):
    stored: list[Event] = field(default_factory=list)  # new events, in arrival order
    duplicates: list[str] = field(default_factory=list)  # event ids already stored
    gaps: list[Gap] = field(default_factory=list)  # gaps found by this batch
    # Exits flagged now (a late event can flag an exit stored before it, too).
    flagged: list[Flagged] = field(default_factory=list)
    # Raised (or repeated) by this batch, or counting fewer exits since a late entry.
    alerts: list[Alert] = field(default_factory=list)
    # Closed by this batch: a gap filled, or no exit of theirs left without its entry.
    cleared: list[Alert] = field(default_factory=list)
    occupancy: dict[str, Occupancy] = field(default_factory=dict)  # facilities it changed
    # Facilities whose earlier counts a late event corrected: the first minute of their
    # history that changed (a dashboard showing that day reads it again).
    corrected: dict[str, datetime] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeView(Record):
    facility_id: str
    node_id: str
    door_id: str | None
    state: str  # online, degraded, offline; "unknown" before the node's first status
    problems: list[str] = field(default_factory=list)
    trust_list_age_s: float | None = None
    status_list_age_s: float | None = None
    direction: str | None = None
    status_ts: datetime | None = None  # the time in the node's last status message
    state_since: datetime | None = None  # when the hub saw the state change
    last_seen: datetime | None = None  # last status or event from the node
    last_event_ts: datetime | None = None
    last_seq: int = 0  # the highest seq received


@dataclass(frozen=True)
class NodeChange(Record):
    node: NodeView
    previous: str  # the state before this status; "unknown" for a node never seen


@dataclass(frozen=True)
class Adjustment(Record):
    id: int
    facility_id: str
    zone_id: str | None  # None: the whole facility (a reset also zeroes every zone)
    kind: AdjustmentKind
    value: int  # the headcount it set
    delta: int  # how much that changed the count
    user: str
    note: str
    created_at: datetime
    occupancy: Occupancy | None = None  # the facility after it, when just made


@dataclass(frozen=True)
class HistorySample(Record):
    facility_id: str
    minute: datetime  # start of the minute, of the events' own time
    occupancy: int  # at the end of the minute
    peak: int  # highest during the minute (the count it began with included)


def check_user_change(role: str | None, language: str | None) -> None:
    """``ValueError`` for a role or a page language a staff account cannot have."""
    if role is not None and role not in ROLES:
        raise ValueError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
    if language is not None and language not in USER_LANGUAGES:
        raise ValueError(f"unknown language {language!r}: expected one of id, en")


# The languages a staff account can choose for its pages (runtime.i18n.LANGUAGES).
USER_LANGUAGES = ("id", "en")


@dataclass(frozen=True)
class User(Record):
    id: int
    username: str
    password_hash: str
    role: Role
    created_at: datetime
    disabled: bool = False
    language: str | None = None  # the language the person chose for the pages, if any

    def as_dict(self) -> dict[str, Any]:
        data = super().as_dict()
        del data["password_hash"]  # never leaves the hub, not even hashed
        return data


@dataclass(frozen=True)
class AuditEntry(Record):
    id: int
    ts: datetime
    user: str
    action: str
    facility_id: str | None = None
    target: str | None = None
    detail: str = ""
