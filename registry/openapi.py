"""The API described once: each ``Operation`` is both a route and its OpenAPI 3.1 entry.

The app is built from the same list the document is written from, so the document cannot
leave a route out, describe one that does not exist, or name the wrong role.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from registry.models import ErrorOut

if TYPE_CHECKING:
    from registry.app import Call

API_PREFIX = "/api/v1"
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
    429: "Too many failed logins; see Retry-After",
    503: "The store or the signing keys are unavailable",
}
_SECURITY = {
    "operator": "operatorSession",
    "pic": "picSession",
    "hub": "hubToken",
}


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["path", "query"]
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False
    parse: Callable[[str], Any] = str


@dataclass(frozen=True)
class Operation:
    method: Literal["GET", "POST"]
    path: str  # below API_PREFIX, Starlette/OpenAPI style: /facilities/{facility_id}
    operation_id: str
    summary: str
    handler: Callable[[Call], Any]
    auth: frozenset[Kind]
    tag: str
    response: type[BaseModel] | None = None
    status: int = 200
    body: type[BaseModel] | Literal["visits", "csv"] | None = None
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()
    media: tuple[str, ...] = ()  # other response media types than JSON
    description: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # response headers, described

    @property
    def full_path(self) -> str:
        return API_PREFIX + self.path

    @property
    def public(self) -> bool:
        return not self.auth

    @property
    def writes(self) -> bool:
        return self.method != "GET"


def _body_schema(op: Operation, ref: Callable[[type[BaseModel]], dict[str, Any]]) -> Any:
    from registry.models import VisitIn

    if op.body == "csv":
        return {
            "required": True,
            "content": {
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": "nik,name,status,doses\n3174054512900001,Siti Rahayu,green,2\n",
                }
            },
        }
    if op.body == "visits":
        schema = {
            "type": "array",
            "items": ref(VisitIn),
            "description": "The batch: all rows are stored, or (on any bad row) none",
        }
        return {"required": True, "content": {"application/json": {"schema": schema}}}
    if op.body is None:
        return None
    return {"required": True, "content": {"application/json": {"schema": ref(op.body)}}}


def document(operations: Sequence[Operation], version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations``."""
    from registry.models import VisitIn

    inputs: set[type[BaseModel]] = {VisitIn}
    outputs: set[type[BaseModel]] = {ErrorOut}
    for op in operations:
        if isinstance(op.body, type):
            inputs.add(op.body)
        if op.response is not None:
            outputs.add(op.response)
    keyed: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        *((m, "validation") for m in sorted(inputs, key=lambda m: m.__name__)),
        *((m, "serialization") for m in sorted(outputs, key=lambda m: m.__name__)),
    ]
    refs, defs = models_json_schema(keyed, ref_template="#/components/schemas/{model}")

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        mode: Literal["validation", "serialization"] = (
            "validation" if model in inputs else "serialization"
        )
        return dict(refs[(model, mode)])

    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        entry: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": [op.tag],
            "security": [{_SECURITY[k]: []} for k in sorted(op.auth)],
            "x-pintu-callers": sorted(op.auth) or ["public"],
        }
        if op.description:
            entry["description"] = op.description
        if op.params:
            entry["parameters"] = [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.required or p.where == "path",
                    "description": p.description,
                    "schema": p.schema,
                }
                for p in op.params
            ]
        body = _body_schema(op, ref)
        if body is not None:
            entry["requestBody"] = body
        content: dict[str, Any] = {}
        if op.response is not None:
            content["application/json"] = {"schema": ref(op.response)}
        for media in op.media:
            content[media] = {"schema": {"type": "string", "contentEncoding": "binary"}}
        ok: dict[str, Any] = {"description": STATUS_TEXT[op.status]}
        if content:
            ok["content"] = content
        if op.headers:
            ok["headers"] = {
                name: {"description": text, "schema": {"type": "string"}}
                for name, text in op.headers.items()
            }
        responses: dict[str, Any] = {str(op.status): ok}
        codes = set(op.errors)
        if op.auth:
            codes |= {401, 403}
        if op.body is not None:
            codes |= {400, 413, 415, 422}
        for code in sorted(codes):
            if code == 304:
                responses["304"] = {"description": STATUS_TEXT[304]}
                continue
            responses[str(code)] = {
                "description": STATUS_TEXT[code],
                "content": {"application/json": {"schema": ref(ErrorOut)}},
            }
        entry["responses"] = responses
        paths.setdefault(op.full_path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Pintu registry API",
            "version": version,
            "description": "The central registry of Pintu: persons and statuses, passes and "
            "signing keys, facility registration, visit intake from facility hubs, tracing. "
            'Every error answer is JSON: {"error": code, "detail": text}.',
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
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
            },
        },
    }
