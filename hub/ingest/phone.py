"""Phone check-ins, decided by the hub as a camera door decides a pass.

A visitor's phone opens a door's poster address at the registry, and the registry passes
the check-in on over the hub's channel (``hub.upstream.channel``). Here it meets the
door's own decision table (``protocol.policy``), fed what a door is fed, from the hub's
own records: the trust list and the subject's status from the registry's sync, the
facility's occupancy and capacity, and the subject's last passage at any door of the
facility (facility-wide anti-passback, with the camera doors). The decision becomes
events like a door's, from the facility's ``phone`` node, stored and counted through the
ingest's writer in order with the doors' events: on the dashboard, in the visits pushed
to the registry, in the passages the camera doors hear.

The check-in's id is its event's id, so a check-in handed over twice (its answer was lost
on the way) is counted once: the second time is answered from the stored event.

A check-in the registry answered for while the hub could not be reached (``queued``)
happened at its own time, in front of staff: it is decided by the pass and the status at
that time, without the capacity or anti-passback of now, so what happened is counted.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Literal

from hub.config import FacilityConfig, HubConfig
from hub.counting.rules import direction_sign
from hub.errors import StoreDataError, StoreError
from hub.ingest.mqtt import Ingest
from hub.records import BatchResult, Occupancy, StoredEvent
from hub.store import Store
from protocol import passes
from protocol.checkins import PHONE_NODE, PhoneAnswer, PhoneCheckin
from protocol.events import Event, EventKind, FacilityState, Passage
from protocol.policy import Decision, Policy
from protocol.signals import Signal
from protocol.statuslist import StatusList
from protocol.trust import TrustList

logger = logging.getLogger(__name__)

Direction = Literal["entry", "exit"]
_WAYS: dict[int, Direction] = {1: "entry", -1: "exit"}


class PhoneDoors:
    """The hub's answer to phone check-ins at any door of its facilities."""

    def __init__(
        self,
        config: HubConfig,
        store: Store,
        ingest: Ingest,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.ingest = ingest
        self.clock = clock
        self._facilities: dict[str, FacilityConfig] = {f.id: f for f in config.facilities}
        self._seq: dict[str, int] = {}
        # One check-in at a time: each event's seq in order, and a subject who scans two
        # doors at once is decided with the first passage counted.
        self._lock = asyncio.Lock()
        self._max_age = timedelta(days=config.retention.days)
        self._max_ahead = timedelta(seconds=config.ingest.max_clock_ahead_s)

    async def decide(self, checkin: PhoneCheckin) -> PhoneAnswer:
        """Decide one check-in, count what it made, and say what the phone shows."""
        async with self._lock:
            answer, events = await asyncio.to_thread(self._decide, checkin)
            if not events:
                return answer
            try:
                result = await asyncio.wrap_future(self.ingest.submit(events))
            except (StoreError, StoreDataError):
                self._seq[checkin.facility_id] -= len(events)
                raise
            return _counted(answer, result, checkin.facility_id)

    # --- in a worker thread ----------------------------------------------------------
    def _decide(self, checkin: PhoneCheckin) -> tuple[PhoneAnswer, list[Event]]:
        now = self.clock()
        facility = self._facilities.get(checkin.facility_id)
        if facility is None:
            return _refused(checkin, Signal.ERROR, "unknown_facility", now), []
        done = self.store.event(checkin.id)
        if done is not None:
            # Handed over again: the answer is what was counted the first time.
            return self._again(checkin, done, now), []
        at = datetime.fromtimestamp(checkin.at_ms / 1000, UTC)
        ahead = at - datetime.fromtimestamp(now, UTC)
        if -ahead > self._max_age:
            return _refused(checkin, Signal.ERROR, "too_old", now), []
        if ahead > self._max_ahead:
            return _refused(checkin, Signal.ERROR, "future_time", now), []
        door_direction = self._door_direction(facility, checkin)
        if door_direction is None:
            return _refused(checkin, Signal.ERROR, "unknown_door", now), []
        occupancy = self.store.occupancy(facility.id)
        parsed = passes.parse(checkin.pass_text)
        held = parsed if isinstance(parsed, passes.Pass) else None
        policy = self._policy(facility, checkin, held, occupancy)
        decided_at = checkin.at_ms / 1000 if checkin.queued else now
        subject = held.subject_hex if held is not None else None
        direction: Direction = "entry"
        if door_direction == "exit":
            direction = "exit"
        elif door_direction == "both" and subject is not None:
            direction = "exit" if policy.inside(subject, decided_at) else "entry"
        decision = policy.decide(checkin.pass_text, direction, decided_at)
        events = self._events(checkin, facility, decision, at)
        return _answer(checkin, decision, occupancy, now), events

    def _door_direction(
        self, facility: FacilityConfig, checkin: PhoneCheckin
    ) -> Literal["entry", "exit", "both"] | None:
        """The door's direction as this hub knows it (its own door list, if it keeps one;
        the facility's registration at the registry otherwise)."""
        if not facility.doors:
            return checkin.door_direction
        for door in facility.doors:
            if door.id == checkin.door_id:
                return door.direction
        return None

    def _policy(
        self,
        facility: FacilityConfig,
        checkin: PhoneCheckin,
        held: passes.Pass | None,
        occupancy: Occupancy,
    ) -> Policy:
        """The door's decision table, fed from the hub's records for this check-in's pass
        (``held``: None for a text that is no pass, which the table refuses itself)."""
        config = facility.policy
        if checkin.queued:
            # Decided at its own time, in front of staff: no capacity or anti-passback of now.
            config = config.model_copy(update={"anti_passback_s": 0.0, "deny_when_full": False})
        state = self.store.sync_state()
        trust = (
            TrustList.loads(state.trust.body, "the stored trust list")
            if state.trust is not None
            else TrustList({})
        )
        statuses = StatusList()
        if held is not None:
            known = self.store.status_of(held.subject_hex)
            if known is not None:
                statuses = StatusList.from_items([(held.subject, known[0], known[1])])
        policy = Policy(config, trust, statuses)
        policy.set_facility_state(
            FacilityState(
                facility_id=facility.id,
                occupancy=occupancy.occupancy,
                capacity=occupancy.capacity,
                full=occupancy.full,
            )
        )
        if held is not None:
            last = self.store.last_passage(facility.id, held.subject_hex)
            way = _WAYS.get(direction_sign(last.event.kind, last.event.direction)) if last else None
            if last is not None and way is not None:
                e = last.event
                policy.note_passage(
                    Passage(
                        node_id=e.node_id, door_id=e.door_id, subject=held.subject_hex,
                        direction=way, ts=e.ts, event_id=e.event_id,
                    )
                )  # fmt: skip
        return policy

    def _events(
        self, checkin: PhoneCheckin, facility: FacilityConfig, decision: Decision, at: datetime
    ) -> list[Event]:
        """What a camera door would journal for this decision, from the ``phone`` node."""
        made: list[tuple[str, EventKind, dict[str, object]]] = []
        common = {
            "subject": decision.subject,
            "signal": decision.signal,
            "message": decision.message[:200],
        }
        if decision.admit:
            kind = EventKind.ENTRY if decision.direction == "entry" else EventKind.EXIT
            if decision.alarm:
                made.append((_derived(checkin.id, "alarm"), EventKind.ALARM,
                             {**common, "detail": "black_pass_exit"}))  # fmt: skip
            made.append((checkin.id, kind, {**common, "direction": decision.direction,
                                            "admit": True, "reason": "ok"}))  # fmt: skip
        else:
            made.append((checkin.id, EventKind.DENIED, {**common, "direction": decision.direction,
                                                        "admit": False,
                                                        "reason": decision.reason}))  # fmt: skip
            if decision.alarm:
                made.append((_derived(checkin.id, "alarm"), EventKind.ALARM,
                             {**common, "detail": "black_pass"}))  # fmt: skip
        seq = self._next_seq(facility.id, len(made))
        return [
            Event.model_validate(
                {
                    "event_id": event_id,
                    "node_id": PHONE_NODE,
                    "facility_id": facility.id,
                    "door_id": checkin.door_id,
                    "seq": seq + index,
                    "ts": at,
                    "kind": kind,
                    "late": checkin.queued,
                    **{k: v for k, v in fields.items() if v is not None},
                }
            )
            for index, (event_id, kind, fields) in enumerate(made)
        ]

    def _next_seq(self, facility_id: str, count: int) -> int:
        """The first of ``count`` new seq numbers of the facility's phone node."""
        last = self._seq.get(facility_id)
        if last is None:
            nodes = self.store.nodes(facility_id)
            last = next((n.last_seq for n in nodes if n.node_id == PHONE_NODE), 0)
        self._seq[facility_id] = last + count
        return last + 1

    def _again(self, checkin: PhoneCheckin, done: StoredEvent, now: float) -> PhoneAnswer:
        event = done.event
        occupancy = self.store.occupancy(checkin.facility_id)
        admit = event.kind in (EventKind.ENTRY, EventKind.EXIT)
        return PhoneAnswer(
            id=checkin.id,
            signal=event.signal or (Signal.GREEN if admit else Signal.RED),
            admit=admit,
            direction=event.direction,
            reason=event.reason or ("ok" if admit else "denied"),
            occupancy=occupancy.occupancy,
            capacity=occupancy.capacity,
            full=occupancy.full,
            at_ms=int(now * 1000),
        )


def _counted(answer: PhoneAnswer, result: BatchResult, facility_id: str) -> PhoneAnswer:
    """The answer with the facility's count after the check-in was counted."""
    occupancy = result.occupancy.get(facility_id)
    if occupancy is None:
        return answer
    return answer.model_copy(
        update={
            "occupancy": occupancy.occupancy,
            "capacity": occupancy.capacity,
            "full": occupancy.full,
        }
    )


def _derived(checkin_id: str, what: str) -> str:
    """A second event's id, derived from the check-in's, so a retry derives the same."""
    return hashlib.sha256(f"{checkin_id}:{what}".encode()).hexdigest()[:32]


def _answer(
    checkin: PhoneCheckin, decision: Decision, occupancy: Occupancy, now: float
) -> PhoneAnswer:
    return PhoneAnswer(
        id=checkin.id,
        signal=decision.signal,
        admit=decision.admit,
        direction=decision.direction,
        reason=decision.reason,
        occupancy=occupancy.occupancy,
        capacity=occupancy.capacity,
        full=occupancy.full,
        at_ms=int(now * 1000),
    )


def _refused(checkin: PhoneCheckin, signal: Signal, reason: str, now: float) -> PhoneAnswer:
    """An answer for a check-in the hub cannot decide at all (nothing is counted)."""
    return PhoneAnswer(
        id=checkin.id, signal=signal, admit=False, reason=reason, at_ms=int(now * 1000)
    )
