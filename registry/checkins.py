"""Phone check-ins: a visitor's phone opens a door's poster address, and the facility's hub
decides, as a camera door would (docs/visitor.md, docs/protocol.md section 8).

1. The wallet sends ``POST /api/v1/wallet/checkins`` with its credential, its own id for
   the check-in, the facility and the door. The registry refreshes the wallet's pass (so
   a changed status goes with it), stores the check-in and wakes the facility's channel.
2. The hub keeps ``GET /api/v1/hub/checkins`` open (outbound only: it may sit behind
   NAT); the registry answers it with the due check-ins, leased to the hub for a while.
3. The hub decides (signature, trust list, status list, anti-passback, capacity), counts
   the passage and sends ``POST /api/v1/hub/checkins/answers``; the phone's request, still
   waiting, answers with the hub's decision.
4. A hub that does not answer in ``phone_answer_s`` leaves the phone with an honest answer
   of its own: the pass's colour as the registry knows it, to show to staff, marked
   ``queued``. The check-in stays stored and the hub gets it when it comes back; the
   check-in's id is its event's id at the hub, so it is counted once, never twice.

The registry keeps no more of a check-in than it needs to deliver it: the row goes once
its answer reached the phone, or a few minutes after the hub answered. What stays is the
visit the hub makes of it, pushed back like any other.

Several registry processes may serve one database: a process wakes its own waiters at
once and notices another's rows within ``POLL_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from protocol import passes
from protocol.checkins import MAX_BATCH, AnswerBatch, CheckinBatch, PhoneAnswer, PhoneCheckin
from registry import auth, wallet
from registry.errors import CheckinsWaiting, Conflict, NotFound
from registry.records import Checkin, Door, Facility, FacilityState
from registry.service import Registry
from registry.wallet import WalletPass

logger = logging.getLogger(__name__)

CHECKIN_ID = re.compile(r"[0-9a-f]{32}\Z")
# How long the hub has to answer a check-in it took before it is handed out again.
LEASE_MS = 15_000
# The longest the hub's request waits for check-ins; its own ask may be shorter.
MAX_WAIT_S = 30.0
# A hub that asked within this long is taken to be listening.
CHANNEL_FRESH_S = MAX_WAIT_S + 15.0
# How often a waiting request looks at the store for another process's rows.
POLL_S = 0.25
# A wallet's check-ins that no hub has answered yet, at most: a hub away for long, or a
# script, cannot make a phone fill the registry with check-ins.
MAX_WAITING = 20
# How often each process writes down that a facility's hub is listening.
CHANNEL_NOTE_S = 10.0
_DIRECTIONS: dict[str, Literal["entry", "exit", "both"]] = {
    "entrance": "entry",
    "exit": "exit",
    "both": "both",
}


class Watch:
    """One waiter's wake-up, registered before it looks at the store: a poke that comes
    while it looks is not missed, the next ``wait`` returns at once."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def wait(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), timeout=max(0.0, timeout_s))
        self.event.clear()


