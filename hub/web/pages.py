"""The HTML pages: log in, log out, a facility's dashboard and its counts as CSV.

Pages are rendered on the server with what they need to show at once; the dashboard's
script then keeps them current from the event stream and the API. The login and logout
forms carry the session's CSRF token like every other write. Every page speaks the
language ``hub.web.language`` picks for the request.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
from datetime import date, datetime, time, timedelta
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

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
from hub.web.language import after_login, catalog_json, language_of
from protocol.events import utcnow
from runtime.i18n import Language
from runtime.web import form_field, render

logger = logging.getLogger(__name__)


def _field(form: FormData, name: str, limit: int = 200) -> str:
    return form_field(form, name, limit)


def _render(
    request: Request,
    name: str,
    context: dict[str, Any],
    status: int = 200,
    lang: Language | None = None,
) -> Response:
    return render(request, name, context, lang or language_of(request), status)


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
                    "error": language_of(request).gettext(
                        "The form had expired. Please log in again."
                    ),
                    "username": username,
                },
                403,
            )
        try:
            await ctx.accounts.login(request, username, password)
        except LoginThrottled as err:
            wait = max(1, int(err.retry_after_s + 0.999))
            lang = language_of(request)
            response = _render(
                request,
                "login.html",
                {
                    "csrf_token": csrf_token(request),
                    "error": lang.ngettext(
                        "Too many failed attempts. Try again in %(n)s second.",
                        "Too many failed attempts. Try again in %(n)s seconds.",
                        wait,
                    )
                    % {"n": lang.number(wait)},
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
                    "error": language_of(request).gettext("Wrong user name or password."),
                    "username": username,
                },
                401,
            )
    finally:
        await form.close()
    response = RedirectResponse("/", status_code=303)
    await after_login(request, response, username)
    return response


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
            {
                "csrf_token": csrf_token(request),
                "error": language_of(request).gettext("The form had expired; log out again."),
            },
            403,
        )
    await ctx.accounts.logout(request)
    return RedirectResponse("/login", status_code=303)


def not_found(request: Request, status: int = 404) -> Response:
    """The page for an address the hub has no page at (or a method it does not take)."""
    return _render(request, "missing.html", {"what": None}, status)


def _role_name(lang: Language, role: str) -> str:
    names = {
        "viewer": lang.gettext("Viewer"),
        "guard": lang.gettext("Guard"),
        "admin": lang.gettext("Admin"),
    }
    return names.get(role, role)


async def dashboard(request: Request) -> Response:
    ctx = context_of(request)
    staff = await ctx.accounts.current(request)
    if staff is None:
        return RedirectResponse("/login", status_code=303)
    facility_id = str(request.path_params["facility_id"])
    lang = language_of(request, facility_id)
    try:
        facility = ctx.hub.settings(facility_id)
    except NotFound:
        return _render(
            request, "missing.html", {"staff": staff, "what": facility_id[:64]}, 404, lang
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
            "history": staff.may("admin"),
        },
    }
    # A guard works the desk: it comes first, with the doors beside it.
    layout = "guard" if staff.role == "guard" else "overview"
    return _render(
        request,
        "dashboard.html",
        {
            "staff": staff,
            "role_name": _role_name(lang, staff.role),
            "layout": layout,
            "facility": facility,
            "facilities": ctx.config.facilities,
            "occupancy": occupancy,
            "csrf_token": staff.csrf,
            # Handed to the script as data, not code: it cannot break out of the element.
            "boot_json": json.dumps(boot).replace("<", "\\u003c"),
            "catalog_json": catalog_json(lang),
            "entrances": [d for d in facility.doors if d.direction != "exit"],
            "registry": ctx.desk.registry is not None,
            "today": utcnow().astimezone(facility.tz).date().isoformat(),
        },
        lang=lang,
    )


def _parse_day(text: str | None, today: date) -> date | None:
    """A day as ``YYYY-MM-DD``, not after today and at most a year back; else None."""
    if text is None or len(text) != 10:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return None
    if day > today or day < today - timedelta(days=366):
        return None
    return day


async def counts_csv(request: Request) -> Response:
    """``GET /facilities/{id}/counts.csv?day=YYYY-MM-DD`` (admins): each hour of a local
    day with the people inside at its end and the most inside during it."""
    ctx = context_of(request)
    staff = await ctx.accounts.current(request)
    if staff is None:
        return RedirectResponse("/login", status_code=303)
    facility_id = str(request.path_params["facility_id"])
    lang = language_of(request, facility_id)
    if not staff.may("admin"):
        logger.info("counts export refused to %s (%s)", staff.username, staff.role)
        return PlainTextResponse(lang.gettext("Only an admin may export the counts."), 403)
    try:
        facility = ctx.hub.settings(facility_id)
    except NotFound:
        return PlainTextResponse(lang.gettext("There is no such facility."), 404)
    now = utcnow()
    day = _parse_day(request.query_params.get("day"), now.astimezone(facility.tz).date())
    if day is None:
        logger.info("counts export: bad day %r", request.query_params.get("day", "")[:40])
        return PlainTextResponse(
            lang.gettext("Choose a day as YYYY-MM-DD, today or up to a year back."), 400
        )
    since = datetime.combine(day, time(0), facility.tz)
    until = min(since + timedelta(days=1), now)
    store = ctx.hub.store
    samples = await asyncio.to_thread(store.history, facility_id, since, until)
    before = await asyncio.to_thread(store.history, facility_id, since - timedelta(days=1), since)
    inside = before[-1].occupancy if before else 0
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(
        [lang.gettext("Hour"), lang.gettext("Inside at the end"), lang.gettext("Most inside")]
    )
    index = 0
    hour = since
    while hour < until:
        end = hour + timedelta(hours=1)
        peak = inside
        while index < len(samples) and samples[index].minute < end:
            peak = max(peak, samples[index].peak, samples[index].occupancy)
            inside = samples[index].occupancy
            index += 1
        writer.writerow([hour.astimezone(facility.tz).strftime("%Y-%m-%d %H:%M"), inside, peak])
        hour = end
    name = f"pintu-{facility_id}-{day.isoformat()}.csv"
    return Response(
        out.getvalue().encode("utf-8-sig"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
