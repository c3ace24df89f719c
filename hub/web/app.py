"""The web application: pages, API, event stream, metrics and health, on a running ``Hub``.

The app must run on the hub's own event loop: live updates and command replies are
handed to that loop (``hub.web.server`` runs both together).
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from hub.auth import Accounts
from hub.config import is_loopback
from hub.errors import HubError
from hub.metrics import HubMetrics
from hub.service import Hub
from hub.upstream.client import RegistryClient
from hub.web import api, pages
from hub.web.context import WebContext, context_of
from hub.web.desk import Desk
from hub.web.errors import (
    ApiError,
    api_error_handler,
    error_response,
    refused_handler,
    validation_handler,
)
from hub.web.language import choose as choose_language
from hub.web.stream import Streams, event_stream
from runtime.api import BodyLimit, HeadAsGet, Refused, document
from runtime.throttle import LoginThrottle
from runtime.web import SecurityHeaders, make_templates, static_version

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent.parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
SESSION_COOKIE = "pintu_session"


async def metrics(request: Request) -> Response:
    ctx = context_of(request)
    if ctx.metrics_token is None:
        # Open to this machine only: the counts say how full a building is and which doors
        # are down, which is no one else's business without a token.
        if not is_loopback(request.client.host if request.client else ""):
            return error_response(
                403,
                "forbidden",
                "Set [web] metrics_token_file to read the metrics from another machine.",
            )
    else:
        given = request.headers.get("authorization", "")
        expected = f"Bearer {ctx.metrics_token}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return error_response(
                401,
                "not_logged_in",
                "Send the metrics token as a bearer token.",
                {"WWW-Authenticate": "Bearer"},
            )
    return Response(ctx.hub.metrics_text(), media_type=HubMetrics.CONTENT_TYPE)


async def health(request: Request) -> Response:
    ctx = context_of(request)
    hub = ctx.hub
    try:
        mqtt = hub.ingest.connected.is_set()
    except HubError:  # not started yet, or stopping
        mqtt = False
    problem = hub.problem
    ok = problem is None and mqtt
    body: dict[str, object] = {
        "ok": ok,
        "mqtt": mqtt,
        "writer": hub.alive,
        "store": hub.store_ok,
        "streams": ctx.streams.count,
    }
    if problem is not None:
        body["problem"] = problem
    elif not mqtt:
        body["problem"] = "not connected to the broker"
    return JSONResponse(body, status_code=200 if ok else 503)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # noqa: S101 - registered for HTTPException only
    if request.url.path.startswith(api.PREFIX) or request.url.path in ("/metrics", "/healthz"):
        codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        code = codes.get(exc.status_code, "error")
        return error_response(exc.status_code, code, exc.detail, dict(exc.headers or {}))
    if exc.status_code in (404, 405):  # a person's mistyped address: a page in their language
        return pages.not_found(request, exc.status_code)
    return PlainTextResponse(str(exc.detail), status_code=exc.status_code, headers=exc.headers)


async def server_error(request: Request, exc: Exception) -> Response:
    # Starlette logs the traceback after this; the client gets no internals.
    if request.url.path.startswith(api.PREFIX):
        return error_response(500, "internal", "Something went wrong in the hub; it is logged.")
    return PlainTextResponse("Internal Server Error", status_code=500)


def _too_large(limit: int) -> Response:
    return error_response(413, "too_large", f"The request body is larger than {limit} bytes.")


def _version() -> str:
    from runtime.version import __version__

    return __version__


API_DESCRIPTION = (
    "The facility hub's API. Log in with `POST /api/v1/session` (after "
    "`GET /api/v1/session` gives the CSRF token), then send the session cookie, and "
    "the CSRF token in `X-CSRF-Token` with every request that changes something. "
    'Errors are JSON: `{"error": code, "detail": sentence or list of {field, message}}`.'
)
SECURITY_SCHEMES = {
    "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE},
    "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
    "metricsToken": {"type": "http", "scheme": "bearer"},
}


def _openapi(app: FastAPI) -> dict[str, Any]:
    generated = document(app, SECURITY_SCHEMES)
    generated["paths"] = dict(sorted(generated["paths"].items()))
    return generated


_DOC_OF: dict[str, dict[str, Any]] = {
    "/events/stream": {
        "summary": "Live updates (Server-Sent Events)",
        "tags": ["live"],
        "operation_id": "event_stream",
        "response_class": Response,
    },
    "/metrics": {
        "summary": "Prometheus metrics",
        "tags": ["meta"],
        "operation_id": "metrics",
        "response_class": Response,
    },
    "/healthz": {
        "summary": "Whether the hub is running and connected",
        "tags": ["meta"],
        "operation_id": "health",
        "response_class": JSONResponse,
    },
}


def create_app(
    hub: Hub,
    *,
    secret_key: str,
    registry: RegistryClient | None = None,
    metrics_token: str | None = None,
    throttle: LoginThrottle | None = None,
) -> FastAPI:
    """The web app for ``hub`` (which must be started, on the loop the app will run on)."""
    web = hub.config.web
    if not web.cookies_secure():
        logger.warning(
            "the session cookie is sent without Secure: the dashboard listens on %s only; "
            "serve it to other machines through a TLS proxy ([web] secure_cookies)",
            web.host,
        )
    if metrics_token is None:
        logger.warning(
            "GET /metrics has no token ([web] metrics_token_file): it answers this machine only"
        )
    accounts = Accounts(hub.store, session_max_age_s=web.session_max_age_s, throttle=throttle)
    desk = Desk(hub, registry, command_timeout_s=web.command_timeout_s)
    page_routes = [
        Route("/", pages.home, methods=["GET"]),
        Route("/login", pages.login_page, methods=["GET"]),
        Route("/login", pages.login_submit, methods=["POST"]),
        Route("/logout", pages.logout_submit, methods=["POST"]),
        Route("/facilities/{facility_id}", pages.dashboard, methods=["GET"]),
        Route("/facilities/{facility_id}/counts.csv", pages.counts_csv, methods=["GET"]),
        Route("/language", choose_language, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(HeadAsGet),
        Middleware(BodyLimit, limit=web.max_body_bytes, refuse=_too_large),
        Middleware(
            SessionMiddleware,
            secret_key=secret_key,
            session_cookie=SESSION_COOKIE,
            max_age=web.session_max_age_s,
            same_site="strict",
            https_only=web.cookies_secure(),
        ),
    ]
    app = FastAPI(
        title="Pintu facility hub",
        version=_version(),
        description=API_DESCRIPTION,
        openapi_url=None,  # served by the API's own route, which the document lists
        docs_url=None,
        redoc_url=None,
        middleware=middleware,
        # FastAPI's own OpenTelemetry hooks stay off: the hub has its Prometheus metrics.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        exception_handlers={
            ApiError: api_error_handler,
            Refused: refused_handler,
            RequestValidationError: validation_handler,
            HTTPException: http_error,
            Exception: server_error,
        },
    )
    # The API first: a request is matched against the routes in turn.
    app.router.routes.extend(api.routes())
    for path, endpoint, doc in _OTHER_ROUTES:
        app.add_api_route(path, endpoint, methods=["GET"], openapi_extra=doc, **_DOC_OF[path])
    app.router.routes.extend(page_routes)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.state.ctx = WebContext(
        hub=hub, accounts=accounts, desk=desk, streams=Streams(), metrics_token=metrics_token
    )
    app.state.templates = make_templates(TEMPLATES)
    app.state.static_version = static_version(STATIC)
    return app


_OTHER_ROUTES: list[tuple[str, Any, dict[str, Any]]] = [
    (
        "/events/stream",
        event_stream,
        {
            "x-pintu-role": "viewer",
            "description": "Events named occupancy, event, alert, node (JSON data), resync "
            "(messages were dropped: read everything again) and logout. Needs the viewer role.",
            "security": [{"session": []}],
            "parameters": [
                {
                    "name": "facility",
                    "in": "query",
                    "required": False,
                    "description": "The facility (default: the first in hub.toml).",
                    "schema": {"type": "string"},
                }
            ],
            "responses": {
                "200": {"description": "The stream", "content": {"text/event-stream": {}}},
                "401": {"description": "Not logged in"},
                "404": {"description": "Unknown facility"},
            },
        },
    ),
    (
        "/metrics",
        metrics,
        {
            "description": "The text exposition format. Open, unless web.metrics_token_file "
            "is set: then it needs that token as a bearer token.",
            "security": [{}, {"metricsToken": []}],
            "responses": {
                "200": {"description": "Metrics", "content": {"text/plain": {}}},
                "401": {"description": "The bearer token is missing or wrong"},
            },
        },
    ),
    (
        "/healthz",
        health,
        {
            "security": [],
            "responses": {
                "200": {"description": "Healthy", "content": {"application/json": {}}},
                "503": {"description": "Not healthy", "content": {"application/json": {}}},
            },
        },
    ),
]
