"""The pages anyone may open: the front page, a facility's registration and its state,
activation from the link an operator sends, logging in and out, and the language menu."""

from __future__ import annotations

import logging

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from registry.auth import MIN_PASSWORD_LENGTH
from registry.console.session import (
    Page,
    csrf_checked,
    expired_form,
    field,
    page_of,
)
from registry.errors import (
    Conflict,
    Forbidden,
    Gone,
    InvalidInput,
    LoginThrottled,
    NotFound,
    RegistryError,
    Unauthenticated,
)
from registry.models import FacilityRequestIn
from registry.records import FACILITY_TYPES, Facility, FacilityState
from runtime import web
from runtime.i18n import Language

logger = logging.getLogger(__name__)

REQUEST_FIELDS = ("name", "type", "address", "capacity", "pic_name", "pic_email")


def type_names(lang: Language) -> dict[str, str]:
    """Each facility type's name in ``lang``, in the order of the form's menu."""
    _ = lang.gettext
    names = {
        "office": _("Office"),
        "mall": _("Shopping mall"),
        "market": _("Market"),
        "shop": _("Shop"),
        "restaurant": _("Restaurant or café"),
        "clinic": _("Clinic"),
        "hospital": _("Hospital"),
        "school": _("School or campus"),
        "government": _("Government office"),
        "worship": _("Place of worship"),
        "transport": _("Station or terminal"),
        "sports": _("Sports venue"),
        "tourism": _("Tourist attraction"),
        "other": _("Other"),
    }
    return {t: names[t] for t in FACILITY_TYPES}


def state_names(lang: Language) -> dict[str, str]:
    _ = lang.gettext
    return {
        "requested": _("Waiting for verification"),
        "verified": _("Verified: waiting for activation"),
        "active": _("Active"),
        "rejected": _("Rejected"),
    }


def _request_problems(lang: Language, err: ValidationError) -> dict[str, str]:
    """Each bad field of the registration form, with what to enter instead."""
    _ = lang.gettext
    texts = {
        "name": _("Enter the facility's name (at most 200 characters)."),
        "type": _("Choose the kind of facility."),
        "address": _("Enter the facility's address (at most 500 characters)."),
        "capacity": _("Enter how many visitors may be inside at once: a whole number from 1."),
        "pic_name": _("Enter the name of the person in charge (at most 200 characters)."),
        "pic_email": _("Enter an e-mail address such as name@example.com."),
    }
    found: dict[str, str] = {}
    for item in err.errors():
        name = str(item["loc"][0]) if item["loc"] else ""
        if name in texts:
            found.setdefault(name, texts[name])
    return found or {"name": texts["name"]}


async def home(request: Request) -> Response:
    page = await page_of(request)
    return page.render("home.html", {})


def _register_form(
    page: Page, values: dict[str, str], problems: dict[str, str], status: int = 200
) -> Response:
    return page.render(
        "register.html",
        {
            "values": values,
            "problems": problems,
            "types": type_names(page.lang),
        },
        status,
    )


async def register_page(request: Request) -> Response:
    page = await page_of(request)
    return _register_form(page, {}, {})


async def register_submit(request: Request) -> Response:
    page = await page_of(request)
    if not await csrf_checked(request):
        return expired_form(page)
    form = await request.form()
    values = {name: field(form, name).strip() for name in REQUEST_FIELDS}
    try:
        body = FacilityRequestIn.model_validate(values)
    except ValidationError as err:
        logger.info("registration refused: %s", ", ".join(_request_problems(page.lang, err)))
        return _register_form(page, values, _request_problems(page.lang, err), 422)
    try:
        facility: Facility = await page.run(page.registry.request_facility, body)
    except RegistryError as err:
        return _register_form(page, values, {"form": page.error_text(err)}, 503)
    return RedirectResponse(f"/requests/{facility.id}?new=1", status_code=303)


async def request_state(request: Request) -> Response:
    page = await page_of(request)
    facility_id = str(request.path_params["facility_id"])[:100]
    found: Facility | None = await page.run(page.registry.store.get_facility, facility_id)
    if found is None:
        return page.render("missing.html", {}, 404)
    expired = (
        found.state is FacilityState.VERIFIED
        and found.activation_expires_at is not None
        and page.registry.now() >= found.activation_expires_at
    )
    return page.render(
        "request.html",
        {
            "facility_id": found.id,
            "state": found.state.value,
            "state_name": state_names(page.lang)[found.state.value],
            "reason": found.reason,
            "expired": expired,
            "new": request.query_params.get("new") == "1",
        },
    )


