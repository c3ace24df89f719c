"""The hub as a service: the hub core and the web server in one asyncio process.

``serve(config_path)`` runs until SIGTERM or SIGINT. It tells systemd READY=1 once the
hub is connected (or has tried for a while) and the web server listens, and pets the
watchdog from the loop while the ingest's writer and the web server are both alive.
Stopping ends the live streams, then the web server, then the hub (which stores and acks
what has arrived and marks itself offline).

uvicorn's own signal handling is switched off: it would re-raise the signal after its
shutdown and kill the process before the hub has stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from hub.auth import load_or_create_secret
from hub.config import HubConfig, load_config, read_secret
from hub.errors import HubError
from hub.service import Hub
from hub.store import Store
from hub.upstream.client import RegistryClient, make_registry_client
from hub.web.app import create_app
from runtime import listen
from runtime.collector import settle_collector
from runtime.listen import ListenError, Server, bind, make_server, url_of
from runtime.notify import Notifier
from runtime.throttle import LoginThrottle

logger = logging.getLogger(__name__)

T = TypeVar("T")
_UNSET: Any = object()


class HubService:
    """A ``Hub`` and its web server on the running event loop: ``start()``, ``stop()``."""

    def __init__(
        self,
        config: HubConfig,
        *,
        store: Store | None = None,
        sock: socket.socket | None = None,
        registry: RegistryClient | None = _UNSET,
        throttle: LoginThrottle | None = None,
        mqtt_wait_s: float = 10.0,
    ) -> None:
        self.config = config
        self.hub = Hub(config, store=store)
        self._sock = sock
        self._registry = registry
        self._throttle = throttle
        self._mqtt_wait_s = mqtt_wait_s
        self._server: Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.app: Any = None

    @property
    def url(self) -> str:
        if self._sock is None:
            raise HubError("the web server is not started")
        return url_of(self._sock)

    async def start(self) -> None:
        web = self.config.web
        # Everything that can be wrong in the config fails here, before the hub starts.
        registry = (
            make_registry_client(self.config.registry)
            if self._registry is _UNSET
            else self._registry
        )
        self._registry = registry
        secret = await asyncio.to_thread(load_or_create_secret, web.secret_key_file)
        token = read_secret(web.metrics_token_file) if web.metrics_token_file else None
        if self._sock is None:
            try:
                self._sock = bind(web.host, web.port)
            except ListenError as err:
                raise HubError(str(err)) from err
        try:
            await self.hub.start()
            if not await self.hub.wait_ready(self._mqtt_wait_s):
                logger.warning(
                    "not connected to the broker at %s:%d yet; still trying",
                    self.config.mqtt.host,
                    self.config.mqtt.port,
                )
            self.app = create_app(
                self.hub,
                secret_key=secret,
                registry=registry,
                metrics_token=token,
                throttle=self._throttle,
            )
            self._server = make_server(
                self.app, trusted_proxies=web.trusted_proxies, graceful_shutdown_s=3
            )
            self._task = await listen.start(self._server, self._sock)
        except ListenError as err:
            await self.stop()
            raise HubError(str(err)) from err
        except BaseException:
            await self.stop()
            raise
        logger.info("dashboard and API at %s", self.url)

    @property
    def healthy(self) -> bool:
        return self.hub.alive and self._task is not None and not self._task.done()

    async def stop(self) -> None:
        if self.app is not None:
            self.app.state.ctx.streams.close_all()
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._registry not in (None, _UNSET):
            await self._registry.aclose()
        await self.hub.stop()
        if self._sock is not None:
            self._sock.close()

    async def run(self, stop: asyncio.Event, *, notifier: Notifier | None = None) -> None:
        """Run until ``stop`` is set (or the web server dies)."""
        notifier = notifier or Notifier()
        await self.start()
        settle_collector()
        try:
            names = ", ".join(f.id for f in self.config.facilities)
            notifier.ready(f"serving {names} at {self.url}")
            interval = notifier.watchdog_interval_s
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=interval or 1.0)
                if self._task is not None and self._task.done():
                    logger.error("the web server stopped on its own; stopping the hub")
                    break
                if self.healthy:
                    notifier.pet()
                else:
                    logger.error("the hub is not healthy; not petting the watchdog")
        finally:
            notifier.stopping()
            await self.stop()


def serve(config_path: str | Path) -> None:
    """Run the hub and its dashboard from ``config_path`` until SIGTERM or SIGINT."""
    config = load_config(config_path)
    asyncio.run(_serve(config))


async def _serve(config: HubConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await HubService(config).run(stop, notifier=Notifier())
    logger.info("the hub has stopped")


class ServiceThread:
    """A ``HubService`` on an event loop in a thread of its own, for tests, benchmarks and
    tools that drive the hub from plain (blocking) code."""

    def __init__(self, config: HubConfig, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="hub", daemon=True)
        self._options = options
        self._config = config
        self.service: HubService | None = None

    def start(self) -> ServiceThread:
        self._thread.start()

        async def make() -> HubService:
            # Made on the loop: the hub's objects belong to it.
            return HubService(self._config, **self._options)

        self.service = self.call(make())
        try:
            self.call(self.service.start())
        except BaseException:
            self.service = None
            self.close()
            raise
        return self

    @property
    def hub(self) -> Hub:
        if self.service is None:
            raise HubError("not started")
        return self.service.hub

    @property
    def url(self) -> str:
        if self.service is None:
            raise HubError("not started")
        return self.service.url

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def stop(self) -> None:
        if self.service is not None:
            service, self.service = self.service, None
            self.call(service.stop())
        self.close()

    def close(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        if not self.loop.is_closed():
            self.loop.close()
