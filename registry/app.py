"""The registry's HTTP API on FastAPI: its routes and their handlers.

Every request goes the same way (``registry.routing``): authenticate (a bearer token,
unless the route is public) and check the caller's kind against the route before the body
is read, validate the parameters and the body (strict: unknown parameters and fields are
refused), run the handler in a worker thread (the store is synchronous), and answer JSON.
Every error is ``{"error", "detail"}`` with the matching 4xx; nothing is changed by a
refused request. The OpenAPI document at ``/api/v1/openapi.json`` is generated from the
routes.
"""

from __future__ import annotations

import base64
import io
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Body, Depends, FastAPI, Path, Query
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from protocol import signedlist
from protocol.ids import SUBJECT_PATTERN
from protocol.status import Status
from protocol.trust import format_time
from registry import __version__, checkin_api, wallet
from registry.checkins import Checkins
from registry.console import app as console
from registry.errors import (
    NotFound,
    RegistryError,
    SigningKeyError,
    StoreError,
)
from registry.models import (
    ActivateIn,
    ActivateOut,
    DoorIn,
    DoorOut,
    DoorRenameIn,
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
    RotateListKeyOut,
    RotateOut,
    TraceOut,
    VerifyOut,
    VisitIn,
    VisitsOut,
    WalletActivatedOut,
    WalletActivateIn,
    WalletLinkOut,
    WalletPassOut,
)
from registry.poster import door_address
from registry.records import Door, Facility, FacilityState, Person
from registry.routing import (
    HUB,
    OPERATOR,
    OPERATOR_HUB,
    OPERATOR_PIC,
    OPERATOR_PIC_HUB,
    PUBLIC,
    SECURITY_SCHEMES,
    SESSION,
    ApiError,
    CallDep,
    Operation,
    Routes,
    api_error,
    error_response,
    invalid,
    refused,
    registry_error,
    server_error,
    wallet_credential,
)
from registry.service import Registry
from registry.wallet import WalletMoved, WalletPass
from runtime.api import HeadAsGet, Refused, TimeQuery, document
from runtime.web import make_templates, static_version

__all__ = ["Operation", "create_app", "operations"]

_LABELS = {status: status.label for status in Status}
SUBJECT = SUBJECT_PATTERN
KID = r"^[0-9a-fA-F]{8}$"
api = Routes()

FacilityId = Annotated[str, Path(description="The facility's id")]
DoorId = Annotated[str, Path(description="The door's id within the facility")]


async def csv_text(request: Request) -> str:
    """The CSV body (read and bounded before the handler), as text."""
    data = await request.body()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ApiError(400, "bad_request", f"the CSV is not UTF-8: {err.reason}") from err


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


def door_out(registry: Registry, d: Door) -> DoorOut:
    return DoorOut.model_validate(
        {
            "facility_id": d.facility_id,
            "door_id": d.door_id,
            "name": d.name,
            "direction": d.direction,
            "kind": d.kind,
            "uri": door_address(wallet.base_url(registry), d.facility_id, d.door_id),
            "created_at": format_time(d.created_at),
        }
    )


# Handlers: synchronous, run in a worker thread.


@api.route(
    "GET",
    "/health",
    "health",
    "Is the registry able to serve?",
    auth=PUBLIC,
    tag="general",
    response=HealthOut,
)
def health(call: CallDep) -> HealthOut:
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


@api.route(
    "POST",
    "/login",
    "login",
    "Log in as an operator or a facility PIC",
    auth=PUBLIC,
    tag="accounts",
    response=LoginOut,
    errors=(401, 429),
    description="Answers a bearer token for the other calls. Wrong user name "
    "and wrong password get the same 401; after 5 failures in 5 minutes a "
    "name is refused for a while (429, Retry-After).",
)
def login(call: CallDep, body: LoginIn) -> LoginOut:
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


@api.route(
    "POST", "/logout", "logout", "End this session", auth=SESSION, tag="accounts", status=204
)
def logout(call: CallDep) -> Response:
    call.registry.logout(call.caller)
    return Response(status_code=204)


