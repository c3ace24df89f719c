"""The hub's channel to the registry for phone check-ins (docs/protocol.md, section 8).

The hub may sit behind NAT with outbound connections only, so it is the hub that keeps a
request open: ``GET /api/v1/hub/checkins?wait=...`` answers as soon as a phone checks in
at one of the facility's doors (or after ``wait`` with none), the hub decides each
check-in (``hub.ingest.phone``, handed in as ``decide``), and posts its answers; then it
asks again. One channel a facility, each with the facility's own token.

A failure (the registry unreachable, an answer lost) costs nothing but time: the
registry hands a check-in out again until it has the hub's answer, and the hub counts a
check-in once by its id. Retries back off from 1 s to ``retry_max_s``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from hub.errors import HubError
from hub.metrics import Counter, Gauge, HubMetrics
from hub.upstream.client import HttpRegistryClient, RegistryError
from hub.upstream.outbox import registered
from protocol.checkins import AnswerBatch, PhoneAnswer, PhoneCheckin
from protocol.signals import Signal

logger = logging.getLogger(__name__)

Decide = Callable[[PhoneCheckin], Awaitable[PhoneAnswer]]


class ChannelMetrics:
    def __init__(self, metrics: HubMetrics) -> None:
        self.checkins = registered(
            metrics,
            Counter(
                "pintu_hub_phone_checkins_total",
                "Phone check-ins decided, by facility and answer.",
                ["facility", "signal"],
            ),
        )
        self.up = registered(
            metrics,
            Gauge(
                "pintu_hub_phone_channel_up",
                "1 while the hub's channel to the registry for phone check-ins works.",
                ["facility"],
            ),
        )


class PhoneChannel:
    """The channel of one facility: ask, decide, answer, again."""

    def __init__(
        self,
        client: HttpRegistryClient,
        facility_id: str,
        decide: Decide,
        *,
        wait_s: float = 25.0,
        retry_max_s: float = 60.0,
        metrics: ChannelMetrics | None = None,
    ) -> None:
        self.client = client
        self.facility_id = facility_id
        self.decide = decide
        self.wait_s = wait_s
        self.retry_max_s = retry_max_s
        self.metrics = metrics
        self.connected = asyncio.Event()

    async def run(self) -> None:
        delay = 1.0
        wait_s = 0.0  # the first ask answers at once: the channel is known to work
        while True:
            try:
                await self.once(wait_s)
                delay, wait_s = 1.0, self.wait_s
            except (RegistryError, HubError) as err:
                self._up(False)
                logger.warning(
                    "phone check-ins of %s: %s (asking again in %.0f s)",
                    self.facility_id,
                    err,
                    delay,
                )
                await asyncio.sleep(delay)
                delay, wait_s = min(delay * 2, self.retry_max_s), 0.0

    async def once(self, wait_s: float | None = None) -> int:
        """One turn: wait for check-ins, decide them, answer; how many were decided."""
        batch = await self.client.checkins(
            self.facility_id, self.wait_s if wait_s is None else wait_s
        )
        self._up(True)
        answers: list[PhoneAnswer] = []
        for checkin in batch.checkins:
            if checkin.facility_id != self.facility_id:
                logger.warning(
                    "the registry handed %s's channel a check-in of %s: ignored",
                    self.facility_id,
                    checkin.facility_id,
                )
                continue
            answer = await self.decide(checkin)
            answers.append(answer)
            if self.metrics is not None:
                signal = answer.signal.value if isinstance(answer.signal, Signal) else "error"
                self.metrics.checkins.inc(facility=self.facility_id, signal=signal)
        if answers:
            await self.client.answer_checkins(self.facility_id, AnswerBatch(answers=answers))
        return len(answers)

    def _up(self, up: bool) -> None:
        if up:
            self.connected.set()
        else:
            self.connected.clear()
        if self.metrics is not None:
            self.metrics.up.set(1 if up else 0, facility=self.facility_id)
