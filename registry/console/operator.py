"""The operators' console: facility requests to verify or reject.

Every handler is for operators only (``logged_in("operator")``), and every write carries
the session's CSRF token; the registry's service does the rest, as for the API.
"""

from __future__ import annotations

import logging

from starlette.responses import RedirectResponse, Response

from registry.console.persons import ago, when
from registry.console.public import state_names, type_names
from registry.console.session import Page, field, logged_in
from registry.errors import NotFound, RegistryError
from registry.records import Facility, FacilityState
from registry.service import HubState

logger = logging.getLogger(__name__)

MAX_REASON = 500


@logged_in("operator", "pic")
async def console_home(page: Page) -> Response:
    """``/console``: an operator's requests, a PIC's facilities."""
    if page.caller.kind == "pic":
        return RedirectResponse("/console/facilities", status_code=303)
    return RedirectResponse("/console/requests", status_code=303)


def _requests_page(
    page: Page,
    *,
    status: int = 200,
    error: str | None = None,
    problem_id: str | None = None,
    verified: tuple[Facility, str] | None = None,
    rejected: str | None = None,
) -> Response:
    store = page.registry.store
    pending = store.list_facilities(FacilityState.REQUESTED)
    waiting = store.list_facilities(FacilityState.VERIFIED)
    link = None
    if verified is not None:
        base = str(page.request.base_url).rstrip("/")
        link = f"{base}/activate/{verified[0].id}?token={verified[1]}"
    return page.render(
        "requests.html",
        {
            "pending": pending,
            "waiting": waiting,
            "types": type_names(page.lang),
            "states": state_names(page.lang),
            "error": error,
            "problem_id": problem_id,
            "verified": verified[0] if verified else None,
            "activation_link": link,
            "rejected": rejected,
        },
        status,
    )


@logged_in("operator")
async def requests_page(page: Page) -> Response:
    return await page.run(_requests_page, page)


@logged_in("operator")
async def verify_submit(page: Page) -> Response:
    facility_id = str(page.request.path_params["facility_id"])[:100]
    try:
        done = await page.run(page.registry.verify_facility, facility_id, page.caller)
    except NotFound:
        return await page.run(
            _requests_page, page, status=404, error=page.error_text(NotFound(facility_id))
        )
    except RegistryError as err:
        return await page.run(
            _requests_page, page, status=409, error=page.error_text(err), problem_id=facility_id
        )
    return await page.run(_requests_page, page, verified=(done.facility, done.token))


@logged_in("operator")
async def reject_submit(page: Page) -> Response:
    facility_id = str(page.request.path_params["facility_id"])[:100]
    form = await page.request.form()
    reason = " ".join(field(form, "reason", MAX_REASON + 1).split())
    if not reason or len(reason) > MAX_REASON:
        text = page._("Give the reason for the rejection (at most 500 characters).")
        return await page.run(_requests_page, page, status=422, error=text, problem_id=facility_id)
    try:
        await page.run(page.registry.reject_facility, facility_id, reason, page.caller)
    except RegistryError as err:
        status = 404 if isinstance(err, NotFound) else 409
        return await page.run(
            _requests_page, page, status=status, error=page.error_text(err), problem_id=facility_id
        )
    return await page.run(_requests_page, page, rejected=facility_id)


AUDIT_ROWS = 200


@logged_in("operator")
async def audit_page(page: Page) -> Response:
    """The audit trail, newest first, filtered by who, what and a word of the target or
    detail (in the store); at most ``AUDIT_ROWS`` rows."""
    query = page.request.query_params
    wanted = {
        "actor": query.get("actor", "")[:100].strip(),
        "action": query.get("action", "")[:100].strip(),
        "text": query.get("text", "")[:100].strip(),
    }
    store = page.registry.store
    found = await page.run(
        store.audit_search, wanted["actor"], wanted["action"], wanted["text"], AUDIT_ROWS + 1
    )
    rows = [
        {"at": when(page, at), "actor": actor, "action": action, "target": target, "detail": d}
        for at, actor, action, target, d in found
    ]
    actions = await page.run(store.audit_actions)
    return page.render(
        "audit.html",
        {
            "rows": rows[:AUDIT_ROWS],
            "more": len(rows) > AUDIT_ROWS,
            "wanted": wanted,
            "actions": actions,
        },
    )


def hub_facts(page: Page, hub: HubState) -> dict[str, str | int | None]:
    """What a page says of a hub: its token, its last reads and pushes, its refusals."""
    seen = hub.activity
    return {
        "token_issued": when(page, hub.token_issued_at),
        "last_visit": when(page, hub.last_visit_at),
        "statuses_read": ago(page, seen.statuses_at),
        "trust_read": ago(page, seen.trust_at),
        "refused": seen.refused,
        "refused_at": when(page, seen.refused_at),
        "refused_reason": seen.refused_reason,
    }


@logged_in("operator")
async def hubs_page(page: Page) -> Response:
    hubs: list[HubState] = await page.run(page.registry.hubs)
    return page.render(
        "hubs.html",
        {
            "hubs": [
                {**hub_facts(page, h), "facility": h.facility, "visits": h.visits} for h in hubs
            ]
        },
    )
