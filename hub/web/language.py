"""Which language a page speaks, and the person's own choice of it.

A choice made from the language menu is kept in a cookie for a year and, for someone
logged in, on their staff account, so it follows them to any browser they log in on;
without one the browser's ``Accept-Language`` decides, and without that the facility's
default.
"""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from hub.web.context import context_of
from runtime.i18n import LANGUAGES, NATIVE_NAMES, Language, js_catalog, negotiate, parse_language

logger = logging.getLogger(__name__)

COOKIE = "pintu_lang"
_YEAR_S = 365 * 24 * 3600


def facility_default(request: Request, facility_id: str | None = None) -> str:
    """The default language of ``facility_id``, or of the hub's first facility."""
    facilities = context_of(request).config.facilities
    for facility in facilities:
        if facility.id == facility_id:
            return facility.language
    return facilities[0].language if facilities else "id"


def language_of(request: Request, facility_id: str | None = None) -> Language:
    code = negotiate(
        request.cookies.get(COOKIE),
        request.headers.get("accept-language"),
        facility_default(request, facility_id),
    )
    return Language(code)


def page_context(request: Request, lang: Language) -> dict[str, object]:
    """What every template needs to speak ``lang``."""
    return {
        "lang": lang,
        "_": lang.gettext,
        "gettext": lang.gettext,
        "ngettext": lang.ngettext,
        "languages": [(code, NATIVE_NAMES[code]) for code in LANGUAGES],
        "here": request.url.path,
    }


def catalog_json(lang: Language) -> str:
    """The script's messages, safe inside a ``<script type="application/json">``."""
    return json.dumps({"locale": lang.tag, "messages": js_catalog(lang.code)}).replace(
        "<", "\\u003c"
    )


def _local_path(value: str | None) -> str:
    """``value`` if it is a path on this site, else ``/``: the menu never redirects away."""
    if not value or len(value) > 300 or not value.startswith("/") or value.startswith("//"):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or "\\" in value:
        return "/"
    return value


async def choose(request: Request) -> Response:
    """``GET /language?lang=id&next=/facilities/x``: remember the choice, go back."""
    language = parse_language(request.query_params.get("lang"))
    target = _local_path(request.query_params.get("next"))
    response = RedirectResponse(target, status_code=303)
    if language is None:
        logger.info("language menu: refused %r", request.query_params.get("lang", "")[:40])
        return response
    remember(response, language)
    ctx = context_of(request)
    staff = await ctx.accounts.current(request)
    if staff is not None:
        await asyncio.to_thread(ctx.hub.store.update_user, staff.username, language=language)
    return response


def remember(response: Response, language: str) -> None:
    """Keep ``language`` in the browser's cookie."""
    response.set_cookie(COOKIE, language, max_age=_YEAR_S, samesite="lax", httponly=True, path="/")


async def after_login(request: Request, response: Response, username: str) -> None:
    """Give the browser the language the account chose, if it chose one."""
    user = await asyncio.to_thread(context_of(request).hub.store.get_user, username)
    if user is not None and user.language is not None:
        remember(response, user.language)
