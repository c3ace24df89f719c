"""The API's routes for the hub's link with the registry (upstream): sync now, the sync's
state, tracing.

Declared like every other route (``hub.web.api`` serves them with its own), so they are in the
OpenAPI document and checked the same way: login, role, CSRF, parameters.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import ConfigDict, Field
from starlette.responses import Response

from hub.tracing import trace
from hub.upstream.records import rfc3339
from hub.web.errors import ApiError
from hub.web.routing import CallDep, FacilityId, Routes
from hub.web.schemas import Output, Time
from protocol.events import utcnow
from protocol.ids import SUBJECT_PATTERN
from runtime.api import Refused, TimeQuery

SUBJECT = SUBJECT_PATTERN
api = Routes()


class SyncOut(Output):
    ok: bool = Field(description="The sync reached the registry and stored what it read.")
    trust: str = Field(description="The trust list: changed, unchanged or error.")
    statuses: int = Field(description="Status changes stored by this sync.")
    pages: int = Field(description="Feed pages read.")
    cursor: int = Field(description="The feed cursor stored after this sync.")
    published: list[str] = Field(
        description="Lists published to the doors (keys, trust, status), as the registry "
        "signed them."
    )
    seconds: float
    publish_seconds: float = Field(
        description="Of which fetching, checking and publishing the doors' signed lists."
    )
    error: str | None = Field(description="Why the sync failed, when it did.")


class OutboxOut(Output):
    pending: int = Field(description="Visits waiting for the registry.")
    sent: int = Field(description="Visits the registry has (kept until the tracing window).")
    failed: int = Field(description="Visits the registry refused; see failed_visits.")


class FailedVisitOut(Output):
    visit_id: str
    facility_id: str
    door_id: str
    check_in: Time
    check_out: Time
    reason: str | None


class SyncStateOut(Output):
    registry: bool = Field(description="Whether an http registry is configured.")
    cursor: int
    statuses: int = Field(description="Subjects in the hub's status list.")
    statuses_checked_at: Time | None = Field(description="The feed was last read to its end.")
    trust_etag: str | None
    trust_checked_at: Time | None = Field(description="The registry last confirmed the list.")
    last: SyncOut | None = Field(description="The last sync since the hub started.")
    outbox: OutboxOut
    failed_visits: list[FailedVisitOut] = Field(description="The newest refused visits.")


class VisitOut(Output):
    visit_id: str
    door_id: str
    check_in: Time
    check_out: Time


class ContactOverlapOut(Output):
    visit_id: str = Field(description="The traced subject's visit")
    contact_visit_id: str
    contact_door_id: str
    contact_check_in: Time
    contact_check_out: Time
    start: Time
    end: Time
    seconds: int


class ContactOut(Output):
    subject: str
    overlap_seconds: int = Field(description="Total time at the facility together.")
    overlaps: list[ContactOverlapOut]


class TraceOut(Output):
    # "from" is a Python keyword: the field is from_, written as "from".
    model_config = ConfigDict(extra="ignore", serialize_by_alias=True)

    subject: str
    facility_id: str
    name: str
    from_: Time = Field(alias="from")
    to: Time
    contact_count: int
    visits: list[VisitOut] = Field(description="The subject's visits, oldest first.")
    contacts: list[ContactOut] = Field(description="Longest total overlap first.")


@api.route(
    "POST",
    "/sync",
    summary="Sync with the registry now",
    tag="registry",
    role="admin",
    response=SyncOut,
    errors=(409, 503),
    description="Reads the doors' signed lists and the status feed now (as the schedule does "
    "every sync_interval_s) and publishes changed lists to the doors; visits the registry "
    "refused (parked, or a facility whose pushes it stopped) are tried again, for after "
    "their cause was mended. 409 when no http registry is configured, 503 when it cannot "
    "be reached.",
)
async def sync_now(call: CallDep) -> dict[str, Any]:
    link = call.hub.registry
    if link is None:
        # A setting, not an outage: retrying cannot help, so not a 503.
        raise ApiError(409, "no_registry", "No http registry is configured: nothing to sync.")
    result = await link.sync.sync_now()
    await link.outbox.retry()
    if not result.ok:
        raise ApiError(503, "registry_unavailable", f"The sync failed: {result.error}")
    return result.as_dict()


@api.route(
    "GET",
    "/sync",
    summary="Where the sync with the registry stands",
    tag="registry",
    role="admin",
    response=SyncStateOut,
    description="The feed cursor, the trust list's ETag, when the registry last "
    "confirmed the lists, the visits outbox and the visits it refused.",
)
async def sync_state(call: CallDep) -> dict[str, Any]:
    store = call.hub.store
    state = await asyncio.to_thread(store.sync_state)
    counts = await asyncio.to_thread(store.outbox_counts)
    failed = await asyncio.to_thread(store.failed_visits, None, 20)
    link = call.hub.registry
    last = link.sync.last if link is not None else None
    return {
        "registry": link is not None,
        "cursor": state.cursor,
        "statuses": state.statuses,
        "statuses_checked_at": _time(state.statuses_checked_at),
        "trust_etag": state.trust.etag if state.trust else None,
        "trust_checked_at": _time(state.trust.checked_at if state.trust else None),
        "last": last.as_dict() if last is not None else None,
        "outbox": {s: counts.get(s) for s in ("pending", "sent", "failed")},
        "failed_visits": [
            {
                "visit_id": v.visit_id,
                "facility_id": v.facility_id,
                "door_id": v.door_id,
                "check_in": rfc3339(v.check_in),
                "check_out": rfc3339(v.check_out),
                "reason": v.reason,
            }
            for v in failed
        ],
    }


@api.route(
    "GET",
    "/facilities/{facility_id}/tracing",
    summary="Where a subject was in the facility, and who was there at the same time",
    tag="registry",
    role="admin",
    response=TraceOut,
    description="Two visits overlap when each began before the other ended. "
    "Contacts are ordered by total overlap, longest first. Only this hub's visits "
    "of this facility are searched; the registry answers across facilities. "
    "Audited with your name.",
    extra={"responses": {"200": {"content": {"text/csv": {"schema": {"type": "string"}}}}}},
)
async def facility_tracing(
    call: CallDep,
    facility_id: FacilityId,
    subject: Annotated[str, Query(pattern=SUBJECT, description="The subject id (24 hex digits).")],
    from_: Annotated[
        TimeQuery,
        Query(
            alias="from", description="Start (default: the tracing window, [retention] days, ago)."
        ),
    ] = None,
    to: Annotated[TimeQuery, Query(description="End (default: now).")] = None,
    format: Annotated[
        Literal["json", "csv"], Query(description="json (default) or csv: one row per overlap.")
    ] = "json",
) -> Any:
    now = utcnow()
    end = to or now
    start = from_ or end - timedelta(days=call.hub.config.retention.days)
    if end <= start:
        raise Refused(400, "bad_request", [{"field": "query.to", "message": "must be after from"}])
    facility = call.hub.settings(facility_id)
    result = await asyncio.to_thread(
        trace, call.hub.store, facility.id, facility.name, subject, start, end
    )
    await asyncio.to_thread(
        call.hub.store.audit,
        call.user,
        "tracing.query",
        facility_id=facility.id,
        target=subject,
        detail=f"{len(result.visits)} visits, {len(result.contacts)} contacts",
    )
    if format == "csv":
        name = f"trace-{facility.id}-{result.subject}.csv"
        return Response(
            result.to_csv(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return result.to_json()


def _time(value: Any) -> str | None:
    return rfc3339(value) if value is not None else None
