"""The hub's JSON API under ``/api/v1``, on FastAPI.

Every route declares its contract: the role it needs (``route(..., role=...)``), its path
and query parameters as typed arguments, its body and response models
(``hub.web.schemas``); the OpenAPI document at ``/api/v1/openapi.json`` is generated from
them. ``HubRoute`` checks the login, the role and the CSRF token before the body is read
(``runtime.api``); bad input is answered as JSON ``{"error": code, "detail": ...}`` by the
handlers ``hub.web.errors`` installs. Input is checked whole before anything is done, so bad
input never changes stored state.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse, Response

from hub.auth import LoginRefused, LoginThrottled, csrf_token
from hub.config import FacilityConfig
from hub.enrolments import EnrolmentRefused, Refusal
from hub.errors import AlreadyExists
from hub.records import Adjustment, Alert, NodeView, Occupancy, StoredEvent, iso
from hub.upstream.client import NIK_PATTERN
from hub.web import upstream_api
from hub.web.errors import ApiError
from hub.web.routing import (
    PREFIX,
    CallDep,
    FacilityId,
    Operation,
    Routes,
    document_errors,
    operations,
)
from hub.web.schemas import (
    AdjustmentOut,
    AdjustmentsOut,
    AlertOut,
    AlertsOut,
    AuditPageOut,
    CapacityIn,
    CapacityOut,
    CheckinIn,
    CheckinOut,
    ClaimOut,
    CorrectionIn,
    DoorsOut,
    EnrolmentIn,
    EnrolmentOut,
    EventPageOut,
    FacilityList,
    FacilityOut,
    HistoryOut,
    LoginIn,
    LookupIn,
    LookupOut,
    OccupancyOut,
    OpenIn,
    OpenOut,
    ResetIn,
    SessionOut,
)
from protocol.checkins import PHONE_NODE
from protocol.enrolment import EnrolmentCodeError, decode_sealed, encode_sealed, is_lookup_id
from protocol.events import EventKind, utcnow
from protocol.ids import ID_PATTERN
from runtime.api import Refused, TimeQuery

__all__ = ["OPERATIONS", "PREFIX", "Operation", "routes"]

logger = logging.getLogger(__name__)

MAX_ID = 2**63 - 1  # the largest row id SQLite and PostgreSQL hold
NODE_STATES = ("online", "degraded", "offline", "unknown")
IDENT = ID_PATTERN

# --- parameters ---------------------------------------------------------------------


def _limit(default: int, high: int) -> Any:
    return Query(ge=1, le=high, description=f"At most this many (default {default}).")


def _cursor(what: str) -> Any:
    return Query(ge=1, le=2**62, description=f"next_cursor of the previous page, for older {what}.")


def _id_query(description: str) -> Any:
    return Query(pattern=IDENT, description=description)


api = Routes()


class EventsQuery(BaseModel):
    """The events' filters, read and checked as one model (one pass over the query)."""

    model_config = ConfigDict(extra="forbid")

    door: str | None = Field(None, pattern=IDENT, description="Only this door.")
    node: str | None = Field(None, pattern=IDENT, description="Only this node.")
    kind: EventKind | None = Field(None, description="Only this kind of event.")
    since: AwareDatetime | None = Field(
        None, description="Events at or after this time (the node's clock)."
    )
    until: AwareDatetime | None = Field(None, description="Events before this time.")
    cursor: int | None = Field(
        None, ge=1, le=2**62, description="next_cursor of the previous page, for older events."
    )
    limit: int = Field(50, ge=1, le=1000, description="At most this many (default 50).")


# --- shaping records --------------------------------------------------------------------
def _capacity(facility: FacilityConfig) -> dict[str, Any]:
    mode = (
        "absolute"
        if facility.capacity is not None
        else "percent"
        if facility.capacity_percent is not None
        else "none"
    )
    return {
        "facility_id": facility.id,
        "capacity": facility.effective_capacity,
        "mode": mode,
        "capacity_percent": facility.capacity_percent,
        "nominal_max": facility.nominal_max,
        "soft_threshold_percent": facility.soft_threshold_percent,
    }