@api.route(
    "GET",
    "/me",
    "me",
    "Who the token belongs to",
    auth=OPERATOR_PIC_HUB,
    tag="accounts",
    response=MeOut,
)
def me(call: CallDep) -> MeOut:
    p = call.caller
    return MeOut.model_validate(
        {
            "kind": p.kind,
            "name": p.name,
            "facility_id": p.facility_id,
            "facilities": call.registry.facilities_of(p),
        }
    )


@api.route(
    "POST",
    "/persons",
    "setPerson",
    "Add a person or change their status",
    auth=OPERATOR,
    tag="persons",
    response=PersonOut,
    status=201,
    description="201 when the person is new, 200 otherwise. A change of "
    "status or doses appends to the status feed.",
)
def set_person(call: CallDep, body: PersonIn) -> Response:
    person, outcome = call.registry.set_person(
        body.nik, body.name, Status.parse(body.status), body.doses, call.caller
    )
    out = person_out(person, outcome.value)
    return JSONResponse(
        out.model_dump(mode="json"), status_code=201 if outcome == "created" else 200
    )


@api.route(
    "GET",
    "/persons/{subject}",
    "getPerson",
    "A person by subject id",
    auth=OPERATOR,
    tag="persons",
    response=PersonOut,
    errors=(400, 404),
)
def get_person(
    call: CallDep, subject: Annotated[str, Path(pattern=SUBJECT, description="24 hex digits")]
) -> PersonOut:
    return person_out(call.registry.person(subject, call.reader))


@api.route(
    "POST",
    "/persons/import",
    "importPersons",
    "Import persons from CSV",
    auth=OPERATOR,
    tag="persons",
    response=ImportOut,
    body={
        "required": True,
        "content": {
            "text/csv": {
                "schema": {"type": "string"},
                "example": "nik,name,status,doses\n3174054512900001,Siti Rahayu,green,2\n",
            },
            "text/plain": {"schema": {"type": "string"}},
        },
    },
    description="Body: CSV with the header nik,name,status,doses. Bad rows "
    "are reported (line and reason) and skipped; good rows are applied.",
)
def import_persons(call: CallDep, text: Annotated[str, Depends(csv_text)]) -> ImportOut:
    # StringIO with newline="" hands csv the line breaks inside quoted fields untouched.
    report = call.registry.import_csv(io.StringIO(text, newline=""), call.caller)
    return ImportOut.model_validate(report.to_json())


@api.route(
    "POST",
    "/lookup",
    "lookup",
    "A person's status by NIK and name",
    auth=OPERATOR_HUB,
    tag="persons",
    response=LookupOut,
    description="For the staff desk: both NIK and name must match. An unknown "
    "NIK and a wrong name get the same answer (found: false).",
)
def lookup(call: CallDep, body: LookupIn) -> LookupOut:
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


@api.route(
    "GET",
    "/statuses",
    "statusFeed",
    "The status-change feed, paged",
    auth=OPERATOR_HUB,
    tag="statuses",
    response=FeedOut,
    errors=(400,),
)
def statuses(
    call: CallDep,
    since: Annotated[
        int, Query(ge=0, le=2**63 - 1, description="Cursor: changes after it (0: from the start)")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000, description="At most this many changes")] = 1000,
) -> Response:
    feed = call.registry.feed(since, limit)
    call.registry.note_hub(call.caller, "statuses")
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


@api.route(
    "GET",
    "/statuses/snapshot",
    "statusSnapshot",
    "Every person's status as a binary status list (.psl)",
    auth=OPERATOR_HUB,
    tag="statuses",
    errors=(304,),
    media=("application/octet-stream",),
    headers={
        "ETag": "Changes with the feed cursor",
        "X-Pintu-Cursor": "The feed cursor this snapshot includes: continue the feed from here",
        "X-Pintu-Count": "Subjects in the list",
    },
    description="The protocol's .psl status list (docs/protocol.md section 4). "
    "Send If-None-Match for a 304 when nothing changed.",
)
def snapshot(call: CallDep) -> Response:
    snap = call.registry.snapshot()
    call.registry.note_hub(call.caller, "statuses")
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


