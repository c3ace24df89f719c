"""The console's routes and the middleware its pages need, added to the registry's app.

The API keeps its own gate (bearer tokens, ``registry.routing``); the pages are matched
after it and carry the session cookie, read bodies of at most ``FORM_LIMIT`` bytes, and
answer with the same security headers as the hub's dashboard.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route, request_response
from starlette.staticfiles import StaticFiles

from registry import routing
from registry.config import RegistryConfig
from registry.console import keys, operator, persons, pic, public, tracing, wallet
from registry.console.session import SESSION_COOKIE, session_secret
from registry.routing import API_PREFIX
from registry.service import Registry
from runtime.api import BodyLimit
from runtime.web import SecurityHeaders

HERE = Path(__file__).resolve().parent.parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
# A console form is a few fields; nothing a page takes comes near this.
FORM_LIMIT = 64 * 1024
Endpoint = Callable[[Request], Awaitable[Response]]


def _too_large(limit: int) -> Response:
    return PlainTextResponse(f"The form is larger than {limit} bytes.", status_code=413)


async def http_error(request: Request, exc: Exception) -> Response:
    """An unknown address or method: JSON under the API's prefix, else a page in the
    person's language."""
    assert isinstance(exc, HTTPException)  # noqa: S101 - registered for HTTPException only
    if request.url.path.startswith(API_PREFIX) or exc.status_code not in (404, 405):
        return await routing.http_error(request, exc)
    return await public.not_found(request, exc.status_code)


def page(path: str, endpoint: Endpoint, method: str) -> Route:
    """A page's route: its body (a form) bounded by ``FORM_LIMIT`` while it streams in."""
    app = BodyLimit(request_response(endpoint), limit=FORM_LIMIT, refuse=_too_large)
    return Route(path, app, methods=[method])


def routes() -> list[BaseRoute]:
    """The pages, matched after the API's routes."""
    get, post = "GET", "POST"
    return [
        page("/", public.home, get),
        page("/register", public.register_page, get),
        page("/register", public.register_submit, post),
        page("/requests/{facility_id}", public.request_state, get),
        page("/activate/{facility_id}", public.activate_page, get),
        page("/activate/{facility_id}", public.activate_submit, post),
        page("/language", public.choose_language, get),
        page("/console/login", public.login_page, get),
        page("/console/login", public.login_submit, post),
        page("/console/logout", public.logout_submit, post),
        page("/console", operator.console_home, get),
        page("/console/requests", operator.requests_page, get),
        page("/console/requests/{facility_id}/verify", operator.verify_submit, post),
        page("/console/requests/{facility_id}/reject", operator.reject_submit, post),
        page("/console/persons", persons.persons_page, get),
        page("/console/persons/find", persons.find_person, post),
        page("/console/persons/status", persons.change_status, post),
        page("/console/persons/pass", persons.issue_pass, post),
        page("/console/persons/wallet-link", persons.wallet_link, post),
        page("/console/keys", keys.keys_page, get),
        page("/console/keys/rotate", keys.rotate_key, post),
        page("/console/keys/{kid}/revoke", keys.revoke_key, post),
        page("/console/tracing", tracing.tracing_page, get),
        page("/console/tracing", tracing.trace_submit, post),
        page("/console/tracing.csv", tracing.trace_csv, post),
        page("/console/audit", operator.audit_page, get),
        page("/console/hubs", operator.hubs_page, get),
        *[page(path, endpoint, method) for path, endpoint, method in pic.PAGES],
        page("/wallet/", wallet.wallet_page, get),
        page("/wallet/activate", wallet.activate_page, get),
        page("/wallet/sw.js", wallet.service_worker, get),
        page("/wallet/manifest.webmanifest", wallet.manifest, get),
        page("/wallet/icon-{size:int}.png", wallet.icon, get),
        # A door's poster address (protocol.poster.door_address).
        page("/d/{facility_id}/{door_id}", wallet.door_page, get),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]


def middleware(registry: Registry) -> list[Middleware]:
    config: RegistryConfig = registry.config
    return [
        Middleware(SecurityHeaders),
        Middleware(
            SessionMiddleware,
            secret_key=session_secret(registry),
            session_cookie=SESSION_COOKIE,
            max_age=int(config.web.session_hours * 3600),
            same_site="strict",
            https_only=config.web.cookies_secure(),
        ),
    ]