def _occupancy(occupancy: Occupancy) -> dict[str, Any]:
    return occupancy.as_dict()


def _alert(alert: Alert) -> dict[str, Any]:
    return {**alert.as_dict(), "open": alert.open}


def _adjustment(adjustment: Adjustment) -> dict[str, Any]:
    data = adjustment.as_dict()
    data["occupancy"] = adjustment.occupancy.as_dict() if adjustment.occupancy else None
    return data


def _event(stored: StoredEvent) -> dict[str, Any]:
    return stored.as_dict()


def _node(node: NodeView, stale_after_s: float) -> dict[str, Any]:
    data = node.as_dict()
    # A status reports the lists' ages when it was sent; they have aged since.
    since = (utcnow() - node.status_ts).total_seconds() if node.status_ts else 0.0
    ages = [a + max(0.0, since) for a in (node.trust_list_age_s, node.status_list_age_s) if a]
    data["stale_lists"] = bool(ages) and max(ages) > stale_after_s
    if data["state"] not in NODE_STATES:
        data["state"] = "unknown"
    return data


def _door_state(nodes: list[dict[str, Any]]) -> str:
    states = {n["state"] for n in nodes}
    if not states or states == {"unknown"}:
        return "unknown"
    if states == {"online"}:
        return "online"
    if states <= {"offline", "unknown"}:
        return "offline"
    return "degraded"


# --- handlers -----------------------------------------------------------------------
@api.route(
    "GET",
    "/session",
    summary="Who is logged in, and the CSRF token",
    tag="session",
    role=None,
    response=SessionOut,
)
async def get_session(call: CallDep) -> dict[str, Any]:
    staff = await call.ctx.accounts.current(call.request)
    return {
        "user": staff.username if staff else None,
        "role": staff.role if staff else None,
        "csrf_token": csrf_token(call.request),
    }


@api.route(
    "POST",
    "/session",
    summary="Log in",
    tag="session",
    role=None,
    response=SessionOut,
    errors=(401, 429),
    description="Starts a session (a cookie). Repeated wrong passwords lock the user "
    "name out for a while: 429 with Retry-After.",
)
async def login(call: CallDep, body: LoginIn) -> dict[str, Any]:
    try:
        staff = await call.ctx.accounts.login(call.request, body.username, body.password)
    except LoginThrottled as err:
        wait = max(1, int(err.retry_after_s + 0.999))
        raise ApiError(
            429,
            "busy" if err.busy else "too_many_attempts",
            f"Too many logins at once; try again in {wait} s."
            if err.busy
            else f"Too many failed logins; try again in {wait} s.",
            headers={"Retry-After": str(wait)},
        ) from err
    except LoginRefused as err:
        raise ApiError(401, "login_failed", "Wrong user name or password.") from err
    return {"user": staff.username, "role": staff.role, "csrf_token": staff.csrf}


@api.route("DELETE", "/session", summary="Log out", tag="session", role=None, response=SessionOut)
async def logout(call: CallDep) -> dict[str, Any]:
    await call.ctx.accounts.logout(call.request)
    return {"user": None, "role": None, "csrf_token": csrf_token(call.request)}


@api.route("GET", "/openapi.json", summary="This document", tag="meta", role=None)
async def openapi_document(call: CallDep) -> Response:
    return JSONResponse(call.request.app.openapi())


@api.route(
    "GET",
    "/facilities",
    summary="Facilities and their occupancy",
    tag="facilities",
    role="viewer",
    response=FacilityList,
)
async def list_facilities(call: CallDep) -> dict[str, Any]:
    facilities = []
    for facility in call.hub.config.facilities:
        occupancy = await call.hub.occupancy(facility.id)
        facilities.append(
            {"id": facility.id, "name": facility.name, "occupancy": _occupancy(occupancy)}
        )
    return {"facilities": facilities}