@api.route(
    "GET",
    "/trust",
    "trustList",
    "The trust list of signing keys",
    auth=OPERATOR_HUB,
    tag="keys",
    errors=(304, 503),
    media=("application/json",),
    headers={
        "ETag": "Entity tag of this list",
        "Cache-Control": "private, max-age=<trust_max_age_s>",
    },
    description="The trust list JSON of docs/protocol.md section 2. Send "
    "If-None-Match with the last ETag: 304 when unchanged.",
)
def trust(call: CallDep) -> Response:
    doc = call.registry.trust_document()
    call.registry.note_hub(call.caller, "trust")
    headers = {
        "ETag": doc.etag,
        "Cache-Control": f"private, max-age={call.registry.config.web.trust_max_age_s}",
    }
    if _not_modified(call.headers, doc.etag):
        return Response(status_code=304, headers=headers)
    return Response(doc.body, media_type="application/json", headers=headers)


_SIGNED_HEADERS = {
    "ETag": "Names the content and the list key that signs it, not the time of signing",
    "Cache-Control": "private, no-cache",
}


def _signed(call: CallDep, kind: signedlist.Kind) -> Response:
    prepared = call.registry.door_list(kind)
    # What the console shows of a hub: when it last read its doors' lists.
    call.registry.note_hub(call.caller, "statuses" if kind is signedlist.Kind.STATUS else "trust")
    headers = {
        "ETag": prepared.etag,
        "Cache-Control": "private, no-cache",
        "X-Pintu-Count": str(prepared.count),
    }
    if _not_modified(call.headers, prepared.etag):
        return Response(status_code=304, headers=headers)
    return Response(prepared.sign(), media_type="application/octet-stream", headers=headers)


@api.route(
    "GET",
    "/lists/keys",
    "listKeyChain",
    "The list-key chain: every list key's statement, signed by the key before it",
    auth=OPERATOR_HUB,
    tag="lists",
    errors=(304, 503),
    media=("application/octet-stream",),
    headers={**_SIGNED_HEADERS, "X-Pintu-Count": "The newest statement's number"},
    description="Signed list-key statements back to back (docs/protocol.md section 5.1). "
    "The hub publishes it unchanged, retained, for its doors. Send If-None-Match with "
    "the last ETag: 304 when unchanged.",
)
def list_key_chain(call: CallDep) -> Response:
    return _signed(call, signedlist.Kind.KEYS)


@api.route(
    "GET",
    "/lists/trust",
    "signedTrustList",
    "The trust list for the doors, signed with the list key",
    auth=OPERATOR_HUB,
    tag="lists",
    errors=(304, 503),
    media=("application/octet-stream",),
    headers={**_SIGNED_HEADERS, "X-Pintu-Count": "Keys in the list"},
    description="The trust list of docs/protocol.md section 2 in a signed envelope "
    "(section 5.1), updated_at the time of signing. The hub publishes it unchanged. "
    "Send If-None-Match with the last ETag: 304 when the keys are unchanged.",
)
def signed_trust_list(call: CallDep) -> Response:
    return _signed(call, signedlist.Kind.TRUST)


@api.route(
    "GET",
    "/lists/status",
    "doorStatusList",
    "The doors' status list, signed with the list key",
    auth=OPERATOR_HUB,
    tag="lists",
    errors=(304, 503),
    media=("application/octet-stream",),
    headers={**_SIGNED_HEADERS, "X-Pintu-Count": "Subjects in the list"},
    description="The .psl status list of docs/protocol.md section 4 holding only the "
    "subjects a still-valid pass could contradict, in a signed envelope (section 5.1), "
    "updated_at the time of signing. The hub publishes it unchanged. Send If-None-Match "
    "with the last ETag: 304 when the list is unchanged.",
)
def door_status_list(call: CallDep) -> Response:
    return _signed(call, signedlist.Kind.STATUS)


@api.route(
    "POST",
    "/passes",
    "issuePass",
    "Issue a pass for a person",
    auth=OPERATOR,
    tag="keys",
    response=PassOut,
    status=201,
    errors=(404, 503),
)
def issue_pass(call: CallDep, body: PassIn) -> Response:
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


