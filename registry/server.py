"""The registry as a service: the API under uvicorn, and the purge of old visits.

``serve(config)`` runs until SIGTERM or SIGINT. It tells systemd READY=1 once the API
listens, purges visits past the tracing window every ``purge_interval_s``, and pets the
watchdog from that same loop while the web server runs and the store answers.

uvicorn's own signal handling is switched off: it re-raises the signal after its shutdown,
which would end the process before the store is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import time
from collections.abc import Generator

import uvicorn

from registry.app import create_app
from registry.config import RegistryConfig
from registry.errors import RegistryError, StoreError
from registry.service import Registry

logger = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # serve() handles SIGTERM and SIGINT itself, so the store is closed in order.
        yield


class Notifier:
    """systemd's notify protocol; every call does nothing outside systemd."""

    def __init__(self) -> None:
        self._address = os.environ.get("NOTIFY_SOCKET")
        usec = os.environ.get("WATCHDOG_USEC", "")
        self.watchdog_interval_s = int(usec) / 2e6 if usec.isdigit() else None

    def send(self, message: str) -> None:
        if not self._address:
            return
        address = self._address
        if address.startswith("@"):  # an abstract socket
            address = "\0" + address[1:]
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            try:
                sock.sendto(message.encode("utf-8"), address)
            except OSError as err:
                logger.warning("cannot notify systemd: %s", err)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, so a taken port is a clear error before anything starts."""
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
        raise RegistryError(f"cannot listen on {host}:{port}: {err.strerror}") from err
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


async def run(registry: Registry, sock: socket.socket, stop: asyncio.Event) -> None:
    """Serve the API on ``sock`` until ``stop`` is set or the web server ends."""
    notifier = Notifier()
    server = _Server(
        uvicorn.Config(
            create_app(registry),
            log_config=None,
            access_log=False,
            lifespan="off",
            ws="none",
            server_header=False,
            timeout_graceful_shutdown=5,
            proxy_headers=bool(registry.config.web.trusted_proxies),
            forwarded_allow_ips=list(registry.config.web.trusted_proxies) or None,
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        deadline = time.monotonic() + 10.0
        while not server.started:
            if task.done() or time.monotonic() > deadline:
                raise RegistryError("the web server did not start")
            await asyncio.sleep(0.01)  # uvicorn offers no event to wait on
        logger.info("registry API at %s", url_of(sock))
        notifier.send(f"READY=1\nSTATUS=serving at {url_of(sock)}")
        interval = registry.config.purge_interval_s
        # Wake often enough to notice a dead web server and to pet the watchdog in time.
        tick = min(interval, notifier.watchdog_interval_s or 5.0, 5.0)
        next_purge = time.monotonic()
        while not stop.is_set() and not task.done():
            if time.monotonic() >= next_purge:
                try:
                    await asyncio.to_thread(registry.purge)
                except StoreError as err:
                    logger.error("purge failed: %s", err)
                next_purge = time.monotonic() + interval
            try:
                await asyncio.to_thread(registry.store.ping)
                notifier.send("WATCHDOG=1")
            except StoreError as err:
                logger.error("the store does not answer; not petting the watchdog: %s", err)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=tick)
        if task.done() and not stop.is_set():
            logger.error("the web server stopped on its own")
    finally:
        notifier.send("STOPPING=1")
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task


def serve(config: RegistryConfig) -> None:
    """Run the registry from ``config`` until SIGTERM or SIGINT."""
    registry = Registry.open(config)
    try:
        sock = bind(config.web.host, config.web.port)
    except BaseException:
        registry.close()
        raise
    # What start-up made (modules, the store's statements) lives as long as the process:
    # kept out of the collector's full passes, which a feed page of 10,000 changes
    # triggers several times and which would walk it all each time.
    gc.freeze()
    try:
        asyncio.run(_main(registry, sock))
    finally:
        sock.close()
        registry.close()
    logger.info("the registry has stopped")


async def _main(registry: Registry, sock: socket.socket) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await run(registry, sock, stop)
