"""The API's request and response bodies, as pydantic models.

Request bodies refuse unknown fields and coerce nothing (``"3"`` is not a number), so a
typo or a wrong type is a 422 naming the field, never a silent default. Responses are
built through their model, so what is sent is what ``/api/v1/openapi.json`` says.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from protocol.events import EventKind
from protocol.ids import LOOKUP_ID_PATTERN, Ident
from protocol.model import StrictModel

Time = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
Id = Ident
RoleName = Literal["viewer", "guard", "admin"]
ColourName = Literal["green", "yellow", "red", "black"]


class Input(StrictModel):
    """A request body: unknown fields are refused and nothing is coerced ("3" is no int)."""

    model_config = ConfigDict(strict=True)


class Output(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ErrorOut(Output):
    error: str = Field(description="A short code, e.g. not_logged_in, csrf, invalid.")
    detail: Any = Field(
        None, description="A sentence, or for bad input a list of {field, message}."
    )


class LoginIn(Input):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1024)


class SessionOut(Output):
    user: str | None = Field(description="Who is logged in; null when nobody is.")
    role: RoleName | None
    csrf_token: str = Field(description="Send it in X-CSRF-Token with every write.")


class OccupancyOut(Output):
    facility_id: str
    occupancy: int = Field(description="People inside now.")
    capacity: int | None = Field(description="Most allowed inside; null: no limit.")
    zones: dict[str, int] = Field(description="People inside each zone.")
    full: bool = Field(description="At capacity: entrances refuse entry.")
    soft: bool = Field(description="At or past the soft threshold: nearly full.")
    updated_at: Time | None


class CapacityOut(Output):
    facility_id: str
    capacity: int | None = Field(description="The capacity in effect, in people.")
    mode: Literal["absolute", "percent", "none"]
    capacity_percent: float | None
    nominal_max: int | None
    soft_threshold_percent: float


class CapacityIn(Input):
    capacity: int | None = Field(None, ge=0, le=1_000_000, description="People; or give percent.")
    percent: float | None = Field(
        None, gt=0, le=100, description="A percentage of nominal_max, as health protocols set it."
    )
    nominal_max: int | None = Field(
        None, ge=1, le=1_000_000, description="The building's normal maximum (for percent)."
    )
    soft_threshold_percent: float | None = Field(
        None, gt=0, le=100, description="Occupancy at this share of capacity shows nearly full."
    )


class DoorRef(Output):
    id: str
    name: str
    direction: Literal["entry", "exit", "both"]


class ZoneRef(Output):
    id: str
    name: str
    doors: list[str]


class FacilitySummary(Output):
    id: str
    name: str
    occupancy: OccupancyOut


class FacilityList(Output):
    facilities: list[FacilitySummary]


class FacilityOut(Output):
    id: str
    name: str
    timezone: str
    capacity: CapacityOut
    occupancy: OccupancyOut
    doors: list[DoorRef]
    zones: list[ZoneRef]


class EventOut(Output):
    id: int = Field(description="The store's row number; newer events have higher ones.")
    v: int
    event_id: str
    node_id: str
    facility_id: str
    door_id: str
    seq: int
    ts: Time
    kind: EventKind
    direction: Literal["entry", "exit"] | None = None
    subject: str | None = None
    signal: str | None = None
    admit: bool | None = None
    reason: str | None = None
    message: str | None = None
    detail: str | None = None
    late: bool = False
    received_at: Time
    delta: int = Field(description="What it changed the occupancy by: -1, 0 or +1.")
    flag: str | None = None


class EventPageOut(Output):
    events: list[EventOut] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="Pass as cursor for older events; null: none.")


class NodeOut(Output):
    node_id: str
    door_id: str | None
    state: Literal["online", "degraded", "offline", "unknown"]
    problems: list[str]
    trust_list_age_s: float | None
    status_list_age_s: float | None
    stale_lists: bool = Field(description="A list is older than stale_lists_after_s.")
    direction: str | None
    state_since: Time | None
    last_seen: Time | None
    last_event_ts: Time | None
    last_seq: int


class DoorOut(Output):
    id: str
    name: str
    direction: Literal["entry", "exit", "both"] | None
    configured: bool = Field(description="Listed in hub.toml (or only seen in node reports).")
    state: Literal["online", "degraded", "offline", "unknown"] = Field(
        description="online: all its nodes are; offline: all are; degraded otherwise."
    )
    nodes: list[NodeOut]
    last_event: EventOut | None


class DoorsOut(Output):
    doors: list[DoorOut]


class AlertOut(Output):
    id: int
    facility_id: str
    kind: str
    message: str
    created_at: Time
    last_at: Time
    count: int
    node_id: str | None
    door_id: str | None
    event_id: str | None
    acknowledged_by: str | None
    acknowledged_at: Time | None
    cleared_at: Time | None
    open: bool


class AlertsOut(Output):
    alerts: list[AlertOut] = Field(description="Newest first.")


class SampleOut(Output):
    minute: Time
    occupancy: int = Field(description="At the end of the minute.")
    peak: int = Field(description="Highest during the minute.")


class HistoryOut(Output):
    facility_id: str
    since: Time
    until: Time
    start_occupancy: int = Field(description="The occupancy when the period began.")
    capacity: int | None
    samples: list[SampleOut] = Field(description="Minutes in which the count changed.")


class LookupIn(Input):
    nik: str = Field(min_length=16, max_length=24, description="The 16-digit NIK (spaces allowed).")
    name: str = Field(min_length=1, max_length=100, description="The name on the ID card.")


class LookupOut(Output):
    found: bool
    status: ColourName | None = Field(description="The colour; nothing else is shown.")
    reason: str
    admissible: bool = Field(description="Whether the status lets the person in.")
    lookup_id: str | None = Field(description="For POST .../checkins, when found.")


class CheckinIn(Input):
    lookup_id: str = Field(min_length=1, max_length=64)
    door_id: Id


class CheckinOut(Output):
    admitted: bool
    door_id: str
    status: ColourName
    message: str


class OpenIn(Input):
    reason: str = Field(min_length=1, max_length=150, description="Why, for the record.")


class OpenOut(Output):
    opened: bool
    door_id: str
    message: str


class EnrolmentIn(Input):
    lookup_id: str = Field(
        pattern=LOOKUP_ID_PATTERN,
        description="The id derived from the provisioning QR's token (docs/protocol.md).",
    )
    sealed: str = Field(
        min_length=1,
        max_length=66_000,
        description="The node's bundle sealed with the token's key, base64.",
    )
    ttl_s: int = Field(ge=1, le=7 * 86_400, description="Seconds until the QR stops working.")
    node_id: Id = Field(description="The node the bundle is for, for the audit log.")


class EnrolmentOut(Output):
    lookup_id: str
    node_id: str
    expires_at: Time


class ClaimOut(Output):
    sealed: str = Field(description="The sealed bundle, base64; handed out only this once.")


class CorrectionIn(Input):
    value: int = Field(ge=0, le=1_000_000, description="The headcount staff counted.")
    zone_id: Id | None = Field(None, description="A zone; absent: the whole facility.")
    note: str = Field("", max_length=200)


class ResetIn(Input):
    note: str = Field("", max_length=200)


class AdjustmentOut(Output):
    id: int
    facility_id: str
    zone_id: str | None
    kind: Literal["reset", "correction"]
    value: int
    delta: int
    user: str
    note: str
    created_at: Time
    occupancy: OccupancyOut | None = None


class AdjustmentsOut(Output):
    adjustments: list[AdjustmentOut]


class AuditOut(Output):
    id: int
    ts: Time
    user: str
    action: str
    facility_id: str | None
    target: str | None
    detail: str


class AuditPageOut(Output):
    entries: list[AuditOut]
    next_cursor: str | None