def _activation_form(
    page: Page, facility_id: str, token: str, error: str | None, status: int = 200
) -> Response:
    return page.render(
        "activate.html",
        {
            "facility_id": facility_id,
            "token": token,
            "error": error,
            "min_length": MIN_PASSWORD_LENGTH,
        },
        status,
    )


async def activate_page(request: Request) -> Response:
    page = await page_of(request)
    facility_id = str(request.path_params["facility_id"])[:100]
    token = request.query_params.get("token", "")[:200]
    return _activation_form(page, facility_id, token, None)


async def activate_submit(request: Request) -> Response:
    page = await page_of(request)
    facility_id = str(request.path_params["facility_id"])[:100]
    if not await csrf_checked(request):
        return expired_form(page)
    form = await request.form()
    token = field(form, "token", 200)
    password = field(form, "password")
    again = field(form, "password_again")
    _ = page.lang.gettext
    if password != again:
        return _activation_form(page, facility_id, token, _("The two passwords differ."), 422)
    if len(password) < MIN_PASSWORD_LENGTH:
        text = _("The password needs at least %(n)s characters.") % {"n": MIN_PASSWORD_LENGTH}
        return _activation_form(page, facility_id, token, text, 422)
    try:
        done = await page.run(page.registry.activate_facility, facility_id, token or "-", password)
    except Forbidden:
        text = _("This activation link is not valid. Use the newest link an operator sent.")
        return _activation_form(page, facility_id, token, text, 403)
    except Gone:
        text = _("This activation link has expired. Ask an operator for a new one.")
        return _activation_form(page, facility_id, token, text, 410)
    except Conflict as err:
        if err.state == FacilityState.VERIFIED.value:
            text = _("An account with this e-mail exists: enter its password.")
        else:
            text = page.state_text(err.state)
        return _activation_form(page, facility_id, token, text, 409)
    except InvalidInput:
        text = _("The password needs at least %(n)s characters.") % {"n": MIN_PASSWORD_LENGTH}
        return _activation_form(page, facility_id, token, text, 422)
    except NotFound:
        return page.render("missing.html", {}, 404)
    except RegistryError as err:
        return _activation_form(page, facility_id, token, page.error_text(err), 503)
    return page.render(
        "activated.html",
        {"facility": done.facility, "username": done.username, "hub_token": done.hub_token},
    )


def _login_form(
    page: Page, username: str, error: str | None, status: int = 200, target: str = "/console"
) -> Response:
    return page.render("login.html", {"username": username, "error": error, "next": target}, status)


async def login_page(request: Request) -> Response:
    page = await page_of(request)
    target = web.local_path(request.query_params.get("next", "/console"))
    if page.principal is not None:
        return RedirectResponse(target, status_code=303)
    return _login_form(page, "", None, target=target)


async def login_submit(request: Request) -> Response:
    page = await page_of(request)
    form = await request.form()
    username = field(form, "username", 254).strip()
    password = field(form, "password")
    target = web.local_path(field(form, "next", 300) or "/console")
    if not target.startswith("/console"):
        target = "/console"
    _ = page.lang.gettext
    if not web.csrf_ok(request, field(form, web.CSRF_FIELD)):
        return _login_form(
            page, username, _("The form had expired. Please log in again."), 403, target
        )
    try:
        session = await page.run(
            page.registry.login, username, password, request.client.host if request.client else None
        )
    except LoginThrottled as err:
        wait = max(1, int(err.retry_after_s + 0.999))
        text = page.lang.ngettext(
            "Too many failed attempts. Try again in %(n)s second.",
            "Too many failed attempts. Try again in %(n)s seconds.",
            wait,
        ) % {"n": page.lang.number(wait)}
        response = _login_form(page, username, text, 429, target)
        response.headers["Retry-After"] = str(wait)
        return response
    except Unauthenticated:
        return _login_form(page, username, _("Wrong user name or password."), 401, target)
    except RegistryError as err:
        return _login_form(page, username, page.error_text(err), 503, target)
    # A fresh session at login: a CSRF token planted before it is worthless.
    request.session.clear()
    request.session["token"] = session.token
    web.csrf_token(request)
    return RedirectResponse(target, status_code=303)


async def logout_submit(request: Request) -> Response:
    page = await page_of(request)
    if not await csrf_checked(request):
        return expired_form(page)
    if page.principal is not None:
        await page.run(page.registry.logout, page.principal)
    request.session.clear()
    return RedirectResponse("/console/login", status_code=303)


async def choose_language(request: Request) -> Response:
    """``GET /language?lang=en&next=/register``: remember the choice, go back."""
    response, _language = web.chosen_language(request)
    return response


async def not_found(request: Request, status: int = 404) -> Response:
    page = await page_of(request)
    return page.render("missing.html", {}, status)
