"""How the registry's API routes are declared and how their requests are refused.

Every route says which callers may call it (``auth``: operator, pic, hub; none for the
public ones), and ``RegistryRoute`` checks the bearer token and the caller's kind before
the body is read (``runtime.api``). The OpenAPI document is generated from the routes;
``route`` adds what FastAPI cannot see: the callers, the errors a route answers, the
response headers and the media types other than JSON. Every error is
``{"error", "detail"}`` with the matching 4xx; nothing is changed by a refused request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from fastapi.datastructures import Default
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from registry.auth import Principal
from registry.errors import (
    AlreadyExists,
    AuthError,
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
from registry.models import ErrorOut
from registry.service import Reader, Registry
from runtime.api import (
    CheckedRoute,
    Refused,
    before_body,
    body_unreadable,
    gated,
    problems,
    where,
)

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
PURPOSE_HEADER = "X-Pintu-Purpose"
Kind = Literal["operator", "pic", "hub"]
PUBLIC: frozenset[Kind] = frozenset()
OPERATOR: frozenset[Kind] = frozenset({"operator"})
HUB: frozenset[Kind] = frozenset({"hub"})
OPERATOR_HUB: frozenset[Kind] = frozenset({"operator", "hub"})
OPERATOR_PIC: frozenset[Kind] = frozenset({"operator", "pic"})
OPERATOR_PIC_HUB: frozenset[Kind] = frozenset({"operator", "pic", "hub"})
SESSION: frozenset[Kind] = OPERATOR_PIC

STATUS_TEXT = {
    200: "OK",
    201: "Created",
    204: "Done; no content",
    304: "Not modified: the copy named by If-None-Match is current",
    400: "Bad request: malformed JSON or a bad parameter (named)",
    401: "No credentials, or an unknown or expired token",
    403: "These credentials may not do this (wrong role, or not this caller's facility)",
    404: "No such person, facility, door or key",
    409: "Conflicts with the current state, which is named",
    410: "The one-time token has expired",
    413: "The body is too large",
    415: "The body is not of the expected media type",
    422: "The body does not follow the schema (each bad field is named)",
    429: "Too many failed logins or calls; see Retry-After",
    503: "The store or the signing keys are unavailable",
}
SECURITY = {"operator": "operatorSession", "pic": "picSession", "hub": "hubToken"}
SECURITY_SCHEMES = {
    "operatorSession": {
        "type": "http",
        "scheme": "bearer",
        "description": "An operator's session token from POST /api/v1/login",
    },
    "picSession": {
        "type": "http",
        "scheme": "bearer",
        "description": "A facility PIC's session token from POST /api/v1/login",
    },
    "hubToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "A facility hub's token, from activation or "
        "POST /api/v1/facilities/{facility_id}/hub-token",
    },
}


class ApiError(Exception):
    """A request refused before it reaches the registry (bad parameter, body too large...)."""

    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.extra = extra


@dataclass(frozen=True)
class Call:
    """One request as a handler sees it: the registry and who calls."""

    registry: Registry
    principal: Principal | None
    headers: Headers
    address: str = "unknown"

    @property
    def caller(self) -> Principal:
        assert self.principal is not None  # noqa: S101 - only routes with auth use this
        return self.principal

    @property
    def reader(self) -> Reader:
        """The caller as a reader of personal data: who, from where, and the purpose they
        state in ``X-Pintu-Purpose`` (kept to 200 printable characters)."""
        why = "".join(c for c in self.headers.get(PURPOSE_HEADER, "") if c.isprintable())
        return Reader(self.caller, self.address, why.strip()[:200])


@dataclass(frozen=True)
class Operation:
    """A route as the tests and tools see it: method, path, callers."""

    method: str
    full_path: str
    auth: frozenset[Kind]

    @property
    def path(self) -> str:
        return self.full_path.removeprefix(API_PREFIX)

    @property
    def public(self) -> bool:
        return not self.auth

    @property
    def writes(self) -> bool:
        return self.method != "GET"


def registry_of(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise Unauthenticated("no credentials: send 'Authorization: Bearer <token>'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("only bearer tokens are accepted: 'Authorization: Bearer <token>'")
    return token.strip()


def wallet_credential(call: Call) -> str:
    """The wallet credential a call brings (``Authorization: Bearer wc_...``), bounded."""
    header = call.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise Unauthenticated("send 'Authorization: Bearer <wallet credential>'")
    return credential.strip()[:200]


def _gate(auth: frozenset[Kind]) -> Callable[[Request], Any]:
    async def gate(request: Request) -> Call:
        registry = registry_of(request)
        principal = None
        if auth:
            token = _bearer(request)
            principal = await run_in_threadpool(registry.authenticate, token)
            if principal.kind not in auth:
                callers = " or ".join(sorted(auth))
                raise Forbidden(f"this call is for {callers} credentials, not {principal.kind}")
        call = Call(
            registry=registry,
            principal=principal,
            headers=request.headers,
            address=request.client.host if request.client else "unknown",
        )
        request.scope["pintu.call"] = call
        return call

    return before_body(gate)


async def current_call(request: Request) -> Call:
    """The request as its gate let it through (``Routes.route`` puts the route's gate in
    this dependency's place)."""
    call: Call = request.scope["pintu.call"]
    return call


CallDep = Annotated[Call, Depends(current_call)]


class RegistryRoute(CheckedRoute):
    """A route of the registry's API: bodies within the configured limits."""

    # Set per route by ``route``: a JSON array body holds at most [web] max_visit_batch.
    batch = False

    def too_large(self, limit: int) -> Exception:
        return ApiError(413, "too_large", f"the body is larger than {limit} bytes")

    def limit_for(self, request: Request) -> int:
        web = registry_of(request).config.web
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        return web.max_body_bytes if media == "application/json" else web.max_import_bytes

    def translate(self, err: Exception) -> Exception | None:
        if isinstance(err, RegistryError | ApiError):
            return None
        # The boundary: a bug must answer 500 and be logged, not leak a traceback.
        logger.error("%s %s failed", sorted(self.methods or ()), self.path, exc_info=err)
        return ApiError(500, "internal", "internal error; see the registry's log")

    async def inspect(self, request: Request) -> None:
        if not self.batch:
            return
        rows = await request.json()
        most = registry_of(request).config.web.max_visit_batch
        if isinstance(rows, list) and len(rows) > most:
            raise ApiError(413, "too_large", f"at most {most} visits per request, got {len(rows)}")


class Routes:
    """The API's routes, each declared with ``route`` as a decorator."""

    def __init__(self) -> None:
        self.router = APIRouter(route_class=RegistryRoute)
        self._gates: dict[frozenset[Kind], Callable[[Request], Any]] = {}

    def route(
        self,
        method: Literal["GET", "POST"],
        path: str,
        operation_id: str,
        summary: str,
        *,
        auth: frozenset[Kind],
        tag: str,
        response: type[Any] | None = None,
        status: int = 200,
        errors: tuple[int, ...] = (),
        media: tuple[str, ...] = (),
        headers: dict[str, str] | None = None,
        description: str = "",
        body: dict[str, Any] | None = None,
        batch: bool = False,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Declare a route. ``body`` documents a body the handler reads itself (CSV);
        ``media`` the response's media types other than JSON; ``headers`` the response's
        headers; ``batch`` a JSON array body bounded by [web] max_visit_batch."""
        gate = self._gates.setdefault(auth, _gate(auth))
        ok: dict[str, Any] = {"description": STATUS_TEXT[status]}
        if media:
            ok["content"] = {
                m: {"schema": {"type": "string", "contentEncoding": "binary"}} for m in media
            }
        if headers:
            ok["headers"] = {
                name: {"description": text, "schema": {"type": "string"}}
                for name, text in headers.items()
            }
        extra: dict[str, Any] = {
            "security": [{SECURITY[k]: []} for k in sorted(auth)],
            "x-pintu-callers": sorted(auth) or ["public"],
            "responses": {str(status): ok},
        }
        if body is not None:
            extra["requestBody"] = body
        codes = set(errors)
        if auth:
            codes |= {401, 403}

        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            self.router.add_api_route(
                API_PREFIX + path,
                gated(handler, gate),
                methods=[method],
                response_model=response,
                # A model's answer goes out through FastAPI's own JSON (pydantic's
                # serialiser); the others are the handler's own Response.
                response_class=Default(JSONResponse) if response is not None else Response,
                status_code=status,
                summary=summary,
                description=description or None,
                tags=[tag],
                operation_id=operation_id,
                responses={
                    code: {"description": STATUS_TEXT[code]}
                    if code == 304
                    else {"model": ErrorOut, "description": STATUS_TEXT[code]}
                    for code in codes
                },
                openapi_extra=extra,
            )
            added = self.router.routes[-1]
            assert isinstance(added, RegistryRoute)  # noqa: S101 - made by this router
            added.batch = batch
            if added.body_field is not None or body is not None:
                for code in (400, 413, 415, 422):
                    added.responses.setdefault(
                        code, {"model": ErrorOut, "description": STATUS_TEXT[code]}
                    )
            return handler

        return register

    def operations(self) -> list[Operation]:
        return [
            Operation(method, r.path, _callers(r))
            for r in self.router.routes
            if isinstance(r, APIRoute)
            for method in sorted(r.methods or ())
        ]


def _callers(r: APIRoute) -> frozenset[Kind]:
    callers = (r.openapi_extra or {}).get("x-pintu-callers", [])
    return frozenset(c for c in callers if c != "public")


# The answers to refused requests.

_STATUS_OF: list[tuple[type[Exception], int, str]] = [
    (Unauthenticated, 401, "unauthenticated"),
    (LoginThrottled, 429, "throttled"),
    (Forbidden, 403, "forbidden"),
    (AuthError, 403, "forbidden"),
    (NotFound, 404, "not_found"),
    (AlreadyExists, 409, "conflict"),
    (Conflict, 409, "conflict"),
    (Gone, 410, "gone"),
    (InvalidInput, 422, "invalid"),
    (SigningKeyError, 503, "unavailable"),
    (StoreError, 503, "unavailable"),
]


def error_response(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    doc: dict[str, Any] = {"error": code, "detail": detail}
    headers: dict[str, str] = {}
    for key, value in extra.items():
        if key == "headers":
            headers.update(value)
        elif value is not None:
            doc[key] = value
    if status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="pintu-registry"')
    return JSONResponse(doc, status_code=status, headers=headers)


async def registry_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RegistryError)  # noqa: S101 - registered for it only
    for cls, status, code in _STATUS_OF:
        if isinstance(exc, cls):
            extra: dict[str, Any] = {}
            if isinstance(exc, Conflict):
                extra["state"] = exc.state
            if isinstance(exc, InvalidInput) and exc.problems:
                extra["problems"] = exc.problems
            if isinstance(exc, LoginThrottled):
                extra["headers"] = {"Retry-After": str(max(1, round(exc.retry_after_s)))}
            return error_response(status, code, str(exc), **extra)
    logger.error("unexpected registry error: %s", exc)
    return error_response(500, "internal", str(exc))


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)  # noqa: S101 - registered for it only
    return error_response(exc.status, exc.code, exc.detail, **exc.extra)


async def refused(request: Request, exc: Exception) -> Response:
    """A request refused by a shared check (``runtime.api``): the problems in a sentence."""
    assert isinstance(exc, Refused)  # noqa: S101 - registered for Refused only
    if exc.status == 415:
        route = request.scope.get("route")
        csv = "requestBody" in (getattr(route, "openapi_extra", None) or {})
        sentence = "send the CSV as text/csv" if csv else "send the body as application/json"
        return error_response(415, exc.code, sentence)
    if exc.sentence is not None:
        return error_response(exc.status, exc.code, exc.sentence)
    if exc.code == "bad_json":
        return error_response(400, "bad_request", f"the body is {exc.problems[0]['message']}")
    detail = "; ".join(f"{p['field'].removeprefix('query.')}: {p['message']}" for p in exc.problems)
    return error_response(exc.status, exc.code, detail)


def _field(prefix: str, loc: list[str | int]) -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


async def invalid(request: Request, exc: Exception) -> Response:
    """FastAPI's validation in the registry's words: a bad parameter is 400 with the
    parameter named; a body that does not follow its schema, 422 with each problem."""
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for it only
    unreadable = body_unreadable(exc)
    if unreadable is not None and unreadable.startswith("not valid JSON"):
        return error_response(400, "bad_request", f"the body is {unreadable}")
    if where(exc) != "body":
        first = problems(exc)[0]
        name = first["field"].split(".", 1)[-1]
        return error_response(400, "bad_request", f"{name}: {first['message']}")
    route = request.scope.get("route")
    prefix = "visits" if getattr(route, "batch", False) else ""
    found = []
    for item in exc.errors():
        loc = list(item.get("loc", ()))[1:]
        found.append({"field": _field(prefix, loc), "message": str(item["msg"])})
    first = found[0]
    more = f" (and {len(found) - 1} more problems)" if len(found) > 1 else ""
    return error_response(
        422, "invalid", f"{first['field']}: {first['message']}{more}", problems=found
    )


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # noqa: S101 - registered for it only
    code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
        exc.status_code, "bad_request"
    )
    detail = {
        404: f"no such route: {request.url.path}",
        405: f"{request.method} is not allowed on {request.url.path}",
    }.get(exc.status_code, str(exc.detail))
    return error_response(exc.status_code, code, detail, headers=dict(exc.headers or {}))


async def server_error(request: Request, exc: Exception) -> Response:
    # The boundary: a bug must answer 500 and be logged, not leak a traceback.
    logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal", "internal error; see the registry's log")
