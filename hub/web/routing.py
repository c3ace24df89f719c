"""How the hub's API routes are declared: the gate each runs before its body, its
documentation and its errors (``hub.web.api`` and ``hub.web.upstream_api`` use it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path
from fastapi.routing import APIRoute
from starlette.requests import Request

from hub.auth import CSRF_HEADER, SAFE_METHODS, csrf_ok
from hub.errors import NotFound, StoreError
from hub.records import Role
from hub.web.context import Call, context_of
from hub.web.errors import ApiError
from hub.web.schemas import ErrorOut
from runtime.api import CheckedRoute, before_body, gated

logger = logging.getLogger(__name__)

PREFIX = "/api/v1"
MAX_BODY_BYTES = 64 * 1024

STATUS_TEXT = {
    200: "OK",
    201: "Created",
    400: "Bad input: a parameter is missing or malformed (the field is named)",
    401: "Not logged in",
    403: "Wrong role, or the CSRF token is missing or wrong",
    404: "No such facility, door, alert or lookup",
    409: "Conflicts with the current state",
    410: "Gone: it has expired",
    415: "The body is not application/json",
    422: "The body does not follow the schema (each bad field is named)",
    429: "Too many failed logins; see Retry-After",
    503: "A part the request needs is unavailable (broker, registry, store)",
    504: "The door node did not answer in time",
}


class HubRoute(CheckedRoute):
    """A route of the hub's API: the gate before the body, the hub's errors after."""

    body_limit = MAX_BODY_BYTES
    refuse_repeats = False  # the hub takes the last of a repeated parameter

    def translate(self, err: Exception) -> Exception | None:
        if isinstance(err, NotFound):
            return ApiError(404, "not_found", str(err))
        if isinstance(err, StoreError):
            logger.error("%s: %s", self.path, err)
            return ApiError(503, "store_unavailable", "The store cannot be read or written.")
        if isinstance(err, ValueError):
            return ApiError(422, "invalid", str(err))
        return None


def _gate(role: Role | None, csrf: bool) -> Callable[[Request], Any]:
    async def gate(request: Request) -> Call:
        ctx = context_of(request)
        staff = None
        if role is not None:
            staff = await ctx.accounts.current(request)
            if staff is None:
                raise ApiError(401, "not_logged_in", "Log in first.")
        if (
            csrf
            and request.method not in SAFE_METHODS
            and not csrf_ok(request, request.headers.get(CSRF_HEADER))
        ):
            raise ApiError(403, "csrf", f"The {CSRF_HEADER} header is missing or wrong.")
        if staff is not None and role is not None and not staff.may(role):
            raise ApiError(403, "forbidden", f"This needs the {role} role; you are a {staff.role}.")
        facility_id = request.path_params.get("facility_id")
        if facility_id is not None:
            try:
                ctx.hub.facility(str(facility_id))
            except NotFound as err:
                raise ApiError(404, "not_found", f"No facility {facility_id}.") from err
        call = Call(request, ctx, staff)
        request.scope["pintu.call"] = call
        return call

    return before_body(gate)


_GATES = {
    (role, csrf): _gate(role, csrf)
    for role in (None, "viewer", "guard", "admin")
    for csrf in (True, False)
}


async def current_call(request: Request) -> Call:
    """The request as its gate let it through (``Routes.route`` puts the route's gate in
    this dependency's place)."""
    call: Call = request.scope["pintu.call"]
    return call


CallDep = Annotated[Call, Depends(current_call)]
FacilityId = Annotated[str, Path(description="The facility's id, as in hub.toml.")]


@dataclass(frozen=True)
class Operation:
    """A route of the API as the tests and tools see it: method, path, role."""

    method: str
    path: str
    role: Role | None
    csrf: bool


class Routes:
    """A group of the API's routes, each declared with ``route`` as a decorator."""

    def __init__(self) -> None:
        self.router = APIRouter(route_class=HubRoute)

    def route(
        self,
        method: Literal["GET", "POST", "PUT", "DELETE"],
        path: str,
        *,
        summary: str,
        tag: str,
        role: Role | None,
        response: type[Any] | None = None,
        status: int = 200,
        errors: tuple[int, ...] = (),
        description: str = "",
        csrf: bool = True,
        extra: dict[str, Any] | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Declare a route: its gate (role, CSRF), its documentation and its answers.

        ``csrf=False`` only for a route that needs no login and reads no cookie: with no
        session to ride on, a forged cross-site request can do nothing its sender could not
        do itself.
        """
        if not csrf and role is not None:
            raise ValueError(f"{path}: a route that needs a login needs the CSRF check")
        role_text = f"Needs the **{role}** role (or higher)." if role else "No login needed."
        csrf_text = (
            " A state-changing request: send the session's CSRF token in `X-CSRF-Token`."
            if method != "GET" and csrf
            else ""
        )
        if role:
            security: list[dict[str, list[str]]] = (
                [{"session": [], "csrf": []}] if method != "GET" else [{"session": []}]
            )
        elif method != "GET" and csrf:
            security = [{"csrf": []}]
        else:
            security = []
        openapi_extra: dict[str, Any] = {"x-pintu-role": role, "security": security}
        if not csrf:
            openapi_extra["x-pintu-no-csrf"] = True
        if extra:
            openapi_extra.update(extra)
        codes = set(errors)
        if role:
            codes |= {401, 403}
        elif method != "GET" and csrf:
            codes.add(403)
        if "{" in path:
            codes.add(404)

        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            self.router.add_api_route(
                PREFIX + path,
                gated(handler, _GATES[(role, csrf)]),
                methods=[method],
                response_model=response,
                status_code=status,
                summary=summary,
                description=f"{description}\n\n{role_text}{csrf_text}".strip(),
                tags=[tag],
                operation_id=handler.__name__.strip("_"),
                responses={
                    code: {"model": ErrorOut, "description": STATUS_TEXT[code]} for code in codes
                },
                response_description=STATUS_TEXT.get(status, "OK"),
                openapi_extra=openapi_extra,
            )
            return handler

        return register


def document_errors(routes: Iterable[Any]) -> None:
    """Add the errors every route can answer from its shape: bad parameters, bad bodies."""
    for api_route in routes:
        if not isinstance(api_route, APIRoute) or not api_route.path.startswith(PREFIX):
            continue
        codes: set[int] = set()
        if api_route.dependant.query_params:
            codes.add(400)
        if api_route.body_field is not None:
            codes |= {400, 415, 422}
        for code in codes:
            api_route.responses.setdefault(
                code, {"model": ErrorOut, "description": STATUS_TEXT[code]}
            )


def operations(routes: Iterable[Any]) -> tuple[Operation, ...]:
    """The API's routes as the tests and tools see them: method, path, role."""
    return tuple(
        Operation(
            method,
            r.path,
            (r.openapi_extra or {}).get("x-pintu-role"),
            not (r.openapi_extra or {}).get("x-pintu-no-csrf", False),
        )
        for r in routes
        if isinstance(r, APIRoute)
        for method in sorted(r.methods or ())
    )
