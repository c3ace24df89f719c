"""From a pass text to a Decision: verification, status list, policy, anti-passback, capacity.

Everything here runs on the node with no network: the trust list and the status list are
local copies, the facility's occupancy is the last state the hub published.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import Field

from protocol import passes
from protocol.events import FacilityState, Passage
from protocol.model import StrictModel
from protocol.passes import Reason
from protocol.signals import Signal
from protocol.status import Status
from protocol.statuslist import StatusList
from protocol.trust import TrustList

logger = logging.getLogger(__name__)

Direction = Literal["entry", "exit"]

# Entries at the facility's other doors kept for facility-wide anti-passback. The oldest
# are forgotten first, so a hostile flood of passages costs bounded memory.
FACILITY_MEMORY = 50_000

# A text that is not a pass at all gets the "could not read" signal; a pass that is
# readable but not acceptable gets red.
_UNREADABLE = {
    Reason.EMPTY,
    Reason.OVERSIZE,
    Reason.NOT_ASCII,
    Reason.WRONG_PREFIX,
    Reason.UNSUPPORTED_VERSION,
    Reason.MALFORMED,
    Reason.TRUNCATED,
}


class PolicyConfig(StrictModel):
    """What a facility admits. The defaults follow the health protocol Pintu models."""

    yellow: Literal["admit", "deny"] = Field(
        "admit", description="One dose: admit with a yellow signal, or deny."
    )
    red: Literal["deny", "admit"] = Field(
        "deny", description="Not vaccinated: deny (default), or admit for essential services."
    )
    anti_passback_s: float = Field(
        600.0,
        ge=0,
        description="A subject who entered here cannot enter again within this many seconds "
        "without an exit in between; 0 turns anti-passback off.",
    )
    deny_when_full: bool = Field(
        True, description="Refuse entry when the hub says the facility is at capacity."
    )
    clock_skew_s: int = Field(
        passes.DEFAULT_CLOCK_SKEW_S,
        ge=0,
        le=3600,
        description="How far in the future a pass's issue time may be (door clocks drift).",
    )


@dataclass(frozen=True, slots=True)
class _Elsewhere:
    """A subject's latest entry at another door of the facility, as the hub reported it."""

    at: float
    door_id: str

    @property
    def clock(self) -> str:
        return datetime.fromtimestamp(self.at, UTC).strftime("%H:%M:%S UTC")


@dataclass(frozen=True)
class Decision:
    """What the door does with one pass, and why, in words a guard can read."""

    signal: Signal
    admit: bool
    reason: str
    message: str
    direction: Direction
    subject: str | None = None
    status: Status | None = None
    alarm: bool = False