@api.route(
    "GET",
    "/facilities/{facility_id}",
    summary="A facility: capacity, occupancy, doors and zones",
    tag="facilities",
    role="viewer",
    response=FacilityOut,
)
async def get_facility(call: CallDep, facility_id: FacilityId) -> dict[str, Any]:
    facility = call.hub.settings(facility_id)
    occupancy = await call.hub.occupancy(facility_id)
    return {
        "id": facility.id,
        "name": facility.name,
        "timezone": facility.timezone,
        "capacity": _capacity(facility),
        "occupancy": _occupancy(occupancy),
        "doors": [d.model_dump() for d in facility.doors],
        "zones": [z.model_dump() for z in facility.zones],
    }


@api.route(
    "GET",
    "/facilities/{facility_id}/occupancy",
    summary="Occupancy now",
    tag="occupancy",
    role="viewer",
    response=OccupancyOut,
)
async def get_occupancy(call: CallDep, facility_id: FacilityId) -> dict[str, Any]:
    return _occupancy(await call.hub.occupancy(facility_id))


@api.route(
    "GET",
    "/facilities/{facility_id}/history",
    summary="Occupancy per minute over a period (today by default)",
    tag="occupancy",
    role="viewer",
    response=HistoryOut,
)
async def get_history(
    call: CallDep,
    facility_id: FacilityId,
    since: Annotated[
        TimeQuery, Query(description="Start (default: the facility's local midnight).")
    ] = None,
    until: Annotated[
        TimeQuery, Query(description="End (default: now); at most 31 days after since.")
    ] = None,
) -> dict[str, Any]:
    facility = call.hub.settings(facility_id)
    now = utcnow()
    local = now.astimezone(facility.tz)
    start: datetime = since or local.replace(hour=0, minute=0, second=0, microsecond=0)
    end: datetime = until or now
    if end <= start:
        raise Refused(
            400, "bad_request", [{"field": "query.until", "message": "must be after since"}]
        )
    if end - start > timedelta(days=31):
        raise Refused(
            400, "bad_request", [{"field": "query.since", "message": "at most 31 days at once"}]
        )
    store = call.hub.store
    samples = await asyncio.to_thread(store.history, facility_id, start, end)
    before = await asyncio.to_thread(store.history, facility_id, start - timedelta(days=1), start)
    return {
        "facility_id": facility_id,
        "since": start.isoformat(),
        "until": end.isoformat(),
        "start_occupancy": before[-1].occupancy if before else 0,
        "capacity": facility.effective_capacity,
        "samples": [s.as_dict() for s in samples],
    }


@api.route(
    "GET",
    "/facilities/{facility_id}/doors",
    summary="Doors with their nodes' states and last event",
    tag="doors",
    role="viewer",
    response=DoorsOut,
)
async def list_doors(call: CallDep, facility_id: FacilityId) -> dict[str, Any]:
    facility = call.hub.settings(facility_id)
    store = call.hub.store
    stale_after = call.hub.config.stale_lists_after_s
    nodes = await asyncio.to_thread(store.nodes, facility_id)
    by_door: dict[str, list[dict[str, Any]]] = {}
    for node in nodes:
        if node.node_id == PHONE_NODE:
            continue  # phone check-ins: their events show under their doors, not a device
        door_id = node.door_id or next(
            (d.id for d in facility.doors if node.node_id in d.nodes), None
        )
        if door_id is not None:
            by_door.setdefault(door_id, []).append(_node(node, stale_after))
    doors: list[dict[str, Any]] = [
        {"id": d.id, "name": d.name, "direction": d.direction, "configured": True}
        for d in facility.doors
    ]
    known = {d.id for d in facility.doors}
    doors += [
        {"id": door_id, "name": door_id, "direction": None, "configured": False}
        for door_id in sorted(by_door)
        if door_id not in known
    ]
    for door in doors:
        door["nodes"] = by_door.get(door["id"], [])
        door["state"] = _door_state(door["nodes"])
        page = await asyncio.to_thread(
            store.events, facility_id=facility_id, door_id=door["id"], limit=1
        )
        door["last_event"] = _event(page.events[0]) if page.events else None
    return {"doors": doors}


