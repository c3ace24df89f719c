"""The HTML pages: log in, log out, and a facility's dashboard.

Pages are rendered on the server with what they need to show at once; the dashboard's
script then keeps them current from the event stream and the API. The login and logout
forms carry the session's CSRF token like every other write.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from hub.auth import (
    CSRF_FIELD,
    MAX_PASSWORD_LENGTH,
    LoginRefused,
    LoginThrottled,
    csrf_ok,
    csrf_token,
)
from hub.errors import NotFound
from hub.web.context import context_of

_MAX_FIELD = 200


def _field(form: FormData, name: str, limit: int = _MAX_FIELD) -> str:
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


def _render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    templates = request.app.state.templates
    response: Response = templates.TemplateResponse(
        request, name, {"static_version": request.app.state.static_version, **context}, status
    )
    return response


async def home(request: Request) -> Response:
    ctx = context_of(request)
    staff = await ctx.accounts.current(request)
    if staff is None:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse(f"/facilities/{ctx.config.facilities[0].id}", status_code=303)


async def login_page(request: Request) -> Response:
    ctx = context_of(request)
    if await ctx.accounts.current(request) is not None:
        return RedirectResponse("/", status_code=303)
    return _render(request, "login.html", {"csrf_token": csrf_token(request), "error": None})


async def login_submit(request: Request) -> Response:
    ctx = context_of(request)
    form = await request.form()
    try:
        username = _field(form, "username")
        password = _field(form, "password", MAX_PASSWORD_LENGTH + 1)
        if not csrf_ok(request, _field(form, CSRF_FIELD)):
            return _render(
                request,
                "login.html",
                {
                    "csrf_token": csrf_token(request),
                    "error": "The form had expired. Please log in again.",
                    "username": username,
                },
                403,
            )
        try:
            await ctx.accounts.login(request, username, password)
        except LoginThrottled as err:
            wait = max(1, int(err.retry_after_s + 0.999))
            response = _render(
                request,
                "login.html",
                {
                    "csrf_token": csrf_token(request),
                    "error": f"Too many failed attempts. Try again in {wait} seconds.",
                    "username": username,
                },
                429,
            )
            response.headers["Retry-After"] = str(wait)
            return response
        except LoginRefused:
            return _render(
                request,
                "login.html",
                {
                    "csrf_token": csrf_token(request),
                    "error": "Wrong user name or password.",
                    "username": username,
                },
                401,
            )
    finally:
        await form.close()
    return RedirectResponse("/", status_code=303)


async def logout_submit(request: Request) -> Response:
    ctx = context_of(request)
    form = await request.form()
    try:
        token = _field(form, CSRF_FIELD)
    finally:
        await form.close()
    if not csrf_ok(request, token):
        return _render(
            request,
            "login.html",
            {"csrf_token": csrf_token(request), "error": "The form had expired; log out again."},
            403,
        )
    await ctx.accounts.logout(request)
    return RedirectResponse("/login", status_code=303)


async def dashboard(request: Request) -> Response:
    ctx = context_of(request)
    staff = await ctx.accounts.current(request)
    if staff is None:
        return RedirectResponse("/login", status_code=303)
    facility_id = str(request.path_params["facility_id"])
    try:
        facility = ctx.hub.settings(facility_id)
    except NotFound:
        return _render(
            request, "missing.html", {"staff": staff, "what": f"facility {facility_id}"}, 404
        )
    occupancy = await ctx.hub.occupancy(facility_id)
    boot = {
        "facility": {"id": facility.id, "name": facility.name, "timezone": facility.timezone},
        "occupancy": occupancy.as_dict(),
        "doors": [d.model_dump() for d in facility.doors],
        "zones": [{"id": z.id, "name": z.name} for z in facility.zones],
        "soft_threshold_percent": facility.soft_threshold_percent,
        "user": staff.username,
        "role": staff.role,
        "may": {
            "ack": staff.may("guard"),
            "desk": staff.may("guard"),
            "capacity": staff.may("admin"),
        },
    }
    return _render(
        request,
        "dashboard.html",
        {
            "staff": staff,
            "facility": facility,
            "facilities": ctx.config.facilities,
            "occupancy": occupancy,
            "csrf_token": staff.csrf,
            # Handed to the script as data, not code: it cannot break out of the element.
            "boot_json": json.dumps(boot).replace("<", "\\u003c"),
            "entrances": [d for d in facility.doors if d.direction != "exit"],
            "registry": ctx.desk.registry is not None,
        },
    )
