"""The hub's JSON API under ``/api/v1``.

Every route is an ``Operation`` (see ``hub.web.openapi``): the role it needs, its
parameters, its body and response models (``hub.web.schemas``). ``routes()`` turns them
into Starlette routes that check the login, the role and the CSRF token, parse and
validate the input, and answer errors as JSON ``{"error": code, "detail": ...}``. Input
is checked whole before anything is done, so bad input never changes stored state.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.auth import (
    CSRF_HEADER,
    SAFE_METHODS,
    LoginRefused,
    LoginThrottled,
    csrf_ok,
    csrf_token,
)
from hub.config import FacilityConfig
from hub.enrolments import EnrolmentRefused, Refusal
from hub.errors import AlreadyExists, NotFound, StoreError
from hub.records import Adjustment, Alert, NodeView, Occupancy, Role, StoredEvent, iso
from hub.registry_client import NIK_PATTERN
from hub.web.context import Call, context_of
from hub.web.errors import ApiError, field_errors
from hub.web.openapi import (
    Operation,
    Param,
    build_document,
    parse_choice,
    parse_int,
    parse_time,
)
from hub.web.registry_api import OPERATIONS as REGISTRY_OPERATIONS
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
    ErrorOut,
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
from protocol.enrolment import EnrolmentCodeError, decode_sealed, encode_sealed, is_lookup_id
from protocol.events import EventKind, utcnow
from protocol.ids import ID_RE

logger = logging.getLogger(__name__)

PREFIX = "/api/v1"
MAX_BODY_BYTES = 64 * 1024
EVENT_KINDS = tuple(k.value for k in EventKind)
NODE_STATES = ("online", "degraded", "offline", "unknown")


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
async def get_session(call: Call) -> dict[str, Any]:
    staff = await call.ctx.accounts.current(call.request)
    return {
        "user": staff.username if staff else None,
        "role": staff.role if staff else None,
        "csrf_token": csrf_token(call.request),
    }


async def login(call: Call) -> dict[str, Any]:
    body: LoginIn = call.body
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


async def logout(call: Call) -> dict[str, Any]:
    await call.ctx.accounts.logout(call.request)
    return {"user": None, "role": None, "csrf_token": csrf_token(call.request)}


async def list_facilities(call: Call) -> dict[str, Any]:
    facilities = []
    for facility in call.hub.config.facilities:
        occupancy = await call.hub.occupancy(facility.id)
        facilities.append(
            {"id": facility.id, "name": facility.name, "occupancy": _occupancy(occupancy)}
        )
    return {"facilities": facilities}


async def get_facility(call: Call) -> dict[str, Any]:
    facility = call.hub.settings(call.facility_id)
    occupancy = await call.hub.occupancy(call.facility_id)
    return {
        "id": facility.id,
        "name": facility.name,
        "timezone": facility.timezone,
        "capacity": _capacity(facility),
        "occupancy": _occupancy(occupancy),
        "doors": [d.model_dump() for d in facility.doors],
        "zones": [z.model_dump() for z in facility.zones],
    }


async def get_occupancy(call: Call) -> dict[str, Any]:
    return _occupancy(await call.hub.occupancy(call.facility_id))


async def get_history(call: Call) -> dict[str, Any]:
    facility = call.hub.settings(call.facility_id)
    now = utcnow()
    local = now.astimezone(facility.tz)
    since: datetime = call.query.get("since") or local.replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    until: datetime = call.query.get("until") or now
    if until <= since:
        raise ApiError(
            400, "bad_request", [{"field": "query.until", "message": "must be after since"}]
        )
    if until - since > timedelta(days=31):
        raise ApiError(
            400, "bad_request", [{"field": "query.since", "message": "at most 31 days at once"}]
        )
    store = call.hub.store
    samples = await asyncio.to_thread(store.history, call.facility_id, since, until)
    before = await asyncio.to_thread(
        store.history, call.facility_id, since - timedelta(days=1), since
    )
    return {
        "facility_id": call.facility_id,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "start_occupancy": before[-1].occupancy if before else 0,
        "capacity": facility.effective_capacity,
        "samples": [s.as_dict() for s in samples],
    }


async def list_doors(call: Call) -> dict[str, Any]:
    facility = call.hub.settings(call.facility_id)
    store = call.hub.store
    stale_after = call.hub.config.stale_lists_after_s
    nodes = await asyncio.to_thread(store.nodes, call.facility_id)
    by_door: dict[str, list[dict[str, Any]]] = {}
    for node in nodes:
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
            store.events, facility_id=call.facility_id, door_id=door["id"], limit=1
        )
        door["last_event"] = _event(page.events[0]) if page.events else None
    return {"doors": doors}


async def list_events(call: Call) -> dict[str, Any]:
    q = call.query
    page = await asyncio.to_thread(
        call.hub.store.events,
        facility_id=call.facility_id,
        door_id=q.get("door"),
        node_id=q.get("node"),
        kind=q.get("kind"),
        since=q.get("since"),
        until=q.get("until"),
        before=q.get("cursor"),
        limit=q.get("limit", 50),
    )
    return {
        "events": [_event(e) for e in page.events],
        "next_cursor": str(page.next_before) if page.next_before is not None else None,
    }


async def list_alerts(call: Call) -> dict[str, Any]:
    alerts = await asyncio.to_thread(
        call.hub.store.alerts,
        call.facility_id,
        open_only=call.query.get("state", "open") == "open",
        kind=call.query.get("kind"),
        limit=call.query.get("limit", 100),
    )
    return {"alerts": [_alert(a) for a in alerts]}


async def ack_alert(call: Call) -> dict[str, Any]:
    alert_id = int(call.path["alert_id"])
    if not 1 <= alert_id <= MAX_ID:
        # Past a 64-bit integer no store can look it up; it names no alert either way.
        raise ApiError(404, "not_found", f"No alert {alert_id}.")
    alert = await call.hub.ack_alert(alert_id, call.user)
    return _alert(alert)


async def get_capacity(call: Call) -> dict[str, Any]:
    return _capacity(call.hub.settings(call.facility_id))


async def put_capacity(call: Call) -> dict[str, Any]:
    body: CapacityIn = call.body
    facility = call.hub.settings(call.facility_id)
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
        call.facility_id,
        call.user,
        capacity=body.capacity,
        capacity_percent=body.percent,
        nominal_max=body.nominal_max,
        soft_threshold_percent=body.soft_threshold_percent,
    )
    return _capacity(call.hub.settings(call.facility_id))


async def lookup_person(call: Call) -> dict[str, Any]:
    body: LookupIn = call.body
    nik = "".join(body.nik.split()).replace("-", "")
    if not NIK_PATTERN.match(nik):
        raise ApiError(422, "invalid", [{"field": "nik", "message": "a NIK is 16 digits"}])
    if not body.name.strip():
        raise ApiError(422, "invalid", [{"field": "name", "message": "the name is empty"}])
    answer = await call.ctx.desk.lookup(call.facility_id, call.user, nik, body.name)
    return {
        "found": answer.found,
        "status": answer.status,
        "reason": answer.reason,
        "admissible": answer.admissible,
        "lookup_id": answer.lookup_id,
    }


async def check_in(call: Call) -> dict[str, Any]:
    body: CheckinIn = call.body
    admission = await call.ctx.desk.admit(call.facility_id, call.user, body.lookup_id, body.door_id)
    return {
        "admitted": True,
        "door_id": admission.door_id,
        "status": admission.status,
        "message": admission.message,
    }


async def open_door(call: Call) -> dict[str, Any]:
    body: OpenIn = call.body
    door_id = str(call.path["door_id"])
    await call.ctx.desk.open_door(call.facility_id, call.user, door_id, body.reason)
    return {"opened": True, "door_id": door_id, "message": "The door is open."}


async def correct_count(call: Call) -> dict[str, Any]:
    body: CorrectionIn = call.body
    facility = call.hub.settings(call.facility_id)
    if body.zone_id is not None and body.zone_id not in {z.id for z in facility.zones}:
        raise ApiError(422, "invalid", [{"field": "zone_id", "message": "no such zone"}])
    adjustment = await call.hub.manual_correction(
        call.facility_id, body.value, call.user, body.note, zone_id=body.zone_id
    )
    return _adjustment(adjustment)


async def reset_count(call: Call) -> dict[str, Any]:
    body: ResetIn = call.body
    adjustment = await call.hub.reset(call.facility_id, call.user, body.note)
    return _adjustment(adjustment)


async def list_adjustments(call: Call) -> dict[str, Any]:
    items = await asyncio.to_thread(
        call.hub.store.adjustments, call.facility_id, limit=call.query.get("limit", 100)
    )
    return {"adjustments": [_adjustment(a) for a in items]}


async def audit_log(call: Call) -> dict[str, Any]:
    limit = call.query.get("limit", 100)
    entries = await asyncio.to_thread(
        call.hub.store.audit_log,
        facility_id=call.query.get("facility"),
        user=call.query.get("user"),
        before=call.query.get("cursor"),
        limit=limit,
    )
    more = len(entries) == limit and entries[-1].id > 1
    return {
        "entries": [e.as_dict() for e in entries],
        "next_cursor": str(entries[-1].id) if more else None,
    }


async def add_enrolment(call: Call) -> dict[str, Any]:
    body: EnrolmentIn = call.body
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


async def claim_enrolment(call: Call) -> dict[str, Any]:
    lookup_id = str(call.path["lookup_id"])
    if not is_lookup_id(lookup_id):
        raise ApiError(404, Refusal.UNKNOWN.value, "no enrolment for this provisioning QR")
    try:
        sealed = await asyncio.to_thread(call.hub.store.claim_enrolment, lookup_id)
    except EnrolmentRefused as err:
        logger.warning("enrolment %s… refused: %s", lookup_id[:8], err)
        raise ApiError(_REFUSAL_STATUS[err.reason], err.reason.value, str(err)) from err
    logger.info("enrolment %s… handed to its node", lookup_id[:8])
    return {"sealed": encode_sealed(sealed)}


async def openapi_document(call: Call) -> dict[str, Any]:
    return document()


# --- parameters ---------------------------------------------------------------------
MAX_ID = 2**63 - 1  # the largest row id SQLite and PostgreSQL hold


def _path(name: str, description: str, *, integer: bool = False) -> Param:
    schema = {"type": "integer", "minimum": 1, "maximum": MAX_ID} if integer else {"type": "string"}
    return Param(name, "path", schema, description, required=True)


FACILITY = _path("facility_id", "The facility's id, as in hub.toml.")
_TIME = {"type": "string", "format": "date-time"}


def _limit(default: int, high: int) -> Param:
    return Param(
        "limit",
        "query",
        {"type": "integer", "minimum": 1, "maximum": high, "default": default},
        f"At most this many (default {default}).",
        parse=parse_int(1, high),
    )


def _cursor(what: str) -> Param:
    return Param(
        "cursor",
        "query",
        {"type": "string"},
        f"next_cursor of the previous page, for older {what}.",
        parse=parse_int(1, 2**62),
    )


def _query_time(name: str, description: str) -> Param:
    return Param(name, "query", _TIME, description, parse=parse_time)


def _id_query(name: str, description: str) -> Param:
    return Param(name, "query", {"type": "string"}, description, parse=_ident)


_IDENT = ID_RE


def _ident(text: str) -> str:
    if not _IDENT.match(text):
        raise ValueError("not an id (letters, digits, '_', '.', '-'; at most 64)")
    return text


V: Role = "viewer"
G: Role = "guard"
A: Role = "admin"

OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", f"{PREFIX}/session", get_session, "Who is logged in, and the CSRF token",
              "session", None, response=SessionOut),
    Operation("POST", f"{PREFIX}/session", login, "Log in", "session", None, body=LoginIn,
              response=SessionOut, errors=(401, 429),
              description="Starts a session (a cookie). Repeated wrong passwords lock the user "
              "name out for a while: 429 with Retry-After.",
              ),
    Operation("DELETE", f"{PREFIX}/session", logout, "Log out", "session", None,
              response=SessionOut),
    Operation("GET", f"{PREFIX}/openapi.json", openapi_document, "This document", "meta", None),
    Operation("GET", f"{PREFIX}/facilities", list_facilities, "Facilities and their occupancy",
              "facilities", V, response=FacilityList),
    Operation("GET", f"{PREFIX}/facilities/{{facility_id}}", get_facility,
              "A facility: capacity, occupancy, doors and zones", "facilities", V,
              params=(FACILITY,), response=FacilityOut),
    Operation("GET", f"{PREFIX}/facilities/{{facility_id}}/occupancy", get_occupancy,
              "Occupancy now", "occupancy", V, params=(FACILITY,), response=OccupancyOut),
    Operation("GET", f"{PREFIX}/facilities/{{facility_id}}/history", get_history,
              "Occupancy per minute over a period (today by default)", "occupancy", V,
              params=(FACILITY,
                      _query_time("since", "Start (default: the facility's local midnight)."),
                      _query_time("until", "End (default: now); at most 31 days after since.")),
              response=HistoryOut),
    Operation("GET", f"{PREFIX}/facilities/{{facility_id}}/doors", list_doors,
              "Doors with their nodes' states and last event", "doors", V,
              params=(FACILITY,), response=DoorsOut),
    Operation("POST", f"{PREFIX}/facilities/{{facility_id}}/doors/{{door_id}}/open", open_door,
              "Open a door once (a guard's remote open)", "doors", G,
              params=(FACILITY, _path("door_id", "The door's id.")), body=OpenIn,
              response=OpenOut, errors=(409, 503, 504),
              description="The node at the door releases it and records the passage as a "
              "manual event, which counts it. 504 when the node does not answer in time."),
    Operation("GET", f"{PREFIX}/facilities/{{facility_id}}/events", list_events,
              "Stored events, newest first, a page at a time", "events", V,
              params=(FACILITY,
                      _id_query("door", "Only this door."),
                      _id_query("node", "Only this node."),
                      Param("kind", "query", {"type": "string", "enum": list(EVENT_KINDS)},
                            "Only this kind of event.", parse=parse_choice(EVENT_KINDS)),
                      _query_time("since", "Events at or after this time (the node's clock)."),
                      _query_time("until", "Events before this time."),
                      _cursor("events"), _limit(50, 1000)),
              response=EventPageOut),
    Operation("GET", f"{PREFIX}/facilities/{{facility_id}}/alerts", list_alerts,
              "Alerts, newest first", "alerts", V,
              params=(FACILITY,
                      Param("state", "query", {"type": "string", "enum": ["open", "all"],
                                                "default": "open"},
                            "open (default): not acknowledged or cleared; all: every alert.",
                            parse=parse_choice(("open", "all"))),
                      Param("kind", "query", {"type": "string"}, "Only this kind of alert.",
                            parse=_ident),
                      _limit(100, 1000)),
              response=AlertsOut),
    Operation("POST", f"{PREFIX}/alerts/{{alert_id}}/ack", ack_alert, "Acknowledge an alert",
              "alerts", G, params=(_path("alert_id", "The alert's id.", integer=True),),
              response=AlertOut,
              description="Acknowledging twice is harmless: the first acknowledgement stays."),
    Operation("GET", f"{PREFIX}/facilities/{{facility_id}}/capacity", get_capacity,
              "The capacity in effect", "capacity", V, params=(FACILITY,),
              response=CapacityOut),
    Operation("PUT", f"{PREFIX}/facilities/{{facility_id}}/capacity", put_capacity,
              "Change the capacity", "capacity", A, params=(FACILITY,), body=CapacityIn,
              response=CapacityOut,
              description="Give either capacity (people) or percent (of nominal_max, from the "
              "body or hub.toml). Kept across restarts; the nodes get the new state at once."),
    Operation("POST", f"{PREFIX}/facilities/{{facility_id}}/checkins/lookup", lookup_person,
              "Look a visitor up by NIK and name", "desk", G, params=(FACILITY,),
              body=LookupIn, response=LookupOut, errors=(409, 503),
              description="Both must match. Only the colour is shown. Audited with your name."),
    Operation("POST", f"{PREFIX}/facilities/{{facility_id}}/checkins", check_in,
              "Admit a looked-up visitor through a door", "desk", G, params=(FACILITY,),
              body=CheckinIn, response=CheckinOut, errors=(409, 503, 504),
              description="Opens the door; the node's manual event counts the visitor. "
              "Red and black are refused (409), as is entry while the facility is full."),
    Operation("POST", f"{PREFIX}/facilities/{{facility_id}}/corrections", correct_count,
              "Set the headcount to what staff counted", "occupancy", A, params=(FACILITY,),
              body=CorrectionIn, response=AdjustmentOut),
    Operation("POST", f"{PREFIX}/facilities/{{facility_id}}/reset", reset_count,
              "Set the headcount (and every zone) to zero", "occupancy", A,
              params=(FACILITY,), body=ResetIn, response=AdjustmentOut),
    Operation("GET", f"{PREFIX}/facilities/{{facility_id}}/adjustments", list_adjustments,
              "Corrections and resets, newest first", "occupancy", V,
              params=(FACILITY, _limit(100, 1000)), response=AdjustmentsOut),
    Operation("GET", f"{PREFIX}/audit", audit_log, "What staff did, newest first", "audit", A,
              params=(_id_query("facility", "Only this facility."),
                      Param("user", "query", {"type": "string"}, "Only this user."),
                      _cursor("entries"), _limit(100, 1000)),
              response=AuditPageOut),
    Operation("POST", f"{PREFIX}/enrolments", add_enrolment,
              "Leave a sealed node bundle for a provisioning QR", "enrolments", A,
              body=EnrolmentIn, response=EnrolmentOut, status=201, errors=(409,),
              description="`pintu provision node enroll --qr` calls this. The hub keeps the "
              "ciphertext, the lookup id and the expiry; it never sees the QR's token."),
    Operation("POST", f"{PREFIX}/enrolments/{{lookup_id}}/claim", claim_enrolment,
              "A door node fetches its sealed bundle, once", "enrolments", None,
              params=(_path("lookup_id", "The id derived from the QR's token."),),
              response=ClaimOut, errors=(404, 409, 410), csrf=False,
              description="Called by a node shown its provisioning QR. The bundle is handed "
              "out once and then dropped: 404 unknown_token, 409 token_used, "
              "410 token_expired."),
    *REGISTRY_OPERATIONS,
)  # fmt: skip

_SSE_DOC = {
    "get": {
        "operationId": "event_stream",
        "summary": "Live updates (Server-Sent Events)",
        "tags": ["live"],
        "x-pintu-role": "viewer",
        "description": "Events named occupancy, event, alert, node (JSON data), resync "
        "(messages were dropped: read everything again) and logout. Needs the viewer role.",
        "security": [{"session": []}],
        "parameters": [
            {
                "name": "facility",
                "in": "query",
                "required": False,
                "description": "The facility (default: the first in hub.toml).",
                "schema": {"type": "string"},
            }
        ],
        "responses": {
            "200": {"description": "The stream", "content": {"text/event-stream": {}}},
            "401": {"description": "Not logged in"},
            "404": {"description": "Unknown facility"},
        },
    }
}
_OTHER_PATHS: dict[str, Any] = {
    "/events/stream": _SSE_DOC,
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics",
            "tags": ["meta"],
            "description": "The text exposition format. Open, unless web.metrics_token_file "
            "is set: then it needs that token as a bearer token.",
            "security": [{}, {"metricsToken": []}],
            "responses": {
                "200": {"description": "Metrics", "content": {"text/plain": {}}},
                "401": {"description": "The bearer token is missing or wrong"},
            },
        }
    },
    "/healthz": {
        "get": {
            "operationId": "health",
            "summary": "Whether the hub is running and connected",
            "tags": ["meta"],
            "security": [],
            "responses": {
                "200": {"description": "Healthy", "content": {"application/json": {}}},
                "503": {"description": "Not healthy", "content": {"application/json": {}}},
            },
        }
    },
}


def document() -> dict[str, Any]:
    from runtime.version import __version__

    return build_document(
        OPERATIONS,
        title="Pintu facility hub",
        version=__version__,
        error_model=ErrorOut,
        other_paths=_OTHER_PATHS,
    )


# --- the glue: checks, parsing, errors ----------------------------------------------
def _query(op: Operation, request: Request) -> dict[str, Any]:
    allowed = {p.name: p for p in op.params if p.where == "query"}
    parsed: dict[str, Any] = {}
    problems = []
    for name, value in request.query_params.multi_items():
        param = allowed.get(name)
        if param is None:
            problems.append({"field": f"query.{name}", "message": "unknown parameter"})
            continue
        try:
            parsed[name] = param.parsed(value)
        except ValueError as err:
            problems.append({"field": f"query.{name}", "message": str(err)})
    if problems:
        raise ApiError(400, "bad_request", problems)
    return parsed


async def _body(op: Operation, request: Request) -> BaseModel | None:
    if op.body is None:
        return None
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send the body as application/json.")
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(400, "bad_request", [{"field": "body", "message": "too large"}])
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(
            400, "bad_json", [{"field": "body", "message": f"not valid JSON: {err}"}]
        ) from err
    if not isinstance(data, dict):
        raise ApiError(400, "bad_json", [{"field": "body", "message": "expected a JSON object"}])
    try:
        return op.body.model_validate(data)
    except ValidationError as err:
        raise ApiError(422, "invalid", field_errors(err)) from err


def _endpoint(op: Operation) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        ctx = context_of(request)
        staff = None
        if op.role is not None:
            staff = await ctx.accounts.current(request)
            if staff is None:
                raise ApiError(401, "not_logged_in", "Log in first.")
        if (
            op.csrf
            and request.method not in SAFE_METHODS
            and not csrf_ok(request, request.headers.get(CSRF_HEADER))
        ):
            raise ApiError(403, "csrf", f"The {CSRF_HEADER} header is missing or wrong.")
        if staff is not None and op.role is not None and not staff.may(op.role):
            raise ApiError(
                403, "forbidden", f"This needs the {op.role} role; you are a {staff.role}."
            )
        path = dict(request.path_params)
        if "facility_id" in path:
            try:
                ctx.hub.facility(str(path["facility_id"]))
            except NotFound as err:
                raise ApiError(404, "not_found", f"No facility {path['facility_id']}.") from err
        call = Call(request, ctx, staff, path, _query(op, request), await _body(op, request))
        try:
            result = await op.handler(call)
        except NotFound as err:
            raise ApiError(404, "not_found", str(err)) from err
        except StoreError as err:
            logger.error("%s %s: %s", request.method, request.url.path, err)
            raise ApiError(
                503, "store_unavailable", "The store cannot be read or written."
            ) from err
        except ValueError as err:
            raise ApiError(422, "invalid", str(err)) from err
        if isinstance(result, Response):
            return result  # an answer in another format than JSON (a CSV export)
        if op.response is not None:
            result = op.response.model_validate(result).model_dump(mode="json")
        return JSONResponse(result, status_code=op.status)

    run.__name__ = op.operation_id
    return run


def routes() -> list[Route]:
    paths: dict[str, dict[str, Operation]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = op
    result = []
    for path, by_method in paths.items():
        handlers = {method: _endpoint(op) for method, op in by_method.items()}
        route_path = path.replace("{alert_id}", "{alert_id:int}")
        result.append(Route(route_path, _dispatch(handlers), methods=list(handlers)))
    return result


def _dispatch(
    handlers: dict[str, Callable[[Request], Awaitable[Response]]],
) -> Callable[[Request], Awaitable[Response]]:
    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return dispatch