@api.route(
    "POST",
    "/facilities/{facility_id}/doors/{door_id}/open",
    summary="Open a door once (a guard's remote open)",
    tag="doors",
    role="guard",
    response=OpenOut,
    errors=(409, 503, 504),
    description="The node at the door releases it and records the passage as a "
    "manual event, which counts it. 504 when the node does not answer in time.",
)
async def open_door(
    call: CallDep,
    facility_id: FacilityId,
    door_id: Annotated[str, Path(description="The door's id.")],
    body: OpenIn,
) -> dict[str, Any]:
    await call.ctx.desk.open_door(facility_id, call.user, door_id, body.reason)
    return {"opened": True, "door_id": door_id, "message": "The door is open."}


@api.route(
    "GET",
    "/facilities/{facility_id}/events",
    summary="Stored events, newest first, a page at a time",
    tag="events",
    role="viewer",
    response=EventPageOut,
)
async def list_events(
    call: CallDep, facility_id: FacilityId, q: Annotated[EventsQuery, Query()]
) -> dict[str, Any]:
    page = await asyncio.to_thread(
        call.hub.store.events,
        facility_id=facility_id,
        door_id=q.door,
        node_id=q.node,
        kind=q.kind.value if q.kind is not None else None,
        since=q.since,
        until=q.until,
        before=q.cursor,
        limit=q.limit,
    )
    return {
        "events": [_event(e) for e in page.events],
        "next_cursor": str(page.next_before) if page.next_before is not None else None,
    }


@api.route(
    "GET",
    "/facilities/{facility_id}/alerts",
    summary="Alerts, newest first",
    tag="alerts",
    role="viewer",
    response=AlertsOut,
)
async def list_alerts(
    call: CallDep,
    facility_id: FacilityId,
    state: Annotated[
        Literal["open", "all"],
        Query(description="open (default): not acknowledged or cleared; all: every alert."),
    ] = "open",
    kind: Annotated[str | None, _id_query("Only this kind of alert.")] = None,
    limit: Annotated[int, _limit(100, 1000)] = 100,
) -> dict[str, Any]:
    alerts = await asyncio.to_thread(
        call.hub.store.alerts, facility_id, open_only=state == "open", kind=kind, limit=limit
    )
    return {"alerts": [_alert(a) for a in alerts]}


@api.route(
    "POST",
    "/alerts/{alert_id}/ack",
    summary="Acknowledge an alert",
    tag="alerts",
    role="guard",
    response=AlertOut,
    description="Acknowledging twice is harmless: the first acknowledgement stays.",
)
async def ack_alert(
    call: CallDep, alert_id: Annotated[int, Path(ge=1, le=MAX_ID, description="The alert's id.")]
) -> dict[str, Any]:
    alert = await call.hub.ack_alert(alert_id, call.user)
    return _alert(alert)


@api.route(
    "GET",
    "/facilities/{facility_id}/capacity",
    summary="The capacity in effect",
    tag="capacity",
    role="viewer",
    response=CapacityOut,
)
async def get_capacity(call: CallDep, facility_id: FacilityId) -> dict[str, Any]:
    return _capacity(call.hub.settings(facility_id))


