"""What the hub's and the registry's JSON APIs share on FastAPI.

- ``CheckedRoute``: a route that, before FastAPI reads the body, runs the route's gates
  (the login, role and CSRF dependencies marked with ``before_body``), refuses query
  parameters the route does not declare, refuses a body of another media type, and reads
  the body against a size limit as it streams in; only then is the body parsed and
  validated, so a caller without the right to call a route cannot make the service read,
  parse or hold its body.
- ``BodyLimit``: an ASGI middleware refusing any request body over a size (413), for the
  pages' forms as well as the API.
- ``HeadAsGet``: HEAD answered wherever GET is, with the GET's headers and no body.
- ``Refused`` and ``problems()``: a request refused by one of the checks here or by
  FastAPI's validation, as a list of ``{field, message}``; each service answers it in its
  own error body (``error``, ``detail``).
- ``document()``: the OpenAPI document FastAPI generates, in the services' terms.
- ``TimeQuery``: a time-window query parameter, an RFC 3339 time with its UTC offset.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from typing import Annotated, Any, TypeVar, get_args

from fastapi import Depends, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import AwareDatetime, BaseModel
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

T = TypeVar("T")
Problem = dict[str, str]

# A time-window parameter (since/until, from/to): an RFC 3339 time with its UTC offset,
# since a time without one names no instant. Declared as ``Annotated[TimeQuery, Query(...)]``.
TimeQuery = AwareDatetime | None


class Refused(Exception):
    """A request refused before its handler ran: a status, a code and what was wrong."""

    def __init__(
        self,
        status: int,
        code: str,
        problems: Sequence[Problem],
        *,
        sentence: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.problems = list(problems)
        # A refusal about the request as a whole (its media type) rather than a field.
        self.sentence = sentence
        super().__init__(f"{status} {code}: {sentence or self.problems}")


def before_body(
    check: Callable[[Request], Awaitable[T]],
) -> Callable[[Request], Coroutine[Any, Any, T]]:
    """``check`` as a dependency that ``CheckedRoute`` runs before the body is read.

    Its answer is kept for the request, so FastAPI's own call of the dependency (which
    hands the answer to the handler) does not run the check a second time.
    """

    async def dependency(request: Request) -> T:
        done: dict[Any, Any] = request.scope.setdefault("pintu.gates", {})
        if check not in done:
            done[check] = await check(request)
        result: T = done[check]
        return result

    dependency.__name__ = getattr(check, "__name__", "gate")
    dependency.pintu_before_body = True  # type: ignore[attr-defined]
    return dependency


def gated(
    handler: Callable[..., T], gate: Callable[[Request], Any], name: str = "call"
) -> Callable[..., T]:
    """``handler`` with its parameter ``name`` given by ``gate`` (a ``before_body`` dependency).

    The handlers declare that parameter with a placeholder dependency; each route puts its
    own gate (its callers, its role) in its place, so a request solves one dependency for
    the check and the answer, not two.
    """
    signature = inspect.signature(handler, eval_str=True)
    parameters = [
        p.replace(annotation=Annotated[get_args(p.annotation)[0], Depends(gate)])
        if p.name == name
        else p
        for p in signature.parameters.values()
    ]
    handler.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return handler


def _gates(dependant: Dependant) -> Iterator[Callable[[Request], Awaitable[Any]]]:
    for sub in dependant.dependencies:
        yield from _gates(sub)
        if getattr(sub.call, "pintu_before_body", False):
            yield sub.call  # type: ignore[misc]


def _query_names(dependant: Dependant) -> set[str]:
    names = set()
    for param in dependant.query_params:
        model = param.field_info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):  # parameters as a model
            names |= {f.alias or n for n, f in model.model_fields.items()}
        else:
            names.add(param.alias)
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _media(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


class CheckedRoute(APIRoute):
    """An ``APIRoute`` that checks the caller and the request's shape before the body.

    Subclasses set ``body_limit`` (bytes of a body, refused past it; ``limit_for`` per
    request) and ``too_large`` (the refusal), may check the body further in ``inspect``,
    and may translate the handlers' own exceptions in ``translate``. A route that reads its
    body itself (not JSON) declares it in ``openapi_extra``'s ``requestBody``, whose media
    types are then the ones accepted.
    """

    body_limit = 64 * 1024
    media_types: tuple[str, ...] = ("application/json",)
    # A parameter given twice is refused (rather than the last one taken).
    refuse_repeats = True

    def too_large(self, limit: int) -> Exception:
        return Refused(413, "too_large", [{"field": "body", "message": "too large"}])

    async def inspect(self, request: Request) -> None:
        """Further checks of the body as read (and for JSON, parsed), before validation."""

    def translate(self, err: Exception) -> Exception | None:
        """The error to answer for an exception of a handler, or None to let it rise."""
        return None

    def limit_for(self, request: Request) -> int:
        return self.body_limit

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        # A router tries its routes in turn: a path that does not even start as this
        # route's does is told so at once, before the path's pattern is tried.
        path = scope.get("path")
        if isinstance(path, str) and not path.startswith(self._fixed_start):
            return Match.NONE, {}
        return super().matches(scope)

    @property
    def _fixed_start(self) -> str:
        start: str = self.__dict__.get("_start") or self.path.split("{", 1)[0]
        self.__dict__["_start"] = start
        return start

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        inner = super().get_route_handler()
        gates = list(dict.fromkeys(_gates(self.dependant)))
        allowed = _query_names(self.dependant)
        extra = self.openapi_extra or {}
        declared = extra.get("requestBody", {}).get("content")
        has_body = self.body_field is not None or declared is not None
        media_types = tuple(declared or self.media_types)

        async def handler(request: Request) -> Response:
            for gate in gates:
                await gate(request)
            unknown = [n for n in dict.fromkeys(request.query_params) if n not in allowed]
            if unknown:
                raise Refused(
                    400,
                    "bad_request",
                    [{"field": f"query.{n}", "message": "unknown parameter"} for n in unknown],
                )
            if self.refuse_repeats:
                repeated = [
                    n
                    for n in dict.fromkeys(request.query_params)
                    if len(request.query_params.getlist(n)) > 1
                ]
                if repeated:
                    raise Refused(
                        400,
                        "bad_request",
                        [
                            {"field": f"query.{n}", "message": "given more than once"}
                            for n in repeated
                        ],
                    )
            if has_body:
                if _media(request) not in media_types:
                    raise Refused(
                        415,
                        "unsupported_media_type",
                        [],
                        sentence=f"Send the body as {' or '.join(media_types)}.",
                    )
                await read_body(request, self.limit_for(request), self.too_large)
                if _media(request) == "application/json":
                    try:
                        await request.json()  # kept on the request: FastAPI reads it there
                    except ValueError as err:
                        raise Refused(
                            400,
                            "bad_json",
                            [{"field": "body", "message": f"not valid JSON: {err}"}],
                        ) from err
                await self.inspect(request)
            try:
                return await inner(request)
            except (HTTPException, RequestValidationError, Refused):
                raise
            except Exception as err:
                answer = self.translate(err)
                if answer is None:
                    raise
                raise answer from err

        return handler


async def read_body(request: Request, limit: int, too_large: Callable[[int], Exception]) -> bytes:
    """The body, read as it streams in and refused once past ``limit`` bytes.

    Starlette keeps what was read on the request, so FastAPI parses these same bytes.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # the body Starlette hands out from here on
    return body