def wallet_pass_out(held: WalletPass, now: int) -> dict[str, Any]:
    return WalletPassOut(
        text=held.text,
        name=held.name,
        status=held.status,
        doses=held.doses,
        kid=held.kid,
        issued_at=format_time(held.issued_at),
        expires_at=format_time(held.expires_at),
        qr=held.qr_rows(),
        checked_at=format_time(now),
    ).model_dump(mode="json")


_NO_STORE = {"Cache-Control": "no-store"}


@api.route(
    "POST",
    "/wallet/links",
    "issueWalletLink",
    "Make a one-time link that puts a person's pass on their phone",
    auth=OPERATOR,
    tag="wallet",
    response=WalletLinkOut,
    status=201,
    errors=(404, 503),
    description="The link works once, for wallet_link_hours; using it retires the "
    "person's wallet on any other phone. It starts with public_url.",
)
def issue_wallet_link(call: CallDep, body: PassIn) -> Response:
    issued = wallet.issue_link(call.registry, body.nik, call.caller)
    out = WalletLinkOut(link=issued.url, expires_at=format_time(issued.expires_at))
    return JSONResponse(out.model_dump(mode="json"), status_code=201, headers=_NO_STORE)


@api.route(
    "POST",
    "/wallet/activate",
    "activateWallet",
    "Exchange a wallet link's token for a wallet credential and the pass",
    auth=PUBLIC,
    tag="wallet",
    response=WalletActivatedOut,
    status=201,
    errors=(404, 409, 410, 429, 503),
    description="Open to whoever holds a link from `pintu registry issue-pass --link` or "
    "the console: the token works once (404 unknown, 409 used, 410 expired); the answer "
    "holds a new wallet credential, and the person's wallets on other phones are retired.",
)
def activate_wallet(call: CallDep, body: WalletActivateIn) -> Response:
    done = wallet.activate(call.registry, body.token, call.address)
    out = {
        "credential": done.credential,
        "pass": wallet_pass_out(done.wallet_pass, call.registry.now()),
        "retired": done.retired,
    }
    WalletActivatedOut.model_validate(out)
    return JSONResponse(out, status_code=201, headers=_NO_STORE)


@api.route(
    "GET",
    "/wallet/pass",
    "walletPass",
    "The current pass of the calling wallet",
    auth=PUBLIC,
    tag="wallet",
    response=WalletPassOut,
    errors=(401, 429, 503),
    description="Called by the wallet with 'Authorization: Bearer <wallet credential>'. "
    "The same pass until the person's status changes, its key is revoked or half its life "
    "has gone, then a new one. 401 for an unknown credential; 401 with error "
    "'wallet_moved' for one retired by an activation on another phone. At most "
    "12 calls a minute a wallet (429 with Retry-After).",
)
def wallet_pass(call: CallDep) -> Response:
    try:
        held = wallet.refresh(call.registry, wallet_credential(call), call.address)
    except WalletMoved as err:
        return error_response(401, "wallet_moved", str(err), headers=_NO_STORE)
    return JSONResponse(wallet_pass_out(held, call.registry.now()), headers=_NO_STORE)


@api.route(
    "POST",
    "/keys/rotate",
    "rotateKey",
    "Make a new signing key current",
    auth=OPERATOR,
    tag="keys",
    response=RotateOut,
    errors=(503,),
)
def rotate_key(call: CallDep) -> RotateOut:
    rotation = call.registry.rotate_key(call.caller)
    return RotateOut(kid=rotation.new_kid, retired=list(rotation.retired))


@api.route(
    "POST",
    "/keys/rotate-list-key",
    "rotateListKey",
    "Make a new list key current, announced by the current one",
    auth=OPERATOR,
    tag="lists",
    response=RotateListKeyOut,
    errors=(503,),
    description="A new key signs the doors' lists from now on. The list-key chain gets a "
    "statement naming it, signed by the key before it: a door that pinned the old key "
    "pins the new one when its hub relays the chain, and refuses a statement no pinned "
    "key signed.",
)
def rotate_list_key(call: CallDep) -> RotateListKeyOut:
    rotation = call.registry.rotate_list_key(call.caller)
    return RotateListKeyOut(
        kid=rotation.new_kid, previous=list(rotation.old_kids), seq=rotation.seq
    )


