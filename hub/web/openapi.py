"""The API described once: each ``Operation`` is both a route and its OpenAPI entry.

Routes are declared with their parameters, body model, response model, role and the
errors they can answer; the app is built from the same list the document is written
from, so the document cannot leave a route out or describe one that does not exist.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from hub.records import Role

if TYPE_CHECKING:
    from hub.web.context import Call

Location = Literal["path", "query"]

_STATUS_TEXT = {
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


@dataclass(frozen=True)
class Param:
    name: str
    where: Location
    schema: dict[str, Any]
    description: str
    required: bool = False
    parse: Callable[[str], Any] = str

    def parsed(self, text: str) -> Any:
        return self.parse(text)


def parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as err:
        raise ValueError("not an RFC 3339 time such as 2026-11-22T08:00:00Z") from err
    if value.tzinfo is None:
        raise ValueError("the time needs a UTC offset, such as a trailing Z")
    return value


def parse_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError as err:
            raise ValueError("not a whole number") from err
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}")
        return value

    return parse


def parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError("not true or false")


def parse_choice(choices: Sequence[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text

    return parse


@dataclass(frozen=True)
class Operation:
    method: Literal["GET", "POST", "PUT", "DELETE"]
    path: str
    handler: Callable[[Call], Awaitable[Any]]
    summary: str
    tag: str
    role: Role | None  # None: no login needed
    params: tuple[Param, ...] = ()
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    description: str = ""
    extra_responses: dict[str, Any] = field(default_factory=dict)
    # False only for a route that needs no login and reads no cookie: with no session to
    # ride on, a forged cross-site request can do nothing its sender could not do itself.
    csrf: bool = True

    def __post_init__(self) -> None:
        if not self.csrf and self.role is not None:
            raise ValueError(f"{self.path}: a route that needs a login needs the CSRF check")

    @property
    def operation_id(self) -> str:
        return self.handler.__name__.strip("_")


def _schema(
    model: type[BaseModel], mode: Literal["validation", "serialization"]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A ``$ref`` to the model and the component schemas it needs."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)
    defs: dict[str, Any] = schema.pop("$defs", {})
    defs[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}, defs


def build_document(
    operations: Iterable[Operation],
    *,
    title: str,
    version: str,
    error_model: type[BaseModel],
    other_paths: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations`` (and any hand-written ``other_paths``)."""
    components: dict[str, Any] = {}
    error_ref, defs = _schema(error_model, "serialization")
    components.update(defs)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        entry: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": [op.tag],
            "x-pintu-role": op.role,
        }
        role_text = f"Needs the **{op.role}** role (or higher)." if op.role else "No login needed."
        csrf_text = (
            " A state-changing request: send the session's CSRF token in `X-CSRF-Token`."
            if op.method not in ("GET",) and op.csrf
            else ""
        )
        entry["description"] = f"{op.description}\n\n{role_text}{csrf_text}".strip()
        if op.role:
            entry["security"] = (
                [{"session": [], "csrf": []}] if op.method != "GET" else [{"session": []}]
            )
        elif op.method != "GET" and op.csrf:
            entry["security"] = [{"csrf": []}]
        else:
            entry["security"] = []
        parameters = []
        for param in op.params:
            parameters.append(
                {
                    "name": param.name,
                    "in": param.where,
                    "required": param.required or param.where == "path",
                    "description": param.description,
                    "schema": param.schema,
                }
            )
        if parameters:
            entry["parameters"] = parameters
        if op.body is not None:
            ref, defs = _schema(op.body, "validation")
            components.update(defs)
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref}},
            }
        responses: dict[str, Any] = {}
        if op.response is not None:
            ref, defs = _schema(op.response, "serialization")
            components.update(defs)
            responses[str(op.status)] = {
                "description": _STATUS_TEXT.get(op.status, "OK"),
                "content": {"application/json": {"schema": ref}},
            }
        else:
            responses[str(op.status)] = {"description": _STATUS_TEXT.get(op.status, "OK")}
        codes = set(op.errors)
        if op.params and any(p.where == "query" for p in op.params):
            codes.add(400)
        if op.body is not None:
            codes |= {400, 415, 422}
        if op.role:
            codes |= {401, 403}
        elif op.method != "GET":
            codes.add(403)
        if "{" in op.path:
            codes.add(404)
        for code in sorted(codes):
            responses[str(code)] = {
                "description": _STATUS_TEXT.get(code, "Error"),
                "content": {"application/json": {"schema": error_ref}},
            }
        responses.update(op.extra_responses)
        entry["responses"] = responses
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    for path, methods in (other_paths or {}).items():
        paths.setdefault(path, {}).update(methods)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "The facility hub's API. Log in with `POST /api/v1/session` (after "
            "`GET /api/v1/session` gives the CSRF token), then send the session cookie, and "
            "the CSRF token in `X-CSRF-Token` with every request that changes something. "
            'Errors are JSON: `{"error": code, "detail": sentence or list of '
            "{field, message}}`.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "pintu_session"},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
                "metricsToken": {"type": "http", "scheme": "bearer"},
            },
        },
    }


def dumps(document: dict[str, Any]) -> bytes:
    return json.dumps(document, indent=None, separators=(",", ":")).encode("utf-8")
