"""What the hub keeps of the central registry, and the visits it derives for it.

Small frozen records shared by the store backends, the registry sync, the visits outbox
and tracing. Times are timezone-aware UTC datetimes, except where the registry's own
formats count in Unix seconds (a status change's ``changed_at``, as the status list does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from hub.records import Record
from protocol.status import Status

VisitState = Literal["pending", "sent", "failed"]
VISIT_STATES: tuple[VisitState, ...] = ("pending", "sent", "failed")


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One entry of the registry's status feed."""

    subject: str  # 24 lower-case hex digits
    status: Status
    doses: int
    changed_at: int  # Unix seconds
    cursor: int


@dataclass(frozen=True)
class TrustCopy(Record):
    """The registry's trust list as the hub last received it."""

    body: str  # the JSON document, as the registry sent it
    etag: str | None
    changed_at: datetime  # when the hub received this content
    checked_at: datetime  # when the registry last confirmed it (200 or 304)


@dataclass(frozen=True)
class SyncState(Record):
    """Where the hub's sync with the registry stands."""

    cursor: int = 0  # the feed cursor of the last stored page
    statuses: int = 0  # subjects in the statuses table
    statuses_changed_at: datetime | None = None  # the last page that changed a status
    statuses_checked_at: datetime | None = None  # the last time the feed was read to its end
    trust: TrustCopy | None = None


@dataclass(frozen=True)
class Visit(Record):
    """A check-in closed by a check-out: what the registry receives and tracing reads."""

    visit_id: str  # the check-in event's id
    facility_id: str
    subject: str
    door_id: str  # the door of the check-in
    check_in: datetime  # to the second, rounded down
    check_out: datetime  # to the second, rounded up
    exit_event_id: str
    state: VisitState = "pending"
    attempts: int = 0
    reason: str | None = None  # why the registry refused it (state "failed")
    created_at: datetime | None = None
    sent_at: datetime | None = None

    def wire(self) -> dict[str, str]:
        """The visit as ``POST /api/v1/visits`` takes it."""
        return {
            "visit_id": self.visit_id,
            "facility_id": self.facility_id,
            "subject": self.subject,
            "door_id": self.door_id,
            "check_in": rfc3339(self.check_in),
            "check_out": rfc3339(self.check_out),
        }


@dataclass(frozen=True)
class Purged(Record):
    """What one retention pass removed."""

    before: datetime
    visits: int = 0  # visits deleted
    events: int = 0  # events whose subject id was removed
    audit: int = 0  # audit entries whose subject id was removed


@dataclass(frozen=True)
class OutboxCounts(Record):
    counts: dict[str, int] = field(default_factory=dict)  # by state, for every facility

    def get(self, state: VisitState) -> int:
        return self.counts.get(state, 0)


def floor_second(ts: datetime) -> datetime:
    return datetime.fromtimestamp(math.floor(ts.timestamp()), UTC)


def ceil_second(ts: datetime) -> datetime:
    return datetime.fromtimestamp(math.ceil(ts.timestamp()), UTC)


def rfc3339(ts: datetime) -> str:
    """RFC 3339 UTC to the second, as the registry writes times."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