@api.route(
    "PUT",
    "/facilities/{facility_id}/capacity",
    summary="Change the capacity",
    tag="capacity",
    role="admin",
    response=CapacityOut,
    description="Give either capacity (people) or percent (of nominal_max, from the "
    "body or hub.toml). Kept across restarts; the nodes get the new state at once.",
)
async def put_capacity(call: CallDep, facility_id: FacilityId, body: CapacityIn) -> dict[str, Any]:
    facility = call.hub.settings(facility_id)
    if (body.capacity is None) == (body.percent is None):
        raise ApiError(
            422,
            "invalid",
            [{"field": "capacity", "message": "give either capacity or percent, not both"}],
        )
    if body.percent is not None and body.nominal_max is None and facility.nominal_max is None:
        raise ApiError(
            422,
            "invalid",
            [{"field": "nominal_max", "message": "a percentage needs the nominal maximum"}],
        )
    await call.hub.set_capacity(
        facility_id,
        call.user,
        capacity=body.capacity,
        capacity_percent=body.percent,
        nominal_max=body.nominal_max,
        soft_threshold_percent=body.soft_threshold_percent,
    )
    return _capacity(call.hub.settings(facility_id))


@api.route(
    "POST",
    "/facilities/{facility_id}/checkins/lookup",
    summary="Look a visitor up by NIK and name",
    tag="desk",
    role="guard",
    response=LookupOut,
    errors=(409, 503),
    description="Both must match. Only the colour is shown. Audited with your name.",
)
async def lookup_person(call: CallDep, facility_id: FacilityId, body: LookupIn) -> dict[str, Any]:
    nik = "".join(body.nik.split()).replace("-", "")
    if not NIK_PATTERN.match(nik):
        raise ApiError(422, "invalid", [{"field": "nik", "message": "a NIK is 16 digits"}])
    if not body.name.strip():
        raise ApiError(422, "invalid", [{"field": "name", "message": "the name is empty"}])
    answer = await call.ctx.desk.lookup(facility_id, call.user, nik, body.name)
    return {
        "found": answer.found,
        "status": answer.status,
        "reason": answer.reason,
        "admissible": answer.admissible,
        "lookup_id": answer.lookup_id,
    }


@api.route(
    "POST",
    "/facilities/{facility_id}/checkins",
    summary="Admit a looked-up visitor through a door",
    tag="desk",
    role="guard",
    response=CheckinOut,
    errors=(409, 503, 504),
    description="Opens the door; the node's manual event counts the visitor. "
    "Red and black are refused (409), as is entry while the facility is full.",
)
async def check_in(call: CallDep, facility_id: FacilityId, body: CheckinIn) -> dict[str, Any]:
    admission = await call.ctx.desk.admit(facility_id, call.user, body.lookup_id, body.door_id)
    return {
        "admitted": True,
        "door_id": admission.door_id,
        "status": admission.status,
        "message": admission.message,
    }


@api.route(
    "POST",
    "/facilities/{facility_id}/corrections",
    summary="Set the headcount to what staff counted",
    tag="occupancy",
    role="admin",
    response=AdjustmentOut,
)
async def correct_count(
    call: CallDep, facility_id: FacilityId, body: CorrectionIn
) -> dict[str, Any]:
    facility = call.hub.settings(facility_id)
    if body.zone_id is not None and body.zone_id not in {z.id for z in facility.zones}:
        raise ApiError(422, "invalid", [{"field": "zone_id", "message": "no such zone"}])
    adjustment = await call.hub.manual_correction(
        facility_id, body.value, call.user, body.note, zone_id=body.zone_id
    )
    return _adjustment(adjustment)


@api.route(
    "POST",
    "/facilities/{facility_id}/reset",
    summary="Set the headcount (and every zone) to zero",
    tag="occupancy",
    role="admin",
    response=AdjustmentOut,
)
async def reset_count(call: CallDep, facility_id: FacilityId, body: ResetIn) -> dict[str, Any]:
    adjustment = await call.hub.reset(facility_id, call.user, body.note)
    return _adjustment(adjustment)


@api.route(
    "GET",
    "/facilities/{facility_id}/adjustments",
    summary="Corrections and resets, newest first",
    tag="occupancy",
    role="viewer",
    response=AdjustmentsOut,
)
async def list_adjustments(
    call: CallDep, facility_id: FacilityId, limit: Annotated[int, _limit(100, 1000)] = 100
) -> dict[str, Any]:
    items = await asyncio.to_thread(call.hub.store.adjustments, facility_id, limit=limit)
    return {"adjustments": [_adjustment(a) for a in items]}


