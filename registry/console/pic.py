"""The PIC's console: a facility's doors, their posters, its hub token, visits and sync.

A PIC sees and changes only their own facilities, an operator any: the registry's service
checks which facility a caller may touch, as it does for the API.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Literal

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from registry.console.operator import hub_facts
from registry.console.public import state_names, type_names
from registry.console.session import Page, field, logged_in
from registry.errors import AlreadyExists, Forbidden, NotFound, RegistryError
from registry.models import DoorIn
from registry.records import Door, FacilityState
from registry.service import HubState

logger = logging.getLogger(__name__)

DOOR_FIELDS = ("door_id", "name", "direction", "kind")


def _door_problems(page: Page, err: ValidationError) -> dict[str, str]:
    _ = page.lang.gettext
    texts = {
        "door_id": _(
            "Give the door a short id: letters, digits, dots, dashes or underscores, "
            "starting with a letter or digit (at most 64)."
        ),
        "name": _("Give the door a name (at most 100 characters)."),
        "direction": _("Choose whether visitors enter, leave, or both."),
        "kind": _("Choose how visitors check in at this door."),
    }
    found: dict[str, str] = {}
    for item in err.errors():
        name = str(item["loc"][0]) if item["loc"] else ""
        found.setdefault(name, texts.get(name, texts["name"]))
    return found


@logged_in("operator", "pic")
async def facilities_page(page: Page) -> Response:
    caller = page.caller
    if caller.kind == "operator":
        found = await page.run(page.registry.store.list_facilities, FacilityState.ACTIVE)
    else:
        found = await page.run(page.registry.store.list_facilities, None, caller.name)
    return page.render("facilities.html", {"facilities": found, "states": state_names(page.lang)})


async def _facility_page(
    page: Page,
    *,
    status: int = 200,
    error: str | None = None,
    problems: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    notice: str | None = None,
    hub_token: str | None = None,
) -> Response:
    facility_id = str(page.request.path_params["facility_id"])[:100]
    registry = page.registry
    try:
        hub: HubState = await page.run(registry.hub_state, page.caller, facility_id)
        doors: list[Door] = await page.run(registry.doors, page.caller, facility_id)
    except (Forbidden, NotFound):
        return page.render("missing.html", {}, 404)
    return page.render(
        "facility.html",
        {
            "facility": hub.facility,
            "hub": hub,
            "doors": doors,
            "types": type_names(page.lang),
            "states": state_names(page.lang),
            "active": hub.facility.state is FacilityState.ACTIVE,
            "facts": hub_facts(page, hub),
            "error": error,
            "problems": problems or {},
            "values": values or {"direction": "entrance", "kind": "camera"},
            "notice": notice,
            "hub_token": hub_token,
        },
        status,
    )


@logged_in("operator", "pic")
async def facility_page(page: Page) -> Response:
    return await _facility_page(page)


def _failure(page: Page, err: RegistryError) -> int:
    if isinstance(err, Forbidden | NotFound):
        return 404
    return 409


@logged_in("operator", "pic")
async def add_door(page: Page) -> Response:
    facility_id = str(page.request.path_params["facility_id"])[:100]
    form = await page.request.form()
    values = {name: field(form, name, 200).strip() for name in DOOR_FIELDS}
    try:
        door = DoorIn.model_validate(values)
    except ValidationError as err:
        problems = _door_problems(page, err)
        return await _facility_page(page, status=422, problems=problems, values=values)
    try:
        added: Door = await page.run(page.registry.add_door, page.caller, facility_id, door)
    except AlreadyExists:
        text = page._("This facility has a door with that id already. Choose another id.")
        return await _facility_page(page, status=409, problems={"door_id": text}, values=values)
    except RegistryError as err:
        return await _facility_page(
            page, status=_failure(page, err), error=page.error_text(err), values=values
        )
    notice = page._("Door %(name)s is added.") % {"name": added.name}
    return await _facility_page(page, notice=notice)


@logged_in("operator", "pic")
async def rename_door(page: Page) -> Response:
    facility_id = str(page.request.path_params["facility_id"])[:100]
    door_id = str(page.request.path_params["door_id"])[:100]
    form = await page.request.form()
    name = " ".join(field(form, "name", 200).split())
    if not name or len(name) > 100:
        text = page._("Give the door a name (at most 100 characters).")
        return await _facility_page(page, status=422, error=text)
    try:
        door: Door = await page.run(
            page.registry.rename_door, page.caller, facility_id, door_id, name
        )
    except RegistryError as err:
        return await _facility_page(page, status=_failure(page, err), error=page.error_text(err))
    notice = page._("The door is now called %(name)s.") % {"name": door.name}
    return await _facility_page(page, notice=notice)


@logged_in("operator", "pic")
async def hub_token(page: Page) -> Response:
    facility_id = str(page.request.path_params["facility_id"])[:100]
    try:
        token, _replaced = await page.run(page.registry.issue_hub_token, page.caller, facility_id)
    except RegistryError as err:
        return await _facility_page(page, status=_failure(page, err), error=page.error_text(err))
    return await _facility_page(page, hub_token=token)


async def _poster(page: Page, kind: Literal["png", "pdf"]) -> Response:
    facility_id = str(page.request.path_params["facility_id"])[:100]
    door_id = str(page.request.path_params["door_id"])[:100]
    try:
        data = await page.run(page.registry.poster, page.caller, facility_id, door_id, kind)
    except RegistryError as err:
        return await _facility_page(page, status=_failure(page, err), error=page.error_text(err))
    media = "application/pdf" if kind == "pdf" else "image/png"
    name = f"poster-{facility_id}-{door_id}.{kind}"
    return Response(
        data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


@logged_in("operator", "pic")
async def poster_png(page: Page) -> Response:
    return await _poster(page, "png")


@logged_in("operator", "pic")
async def poster_pdf(page: Page) -> Response:
    return await _poster(page, "pdf")


_BASE = "/console/facilities/{facility_id}"
PAGES: list[tuple[str, Callable[[Request], Awaitable[Response]], str]] = [
    ("/console/facilities", facilities_page, "GET"),
    (_BASE, facility_page, "GET"),
    (_BASE + "/doors", add_door, "POST"),
    (_BASE + "/doors/{door_id}/rename", rename_door, "POST"),
    (_BASE + "/doors/{door_id}/poster.png", poster_png, "GET"),
    (_BASE + "/doors/{door_id}/poster.pdf", poster_pdf, "GET"),
    (_BASE + "/hub-token", hub_token, "POST"),
]
