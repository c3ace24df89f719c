"""The door thread: turns scans, button presses and remote opens into signals, relay
pulses and journal events, one at a time, in the order they happened.

Everything that touches GPIO runs here, so the relay is never driven from two places and
the scan loop and the MQTT link never wait on a turnstile.

A door that cannot record must not let people in uncounted. When the journal refuses a
write (a full disk, a failing SD card) the event is kept in memory with the time it
happened, the node reports itself degraded, an alarm is raised, and from then on entries
are refused (red, reason ``journal_unavailable``) until the journal takes the kept events
again; it is retried every few seconds. Exits still open: nobody is locked in because a
disk filled up, and a missed exit only makes the count err on the safe side. A visitor
whose admission was journaled just before the disk filled is already through; that event
is kept too, and its admission in the journal stands for it across a crash.

An admission is journaled before the relay pulses (``Journal.admit``), and the event that
settles it (entry, exit, manual, ``not_passed``, or a refusal by the relay) takes its
event id in one commit; a node stopped in between leaves the admission for the next start
to settle as unconfirmed. An entry whose admission the journal refuses is not let in;
exits and a guard's remote open still release the gate, their events kept in memory.

A wall clock stepped backwards (NTP correcting a clock that ran ahead) is believed: it is
the best time the door has, and passes are judged by it. Events keep their seq order, and
an alarm (``clock_stepped_back``) goes into the journal between the last event on the old
time and the first on the new, so the hub and a reader of the log see why times jump.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from controller.errors import JournalError
from controller.journal import Admission, Entry, Journal
from firmware.errors import NotArmed
from firmware.gpio import Devices
from protocol import passes
from protocol.events import EventKind, utcnow
from protocol.policy import Decision, Direction, Policy
from protocol.signals import Signal

logger = logging.getLogger(__name__)

# While the journal refuses writes, the kept events are offered to it again this often.
JOURNAL_RETRY_S = 2.0
# Events kept in memory while the journal refuses them; past this the oldest are dropped
# (and counted): hours of a busy door, as entries are refused meanwhile.
BACKLOG_MAX = 10_000
# The wall clock moving against the monotonic one by more than this is a step, not drift.
CLOCK_STEP_S = 2.0


@dataclass(frozen=True)
class Scan:
    text: str
    frame_ts: float  # time.monotonic() when the frame was captured


@dataclass(frozen=True)
class ExitRequest:
    source: str  # "button" or "sensor"


@dataclass
class RemoteOpen:
    reason: str
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


@dataclass(frozen=True)
class Unreleased:
    """A sensor saw a passage nobody released: a free exit, or a forced door."""

    what: Literal["rotation", "door_opened"]


@dataclass(frozen=True)
class Alarm:
    detail: str
    message: str


Work = Scan | ExitRequest | RemoteOpen | Unreleased | Alarm


@dataclass
class DoorStats:
    decisions: int = 0
    admitted: int = 0
    denied: int = 0
    entries: int = 0
    exits: int = 0
    not_passed: int = 0
    alarms: int = 0
    journal_failures: int = 0
    backlog_dropped: int = 0
    # Frame capture to relay energised, seconds; the latency a visitor feels.
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))


class Door:
    def __init__(
        self,
        *,
        direction: Literal["entry", "exit", "both"],
        policy: Policy,
        devices: Devices,
        journal: Journal,
        passage: Literal["auto", "sensor", "assume"],
        passage_timeout_s: float,
        signal_s: float,
        on_event: Callable[[], None] = lambda: None,
        on_journal: Callable[[str | None], None] = lambda problem: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.direction = direction
        self.policy = policy
        self.devices = devices
        self.journal = journal
        self.passage_timeout_s = passage_timeout_s
        self.signal_s = signal_s
        self.on_event = on_event
        self.on_journal = on_journal  # a problem text, or None when the journal records again
        self.clock = clock
        self.stats = DoorStats()
        self.last_decision: Decision | None = None
        self._queue: queue.Queue[Work | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._watcher = devices.passage_watcher()
        self._confirm = passage == "sensor" or (passage == "auto" and self._watcher.can_confirm)
        self._releasing = threading.Event()
        self._pending_frame_ts: float | None = None
        self._backlog: deque[Entry] = deque()
        self._journal_failing = False
        self._clock_offset = self.clock() - time.monotonic()
        self._removers = [devices.relay.on_change(self._on_relay)]
        self._wire_inputs()

    # -- inputs from other threads (never block) --------------------------------------

    def submit(self, work: Work) -> None:
        self._queue.put(work)

    def _wire_inputs(self) -> None:
        d = self.devices
        if d.exit_button is not None:
            d.exit_button.when_pressed = lambda: self.submit(ExitRequest("button"))
        if d.rotation_sensor is not None:
            self._removers.append(d.rotation_sensor.add_listener(self._on_rotation))
        if d.door_contact is not None:
            self._removers.append(d.door_contact.add_listener(self._on_door))

    def _on_rotation(self, _count: int) -> None:
        if not self._releasing.is_set():
            self.submit(Unreleased("rotation"))

    def _on_door(self, closed: bool) -> None:
        if not closed and not self._releasing.is_set():
            self.submit(Unreleased("door_opened"))

    def _on_relay(self, is_open: bool, t: float) -> None:
        frame_ts = self._pending_frame_ts
        if is_open and frame_ts is not None:
            self.stats.latencies.append(t - frame_ts)
            self._pending_frame_ts = None

    # -- the thread ------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="door", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout_s)
        for remove in self._removers:
            remove()
        self._watcher.close()
        if self.devices.exit_button is not None:
            self.devices.exit_button.when_pressed = None

    def _run(self) -> None:
        while True:
            try:
                work = self._queue.get(timeout=JOURNAL_RETRY_S if self._backlog else None)
            except queue.Empty:
                self._flush()
                continue
            if work is None:
                return
            try:
                self.handle(work)
            except Exception:
                # One bad piece of work must not stop the door; it is logged with its
                # traceback and the door goes on with the next visitor.
                logger.exception("door failed to handle %r", work)

    def handle(self, work: Work) -> None:
        if isinstance(work, Scan):
            self._scan(work)
        elif isinstance(work, ExitRequest):
            self._release(EventKind.EXIT, subject=None, detail=f"exit {work.source}")
        elif isinstance(work, RemoteOpen):
            self._remote_open(work)
        elif isinstance(work, Unreleased):
            self._unreleased(work)
        else:
            self.record(Entry(EventKind.ALARM, detail=work.detail, message=work.message))
            self.devices.indicator.show(Signal.ERROR, self.signal_s)

    # -- what happens at the door ----------------------------------------------------

    def _direction_for(self, text: str, now: float) -> Direction:
        if self.direction != "both":
            return self.direction
        parsed = passes.parse(text)
        if isinstance(parsed, passes.Pass) and self.policy.inside(parsed.subject_hex, now):
            return "exit"
        return "entry"

    def _scan(self, scan: Scan) -> None:
        now = self.clock()
        decision = self.policy.decide(scan.text, self._direction_for(scan.text, now), now)
        self.last_decision = decision
        self.stats.decisions += 1
        logger.info(
            "decision: %s %s (%s) subject=%s",
            "admit" if decision.admit else "deny",
            decision.signal.value,
            decision.reason,
            decision.subject,
        )
        if not decision.admit:
            self.stats.denied += 1
            self.devices.indicator.show(decision.signal, self.signal_s)
            self._record_decision(EventKind.DENIED, decision)
            if decision.alarm:
                self.record(
                    Entry(
                        EventKind.ALARM,
                        subject=decision.subject,
                        signal=decision.signal,
                        detail="black_pass",
                        message=decision.message,
                    )
                )
            return
        if decision.direction == "entry" and not self._flush():
            # Nobody comes in uncounted: the entry is refused while the journal refuses.
            self.stats.denied += 1
            self.devices.indicator.show(Signal.RED, self.signal_s)
            self._record_decision(
                EventKind.DENIED,
                decision,
                admit=False,
                reason="journal_unavailable",
                message="door cannot record entries: please see a guard",
            )
            return
        self.stats.admitted += 1
        kind = EventKind.ENTRY if decision.direction == "entry" else EventKind.EXIT
        if decision.alarm:
            self.record(
                Entry(
                    EventKind.ALARM,
                    subject=decision.subject,
                    signal=decision.signal,
                    detail="black_pass_exit",
                    message=decision.message,
                )
            )
        self._release(kind, decision=decision, frame_ts=scan.frame_ts)

    def _release(
        self,
        kind: EventKind,
        *,
        decision: Decision | None = None,
        subject: str | None = None,
        detail: str | None = None,
        frame_ts: float | None = None,
    ) -> bool:
        """Open the gate once and count the passage; False if the relay refused."""
        relay = self.devices.relay
        signal = decision.signal if decision is not None else Signal.GREEN
        subject = decision.subject if decision is not None else subject
        admission = self._admit(kind, decision, subject, signal, detail)
        if admission is None and kind is EventKind.ENTRY and decision is not None:
            # Nobody comes in uncounted: without its admission journaled, no pulse.
            self.stats.denied += 1
            self.devices.indicator.show(Signal.RED, self.signal_s)
            self._record_decision(
                EventKind.DENIED,
                decision,
                admit=False,
                reason="journal_unavailable",
                message="door cannot record entries: please see a guard",
            )
            return False
        settles = None if admission is None else admission.event_id
        self._releasing.set()
        try:
            self._watcher.expect()
            self._pending_frame_ts = frame_ts
            try:
                pulsed = relay.pulse()
            except NotArmed:
                # A failed self-test leaves the relay disarmed: the door stays locked.
                pulsed = False
            if not pulsed:
                self._pending_frame_ts = None
                reason = "lockdown" if relay.locked_down else "relay_not_armed"
                logger.warning("relay refused to open (%s)", reason)
                self.devices.indicator.show(Signal.RED, self.signal_s)
                if decision is not None:
                    self.stats.denied += 1
                    self._record_decision(
                        EventKind.DENIED,
                        decision,
                        admit=False,
                        reason=reason,
                        message="door cannot open: " + reason.replace("_", " "),
                        admission=settles,
                    )
                elif settles is not None:
                    self._withdraw(settles)
                return False
            self.devices.indicator.show(signal, self.signal_s)
            passed = self._watcher.wait(self.passage_timeout_s) if self._confirm else True
        finally:
            self._releasing.clear()
        if passed:
            if kind is EventKind.EXIT:
                self.stats.exits += 1
            elif kind is EventKind.ENTRY:
                self.stats.entries += 1
            if kind is EventKind.ENTRY and subject is not None:
                self.policy.entered(subject, self.clock())
            way = self._way(kind)
            if decision is not None:
                self._record_decision(kind, decision, direction=way, admission=settles)
            else:
                self.record(
                    Entry(
                        kind,
                        subject=subject,
                        admit=True,
                        detail=detail,
                        reason="ok",
                        direction=way,
                        admission=settles,
                    )
                )
        else:
            self.stats.not_passed += 1
            self.record(
                Entry(
                    EventKind.NOT_PASSED,
                    subject=subject,
                    signal=signal,
                    admit=True,
                    reason="not_passed",
                    message=f"admitted ({kind.value}), nobody passed",
                    detail=detail,
                    admission=settles,
                )
            )
        return True

    def _admit(
        self,
        kind: EventKind,
        decision: Decision | None,
        subject: str | None,
        signal: Signal,
        detail: str | None,
    ) -> Admission | None:
        """Journal the admission before the pulse; None if the journal refuses it."""
        if not self._flush():
            # Kept events wait in memory: the journal is refusing writes already.
            return None
        try:
            return self.journal.admit(
                kind,
                direction=self._way(kind),
                subject=subject,
                signal=signal,
                reason=decision.reason if decision is not None else "ok",
                message=decision.message if decision is not None else None,
                detail=detail,
            )
        except JournalError as err:
            self._journal_failed(err)
            return None

    def _withdraw(self, event_id: str) -> None:
        """Forget an admission whose gate never opened (no event is due for it)."""
        try:
            self.journal.withdraw(event_id)
        except JournalError as err:
            # Left in the journal, it is settled as an unconfirmed passage at the next
            # start: one passage too many counted, never one too few.
            logger.error("admission %s not withdrawn: %s", event_id, err)

    def _remote_open(self, work: RemoteOpen) -> None:
        try:
            relay = self.devices.relay
            if not relay.armed:
                work.error = "relay not armed (self-test failed)"
                return
            if relay.locked_down:
                work.error = "door is locked down"
                return
            # The reply goes out as soon as the gate is released; the passage is an event.
            done = work.done

            def released(is_open: bool, _t: float) -> None:
                if is_open:
                    done.set()

            remove = relay.on_change(released)
            try:
                kind = EventKind.MANUAL
                self._release(kind, subject=None, detail=work.reason[:200])
            finally:
                remove()
        finally:
            work.done.set()

    def _unreleased(self, work: Unreleased) -> None:
        if self.direction == "exit":
            # A free-exit turnstile or door: every passage is someone leaving.
            if work.what == "rotation" or self.devices.rotation_sensor is None:
                self.stats.exits += 1
                self.record(
                    Entry(
                        EventKind.EXIT,
                        admit=True,
                        reason="ok",
                        detail="free exit",
                        direction="exit",
                    )
                )
            return
        self.devices.indicator.show(Signal.BLACK, self.signal_s)
        detail = "forced_door" if work.what == "door_opened" else "forced_passage"
        self.record(Entry(EventKind.ALARM, detail=detail, message="passage without a release"))

    # -- the journal -----------------------------------------------------------------

    def _record_decision(
        self,
        kind: EventKind,
        decision: Decision,
        *,
        admit: bool | None = None,
        reason: str | None = None,
        message: str | None = None,
        direction: Direction | None = None,
        admission: str | None = None,
    ) -> None:
        self.record(
            Entry(
                kind,
                subject=decision.subject,
                signal=decision.signal,
                admit=decision.admit if admit is None else admit,
                reason=reason or decision.reason,
                message=message or decision.message,
                direction=direction,
                admission=admission,
            )
        )

    def _way(self, kind: EventKind) -> Direction:
        """Which way a counted passage went; a manual open follows the door's direction."""
        if kind is EventKind.EXIT or (kind is EventKind.MANUAL and self.direction == "exit"):
            return "exit"
        return "entry"

    def record(self, entry: Entry) -> None:
        """Journal an event; if the disk refuses, keep it (with its time) and retry later."""
        self._watch_clock()
        if entry.kind is EventKind.ALARM:
            self.stats.alarms += 1
        self._keep(entry if entry.ts is not None else replace(entry, ts=utcnow()))
        self._flush()

    def _watch_clock(self) -> None:
        offset = self.clock() - time.monotonic()
        step = offset - self._clock_offset
        self._clock_offset = offset
        if step > -CLOCK_STEP_S:
            if step > CLOCK_STEP_S:
                logger.info("wall clock stepped forward by %.1f s", step)
            return
        logger.warning("wall clock stepped back by %.1f s; event times jump back", -step)
        self.stats.alarms += 1
        self._keep(
            Entry(
                EventKind.ALARM,
                ts=utcnow(),
                detail="clock_stepped_back",
                message=f"the wall clock stepped back by {-step:.0f} s",
            )
        )

    def _keep(self, entry: Entry) -> None:
        if len(self._backlog) >= BACKLOG_MAX:
            self._backlog.popleft()
            self.stats.backlog_dropped += 1
            logger.error("journal backlog full: the oldest kept event is dropped")
        self._backlog.append(entry)

    def _flush(self) -> bool:
        """Write the kept events to the journal; True when none is left."""
        wrote = 0
        while self._backlog:
            try:
                self.journal.write(self._backlog[0])
            except JournalError as err:
                self._journal_failed(err)
                if wrote:
                    self.on_event()
                return False
            self._backlog.popleft()
            wrote += 1
        if self._journal_failing:
            self._journal_failing = False
            logger.warning("journal records again; %d kept events written", wrote)
            self.on_journal(None)
        if wrote:
            self.on_event()
        return True

    def _journal_failed(self, err: JournalError) -> None:
        self.stats.journal_failures += 1
        if self._journal_failing:
            return
        self._journal_failing = True
        logger.error(
            "journal refused an event, kept in memory; entries refused until it records again: %s",
            err,
        )
        self.on_journal(f"journal: {err}"[:200])
        self.stats.alarms += 1
        self._keep(
            Entry(
                EventKind.ALARM,
                ts=utcnow(),
                detail="journal_failed",
                message=f"events kept in memory, entries refused: {err}",
            )
        )

    @property
    def backlog(self) -> int:
        return len(self._backlog)