def problems(err: RequestValidationError) -> list[Problem]:
    """Each problem of a request's validation, with the field it is about.

    A body's field is named as is (``capacity``), a parameter with where it is
    (``query.limit``); a problem with the body as a whole is on ``body``.
    """
    found = []
    for item in err.errors():
        loc = [str(p) for p in item.get("loc", ())]
        if loc and loc[0] == "body":
            loc = loc[1:]
        field = ".".join(loc) or "body"
        kind = item.get("type", "")
        message = "unknown field" if kind == "extra_forbidden" else str(item.get("msg", ""))
        found.append({"field": field, "message": message, "type": kind})
    return found


def where(err: RequestValidationError) -> str:
    """Where the first problem of a validation is: body, query, path or header."""
    for item in err.errors():
        loc = item.get("loc", ())
        if loc:
            return str(loc[0])
    return "body"


def body_unreadable(err: RequestValidationError) -> str | None:
    """Why the body as a whole could not be taken (not JSON, not an object), if so."""
    for item in err.errors():
        loc = tuple(item.get("loc", ()))
        kind = item.get("type", "")
        if not loc or loc[0] != "body":
            continue
        if kind == "json_invalid":
            return f"not valid JSON: {item.get('ctx', {}).get('error', item.get('msg'))}"
        if len(loc) == 1 and kind == "missing":
            return "not valid JSON: the body is empty"
        if len(loc) == 1 and kind in ("model_attributes_type", "dict_type", "model_type"):
            return "expected a JSON object"
    return None


def document(app: FastAPI, security_schemes: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document FastAPI generates from ``app``'s routes, with the service's
    security schemes, and without the validation error body FastAPI assumes (each service
    answers bad input with its own error body, which its routes declare)."""
    if app.openapi_schema is None:
        generated = FastAPI.openapi(app)
        for methods in generated["paths"].values():
            for operation in methods.values():
                answer = operation["responses"].get("422", {})
                if "HTTPValidationError" in repr(answer):
                    del operation["responses"]["422"]
        components = generated.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        components["securitySchemes"] = security_schemes
        app.openapi_schema = generated
    return app.openapi_schema


class HeadAsGet:
    """Answers HEAD as GET would, with the same status and headers and no body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


class BodyLimit:
    """Refuses a request body larger than ``limit`` bytes while it streams in.

    A declared ``Content-Length`` over the limit is answered (by ``refuse``) before
    anything is read; a chunked body is counted as the app reads it, and the read that
    crosses the limit raises a 413 instead of handing the app more. Nothing ever holds
    more than the limit.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        refuse: Callable[[int], Response],
    ) -> None:
        self.app = app
        self.limit = limit
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            logger.warning(
                "refused a request body of %s bytes from %s",
                declared.decode("latin-1"),
                (scope.get("client") or ("?",))[0],
            )
            await self.refuse(self.limit)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    logger.warning("refused a streamed request body over %d bytes", self.limit)
                    raise HTTPException(413, f"The request body is larger than {self.limit} bytes.")
            return message

        await self.app(scope, counted, send)
