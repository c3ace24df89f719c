"""The registry's HTTP API: a Starlette app built from the table of operations.

Every request goes the same way: authenticate (a bearer token, unless the route is
public), check the caller's kind against the route, parse the parameters and the body
(strict: unknown parameters and fields are refused), run the handler in a worker thread
(the store is synchronous), and answer JSON. Every error is ``{"error", "detail"}`` with
the matching 4xx; nothing is changed by a refused request.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from protocol.status import Status
from protocol.trust import format_time
from registry import __version__
from registry.auth import Principal
from registry.errors import (
    AlreadyExists,
    AuthError,
    Conflict,
    Forbidden,
    Gone,
    InvalidInput,
    LoginThrottled,
    NotFound,
    RegistryError,
    SigningKeyError,
    StoreError,
    Unauthenticated,
)
from registry.models import (
    ActivateIn,
    ActivateOut,
    DoorIn,
    DoorOut,
    DoorsOut,
    FacilitiesOut,
    FacilityOut,
    FacilityRequestIn,
    FeedOut,
    HealthOut,
    HubTokenOut,
    ImportOut,
    LoginIn,
    LoginOut,
    LookupIn,
    LookupOut,
    MeOut,
    PassIn,
    PassOut,
    PersonIn,
    PersonOut,
    PurgeOut,
    RejectIn,
    RequestStateOut,
    RevokeOut,
    RotateOut,
    TraceOut,
    VerifyOut,
    VisitIn,
    VisitsOut,
)
from registry.openapi import (
    HUB,
    OPERATOR,
    OPERATOR_HUB,
    OPERATOR_PIC,
    OPERATOR_PIC_HUB,
    PUBLIC,
    SESSION,
    Operation,
    Param,
    document,
)
from registry.poster import door_uri
from registry.records import Door, Facility, FacilityState, Person
from registry.service import Reader, Registry

logger = logging.getLogger(__name__)

_VISITS = TypeAdapter(list[VisitIn])
_SUBJECT = re.compile(r"^[0-9a-f]{24}$")
_KID = re.compile(r"^[0-9a-fA-F]{8}$")
_LABELS = {status: status.label for status in Status}
PURPOSE_HEADER = "X-Pintu-Purpose"


class ApiError(Exception):
    """A request refused before it reaches the registry (bad parameter, body too large...)."""

    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.extra = extra


@dataclass(frozen=True)
class Call:
    """One request as a handler sees it."""

    registry: Registry
    principal: Principal | None
    path: dict[str, str]
    query: dict[str, Any]
    body: Any
    headers: Headers
    address: str = "unknown"

    @property
    def caller(self) -> Principal:
        assert self.principal is not None  # noqa: S101 - only routes with auth use this
        return self.principal

    @property
    def reader(self) -> Reader:
        """The caller as a reader of personal data: who, from where, and the purpose they
        state in ``X-Pintu-Purpose`` (kept to 200 printable characters)."""
        why = "".join(c for c in self.headers.get(PURPOSE_HEADER, "") if c.isprintable())
        return Reader(self.caller, self.address, why.strip()[:200])


# Parameter parsers: each raises ValueError with a sentence.


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError as err:
            raise ValueError("not a whole number") from err
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}")
        return value

    return parse


def _time(text: str) -> int:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as err:
        raise ValueError("not an RFC 3339 time such as 2026-11-22T08:00:00Z") from err
    if value.tzinfo is None:
        raise ValueError("the time needs a UTC offset, such as a trailing Z")
    return int(value.timestamp())


def _subject(text: str) -> str:
    if not _SUBJECT.match(text):
        raise ValueError("a subject id is 24 lower-case hex digits")
    return text


def _choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return text

    return parse


def _facility_state(text: str) -> FacilityState:
    try:
        return FacilityState(text)
    except ValueError as err:
        raise ValueError(f"must be one of {', '.join(s.value for s in FacilityState)}") from err


FACILITY_ID = Param("facility_id", "path", "The facility's id")
DOOR_ID = Param("door_id", "path", "The door's id within the facility")


# Converting records to response models.


def person_out(person: Person, outcome: str | None = None) -> PersonOut:
    return PersonOut.model_validate(
        {
            "subject": person.subject,
            "name": person.name,
            "status": person.status.label,
            "doses": person.doses,
            "changed_at": format_time(person.changed_at),
            "outcome": outcome,
        }
    )


def facility_out(f: Facility) -> FacilityOut:
    return FacilityOut.model_validate(
        {
            "id": f.id,
            "name": f.name,
            "address": f.address,
            "type": f.type,
            "capacity": f.capacity,
            "pic_name": f.pic_name,
            "pic_email": f.pic_email,
            "state": f.state.value,
            "reason": f.reason,
            "activation_expires_at": format_time(f.activation_expires_at)
            if f.state is FacilityState.VERIFIED
            else None,
            "created_at": format_time(f.created_at),
            "updated_at": format_time(f.updated_at),
        }
    )


def door_out(d: Door) -> DoorOut:
    return DoorOut.model_validate(
        {
            "facility_id": d.facility_id,
            "door_id": d.door_id,
            "name": d.name,
            "direction": d.direction,
            "uri": door_uri(d.facility_id, d.door_id),
            "created_at": format_time(d.created_at),
        }
    )


# Handlers: synchronous, run in a worker thread.


def health(call: Call) -> HealthOut:
    registry = call.registry
    try:
        registry.store.ping()
        store_ok = True
    except StoreError:
        store_ok = False
    try:
        kid: str | None = registry.keyring.current().kid_hex
    except SigningKeyError:
        kid = None
    return HealthOut(ok=store_ok and kid is not None, store=store_ok, signing_key=kid)


def login(call: Call) -> LoginOut:
    body = cast(LoginIn, call.body)
    session = call.registry.login(body.username, body.password, call.address)
    kind = "operator" if session.principal.kind == "operator" else "pic"
    return LoginOut.model_validate(
        {
            "token": session.token,
            "kind": kind,
            "username": session.principal.name,
            "expires_at": format_time(session.expires_at),
        }
    )


def logout(call: Call) -> Response:
    call.registry.logout(call.caller)
    return Response(status_code=204)


def me(call: Call) -> MeOut:
    p = call.caller
    return MeOut.model_validate(
        {
            "kind": p.kind,
            "name": p.name,
            "facility_id": p.facility_id,
            "facilities": call.registry.facilities_of(p),
        }
    )


def set_person(call: Call) -> Response:
    body = cast(PersonIn, call.body)
    person, outcome = call.registry.set_person(
        body.nik, body.name, Status.parse(body.status), body.doses, call.caller
    )
    out = person_out(person, outcome.value)
    return JSONResponse(
        out.model_dump(mode="json"), status_code=201 if outcome == "created" else 200
    )


def get_person(call: Call) -> PersonOut:
    return person_out(call.registry.person(call.path["subject"], call.reader))


def lookup(call: Call) -> LookupOut:
    body = cast(LookupIn, call.body)
    person = call.registry.lookup(body.nik, body.name, call.reader)
    if person is None:
        return LookupOut(found=False, subject=None, status=None, doses=None, changed_at=None)
    return LookupOut.model_validate(
        {
            "found": True,
            "subject": person.subject,
            "status": person.status.label,
            "doses": person.doses,
            "changed_at": format_time(person.changed_at),
        }
    )


def import_persons(call: Call) -> ImportOut:
    text = cast(str, call.body)
    # StringIO with newline="" hands csv the line breaks inside quoted fields untouched.
    report = call.registry.import_csv(io.StringIO(text, newline=""), call.caller)
    return ImportOut.model_validate(report.to_json())


def statuses(call: Call) -> Response:
    feed = call.registry.feed(call.query.get("since", 0), call.query.get("limit", 1000))
    # Built by hand, not through models: a fresh hub reads millions of these. Formatting
    # the times was the largest part of a page's cost; a page's changes share few times
    # (an import stamps its whole batch with one), so each is formatted once a page.
    labels = _LABELS
    times: dict[int, str | None] = {}
    changes = []
    for c in feed.changes:
        changed_at = times.get(c.changed_at)
        if changed_at is None:
            changed_at = times[c.changed_at] = format_time(c.changed_at)
        changes.append(
            {
                "subject": c.subject,
                "status": labels[c.status],
                "doses": c.doses,
                "changed_at": changed_at,
                "cursor": c.cursor,
            }
        )
    return JSONResponse({"changes": changes, "next": feed.next, "more": feed.more})


def _not_modified(headers: Headers, etag: str) -> bool:
    wanted = headers.get("if-none-match")
    if wanted is None:
        return False
    tags = {t.strip().removeprefix("W/") for t in wanted.split(",")}
    return "*" in tags or etag in tags


def snapshot(call: Call) -> Response:
    snap = call.registry.snapshot()
    etag = f'"psl-{snap.cursor}"'
    headers = {
        "ETag": etag,
        "X-Pintu-Cursor": str(snap.cursor),
        "X-Pintu-Count": str(snap.count),
        "Cache-Control": "private, no-cache",
    }
    if _not_modified(call.headers, etag):
        return Response(status_code=304, headers=headers)
    headers["Content-Disposition"] = 'attachment; filename="status.psl"'
    return Response(snap.body, media_type="application/octet-stream", headers=headers)


def trust(call: Call) -> Response:
    doc = call.registry.trust_document()
    headers = {
        "ETag": doc.etag,
        "Cache-Control": f"private, max-age={call.registry.config.web.trust_max_age_s}",
    }
    if _not_modified(call.headers, doc.etag):
        return Response(status_code=304, headers=headers)
    return Response(doc.body, media_type="application/json", headers=headers)


def issue_pass(call: Call) -> Response:
    body = cast(PassIn, call.body)
    issued = call.registry.issue_pass(body.nik, call.caller)
    out = PassOut.model_validate(
        {
            "text": issued.text,
            "subject": issued.person.subject,
            "status": issued.person.status.label,
            "doses": issued.person.doses,
            "kid": issued.kid,
            "issued_at": format_time(issued.issued_at),
            "expires_at": format_time(issued.expires_at),
            "qr_png_base64": base64.b64encode(issued.qr_png()).decode("ascii") if body.qr else None,
        }
    )
    return JSONResponse(out.model_dump(mode="json"), status_code=201)


def rotate_key(call: Call) -> RotateOut:
    rotation = call.registry.rotate_key(call.caller)
    return RotateOut(kid=rotation.new_kid, retired=list(rotation.retired))


def revoke_key(call: Call) -> RevokeOut:
    kid = call.path["kid"]
    if not _KID.match(kid):
        raise ApiError(400, "bad_request", "kid: a key id is 8 hex digits")
    rotation = call.registry.revoke_key(kid, call.caller)
    return RevokeOut(revoked=kid.lower(), rotated_to=rotation.new_kid if rotation else None)


def request_facility(call: Call) -> FacilityOut:
    return facility_out(call.registry.request_facility(cast(FacilityRequestIn, call.body)))


def request_state(call: Call) -> RequestStateOut:
    facility_id = call.path["facility_id"]
    found = call.registry.store.get_facility(facility_id)
    if found is None:
        raise NotFound(f"no facility {facility_id!r}")
    full = facility_out(found)
    return RequestStateOut(
        id=full.id,
        state=full.state,
        reason=full.reason,
        activation_expires_at=full.activation_expires_at,
        activation_expired=None
        if found.activation_expires_at is None or found.state is not FacilityState.VERIFIED
        else call.registry.now() >= found.activation_expires_at,
        updated_at=full.updated_at,
    )


def list_facilities(call: Call) -> FacilitiesOut:
    found = call.registry.store.list_facilities(call.query.get("state"))
    return FacilitiesOut(facilities=[facility_out(f) for f in found])


def get_facility(call: Call) -> FacilityOut:
    return facility_out(call.registry.facility(call.caller, call.path["facility_id"]))


def verify_facility(call: Call) -> VerifyOut:
    v = call.registry.verify_facility(call.path["facility_id"], call.caller)
    return VerifyOut.model_validate(
        {
            "facility": facility_out(v.facility),
            "activation_token": v.token,
            "activation_expires_at": format_time(v.expires_at),
        }
    )


def reject_facility(call: Call) -> FacilityOut:
    body = cast(RejectIn, call.body)
    return facility_out(
        call.registry.reject_facility(call.path["facility_id"], body.reason, call.caller)
    )


def activate_facility(call: Call) -> ActivateOut:
    body = cast(ActivateIn, call.body)
    a = call.registry.activate_facility(call.path["facility_id"], body.token, body.password)
    return ActivateOut(
        facility=facility_out(a.facility), username=a.username, hub_token=a.hub_token
    )


def hub_token(call: Call) -> HubTokenOut:
    facility_id = call.path["facility_id"]
    token, replaced = call.registry.issue_hub_token(call.caller, facility_id)
    return HubTokenOut(facility_id=facility_id, hub_token=token, replaced=replaced)


def add_door(call: Call) -> DoorOut:
    door = call.registry.add_door(call.caller, call.path["facility_id"], cast(DoorIn, call.body))
    return door_out(door)


def list_doors(call: Call) -> DoorsOut:
    doors = call.registry.doors(call.caller, call.path["facility_id"])
    return DoorsOut(doors=[door_out(d) for d in doors])


def _poster(kind: str) -> Callable[[Call], Response]:
    def handler(call: Call) -> Response:
        facility_id, door_id = call.path["facility_id"], call.path["door_id"]
        media = "application/pdf" if kind == "pdf" else "image/png"
        data = call.registry.poster(
            call.caller, facility_id, door_id, "pdf" if kind == "pdf" else "png"
        )
        disposition = f'inline; filename="poster-{facility_id}-{door_id}.{kind}"'
        return Response(data, media_type=media, headers={"Content-Disposition": disposition})

    return handler


def receive_visits(call: Call) -> VisitsOut:
    rows = cast(list[VisitIn], call.body)
    intake = call.registry.receive_visits(call.caller, rows)
    return VisitsOut(
        received=len(rows),
        stored=intake.stored,
        duplicates=intake.duplicates,
        duplicate_ids=list(intake.duplicate_ids),
    )


def tracing(call: Call) -> Response:
    result = call.registry.trace(
        call.query["subject"], call.query.get("from"), call.query.get("to"), call.reader
    )
    if call.query.get("format") == "csv":
        name = f"trace-{result.subject}.csv"
        return Response(
            result.to_csv(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return JSONResponse(result.to_json())


def purge(call: Call) -> PurgeOut:
    done = call.registry.purge()
    return PurgeOut(visits=done.visits, tokens=done.tokens, before=format_time(done.before) or "")


def operations() -> list[Operation]:
    """Every route of the API, in the order the document lists them."""
    return [
        Operation("GET", "/health", "health", "Is the registry able to serve?", health,
                  PUBLIC, "general", HealthOut),
        Operation("POST", "/login", "login", "Log in as an operator or a facility PIC", login,
                  PUBLIC, "accounts", LoginOut, body=LoginIn, errors=(401, 429),
                  description="Answers a bearer token for the other calls. Wrong user name "
                  "and wrong password get the same 401; after 5 failures in 5 minutes a "
                  "name is refused for a while (429, Retry-After)."),
        Operation("POST", "/logout", "logout", "End this session", logout, SESSION,
                  "accounts", status=204),
        Operation("GET", "/me", "me", "Who the token belongs to", me, OPERATOR_PIC_HUB,
                  "accounts", MeOut),
        Operation("POST", "/persons", "setPerson", "Add a person or change their status",
                  set_person, OPERATOR, "persons", PersonOut, status=201, body=PersonIn,
                  description="201 when the person is new, 200 otherwise. A change of "
                  "status or doses appends to the status feed."),
        Operation("GET", "/persons/{subject}", "getPerson", "A person by subject id",
                  get_person, OPERATOR, "persons", PersonOut,
                  params=(Param("subject", "path", "24 hex digits", parse=_subject),),
                  errors=(400, 404)),
        Operation("POST", "/persons/import", "importPersons", "Import persons from CSV",
                  import_persons, OPERATOR, "persons", ImportOut, body="csv",
                  description="Body: CSV with the header nik,name,status,doses. Bad rows "
                  "are reported (line and reason) and skipped; good rows are applied."),
        Operation("POST", "/lookup", "lookup", "A person's status by NIK and name",
                  lookup, OPERATOR_HUB, "persons", LookupOut, body=LookupIn,
                  description="For the staff desk: both NIK and name must match. An unknown "
                  "NIK and a wrong name get the same answer (found: false)."),
        Operation("GET", "/statuses", "statusFeed", "The status-change feed, paged",
                  statuses, OPERATOR_HUB, "statuses", FeedOut,
                  params=(
                      Param("since", "query", "Cursor: changes after it (0: from the start)",
                            {"type": "integer", "minimum": 0, "default": 0},
                            parse=_int_between(0, 2**63 - 1)),
                      Param("limit", "query", "At most this many changes",
                            {"type": "integer", "minimum": 1, "maximum": 10000,
                             "default": 1000},
                            parse=_int_between(1, 10_000)),
                  ), errors=(400,)),
        Operation("GET", "/statuses/snapshot", "statusSnapshot",
                  "Every person's status as a binary status list (.psl)", snapshot,
                  OPERATOR_HUB, "statuses", errors=(304,), media=("application/octet-stream",),
                  headers={"ETag": "Changes with the feed cursor",
                           "X-Pintu-Cursor": "The feed cursor this snapshot includes: "
                           "continue the feed from here",
                           "X-Pintu-Count": "Subjects in the list"},
                  description="The protocol's .psl status list (docs/protocol.md section 4). "
                  "Send If-None-Match for a 304 when nothing changed."),
        Operation("GET", "/trust", "trustList", "The trust list of signing keys", trust,
                  OPERATOR_HUB, "keys", errors=(304, 503), media=("application/json",),
                  headers={"ETag": "Entity tag of this list",
                           "Cache-Control": "private, max-age=<trust_max_age_s>"},
                  description="The trust list JSON of docs/protocol.md section 2. Send "
                  "If-None-Match with the last ETag: 304 when unchanged."),
        Operation("POST", "/passes", "issuePass", "Issue a pass for a person", issue_pass,
                  OPERATOR, "keys", PassOut, status=201, body=PassIn, errors=(404, 503)),
        Operation("POST", "/keys/rotate", "rotateKey", "Make a new signing key current",
                  rotate_key, OPERATOR, "keys", RotateOut, errors=(503,)),
        Operation("POST", "/keys/{kid}/revoke", "revokeKey", "Revoke a signing key",
                  revoke_key, OPERATOR, "keys", RevokeOut,
                  params=(Param("kid", "path", "8 hex digits"),), errors=(400, 404, 503)),
        Operation("POST", "/facilities/requests", "requestFacility",
                  "A PIC asks to register a facility", request_facility, PUBLIC,
                  "facilities", FacilityOut, status=201, body=FacilityRequestIn,
                  description="Open to anyone: the facility is 'requested' until an "
                  "operator verifies or rejects it."),
        Operation("GET", "/facilities/requests/{facility_id}", "requestState",
                  "Where a registration stands, for whoever holds its id", request_state,
                  PUBLIC, "facilities", RequestStateOut, params=(FACILITY_ID,),
                  errors=(404,),
                  description="Open to anyone who knows the id the request answered (it "
                  "ends in random digits): the state, a rejection's reason and the "
                  "activation token's expiry; none of the facility's or the PIC's details."),
        Operation("GET", "/facilities", "listFacilities", "Facilities, optionally by state",
                  list_facilities, OPERATOR, "facilities", FacilitiesOut,
                  params=(Param("state", "query", "requested, verified, active or rejected",
                                {"type": "string",
                                 "enum": [s.value for s in FacilityState]},
                                parse=_facility_state),), errors=(400,)),
        Operation("GET", "/facilities/{facility_id}", "getFacility", "One facility",
                  get_facility, OPERATOR_PIC_HUB, "facilities", FacilityOut,
                  params=(FACILITY_ID,), errors=(404,)),
        Operation("POST", "/facilities/{facility_id}/verify", "verifyFacility",
                  "Verify a requested facility: answers a one-time activation token",
                  verify_facility, OPERATOR, "facilities", VerifyOut, params=(FACILITY_ID,),
                  errors=(404, 409)),
        Operation("POST", "/facilities/{facility_id}/reject", "rejectFacility",
                  "Reject a facility's request, with a reason", reject_facility, OPERATOR,
                  "facilities", FacilityOut, body=RejectIn, params=(FACILITY_ID,),
                  errors=(404, 409)),
        Operation("POST", "/facilities/{facility_id}/activate", "activateFacility",
                  "The PIC activates the facility with the token and sets a password",
                  activate_facility, PUBLIC, "facilities", ActivateOut, body=ActivateIn,
                  params=(FACILITY_ID,), errors=(403, 404, 409, 410),
                  description="The activation token is the credential. Answers the PIC's "
                  "user name and the facility's hub token (shown once). 409 when the "
                  "facility is not 'verified' (a used token finds it 'active'); 403 for a "
                  "token that is not the current one; 410 for an expired one."),
        Operation("POST", "/facilities/{facility_id}/hub-token", "issueHubToken",
                  "A new hub token for the facility (the older ones stop working)",
                  hub_token, OPERATOR_PIC, "facilities", HubTokenOut, status=201,
                  params=(FACILITY_ID,), errors=(404, 409)),
        Operation("POST", "/facilities/{facility_id}/doors", "addDoor", "Add a door",
                  add_door, OPERATOR_PIC, "facilities", DoorOut, status=201, body=DoorIn,
                  params=(FACILITY_ID,), errors=(404, 409)),
        Operation("GET", "/facilities/{facility_id}/doors", "listDoors",
                  "The facility's doors", list_doors, OPERATOR_PIC_HUB, "facilities",
                  DoorsOut, params=(FACILITY_ID,), errors=(404,)),
        Operation("GET", "/facilities/{facility_id}/doors/{door_id}/poster.png",
                  "doorPosterPng", "The door's printable poster (A4, 150 dpi PNG)",
                  _poster("png"), OPERATOR_PIC, "facilities", params=(FACILITY_ID, DOOR_ID),
                  errors=(404, 409), media=("image/png",)),
        Operation("GET", "/facilities/{facility_id}/doors/{door_id}/poster.pdf",
                  "doorPosterPdf", "The door's printable poster (one A4 PDF page)",
                  _poster("pdf"), OPERATOR_PIC, "facilities", params=(FACILITY_ID, DOOR_ID),
                  errors=(404, 409), media=("application/pdf",)),
        Operation("POST", "/visits", "pushVisits", "A hub pushes a batch of visits",
                  receive_visits, HUB, "visits", VisitsOut, body="visits", errors=(409,),
                  description="Idempotent by (facility, visit_id): a replayed visit is "
                  "counted in 'duplicates' and stores nothing. All rows or none: a row "
                  "of another facility gives 403, a malformed row 422 (row and field "
                  "named), a visit_id stored before with other content 409."),
        Operation("GET", "/tracing", "trace", "Where a subject was, and who was there too",
                  tracing, OPERATOR, "tracing", TraceOut, media=("text/csv",),
                  params=(
                      Param("subject", "query", "24 hex digits", required=True,
                            schema={"type": "string", "pattern": "^[0-9a-f]{24}$"},
                            parse=_subject),
                      Param("from", "query", "RFC 3339; default: the tracing window ago",
                            {"type": "string", "format": "date-time"}, parse=_time),
                      Param("to", "query", "RFC 3339; default: now",
                            {"type": "string", "format": "date-time"}, parse=_time),
                      Param("format", "query", "json (default) or csv",
                            {"type": "string", "enum": ["json", "csv"]},
                            parse=_choice("json", "csv")),
                  ), errors=(400, 422)),
        Operation("POST", "/purge", "purge", "Purge visits older than the tracing window",
                  purge, OPERATOR, "visits", PurgeOut),
    ]  # fmt: skip


# The request pipeline.

_STATUS_OF: list[tuple[type[Exception], int, str]] = [
    (Unauthenticated, 401, "unauthenticated"),
    (LoginThrottled, 429, "throttled"),
    (Forbidden, 403, "forbidden"),
    (AuthError, 403, "forbidden"),
    (NotFound, 404, "not_found"),
    (AlreadyExists, 409, "conflict"),
    (Conflict, 409, "conflict"),
    (Gone, 410, "gone"),
    (InvalidInput, 422, "invalid"),
    (SigningKeyError, 503, "unavailable"),
    (StoreError, 503, "unavailable"),
]


def error_response(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    doc: dict[str, Any] = {"error": code, "detail": detail}
    headers: dict[str, str] = {}
    for key, value in extra.items():
        if key == "headers":
            headers.update(value)
        elif value is not None:
            doc[key] = value
    if status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="pintu-registry"')
    return JSONResponse(doc, status_code=status, headers=headers)


def _registry_error(err: RegistryError) -> JSONResponse:
    for cls, status, code in _STATUS_OF:
        if isinstance(err, cls):
            extra: dict[str, Any] = {}
            if isinstance(err, Conflict):
                extra["state"] = err.state
            if isinstance(err, InvalidInput) and err.problems:
                extra["problems"] = err.problems
            if isinstance(err, LoginThrottled):
                extra["headers"] = {"Retry-After": str(max(1, round(err.retry_after_s)))}
            return error_response(status, code, str(err), **extra)
    logger.error("unexpected registry error: %s", err)
    return error_response(500, "internal", str(err))


def _where(prefix: str, loc: tuple[int | str, ...]) -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _invalid(err: ValidationError, prefix: str) -> ApiError:
    problems = [
        {"field": _where(prefix, item["loc"]), "message": item["msg"]} for item in err.errors()
    ]
    first = problems[0]
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    return ApiError(
        422, "invalid", f"{first['field']}: {first['message']}{more}", problems=problems
    )


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise Unauthenticated("no credentials: send 'Authorization: Bearer <token>'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("only bearer tokens are accepted: 'Authorization: Bearer <token>'")
    return token.strip()


def _query(op: Operation, request: Request) -> dict[str, Any]:
    known = {p.name: p for p in op.params if p.where == "query"}
    values: dict[str, Any] = {}
    for name in request.query_params:
        if name not in known:
            allowed = ", ".join(known) or "none"
            raise ApiError(400, "bad_request", f"unknown parameter {name!r} (allowed: {allowed})")
    for name, param in known.items():
        texts = request.query_params.getlist(name)
        if not texts:
            if param.required:
                raise ApiError(400, "bad_request", f"{name}: required parameter is missing")
            continue
        if len(texts) > 1:
            raise ApiError(400, "bad_request", f"{name}: given more than once")
        try:
            values[name] = param.parse(texts[0])
        except ValueError as err:
            raise ApiError(400, "bad_request", f"{name}: {err}") from err
    return values


def _path(op: Operation, request: Request) -> dict[str, str]:
    values = {k: str(v) for k, v in request.path_params.items()}
    for param in op.params:
        if param.where == "path" and param.name in values:
            try:
                values[param.name] = param.parse(values[param.name])
            except ValueError as err:
                raise ApiError(400, "bad_request", f"{param.name}: {err}") from err
    return values


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "too_large", f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "too_large", f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _body(op: Operation, request: Request, registry: Registry) -> Any:
    if op.body is None:
        return None
    web = registry.config.web
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if op.body == "csv":
        if media not in ("text/csv", "text/plain"):
            raise ApiError(415, "unsupported_media_type", "send the CSV as text/csv")
        data = await _read_body(request, web.max_import_bytes)
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise ApiError(400, "bad_request", f"the CSV is not UTF-8: {err.reason}") from err
    if media != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    data = await _read_body(request, web.max_body_bytes)
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise ApiError(400, "bad_request", f"the body is not valid JSON: {err}") from err
    if op.body == "visits":
        if isinstance(doc, list) and len(doc) > web.max_visit_batch:
            raise ApiError(
                413,
                "too_large",
                f"at most {web.max_visit_batch} visits per request, got {len(doc)}",
            )
        try:
            return _VISITS.validate_python(doc)
        except ValidationError as err:
            raise _invalid(err, "visits") from err
    model = op.body
    try:
        return model.model_validate(doc)
    except ValidationError as err:
        raise _invalid(err, "") from err


def _endpoint(op: Operation, registry: Registry) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            principal = None
            if op.auth:
                token = _bearer(request)
                principal = await run_in_threadpool(registry.authenticate, token)
                if principal.kind not in op.auth:
                    callers = " or ".join(sorted(op.auth))
                    raise Forbidden(f"this call is for {callers} credentials, not {principal.kind}")
            call = Call(
                registry=registry,
                principal=principal,
                path=_path(op, request),
                query=_query(op, request),
                body=await _body(op, request, registry),
                headers=request.headers,
                address=request.client.host if request.client else "unknown",
            )
            result = await run_in_threadpool(op.handler, call)
        except ApiError as err:
            return error_response(err.status, err.code, err.detail, **err.extra)
        except RegistryError as err:
            return _registry_error(err)
        except Exception:
            # The boundary: a bug must answer 500 and be logged, not leak a traceback.
            logger.exception("%s %s failed", op.method, op.full_path)
            return error_response(500, "internal", "internal error; see the registry's log")
        if isinstance(result, Response):
            return result
        doc = cast(BaseModel, result).model_dump(mode="json", by_alias=True)
        return JSONResponse(doc, status_code=op.status)

    return endpoint


async def _http_error(request: Request, exc: Exception) -> Response:
    err = cast(HTTPException, exc)
    code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "bad_request")
    detail = {
        404: f"no such route: {request.url.path}",
        405: f"{request.method} is not allowed on {request.url.path}",
    }.get(err.status_code, str(err.detail))
    return error_response(err.status_code, code, detail, headers=dict(err.headers or {}))


def create_app(registry: Registry) -> Starlette:
    """The registry's API over ``registry`` (which the caller opens and closes)."""
    ops = operations()
    openapi_body = json.dumps(document(ops, __version__), indent=2).encode("utf-8")

    async def openapi(request: Request) -> Response:
        return Response(openapi_body, media_type="application/json")

    routes = [Route("/api/v1/openapi.json", openapi, methods=["GET"])]
    routes += [
        Route(op.full_path, _endpoint(op, registry), methods=[op.method], name=op.operation_id)
        for op in ops
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.registry = registry
    app.state.operations = ops
    return app
