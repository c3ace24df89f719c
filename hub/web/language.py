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

from starlette.requests import Request
from starlette.responses import Response

from hub.web.context import context_of
from runtime import web
from runtime.i18n import Language, js_catalog
from runtime.web import page_context as page_context

logger = logging.getLogger(__name__)

COOKIE = web.LANGUAGE_COOKIE


def facility_default(request: Request, facility_id: str | None = None) -> str:
    """The default language of ``facility_id``, or of the hub's first facility."""
    facilities = context_of(request).config.facilities
    for facility in facilities:
        if facility.id == facility_id:
            return facility.language
    return facilities[0].language if facilities else "id"


def language_of(request: Request, facility_id: str | None = None) -> Language:
    return web.language_of(request, facility_default(request, facility_id))


def catalog_json(lang: Language) -> str:
    """The script's messages, safe inside a ``<script type="application/json">``."""
    return json.dumps({"locale": lang.tag, "messages": js_catalog(lang.code)}).replace(
        "<", "\\u003c"
    )


async def choose(request: Request) -> Response:
    """``GET /language?lang=id&next=/facilities/x``: remember the choice, go back."""
    response, language = web.chosen_language(request)
    if language is None:
        return response
    ctx = context_of(request)
    staff = await ctx.accounts.current(request)
    if staff is not None:
        await asyncio.to_thread(ctx.hub.store.update_user, staff.username, language=language)
    return response


async def after_login(request: Request, response: Response, username: str) -> None:
    """Give the browser the language the account chose, if it chose one."""
    user = await asyncio.to_thread(context_of(request).hub.store.get_user, username)
    if user is not None and user.language is not None:
        web.remember_language(response, user.language)
