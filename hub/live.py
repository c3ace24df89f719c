"""In-process live updates: the ingest publishes, the dashboard's event stream subscribes.

Messages are small JSON-ready dicts with a ``type``: ``occupancy``, ``event``, ``alert``,
``node``. A subscriber that falls behind loses its oldest messages, never blocks the hub:
the dashboard re-reads the full state when it sees ``dropped`` grow.

``publish`` runs on the event loop; ``publish_threadsafe`` may be called from any thread
(the ingest's writer thread uses it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import Any

logger = logging.getLogger(__name__)

Message = dict[str, Any]


class Subscription:
    """One listener's queue. Iterate it (``async for``) or ``await get()``; close it after."""

    def __init__(self, bus: LiveBus, maxsize: int) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[Message | None] = asyncio.Queue(maxsize)
        self.dropped = 0  # messages lost because this subscriber fell behind
        self.closed = False

    def _put(self, message: Message | None) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(message)

    async def get(self) -> Message:
        """The next message; ``StopAsyncIteration`` once the subscription is closed."""
        if self.closed and self._queue.empty():
            raise StopAsyncIteration
        message = await self._queue.get()
        if message is None:
            raise StopAsyncIteration
        return message

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        return await self.get()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._bus._remove(self)
            # Wake a reader waiting in get(), so an event stream ends at once.
            self._put(None)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class LiveBus:
    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop the subscribers live on; ``publish_threadsafe`` hands messages to it."""
        self._loop = loop

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self, maxsize: int = 1000) -> Subscription:
        """A new subscription; call it on the event loop."""
        subscription = Subscription(self, maxsize)
        self._subscribers.add(subscription)
        return subscription

    def _remove(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def publish(self, message: Message) -> None:
        for subscription in list(self._subscribers):
            subscription._put(message)

    def publish_many(self, messages: Iterable[Message]) -> None:
        for message in messages:
            self.publish(message)

    def publish_threadsafe(self, messages: list[Message]) -> None:
        if not messages or not self._subscribers or self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(self.publish_many, messages)
        except RuntimeError:
            # The loop has closed: the hub is stopping and nobody is listening any more.
            logger.debug("live update dropped: the event loop is closed")

    def close(self) -> None:
        for subscription in list(self._subscribers):
            subscription.close()