@api.route(
    "POST",
    "/keys/{kid}/revoke",
    "revokeKey",
    "Revoke a signing key",
    auth=OPERATOR,
    tag="keys",
    response=RevokeOut,
    errors=(400, 404, 503),
)
def revoke_key(
    call: CallDep, kid: Annotated[str, Path(pattern=KID, description="8 hex digits")]
) -> RevokeOut:
    rotation = call.registry.revoke_key(kid, call.caller)
    return RevokeOut(revoked=kid.lower(), rotated_to=rotation.new_kid if rotation else None)


@api.route(
    "POST",
    "/facilities/requests",
    "requestFacility",
    "A PIC asks to register a facility",
    auth=PUBLIC,
    tag="facilities",
    response=FacilityOut,
    status=201,
    description="Open to anyone: the facility is 'requested' until an "
    "operator verifies or rejects it.",
)
def request_facility(call: CallDep, body: FacilityRequestIn) -> FacilityOut:
    return facility_out(call.registry.request_facility(body))


@api.route(
    "GET",
    "/facilities/requests/{facility_id}",
    "requestState",
    "Where a registration stands, for whoever holds its id",
    auth=PUBLIC,
    tag="facilities",
    response=RequestStateOut,
    errors=(404,),
    description="Open to anyone who knows the id the request answered (it "
    "ends in random digits): the state, a rejection's reason and the "
    "activation token's expiry; none of the facility's or the PIC's details.",
)
def request_state(call: CallDep, facility_id: FacilityId) -> RequestStateOut:
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


@api.route(
    "GET",
    "/facilities",
    "listFacilities",
    "Facilities, optionally by state",
    auth=OPERATOR,
    tag="facilities",
    response=FacilitiesOut,
    errors=(400,),
)
def list_facilities(
    call: CallDep,
    state: Annotated[
        FacilityState | None, Query(description="requested, verified, active or rejected")
    ] = None,
) -> FacilitiesOut:
    found = call.registry.store.list_facilities(state)
    return FacilitiesOut(facilities=[facility_out(f) for f in found])


@api.route(
    "GET",
    "/facilities/{facility_id}",
    "getFacility",
    "One facility",
    auth=OPERATOR_PIC_HUB,
    tag="facilities",
    response=FacilityOut,
    errors=(404,),
)
def get_facility(call: CallDep, facility_id: FacilityId) -> FacilityOut:
    return facility_out(call.registry.facility(call.caller, facility_id))


@api.route(
    "POST",
    "/facilities/{facility_id}/verify",
    "verifyFacility",
    "Verify a requested facility: answers a one-time activation token",
    auth=OPERATOR,
    tag="facilities",
    response=VerifyOut,
    errors=(404, 409),
)
def verify_facility(call: CallDep, facility_id: FacilityId) -> VerifyOut:
    v = call.registry.verify_facility(facility_id, call.caller)
    return VerifyOut.model_validate(
        {
            "facility": facility_out(v.facility),
            "activation_token": v.token,
            "activation_expires_at": format_time(v.expires_at),
        }
    )


@api.route(
    "POST",
    "/facilities/{facility_id}/reject",
    "rejectFacility",
    "Reject a facility's request, with a reason",
    auth=OPERATOR,
    tag="facilities",
    response=FacilityOut,
    errors=(404, 409),
)
def reject_facility(call: CallDep, facility_id: FacilityId, body: RejectIn) -> FacilityOut:
    return facility_out(call.registry.reject_facility(facility_id, body.reason, call.caller))


