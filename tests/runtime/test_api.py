"""The request checks both APIs share: the gate before the body, unknown and repeated
parameters, the body's media type and size, HEAD where GET is."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import StarletteDeprecationWarning
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from runtime.api import (
    CheckedRoute,
    HeadAsGet,
    Refused,
    TimeQuery,
    before_body,
    body_unreadable,
    gated,
    problems,
)

LIMIT = 100


class Denied(Exception):
    pass


class Thing(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    n: int


class Route(CheckedRoute):
    body_limit = LIMIT


async def placeholder() -> str:  # replaced by each route's gate through ``gated``
    raise AssertionError


Caller = Annotated[str, Depends(placeholder)]


async def put_thing(caller: Caller, body: Thing, request: Request) -> dict[str, Any]:
    request.app.state.reads.append(body.n)
    return {"caller": caller, "n": body.n}


async def get_things(
    caller: Caller,
    limit: Annotated[int, Query(ge=1, le=10)] = 5,
    since: Annotated[TimeQuery, Query()] = None,
) -> dict[str, Any]:
    return {"limit": limit, "since": since.isoformat() if since else None}


def build(gate_calls: list[str], reads: list[int]) -> FastAPI:
    async def gate(request: Request) -> str:
        gate_calls.append(request.url.path)
        if request.headers.get("authorization") != "Bearer ok":
            raise Denied
        return "caller"

    router = APIRouter(route_class=Route)
    router.add_api_route("/things", gated(put_thing, before_body(gate), "caller"), methods=["PUT"])
    router.add_api_route("/things", gated(get_things, before_body(gate), "caller"), methods=["GET"])

    async def denied(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": "denied"}, status_code=401)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        return JSONResponse(
            {"error": exc.code, "detail": exc.sentence or exc.problems}, status_code=exc.status
        )

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        unreadable = body_unreadable(exc)
        found = [{"field": p["field"], "message": p["message"]} for p in problems(exc)]
        return JSONResponse({"error": "invalid", "detail": unreadable or found}, status_code=422)

    app = FastAPI(
        middleware=[Middleware(HeadAsGet)],
        exception_handlers={Denied: denied, Refused: refused, RequestValidationError: invalid},
    )
    app.router.routes.extend(router.routes)
    app.state.reads = reads
    return app


@pytest.fixture
def world() -> Iterator[tuple[TestClient, list[str], list[int]]]:
    gate_calls: list[str] = []
    reads: list[int] = []
    with TestClient(build(gate_calls, reads)) as client:
        yield client, gate_calls, reads


OK = {"Authorization": "Bearer ok", "Content-Type": "application/json"}


def test_the_gate_refuses_before_the_body_is_read_or_checked(world: Any) -> None:
    client, gate_calls, reads = world
    for body in (b"{not json", b"x" * (10 * LIMIT), b'{"n": 1}'):
        r = client.put("/things", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 401, (body[:10], r.text)
    assert reads == [] and len(gate_calls) == 3
    r = client.put("/things", json={"n": 3}, headers=OK)
    assert r.json() == {"caller": "caller", "n": 3}
    assert len(gate_calls) == 4  # once a request, though FastAPI asks for it too


def test_the_body_its_media_type_and_its_size(world: Any) -> None:
    client, _, reads = world
    r = client.put("/things", content=b'{"n": 1}', headers={**OK, "Content-Type": "text/plain"})
    assert (r.status_code, r.json()["error"]) == (415, "unsupported_media_type")
    r = client.put("/things", content=b'{"n": 1' + b" " * LIMIT + b"}", headers=OK)
    assert (r.status_code, r.json()["error"]) == (413, "too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams in
        yield b'{"n": 1'
        for _ in range(LIMIT):
            yield b" "
        yield b"}"

    r = client.put("/things", content=chunks(), headers=OK)
    assert (r.status_code, r.json()["error"]) == (413, "too_large")
    r = client.put("/things", content=b"{not json", headers=OK)
    assert (r.status_code, r.json()["error"]) == (400, "bad_json")
    r = client.put("/things", content=b"[1, 2]", headers=OK)
    assert r.json()["detail"] == "expected a JSON object"
    r = client.put("/things", json={"n": "3", "m": 1}, headers=OK)
    assert {p["field"]: p["message"] for p in r.json()["detail"]}.keys() == {"n", "m"}
    assert reads == []


def test_query_parameters_unknown_repeated_and_bounded(world: Any) -> None:
    client, _, _ = world
    r = client.get("/things?limt=3&x=1", headers=OK)
    assert r.status_code == 400
    assert [p["field"] for p in r.json()["detail"]] == ["query.limt", "query.x"]
    r = client.get("/things?limit=3&limit=4", headers=OK)
    assert r.status_code == 400 and r.json()["detail"][0]["message"] == "given more than once"
    r = client.get("/things?limit=11", headers=OK)
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "query.limit"
    r = client.get("/things?since=2026-11-22T08:00:00", headers=OK)
    assert r.json()["detail"][0]["field"] == "query.since"  # no UTC offset: no instant
    r = client.get("/things?limit=3&since=2026-11-22T08:00:00Z", headers=OK)
    assert r.json() == {"limit": 3, "since": "2026-11-22T08:00:00+00:00"}


def test_head_is_answered_where_get_is(world: Any) -> None:
    client, _, _ = world
    got = client.get("/things", headers=OK)
    head = client.head("/things", headers=OK)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == got.headers["content-length"]
    assert client.head("/nothing").status_code == 404
