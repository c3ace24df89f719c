"""From a pass text to a Decision: verification, status list, policy, anti-passback, capacity.

Everything here runs on the node with no network: the trust list and the status list are
local copies, the facility's occupancy is the last state the hub published.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from firmware.model import StrictModel
from firmware.signals import Signal
from protocol import passes
from protocol.events import FacilityState
from protocol.passes import Reason
from protocol.status import Status
from protocol.statuslist import StatusList
from protocol.trust import TrustList

logger = logging.getLogger(__name__)

Direction = Literal["entry", "exit"]

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
    ) -> None:
        self._lock = threading.Lock()
        self.config = config
        self.trust = trust
        self.statuses = statuses or StatusList()
        self.facility: FacilityState | None = None
        self.lockdown = False
        # subject hex -> time of its last entry here, cleared by an exit.
        self._inside: dict[str, float] = {}

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
        """Whether the subject entered here within the anti-passback window."""
        with self._lock:
            entered = self._inside.get(subject)
            return entered is not None and now - entered < self.config.anti_passback_s

    def _forget_older_than(self, cutoff: float) -> None:
        for subject in [s for s, t in self._inside.items() if t < cutoff]:
            del self._inside[subject]