@api.route(
    "GET",
    "/audit",
    summary="What staff did, newest first",
    tag="audit",
    role="admin",
    response=AuditPageOut,
)
async def audit_log(
    call: CallDep,
    facility: Annotated[str | None, _id_query("Only this facility.")] = None,
    user: Annotated[str | None, Query(description="Only this user.")] = None,
    cursor: Annotated[int | None, _cursor("entries")] = None,
    limit: Annotated[int, _limit(100, 1000)] = 100,
) -> dict[str, Any]:
    entries = await asyncio.to_thread(
        call.hub.store.audit_log, facility_id=facility, user=user, before=cursor, limit=limit
    )
    more = len(entries) == limit and entries[-1].id > 1
    return {
        "entries": [e.as_dict() for e in entries],
        "next_cursor": str(entries[-1].id) if more else None,
    }


@api.route(
    "POST",
    "/enrolments",
    summary="Leave a sealed node bundle for a provisioning QR",
    tag="enrolments",
    role="admin",
    response=EnrolmentOut,
    status=201,
    errors=(409,),
    description="`pintu provision node enroll --qr` calls this. The hub keeps the "
    "ciphertext, the lookup id and the expiry; it never sees the QR's token.",
)
async def add_enrolment(call: CallDep, body: EnrolmentIn) -> dict[str, Any]:
    try:
        sealed = decode_sealed(body.sealed)
    except EnrolmentCodeError as err:
        raise ApiError(422, "invalid", [{"field": "sealed", "message": str(err)}]) from err
    expires_at = utcnow() + timedelta(seconds=body.ttl_s)
    store = call.hub.store
    try:
        await asyncio.to_thread(store.add_enrolment, body.lookup_id, sealed, expires_at)
    except AlreadyExists as err:
        raise ApiError(409, "conflict", str(err)) from err
    await asyncio.to_thread(
        store.audit,
        call.user,
        "enrolment.created",
        target=body.node_id,
        detail=f"lookup {body.lookup_id[:8]}, expires {iso(expires_at)}",
    )
    logger.info("enrolment for node %s filed by %s", body.node_id, call.user)
    return {"lookup_id": body.lookup_id, "node_id": body.node_id, "expires_at": iso(expires_at)}


_REFUSAL_STATUS = {Refusal.UNKNOWN: 404, Refusal.USED: 409, Refusal.EXPIRED: 410}


@api.route(
    "POST",
    "/enrolments/{lookup_id}/claim",
    summary="A door node fetches its sealed bundle, once",
    tag="enrolments",
    role=None,
    response=ClaimOut,
    errors=(404, 409, 410),
    csrf=False,
    description="Called by a node shown its provisioning QR. The bundle is handed "
    "out once and then dropped: 404 unknown_token, 409 token_used, 410 token_expired.",
)
async def claim_enrolment(
    call: CallDep,
    lookup_id: Annotated[str, Path(description="The id derived from the QR's token.")],
) -> dict[str, Any]:
    if not is_lookup_id(lookup_id):
        raise ApiError(404, Refusal.UNKNOWN.value, "no enrolment for this provisioning QR")
    try:
        sealed = await asyncio.to_thread(call.hub.store.claim_enrolment, lookup_id)
    except EnrolmentRefused as err:
        logger.warning("enrolment %s… refused: %s", lookup_id[:8], err)
        raise ApiError(_REFUSAL_STATUS[err.reason], err.reason.value, str(err)) from err
    logger.info("enrolment %s… handed to its node", lookup_id[:8])
    return {"sealed": encode_sealed(sealed)}


def routes() -> list[Any]:
    """The API's routes: the hub's own and the registry link's."""
    return [*api.router.routes, *upstream_api.api.router.routes]


document_errors(routes())
OPERATIONS = operations(routes())
