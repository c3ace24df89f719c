"""The listening socket and the uvicorn server the hub and the registry share."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from runtime.listen import ListenError, bind, make_server, start, url_of


def test_bind_listens_and_names_its_url() -> None:
    sock = bind("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        assert url_of(sock) == f"http://127.0.0.1:{port}"
        assert sock.proto == socket.IPPROTO_TCP and not sock.getblocking()
    finally:
        sock.close()


def test_a_taken_port_is_a_clear_error() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{port}"):
            bind("127.0.0.1", port)
    finally:
        taken.close()


def test_the_server_serves_until_told_to_exit() -> None:
    async def hello(_request: object) -> PlainTextResponse:
        return PlainTextResponse("hello")

    app = Starlette(routes=[Route("/", hello)])
    sock = bind("127.0.0.1", 0)

    async def main() -> tuple[int, str, str | None]:
        server = make_server(app)
        task = await start(server, sock)
        async with httpx.AsyncClient() as client:
            r = await client.get(url_of(sock) + "/")
        server.should_exit = True
        await task
        return r.status_code, r.text, r.headers.get("server")

    try:
        assert asyncio.run(main()) == (200, "hello", None)
    finally:
        sock.close()