@api.route(
    "POST",
    "/facilities/{facility_id}/activate",
    "activateFacility",
    "The PIC activates the facility with the token and sets a password",
    auth=PUBLIC,
    tag="facilities",
    response=ActivateOut,
    errors=(403, 404, 409, 410),
    description="The activation token is the credential. Answers the PIC's "
    "user name and the facility's hub token (shown once). 409 when the "
    "facility is not 'verified' (a used token finds it 'active'); 403 for a "
    "token that is not the current one; 410 for an expired one.",
)
def activate_facility(call: CallDep, facility_id: FacilityId, body: ActivateIn) -> ActivateOut:
    a = call.registry.activate_facility(facility_id, body.token, body.password)
    return ActivateOut(
        facility=facility_out(a.facility), username=a.username, hub_token=a.hub_token
    )


@api.route(
    "POST",
    "/facilities/{facility_id}/hub-token",
    "issueHubToken",
    "A new hub token for the facility (the older ones stop working)",
    auth=OPERATOR_PIC,
    tag="facilities",
    response=HubTokenOut,
    status=201,
    errors=(404, 409),
)
def hub_token(call: CallDep, facility_id: FacilityId) -> HubTokenOut:
    token, replaced = call.registry.issue_hub_token(call.caller, facility_id)
    return HubTokenOut(facility_id=facility_id, hub_token=token, replaced=replaced)


@api.route(
    "POST",
    "/facilities/{facility_id}/doors",
    "addDoor",
    "Add a door",
    auth=OPERATOR_PIC,
    tag="facilities",
    response=DoorOut,
    status=201,
    errors=(404, 409),
)
def add_door(call: CallDep, facility_id: FacilityId, body: DoorIn) -> DoorOut:
    return door_out(call.registry, call.registry.add_door(call.caller, facility_id, body))


@api.route(
    "POST",
    "/facilities/{facility_id}/doors/{door_id}/rename",
    "renameDoor",
    "Rename a door (its id, and so its poster's code, stay)",
    auth=OPERATOR_PIC,
    tag="facilities",
    response=DoorOut,
    errors=(404, 409),
)
def rename_door(
    call: CallDep, facility_id: FacilityId, door_id: DoorId, body: DoorRenameIn
) -> DoorOut:
    door = call.registry.rename_door(call.caller, facility_id, door_id, body.name)
    return door_out(call.registry, door)


@api.route(
    "GET",
    "/facilities/{facility_id}/doors",
    "listDoors",
    "The facility's doors",
    auth=OPERATOR_PIC_HUB,
    tag="facilities",
    response=DoorsOut,
    errors=(404,),
)
def list_doors(call: CallDep, facility_id: FacilityId) -> DoorsOut:
    doors = call.registry.doors(call.caller, facility_id)
    return DoorsOut(doors=[door_out(call.registry, d) for d in doors])


def _poster(call: CallDep, facility_id: str, door_id: str, kind: Literal["png", "pdf"]) -> Response:
    media = "application/pdf" if kind == "pdf" else "image/png"
    data = call.registry.poster(call.caller, facility_id, door_id, kind)
    disposition = f'inline; filename="poster-{facility_id}-{door_id}.{kind}"'
    return Response(data, media_type=media, headers={"Content-Disposition": disposition})


@api.route(
    "GET",
    "/facilities/{facility_id}/doors/{door_id}/poster.png",
    "doorPosterPng",
    "The door's printable poster (A4, 150 dpi PNG)",
    auth=OPERATOR_PIC,
    tag="facilities",
    errors=(404, 409),
    media=("image/png",),
    description="Its QR code holds the door's address, <public_url>/d/<facility_id>/"
    "<door_id>, which a phone's camera opens; its steps follow the door's kind (camera, "
    "poster or both) and direction. In Bahasa Indonesia and English.",
)
def door_poster_png(call: CallDep, facility_id: FacilityId, door_id: DoorId) -> Response:
    return _poster(call, facility_id, door_id, "png")


@api.route(
    "GET",
    "/facilities/{facility_id}/doors/{door_id}/poster.pdf",
    "doorPosterPdf",
    "The door's printable poster (one A4 PDF page)",
    auth=OPERATOR_PIC,
    tag="facilities",
    errors=(404, 409),
    media=("application/pdf",),
    description="Its QR code holds the door's address, <public_url>/d/<facility_id>/"
    "<door_id>, which a phone's camera opens; its steps follow the door's kind (camera, "
    "poster or both) and direction. In Bahasa Indonesia and English.",
)
def door_poster_pdf(call: CallDep, facility_id: FacilityId, door_id: DoorId) -> Response:
    return _poster(call, facility_id, door_id, "pdf")


