"""``GET /events/stream``: live updates for the dashboard as Server-Sent Events.

Each message of the hub's live bus (``occupancy``, ``event``, ``alert``, ``node``) for the
chosen facility goes out as an SSE event of that name with the JSON as data. The stream
opens with the current occupancy, so a dashboard that reconnects is current at once, and
says ``resync`` when it had to drop messages (the page then re-reads everything). A
comment every few seconds keeps proxies from closing an idle stream and notices a
session that has ended.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from hub.errors import NotFound
from hub.ingest.live import Subscription
from hub.web.context import context_of
from hub.web.errors import error_response

logger = logging.getLogger(__name__)

KEEPALIVE_S = 15.0


def sse(kind: str, data: Any) -> str:
    # json.dumps never emits a raw newline, so the data is always one SSE line.
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class Streams:
    """The open event streams, so the server can end them all when it stops."""

    def __init__(self) -> None:
        self._open: set[Subscription] = set()
        self.closing = False

    def add(self, subscription: Subscription) -> None:
        self._open.add(subscription)

    def discard(self, subscription: Subscription) -> None:
        self._open.discard(subscription)

    @property
    def count(self) -> int:
        return len(self._open)

    def close_all(self) -> None:
        self.closing = True
        for subscription in list(self._open):
            subscription.close()
        self._open.clear()


async def event_stream(request: Request) -> Response:
    ctx = context_of(request)
    staff = await ctx.accounts.current(request)
    if staff is None:
        return error_response(401, "not_logged_in", "Log in first.")
    facility_id = request.query_params.get("facility") or ctx.config.facilities[0].id
    try:
        ctx.hub.facility(facility_id)
    except NotFound:
        return error_response(404, "not_found", f"Unknown facility {facility_id}.")
    if ctx.streams.closing:
        return error_response(503, "stopping", "The hub is stopping.")
    subscription = ctx.hub.live.subscribe()
    ctx.streams.add(subscription)

    async def body() -> AsyncIterator[str]:
        try:
            # Reconnect quickly: a tablet on flaky Wi-Fi should not show stale numbers long.
            yield "retry: 2000\n\n"
            occupancy = await ctx.hub.occupancy(facility_id)
            yield sse("occupancy", {"type": "occupancy", **occupancy.as_dict()})
            dropped = 0
            while True:
                try:
                    message = await asyncio.wait_for(subscription.get(), KEEPALIVE_S)
                except TimeoutError:
                    # Drop the stream of someone logged out or disabled meanwhile.
                    if await ctx.accounts.current(request, fresh=True) is None:
                        yield sse("logout", {})
                        return
                    yield ": keep-alive\n\n"
                    continue
                except StopAsyncIteration:
                    return
                if subscription.dropped != dropped:
                    dropped = subscription.dropped
                    yield sse("resync", {"dropped": dropped})
                if message.get("facility_id") != facility_id:
                    continue
                yield sse(str(message.get("type", "message")), message)
        finally:
            subscription.close()
            ctx.streams.discard(subscription)

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