class Policy:
    """Decides. Thread-safe: lists and policy are swapped whole under a lock."""

    def __init__(
        self,
        config: PolicyConfig,
        trust: TrustList,
        statuses: StatusList | None = None,
        *,
        node_id: str | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self.node_id = node_id
        self.config = config
        self.trust = trust
        self.statuses = statuses or StatusList()
        self.facility: FacilityState | None = None
        self.lockdown = False
        # subject hex -> time of its last entry here, cleared by an exit.
        self._inside: dict[str, float] = {}
        # subject hex -> its last entry at another door, cleared by an exit anywhere.
        self._elsewhere: OrderedDict[str, _Elsewhere] = OrderedDict()

    def replace_lists(
        self, trust: TrustList | None = None, statuses: StatusList | None = None
    ) -> None:
        with self._lock:
            if trust is not None:
                self.trust = trust
            if statuses is not None:
                self.statuses = statuses

    def set_config(self, config: PolicyConfig) -> None:
        with self._lock:
            self.config = config

    def set_facility_state(self, state: FacilityState) -> None:
        with self._lock:
            self.facility = state

    @property
    def full(self) -> bool:
        state = self.facility
        return state is not None and state.full

    def decide(self, text: str, direction: Direction, now: float) -> Decision:
        with self._lock:
            return self._decide(text, direction, now)

    def _decide(self, text: str, direction: Direction, now: float) -> Decision:
        config = self.config
        verdict = passes.verify(text, self.trust, now=now, clock_skew_s=config.clock_skew_s)
        if not verdict.ok or verdict.pass_ is None:
            signal = Signal.ERROR if verdict.reason in _UNREADABLE else Signal.RED
            subject = verdict.pass_.subject_hex if verdict.pass_ is not None else None
            return Decision(
                signal, False, verdict.reason.value, verdict.message, direction, subject
            )
        p = verdict.pass_
        subject = p.subject_hex
        status = self.statuses.effective(p.subject, p.status, p.issued_at)

        def deny(signal: Signal, reason: str, message: str, alarm: bool = False) -> Decision:
            return Decision(signal, False, reason, message, direction, subject, status, alarm)

        def admit(signal: Signal, message: str, alarm: bool = False) -> Decision:
            return Decision(signal, True, "ok", message, direction, subject, status, alarm)

        if direction == "exit":
            # Nobody is kept inside. A black pass leaving is still an alarm: someone
            # infectious was in the building.
            self._inside.pop(subject, None)
            self._elsewhere.pop(subject, None)
            if status is Status.BLACK:
                return admit(Signal.BLACK, "exit: confirmed case leaving", alarm=True)
            return admit(Signal.GREEN, "exit")

        if status is Status.BLACK:
            return deny(Signal.BLACK, "status_black", "confirmed case: entry refused", True)
        if self.lockdown:
            return deny(Signal.RED, "lockdown", "door is locked down")
        if status is Status.RED and config.red == "deny":
            return deny(Signal.RED, "status_red", "not vaccinated: entry refused")
        if status is Status.YELLOW and config.yellow == "deny":
            return deny(Signal.RED, "status_yellow", "one dose only: entry refused")
        if config.anti_passback_s > 0:
            entered = self._inside.get(subject)
            if entered is not None and now - entered < config.anti_passback_s:
                return deny(Signal.RED, "anti_passback", "already entered: exit first")
            other = self._elsewhere.get(subject)
            if other is not None and now - other.at < config.anti_passback_s:
                return deny(
                    Signal.RED,
                    "anti_passback_facility",
                    f"already entered at door {other.door_id} at {other.clock}: exit first",
                )
        if config.deny_when_full and self.full:
            return deny(Signal.FULL, "facility_full", "facility is at capacity")
        if status is Status.YELLOW:
            return admit(Signal.YELLOW, "one dose: admitted")
        if status is Status.RED:
            return admit(Signal.YELLOW, "not vaccinated: admitted by facility policy")
        return admit(Signal.GREEN, "admitted")

    def entered(self, subject: str, now: float) -> None:
        """Record a confirmed entry for anti-passback."""
        with self._lock:
            self._inside[subject] = now
            if len(self._inside) > 100_000:
                self._forget_older_than(now - self.config.anti_passback_s)

    def inside(self, subject: str, now: float) -> bool:
        """Whether the subject entered here, or at another door of the facility, within the
        anti-passback window."""
        with self._lock:
            window = self.config.anti_passback_s
            entered = self._inside.get(subject)
            if entered is not None and now - entered < window:
                return True
            other = self._elsewhere.get(subject)
            return other is not None and now - other.at < window

    def note_passage(self, passage: Passage) -> None:
        """Take in a passage at a door of the facility, as the hub broadcast it.

        An entry elsewhere makes this door refuse the subject's entry for the anti-passback
        window; an exit anywhere clears what this door knows of the subject, unless the
        subject entered here again after that exit. This door's own passages come back too
        and are skipped: what it recorded itself is already here, and is newer.
        """
        if passage.node_id == self.node_id:
            return
        at = passage.ts.timestamp()
        with self._lock:
            subject = passage.subject
            if passage.direction == "exit":
                entered = self._inside.get(subject)
                if entered is not None and entered <= at:
                    del self._inside[subject]
                other = self._elsewhere.get(subject)
                if other is not None and other.at <= at:
                    del self._elsewhere[subject]
                return
            previous = self._elsewhere.get(subject)
            if previous is not None and previous.at > at:
                return  # a late copy of an older entry
            self._elsewhere[subject] = _Elsewhere(at, passage.door_id)
            self._elsewhere.move_to_end(subject)
            while len(self._elsewhere) > FACILITY_MEMORY:
                self._elsewhere.popitem(last=False)

    @property
    def remembered_elsewhere(self) -> int:
        """How many entries at other doors this door keeps (bounded by FACILITY_MEMORY)."""
        with self._lock:
            return len(self._elsewhere)

    def _forget_older_than(self, cutoff: float) -> None:
        for subject in [s for s, t in self._inside.items() if t < cutoff]:
            del self._inside[subject]
