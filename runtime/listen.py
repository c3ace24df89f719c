"""The listening socket of a web service, and uvicorn run on it the way the services want.

``bind(host, port)`` makes the socket before anything else starts, so a taken port is a
clear error at once; ``url_of(sock)`` says where it listens. ``Server`` is uvicorn's server
with its signal handling switched off: uvicorn re-raises SIGTERM/SIGINT after its own
shutdown, which would end the process before the service has closed its store in order.
Each service handles the signals itself and stops the server with ``should_exit``.

Imported by the hub and the registry only (it needs uvicorn, which a door node lacks).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections.abc import Generator, Sequence
from typing import Any

import uvicorn


class ListenError(Exception):
    """The socket cannot listen, or the web server on it did not start."""


def bind(host: str, port: int) -> socket.socket:
    """A listening, non-blocking socket; ``ListenError`` when the address is not to be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY only on sockets whose proto
    # says TCP, and accepted connections inherit proto 0 otherwise. Without it, a small
    # response written as headers then body waits out the client's delayed ACK (~40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as err:
        sock.close()
        raise ListenError(f"cannot listen on {host}:{port}: {err.strerror}") from err
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    """``http://host:port`` of a listening socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


class Server(uvicorn.Server):
    """uvicorn's server without its own signal handlers (see the module's doc)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def make_server(
    app: Any, *, trusted_proxies: Sequence[str] = (), graceful_shutdown_s: int = 5
) -> Server:
    """A ``Server`` for ``app`` as the services run it: logs through the service's own
    logging set-up, no access log, no lifespan, no WebSockets, no ``Server`` header, and
    ``X-Forwarded-For`` believed only from ``trusted_proxies`` (none by default; uvicorn
    would otherwise believe it from 127.0.0.1)."""
    return Server(
        uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            ws="none",
            server_header=False,
            timeout_graceful_shutdown=graceful_shutdown_s,
            proxy_headers=bool(trusted_proxies),
            forwarded_allow_ips=list(trusted_proxies) or None,
        )
    )


async def start(server: Server, sock: socket.socket, timeout_s: float = 10.0) -> asyncio.Task[None]:
    """Serve on ``sock`` in a task; return it once the server has started.

    ``ListenError`` if it ends or has not started within ``timeout_s``.
    """
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise ListenError("the web server did not start")
        await asyncio.sleep(0.01)  # uvicorn offers no event to wait on
    return task


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