class Waiters:
    """In-process wake-ups by key: a ``watch`` is woken when ``poke`` is called (from any
    thread)."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[Watch]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    @contextlib.contextmanager
    def watch(self, key: str) -> Iterator[Watch]:
        self._loop = asyncio.get_running_loop()
        watch = Watch()
        self._waiting.setdefault(key, set()).add(watch)
        try:
            yield watch
        finally:
            waiting = self._waiting.get(key)
            if waiting is not None:
                waiting.discard(watch)
                if not waiting:
                    del self._waiting[key]

    def poke(self, key: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # nobody ever waited here
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._set(key)
        else:
            loop.call_soon_threadsafe(self._set, key)

    def _set(self, key: str) -> None:
        for watch in self._waiting.get(key, ()):
            watch.event.set()

    def listening(self, key: str) -> bool:
        return bool(self._waiting.get(key))


@dataclass(frozen=True)
class Started:
    checkin: Checkin
    facility: Facility
    door: Door
    held: WalletPass


class Checkins:
    """The registry's side of phone check-ins, on one ``Registry``."""

    def __init__(self, registry: Registry, *, clock_ms: Callable[[], int] | None = None) -> None:
        self.registry = registry
        self.waiters = Waiters()
        self._clock_ms = clock_ms or (lambda: int(registry.clock() * 1000))
        self._noted: dict[str, float] = {}

    def now_ms(self) -> int:
        return self._clock_ms()

    # --- the phone's side ------------------------------------------------------------
    def door(self, facility_id: str, door_id: str) -> tuple[Facility, Door]:
        """The door a poster names, if its facility takes check-ins; ``NotFound`` if not."""
        store = self.registry.store
        facility = store.get_facility(facility_id)
        door = store.get_door(facility_id, door_id) if facility is not None else None
        if facility is None or door is None or facility.state is not FacilityState.ACTIVE:
            raise NotFound("no such door: the poster may be old, or the facility closed")
        return facility, door

    def start(
        self, credential: str, checkin_id: str, facility_id: str, door_id: str, address: str
    ) -> Started:
        """Store a phone's check-in (or find it again: a retry keeps its id).

        ``Unauthenticated``/``WalletMoved`` for a wallet that is not current, ``NotFound``
        for a door that is not there, ``Conflict`` for a door with a camera only or an id
        another check-in has, ``CheckinsWaiting`` (429) when ``MAX_WAITING`` of the
        wallet's check-ins still wait for a hub.
        """
        if not CHECKIN_ID.match(checkin_id):
            raise Conflict("a check-in id is 32 lowercase hex digits", "bad_checkin_id")
        facility, door = self.door(facility_id, door_id)
        if door.kind == "camera":
            raise Conflict(
                "this door checks passes with its camera: hold your pass up to it",
                "camera_door",
            )
        held = wallet.refresh(self.registry, credential, address)
        wallet_hash = auth.token_hash(credential)
        store = self.registry.store
        if store.get_checkin(checkin_id) is None:
            waiting = store.waiting_checkins(wallet_hash)
            if waiting >= MAX_WAITING:
                raise CheckinsWaiting(waiting)
        checkin = store.add_checkin(
            Checkin(
                checkin_id, wallet_hash, facility.id, door.door_id,
                held.text, self.now_ms(),
            )
        )  # fmt: skip
        self.waiters.poke(_hub_key(facility.id))
        return Started(checkin, facility, door, held)

    def hub_listening(self, facility_id: str) -> bool:
        """Whether the facility's hub asked for check-ins lately (here or elsewhere)."""
        if self.waiters.listening(_hub_key(facility_id)):
            return True
        seen = self.registry.store.hub_activity_of(facility_id)
        at = seen.channel_at if seen is not None else None
        return at is not None and self.registry.now() - at < CHANNEL_FRESH_S

    def answer_of(self, checkin_id: str, wallet_hash: str) -> tuple[Checkin, dict[str, Any] | None]:
        """The check-in and the hub's answer if it came; ``NotFound`` for another wallet's."""
        found = self.registry.store.get_checkin(checkin_id)
        if found is None or found.wallet_hash != wallet_hash:
            raise NotFound("no such check-in")
        return found, (json.loads(found.answer) if found.answer is not None else None)

    async def wait_answer(self, checkin: Checkin, timeout_s: float) -> dict[str, Any] | None:
        """The hub's answer within ``timeout_s``, or None; an answer read is forgotten."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        with self.waiters.watch(_answer_key(checkin.id)) as watch:
            while True:
                _, answer = await asyncio.to_thread(self.answer_of, checkin.id, checkin.wallet_hash)
                if answer is not None:
                    await asyncio.to_thread(self.registry.store.delete_checkin, checkin.id)
                    return answer
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    return None
                await watch.wait(min(POLL_S, left))

    def queued(self, checkin: Checkin) -> None:
        """The phone was answered without the hub: the hub is told when it takes it."""
        self.registry.store.mark_checkin_queued(checkin.id)

    def provisional(self, started: Started) -> dict[str, Any]:
        """What the phone is told when the hub cannot answer: the pass's colour as the
        registry knows it, for staff to look at. Nothing is admitted or counted here."""
        verdict = passes.verify(
            started.held.text, self.registry.keyring.trust_list(), now=self.registry.now()
        )
        status = started.held.status if verdict.ok else "red"
        direction = _DIRECTIONS.get(started.door.direction, "both")
        return {
            "signal": status,
            "admit": None,
            "direction": None if direction == "both" else direction,
            "reason": "ok" if verdict.ok else verdict.reason.value,
            "at_ms": started.checkin.at_ms,
        }

    # --- the hub's side --------------------------------------------------------------
    async def take(
        self,
        facility_id: str,
        wait_s: float,
        limit: int = MAX_BATCH,
        gone: Callable[[], Awaitable[bool]] | None = None,
    ) -> CheckinBatch:
        """The facility's due check-ins, waiting up to ``wait_s`` for one to come; none
        once ``gone`` says the hub hung up (what it would have taken stays for the next)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(wait_s, 0.0), MAX_WAIT_S)
        await asyncio.to_thread(self._note_channel, facility_id)
        with self.waiters.watch(_hub_key(facility_id)) as watch:
            while True:
                if gone is not None and await gone():
                    return CheckinBatch(checkins=[])
                taken = await asyncio.to_thread(
                    self.registry.store.take_checkins, facility_id, self.now_ms(), LEASE_MS,
                    limit,
                )  # fmt: skip
                if taken:
                    return CheckinBatch(checkins=[self._out(c) for c in taken])
                left = deadline - loop.time()
                if left <= 0:
                    return CheckinBatch(checkins=[])
                await watch.wait(min(POLL_S, left))

    def _out(self, checkin: Checkin) -> PhoneCheckin:
        door = self.registry.store.get_door(checkin.facility_id, checkin.door_id)
        direction = _DIRECTIONS.get(door.direction, "both") if door is not None else "both"
        return PhoneCheckin(
            id=checkin.id,
            facility_id=checkin.facility_id,
            door_id=checkin.door_id,
            door_direction=direction,
            pass_text=checkin.pass_text,
            at_ms=checkin.at_ms,
            queued=checkin.queued,
        )

    def _note_channel(self, facility_id: str) -> None:
        now = self.registry.now()
        if now - self._noted.get(facility_id, -CHANNEL_NOTE_S) < CHANNEL_NOTE_S:
            return
        self.registry.store.note_hub(facility_id, "channel", now)
        self._noted[facility_id] = now

    def answer(self, facility_id: str, batch: AnswerBatch) -> list[str]:
        """Keep the hub's answers to its facility's check-ins; the ids that took one (an
        answer to another facility's check-in, or a second answer, changes nothing)."""
        answers = {a.id: _answer_json(a) for a in batch.answers}
        return self.registry.store.answer_checkins(facility_id, answers, self.registry.now())

    def wake(self, checkin_ids: list[str]) -> None:
        for checkin_id in checkin_ids:
            self.waiters.poke(_answer_key(checkin_id))


def _answer_json(answer: PhoneAnswer) -> str:
    return answer.model_dump_json(exclude={"v", "id"})


def _hub_key(facility_id: str) -> str:
    return "hub:" + facility_id


def _answer_key(checkin_id: str) -> str:
    return "answer:" + checkin_id
