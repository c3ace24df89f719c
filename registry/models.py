"""The HTTP API's bodies, as strict models: what a request may hold and what a response holds.

Requests refuse unknown fields, so a misspelt field is an error, not a silent default.
The routes (``registry.app``) generate the OpenAPI document from the same models, so the
document and the validation cannot disagree.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from protocol.ids import Ident, SubjectHex
from protocol.model import StrictModel
from protocol.passes import MAX_DOSES
from registry.records import DoorKind, FacilityType

StatusName = Literal["green", "yellow", "red", "black"]
Time = Annotated[str, Field(description="RFC 3339 UTC time, whole seconds: 2026-11-22T08:00:00Z")]
Nik = Annotated[
    str,
    Field(
        min_length=16,
        max_length=40,
        description="16-digit NIK; spaces and dashes between digit groups are ignored",
        examples=["3174054512900001"],
    ),
]
Name = Annotated[str, Field(min_length=1, max_length=200, description="The person's name")]
Email = Annotated[
    str,
    Field(pattern=r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$", max_length=254, description="E-mail"),
]
VisitId = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$",
        description="The hub's id of the visit, unique within the facility: replaying it is "
        "harmless",
    ),
]


class In(StrictModel):
    """A request body: unknown fields are refused."""


class Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class Problem(Out):
    field: str = Field(description="Where: a body field (dotted, rows as [n]) or a parameter")
    message: str


class ErrorOut(Out):
    """Every error answer: a code, a sentence, and for bad input each problem found."""

    error: str = Field(
        description="bad_request, unauthenticated, forbidden, not_found, method_not_allowed, "
        "conflict, gone, too_large, unsupported_media_type, invalid, throttled, unavailable, "
        "internal"
    )
    detail: str = Field(description="What went wrong, in words")
    state: str | None = Field(None, description="For conflicts: the current state")
    problems: list[Problem] | None = Field(None, description="For bad input: each problem")


class HealthOut(Out):
    ok: bool
    store: bool
    signing_key: str | None = Field(description="kid of the current signing key")


class LoginIn(In):
    username: str = Field(min_length=1, max_length=254, description="Operator name or PIC e-mail")
    password: str = Field(min_length=1, max_length=1024)


class LoginOut(Out):
    token: str = Field(description="Bearer token: send 'Authorization: Bearer <token>'")
    kind: Literal["operator", "pic"]
    username: str
    expires_at: Time


class MeOut(Out):
    kind: Literal["operator", "pic", "hub"]
    name: str = Field(description="User name, PIC e-mail, or the hub's facility id")
    facility_id: str | None = Field(description="For hubs: the facility of the token")
    facilities: list[str] = Field(description="Facilities this caller may act for (PIC, hub)")


class PersonIn(In):
    nik: Nik
    name: Name
    status: StatusName
    doses: int = Field(ge=0, le=MAX_DOSES)


class PersonOut(Out):
    subject: SubjectHex
    name: str
    status: StatusName
    doses: int
    changed_at: Time
    outcome: Literal["created", "updated", "renamed", "unchanged"] | None = Field(
        None, description="For writes: what this call did"
    )


class LookupIn(In):
    nik: Nik
    name: Name


class LookupOut(Out):
    found: bool = Field(
        description="False both for an unknown NIK and for a name that does not match"
    )
    subject: SubjectHex | None
    status: StatusName | None
    doses: int | None
    changed_at: Time | None


class RowErrorOut(Out):
    line: int = Field(description="1-based line of the CSV text (the header is line 1)")
    reason: str


class ImportOut(Out):
    rows: int = Field(description="Data rows read")
    applied: int = Field(description="created + updated + renamed")
    created: int
    updated: int = Field(description="Status or doses changed (each is a feed entry)")
    renamed: int = Field(description="Only the name changed")
    unchanged: int
    rejected: int
    errors: list[RowErrorOut] = Field(description="Bad rows (at most 10,000 listed)")
    errors_listed: int


class StatusChangeOut(Out):
    subject: SubjectHex
    status: StatusName
    doses: int
    changed_at: Time
    cursor: int = Field(description="Position in the feed; strictly increasing")


class FeedOut(Out):
    changes: list[StatusChangeOut]
    next: int = Field(description="Pass as ?since= to get what follows")
    more: bool = Field(description="True when more changes follow right away")


class PassIn(In):
    nik: Nik
    qr: bool = Field(False, description="Also return the QR code as a base64 PNG")


class PassOut(Out):
    text: str = Field(description="The pass (PINTU1:...), what the QR code holds")
    subject: SubjectHex
    status: StatusName
    doses: int
    kid: str
    issued_at: Time
    expires_at: Time
    qr_png_base64: str | None = Field(None, description="The QR code (level M), when asked")


class WalletLinkOut(Out):
    link: str = Field(
        description="The one-time link for the person's phone: "
        "<public_url>/wallet/activate?token=wl_..."
    )
    expires_at: Time


class WalletActivateIn(In):
    token: str = Field(
        min_length=1, max_length=100, description="The token of the link (wl_...), once"
    )


class WalletPassOut(Out):
    text: str = Field(description="The pass (PINTU1:...), exactly what a camera door reads")
    name: str = Field(description="The holder's name, as the registry keeps it")
    status: StatusName
    doses: int
    kid: str
    issued_at: Time
    expires_at: Time
    qr: list[str] = Field(
        description="The pass's QR code (level M), a row of modules a string of 0 and 1"
    )
    checked_at: Time = Field(description="When the registry answered")


class WalletActivatedOut(Out):
    credential: str = Field(
        description="The wallet's credential (wc_...): keep it, send it as a bearer token "
        "to GET /api/v1/wallet/pass; shown once"
    )
    wallet_pass: WalletPassOut = Field(alias="pass")
    retired: int = Field(description="The person's wallets on other phones retired now")


class RotateOut(Out):
    kid: str = Field(description="The new current key")
    retired: list[str] = Field(description="Keys that stopped signing (not_after set to now)")


class RotateListKeyOut(Out):
    kid: str = Field(description="The new list key")
    previous: list[str] = Field(description="The list keys it replaces, which signed it")
    seq: int = Field(description="The number of the statement that names it")


class RevokeOut(Out):
    revoked: str
    rotated_to: str | None = Field(
        description="When the revoked key was the current one: the new current key"
    )


class FacilityRequestIn(In):
    name: str = Field(min_length=1, max_length=200, description="The facility's name")
    address: str = Field(min_length=1, max_length=500)
    type: FacilityType
    capacity: int = Field(ge=1, le=1_000_000, description="Visitors allowed at once")
    pic_name: str = Field(min_length=1, max_length=200, description="Person in charge")
    pic_email: Email


class FacilityOut(Out):
    id: str
    name: str
    address: str
    type: str
    capacity: int
    pic_name: str
    pic_email: str
    state: Literal["requested", "verified", "active", "rejected"]
    reason: str | None = Field(description="Why it was rejected")
    activation_expires_at: Time | None = Field(description="While verified: token expiry")
    created_at: Time
    updated_at: Time


class RequestStateOut(Out):
    id: str
    state: Literal["requested", "verified", "active", "rejected"]
    reason: str | None = Field(description="Why it was rejected")
    activation_expires_at: Time | None = Field(description="While verified: token expiry")
    activation_expired: bool | None = Field(
        description="While verified: whether that expiry has passed, by the registry's clock"
    )
    updated_at: Time


class VerifyOut(Out):
    facility: FacilityOut
    activation_token: str = Field(
        description="One-time token for the PIC; shown once, stored only as a hash"
    )
    activation_expires_at: Time


class RejectIn(In):
    reason: str = Field(min_length=1, max_length=500)


class ActivateIn(In):
    token: str = Field(min_length=1, max_length=200, description="The activation token")
    password: str = Field(
        min_length=1,
        max_length=1024,
        description="The PIC's password (10+ characters); if the PIC already has an "
        "account (another facility), its password",
    )


class ActivateOut(Out):
    facility: FacilityOut
    username: str = Field(description="The PIC logs in with this (their e-mail)")
    hub_token: str = Field(description="The facility hub's bearer token; shown once")


class HubTokenOut(Out):
    facility_id: str
    hub_token: str = Field(description="Shown once; the facility's older hub tokens stop working")
    replaced: int = Field(description="How many older hub tokens were dropped")


class DoorIn(In):
    door_id: Ident = Field(description="Door id, unique in the facility (the hub uses it too)")
    name: str = Field(min_length=1, max_length=100, description="Shown on the poster")
    direction: Literal["entrance", "exit", "both"]
    kind: DoorKind = Field(
        "camera",
        description="camera: a door node scans the visitor's pass; poster: the visitor's "
        "phone scans the door's poster; both: a door node, and phones may scan its poster "
        "too. The poster's steps say which",
    )


class DoorRenameIn(In):
    name: str = Field(min_length=1, max_length=100, description="Shown on the poster")


class DoorOut(Out):
    facility_id: str
    door_id: str
    name: str
    direction: Literal["entrance", "exit", "both"]
    kind: DoorKind
    uri: str = Field(
        description="The door's address, what its poster's QR code holds and a phone's camera "
        "opens: <public_url>/d/<facility_id>/<door_id>"
    )
    created_at: Time


class DoorsOut(Out):
    doors: list[DoorOut]


class FacilitiesOut(Out):
    facilities: list[FacilityOut]


class VisitIn(In):
    visit_id: VisitId
    facility_id: Ident = Field(description="Must be the facility of the hub's token")
    subject: SubjectHex
    door_id: Ident = Field(description="A door registered for the facility")
    check_in: AwareDatetime = Field(description="RFC 3339 with offset; kept to the second")
    check_out: AwareDatetime = Field(description="Not before check_in; rounded up to the second")


class VisitsOut(Out):
    received: int
    stored: int = Field(description="New visits stored by this call")
    duplicates: int = Field(description="Visits stored before (a replay): nothing new stored")
    duplicate_ids: list[str]


class OverlapOut(Out):
    visit_id: str = Field(description="The traced subject's visit")
    contact_visit_id: str
    contact_door_id: str
    contact_check_in: Time
    contact_check_out: Time
    start: Time
    end: Time
    seconds: int


class ContactOut(Out):
    subject: SubjectHex
    overlap_seconds: int = Field(description="Sum over the overlaps at this facility")
    overlaps: list[OverlapOut]


class TracedVisitOut(Out):
    visit_id: str
    door_id: str
    check_in: Time
    check_out: Time


class TracedFacilityOut(Out):
    facility_id: str
    name: str
    visits: list[TracedVisitOut]
    contacts: list[ContactOut]


class TraceOut(Out):
    subject: SubjectHex
    from_: Time = Field(alias="from")
    to: Time
    contact_count: int
    facilities: list[TracedFacilityOut]


class PurgeOut(Out):
    visits: int = Field(description="Visits deleted")
    tokens: int = Field(description="Expired login sessions deleted")
    before: Time = Field(description="Visits that ended before this were deleted")


class WalletCheckinIn(In):
    id: str = Field(
        pattern=r"^[0-9a-f]{32}$",
        description="The wallet's own id for this check-in (32 lowercase hex digits); a "
        "retry sends the same id, so a check-in is counted once",
    )
    facility_id: Ident
    door_id: Ident


class CheckinResultOut(Out):
    id: str
    state: Literal["answered", "queued"] = Field(
        description="answered: the facility's hub decided; queued: the hub could not be "
        "reached in time, the signal is the pass's own colour for staff to check, and the "
        "check-in is counted when the hub takes it"
    )
    signal: Literal["green", "yellow", "red", "black", "full", "error"]
    admit: bool | None = Field(description="The hub's decision; none while queued")
    direction: Literal["entry", "exit"] | None
    reason: str = Field(description="A reason code, as in the events (docs/protocol.md)")
    facility_id: str
    facility_name: str
    door_id: str
    door_name: str
    occupancy: int | None = None
    capacity: int | None = None
    at: Time = Field(description="When the phone opened the door's address")
    decided_at: Time | None = Field(description="When the hub decided")
