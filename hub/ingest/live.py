"""In-process live updates: the ingest publishes, the dashboard's event stream subscribes.

Messages are small JSON-ready dicts with a ``type``: ``occupancy``, ``event``, ``alert``,
``node``. A subscriber that falls behind loses its oldest messages, never blocks the hub:
the dashboard re-reads the full state when it sees ``dropped`` grow.

``publish`` runs on the event loop; ``publish_threadsafe`` and ``publish_events`` may be
called from any thread (the ingest's writer thread uses them).

What other threads publish is coalesced, so that viewers cost the ingest next to nothing:
a message goes out at once when the bus has been quiet for ``interval_s``, and otherwise
with the others of that interval at its end. Of those, only the latest occupancy of each
facility, the latest state of each alert and node, and the latest ``events_per_flush``
events of each facility go out (a person reads a few lines a second, not thousands); the
writer hands over the events themselves and they are turned into dicts only if they go
out.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from types import TracebackType
from typing import Any

from protocol.events import Event

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
    def __init__(self, interval_s: float = 0.25, events_per_flush: int = 20) -> None:
        self.interval_s = interval_s
        self.events_per_flush = events_per_flush
        self._subscribers: set[Subscription] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        # What other threads handed over since the last flush, under the lock.
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, ...], Message] = {}
        self._events: dict[str, deque[Event]] = {}
        self._scheduled = False
        self._last_flush = -interval_s

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
        """Hand messages over from any thread; they go out coalesced (see the module)."""
        if not messages or not self._subscribers or self._loop is None:
            return
        with self._lock:
            for message in messages:
                self._pending[_key(message)] = message
        self._wake()

    def publish_events(self, events: Sequence[Event]) -> None:
        """Hand stored events over from any thread; only the latest of each facility are
        turned into messages, when they go out."""
        if not events or not self._subscribers or self._loop is None:
            return
        with self._lock:
            for event in events[-self.events_per_flush :]:
                kept = self._events.get(event.facility_id)
                if kept is None:
                    kept = self._events[event.facility_id] = deque(maxlen=self.events_per_flush)
                kept.append(event)
        self._wake()

    def _wake(self) -> None:
        with self._lock:
            if self._scheduled:
                return
            self._scheduled = True
        loop = self._loop
        try:
            if loop is not None:
                loop.call_soon_threadsafe(self._schedule)
        except RuntimeError:
            # The loop has closed: the hub is stopping and nobody is listening any more.
            logger.debug("live update dropped: the event loop is closed")

    def _schedule(self) -> None:
        """On the loop: flush now if the bus was quiet, else at the end of the interval."""
        assert self._loop is not None  # noqa: S101 - only scheduled through the loop
        wait = self._last_flush + self.interval_s - time.monotonic()
        if wait <= 0:
            self._flush()
        else:
            self._loop.call_later(wait, self._flush)

    def _flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            events, self._events = self._events, {}
            self._scheduled = False
        self._last_flush = time.monotonic()
        messages: list[Message] = [
            {"type": "event", **event.model_dump(mode="json", exclude_none=True)}
            for kept in events.values()
            for event in kept
        ]
        # Occupancy last: a dashboard that draws it has already seen what changed it.
        messages += sorted(pending.values(), key=lambda m: m.get("type") == "occupancy")
        self.publish_many(messages)

    def close(self) -> None:
        for subscription in list(self._subscribers):
            subscription.close()


def _key(message: Message) -> tuple[str, ...]:
    """What a newer message of the same kind replaces: the facility's occupancy, an alert's
    or a node's state. Anything else is kept whole."""
    kind = str(message.get("type"))
    facility = str(message.get("facility_id"))
    if kind in ("occupancy", "resync"):
        return (kind, facility)
    if kind == "alert":
        return (kind, facility, str(message.get("id")))
    if kind == "node":
        return (kind, facility, str(message.get("node_id")))
    return (kind, facility, str(id(message)))