@api.route(
    "POST",
    "/visits",
    "pushVisits",
    "A hub pushes a batch of visits",
    auth=HUB,
    tag="visits",
    response=VisitsOut,
    errors=(409,),
    batch=True,
    description="Idempotent by (facility, visit_id): a replayed visit is "
    "counted in 'duplicates' and stores nothing. All rows or none: a row "
    "of another facility gives 403, a malformed row 422 (row and field "
    "named), a visit_id stored before with other content 409.",
)
def receive_visits(
    call: CallDep,
    rows: Annotated[
        list[VisitIn],
        Body(description="The batch: all rows are stored, or (on any bad row) none"),
    ],
) -> VisitsOut:
    intake = call.registry.receive_visits(call.caller, rows)
    return VisitsOut(
        received=len(rows),
        stored=intake.stored,
        duplicates=intake.duplicates,
        duplicate_ids=list(intake.duplicate_ids),
    )


def _seconds(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


@api.route(
    "GET",
    "/tracing",
    "trace",
    "Where a subject was, and who was there too",
    auth=OPERATOR,
    tag="tracing",
    response=TraceOut,
    media=("text/csv",),
    errors=(400, 422),
)
def tracing(
    call: CallDep,
    subject: Annotated[str, Query(pattern=SUBJECT, description="24 hex digits")],
    from_: Annotated[
        TimeQuery, Query(alias="from", description="RFC 3339; default: the tracing window ago")
    ] = None,
    to: Annotated[TimeQuery, Query(description="RFC 3339; default: now")] = None,
    format: Annotated[Literal["json", "csv"], Query(description="json (default) or csv")] = "json",
) -> Response:
    result = call.registry.trace(subject, _seconds(from_), _seconds(to), call.reader)
    if format == "csv":
        name = f"trace-{result.subject}.csv"
        return Response(
            result.to_csv(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return JSONResponse(result.to_json())


@api.route(
    "POST",
    "/purge",
    "purge",
    "Purge visits older than the tracing window",
    auth=OPERATOR,
    tag="visits",
    response=PurgeOut,
)
def purge(call: CallDep) -> PurgeOut:
    done = call.registry.purge()
    return PurgeOut(visits=done.visits, tokens=done.tokens, before=format_time(done.before) or "")


def operations() -> list[Operation]:
    """Every route of the API, in the order the document lists them."""
    return api.operations() + checkin_api.routes.operations()


def _openapi(app: FastAPI) -> dict[str, Any]:
    generated = document(app, SECURITY_SCHEMES)
    generated["servers"] = [{"url": "/"}]
    return generated


def create_app(registry: Registry) -> FastAPI:
    """The registry's API over ``registry`` (which the caller opens and closes)."""
    app = FastAPI(
        title="Pintu registry API",
        version=__version__,
        description="The central registry of Pintu: persons and statuses, passes and "
        "signing keys, facility registration, visit intake from facility hubs, tracing. "
        'Every error answer is JSON: {"error": code, "detail": text}.',
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
        middleware=[*console.middleware(registry), Middleware(HeadAsGet)],
        telemetry={"tracing": False, "metrics": False, "logs": False},
        exception_handlers={
            ApiError: api_error,
            Refused: refused,
            RegistryError: registry_error,
            RequestValidationError: invalid,
            HTTPException: console.http_error,
            Exception: server_error,
        },
    )
    app.router.routes.extend(api.router.routes)
    app.router.routes.extend(checkin_api.routes.router.routes)
    # The console's pages after the API: a path the API does not know is a page's.
    app.router.routes.extend(console.routes())
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.state.registry = registry
    app.state.checkins = Checkins(registry)
    app.state.operations = operations()
    app.state.templates = make_templates(console.TEMPLATES)
    app.state.static_version = static_version(console.STATIC)
    return app
