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
import signal
import socket
import time

from registry.app import create_app
from registry.config import RegistryConfig
from registry.errors import RegistryError, StoreError
from registry.service import Registry
from runtime import listen
from runtime.listen import ListenError, bind, make_server, url_of
from runtime.notify import Notifier

logger = logging.getLogger(__name__)


async def run(registry: Registry, sock: socket.socket, stop: asyncio.Event) -> None:
    """Serve the API on ``sock`` until ``stop`` is set or the web server ends."""
    notifier = Notifier()
    server = make_server(
        create_app(registry),
        trusted_proxies=registry.config.web.trusted_proxies,
        graceful_shutdown_s=5,
    )
    task: asyncio.Task[None] | None = None
    try:
        try:
            task = await listen.start(server, sock)
        except ListenError as err:
            raise RegistryError(str(err)) from err
        logger.info("registry API at %s", url_of(sock))
        notifier.ready(f"serving at {url_of(sock)}")
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
                # Every tick, not rate-limited like pet(): the tick is already at most
                # half the watchdog period, and the store has just answered.
                notifier.send("WATCHDOG=1")
            except StoreError as err:
                logger.error("the store does not answer; not petting the watchdog: %s", err)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=tick)
        if task.done() and not stop.is_set():
            logger.error("the web server stopped on its own")
    finally:
        notifier.stopping()
        server.should_exit = True
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def serve(config: RegistryConfig) -> None:
    """Run the registry from ``config`` until SIGTERM or SIGINT."""
    registry = Registry.open(config)
    try:
        sock = bind(config.web.host, config.web.port)
    except ListenError as err:
        registry.close()
        raise RegistryError(str(err)) from err
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
