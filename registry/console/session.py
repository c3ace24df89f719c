"""Who is logged in to the console, and what every page handler shares.

A console session is the registry's own login session (``Registry.login``): its bearer
token is kept in a signed, HttpOnly, SameSite=Strict cookie beside the session's CSRF
token, and the caller is read from the store on every request, so a logout or an expired
session ends at once. Every form that changes something carries the CSRF token; every
write checks the caller's kind before anything else.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, ParamSpec, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from registry.auth import Principal
from registry.errors import (
    AlreadyExists,
    Conflict,
    Forbidden,
    Gone,
    InvalidInput,
    LoginThrottled,
    NotFound,
    RegistryError,
    SigningKeyError,
    StoreError,
    Unauthenticated,
)
from registry.readlimit import ReadThrottled
from registry.service import Reader, Registry
from runtime import web
from runtime.i18n import DEFAULT_LANGUAGE, Language

logger = logging.getLogger(__name__)

SESSION_COOKIE = "pintu_registry_session"
P = ParamSpec("P")
T = TypeVar("T")
Kind = Literal["operator", "pic"]
# A form field is cut to this many characters: no field of the console needs more.
MAX_FIELD = 1024


def session_secret(registry: Registry) -> str:
    """The key the session cookie is signed with, derived from the registry's subject key.

    Every process of one registry shares that key already (it makes the subject ids), so
    a session made by one is good at another, with no further secret to keep.
    """
    label = b"pintu registry console session cookie"
    return hmac.new(registry.subject_key.secret, label, hashlib.sha256).hexdigest()


def registry_of(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def language_of(request: Request) -> Language:
    return web.language_of(request, DEFAULT_LANGUAGE)


def address_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def field(form: FormData, name: str, limit: int = MAX_FIELD) -> str:
    return web.form_field(form, name, limit)


@dataclass(frozen=True)
class Page:
    """One request to the console: the registry, the caller (if logged in), the language."""

    request: Request
    registry: Registry
    principal: Principal | None
    lang: Language

    @property
    def _(self) -> Callable[[str], str]:
        return self.lang.gettext

    @property
    def caller(self) -> Principal:
        if self.principal is None:  # only handlers behind ``logged_in`` ask
            raise RuntimeError("no caller on this request")
        return self.principal

    def reader(self, why: str) -> Reader:
        """The caller as a reader of personal data, with the purpose they gave."""
        return Reader(self.caller, address_of(self.request), why)

    def render(self, name: str, context: dict[str, Any], status: int = 200) -> Response:
        base = {
            "principal": self.principal,
            "csrf_token": web.csrf_token(self.request),
        }
        return web.render(self.request, name, {**base, **context}, self.lang, status)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """A registry call (synchronous: the store is) in a worker thread."""
        return await run_in_threadpool(fn, *args, **kwargs)

    def error_text(self, err: RegistryError) -> str:
        """What went wrong, in plain words of the person's language."""
        _ = self.lang.gettext
        if isinstance(err, Conflict):
            return self.state_text(err.state)
        if isinstance(err, ReadThrottled):
            return _("Too many look-ups in a minute. Wait a minute and try again.")
        if isinstance(err, LoginThrottled):
            return _("Too many failed attempts. Wait a few minutes and try again.")
        if isinstance(err, Unauthenticated):
            return _("Your session has ended. Please log in again.")
        if isinstance(err, Forbidden):
            return _("You may not do this.")
        if isinstance(err, AlreadyExists):
            return _("That is taken already. Choose another.")
        if isinstance(err, NotFound):
            return _("It was not found. It may have been removed, or the address is wrong.")
        if isinstance(err, Gone):
            return _("This link has expired. Ask an operator for a new one.")
        if isinstance(err, InvalidInput):
            return _("Some of what was entered is not right. Check it and try again.")
        if isinstance(err, SigningKeyError):
            return _("The registry's signing keys are not available. Tell the administrator.")
        if isinstance(err, StoreError):
            return _("The registry's database does not answer. Try again in a moment.")
        return _("Something went wrong; it is logged.")

    def state_text(self, state: str | None) -> str:
        """Why an action does not fit the facility's current state."""
        _ = self.lang.gettext
        texts = {
            "requested": _("This facility has not been verified yet."),
            "verified": _("This facility has not been activated yet."),
            "active": _("This facility is already active."),
            "rejected": _("This request was rejected."),
        }
        return texts.get(state or "", _("This cannot be done in the facility's current state."))


async def page_of(request: Request) -> Page:
    """The request with its caller, if the session cookie holds a live registry session."""
    registry = registry_of(request)
    principal = None
    token = request.session.get("token")
    if isinstance(token, str):
        try:
            principal = await run_in_threadpool(registry.authenticate, token)
        except Unauthenticated:
            request.session.pop("token", None)
        if principal is not None and principal.kind not in ("operator", "pic"):
            principal = None
    return Page(request, registry, principal, language_of(request))


Handler = Callable[[Page], Awaitable[Response]]


def logged_in(*kinds: Kind) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """A handler for callers of ``kinds`` only; a write also needs the session's CSRF token.

    Without a session: the login page (for a GET) or 401. Another kind of caller: 403.
    A write without the right CSRF token: 403, before the form is acted on.
    """

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            page = await page_of(request)
            if page.principal is None:
                if request.method in web.SAFE_METHODS:
                    return RedirectResponse(
                        f"/console/login?next={request.url.path}", status_code=303
                    )
                return page.render(
                    "message.html",
                    {
                        "title": page._("Not logged in"),
                        "text": page._("Your session has ended. Please log in again."),
                        "link": "/console/login",
                        "link_text": page._("Log in"),
                    },
                    401,
                )
            if page.principal.kind not in kinds:
                logger.info("console: %s refused to %s", request.url.path, page.principal.actor)
                return forbidden(page)
            if request.method not in web.SAFE_METHODS and not await csrf_checked(request):
                return expired_form(page)
            return await handler(page)

        return endpoint

    return wrap


async def csrf_checked(request: Request) -> bool:
    """Whether the form carries the session's CSRF token (the form is read, and kept)."""
    form = await request.form()
    return web.csrf_ok(request, web.form_field(form, web.CSRF_FIELD))


def forbidden(page: Page) -> Response:
    return page.render(
        "message.html",
        {
            "title": page._("Not allowed"),
            "text": page._("Your account may not open this page or do this."),
            "link": "/console",
            "link_text": page._("Back to the console"),
        },
        403,
    )


def expired_form(page: Page) -> Response:
    logger.info("console: %s refused: CSRF token missing or wrong", page.request.url.path)
    return page.render(
        "message.html",
        {
            "title": page._("The form had expired"),
            "text": page._("The form had expired. Open the page again and send it once more."),
            "link": page.request.url.path,
            "link_text": page._("Open the page again"),
        },
        403,
    )
