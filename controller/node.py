"""The door node: wires the scan loop, the door, the journal and the uplink together.

Start-up order matters for safety: the relay is claimed locked first, the self-test runs,
and only a passing self-test arms the relay. On stop the relay is locked before anything
else is released.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from pydantic import ValidationError

from controller.config import NodeConfig
from controller.door import Door, RemoteOpen
from controller.errors import ControllerError, JournalError
from controller.journal import Entry, Journal
from controller.lists import InUse, ListKind, ListReceiver
from controller.scanner import Scanner
from controller.uplink import Uplink
from firmware.camera import open_source
from firmware.decoder import make_decoder
from firmware.frames import FrameSource
from firmware.gpio import Devices
from protocol.errors import ProtocolError
from protocol.events import (
    Command,
    CommandName,
    CommandReply,
    EventKind,
    FacilityState,
    NodeState,
    NodeStatus,
    utcnow,
)
from protocol.policy import Policy, PolicyConfig
from protocol.statuslist import StatusList
from protocol.trust import TrustList
from runtime.notify import Notifier

logger = logging.getLogger(__name__)

OPEN_REPLY_TIMEOUT_S = 3.0
# How often the journal is checked for events too old to keep (and at every start).
EXPIRE_EVERY_S = 3600.0


class Node:
    def __init__(
        self,
        config: NodeConfig,
        *,
        source: FrameSource | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.clock = clock
        self._given_source = source
        self.notifier = Notifier()
        self.problems: dict[str, str] = {}
        self._problems_lock = threading.Lock()
        self.stopped = threading.Event()
        self.policy = Policy(config.policy, TrustList(), node_id=config.node_id)
        self.journal: Journal | None = None
        self.devices: Devices | None = None
        self.door: Door | None = None
        self.scanner: Scanner | None = None
        self.uplink: Uplink | None = None
        self.lists: ListReceiver | None = None

    # -- health ----------------------------------------------------------------------

    def set_problem(self, area: str, text: str | None) -> None:
        with self._problems_lock:
            changed = self.problems.get(area) != text
            if text is None:
                self.problems.pop(area, None)
            else:
                self.problems[area] = text
        if changed and self.uplink is not None:
            self.uplink.publish_status()

    def _list_age(self, updated_at: int | None) -> float | None:
        return None if updated_at is None else max(0.0, self.clock() - updated_at)

    def status(self) -> NodeStatus:
        trust_age = self._list_age(self.policy.trust.updated_at)
        status_age = self._list_age(self.policy.statuses.updated_at)
        with self._problems_lock:
            problems = list(self.problems.values())
        stale = self.config.stale_lists_after_s
        if trust_age is not None and trust_age > stale:
            problems.append(f"lists: trust list is {trust_age / 3600:.1f} h old")
        if status_age is not None and status_age > stale:
            problems.append(f"lists: status list is {status_age / 3600:.1f} h old")
        return NodeStatus(
            state=NodeState.DEGRADED if problems else NodeState.ONLINE,
            ts=utcnow(),
            problems=[p[:200] for p in problems[:20]],
            trust_list_age_s=trust_age,
            status_list_age_s=status_age,
            direction=self.config.direction,
        )

    # -- lists -----------------------------------------------------------------------

    def reload_lists(self) -> dict[str, Any]:
        """Read the trust and status lists from the state directory; keep the old on error."""
        trust_path = self.config.path(self.config.trust_list)
        status_path = self.config.path(self.config.status_list)
        trust: TrustList | None = None
        statuses: StatusList | None = None
        try:
            trust = TrustList.load(trust_path)
            self.set_problem("trust", None)
        except ProtocolError as err:
            logger.error("trust list not loaded: %s", err)
            self.set_problem("trust", f"lists: {err}")
        if status_path.exists():
            try:
                statuses = StatusList.load(status_path)
                self.set_problem("status", None)
            except ProtocolError as err:
                logger.error("status list not loaded: %s", err)
                self.set_problem("status", f"lists: {err}")
        self.policy.replace_lists(trust, statuses)
        return {
            "trust_keys": len(self.policy.trust.keys),
            "statuses": len(self.policy.statuses),
        }

    # -- commands from the hub (called on the uplink's worker thread) ----------------

    def handle_command(self, command: Command) -> CommandReply:
        def reply(ok: bool, error: str | None = None, **result: Any) -> CommandReply:
            return CommandReply(id=command.id, ok=ok, error=error, result=result or None)

        name = command.cmd
        if name == CommandName.PING:
            return reply(True, **self.status().model_dump(mode="json", exclude_none=True))
        if name == CommandName.OPEN:
            return self._command_open(command, reply)
        if name == CommandName.LOCKDOWN:
            on = command.args.get("on")
            if not isinstance(on, bool):
                return reply(False, "lockdown needs args.on = true or false")
            self.policy.lockdown = on
            if self.devices is not None:
                self.devices.relay.lockdown(on)
            self.set_problem("lockdown", "door locked down" if on else None)
            return reply(True, lockdown=on)
        if name == CommandName.RELOAD_LISTS:
            return reply(True, **self.reload_lists())
        if name == CommandName.SET_POLICY:
            try:
                merged = {**self.policy.config.model_dump(), **command.args}
                policy = PolicyConfig.model_validate(merged)
            except ValidationError as err:
                first = err.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                return reply(False, f"bad policy: {where}: {first['msg']}")
            self.policy.set_config(policy)
            return reply(True, **policy.model_dump())
        known = ", ".join(c.value for c in CommandName)
        return reply(False, f"unknown command {name!r}; known: {known}")

    def _command_open(self, command: Command, reply: Callable[..., CommandReply]) -> CommandReply:
        if self.door is None:
            return reply(False, "node is not running")
        reason = str(command.args.get("reason", "remote open"))
        work = RemoteOpen(reason=reason)
        self.door.submit(work)
        if not work.done.wait(OPEN_REPLY_TIMEOUT_S):
            return reply(False, "door busy: not released within 3 s")
        if work.error is not None:
            return reply(False, work.error)
        return reply(True, released=True)

    def on_facility_state(self, state: FacilityState) -> None:
        if state.facility_id != self.config.facility_id:
            logger.warning("ignored state for another facility %r", state.facility_id)
            return
        self.policy.set_facility_state(state)

    # -- life cycle ------------------------------------------------------------------

    def _open_source(self) -> FrameSource:
        if self._given_source is not None:
            return self._given_source
        return open_source(self.config.source)

    def start(self) -> None:
        config = self.config
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(
            config.state_dir / "journal.db",
            node_id=config.node_id,
            facility_id=config.facility_id,
            door_id=config.door_id,
        )
        self._settle_interrupted(self.journal)
        self.reload_lists()
        decoder = make_decoder(config.decoder.backend)
        # Claimed locked and disarmed; armed below only if the self-test passes.
        self.devices = Devices.build(config.pins)
        problems = self.devices.self_test()
        if problems:
            logger.error("self-test failed, relay stays disarmed: %s", "; ".join(problems))
            self.set_problem("self_test", "self-test failed: " + "; ".join(problems))
        else:
            self.devices.relay.arm()
        journal = self.journal
        self.door = Door(
            direction=config.direction,
            policy=self.policy,
            devices=self.devices,
            journal=journal,
            passage=config.gate.passage,
            passage_timeout_s=config.gate.passage_timeout_s,
            signal_s=config.gate.signal_s,
            on_event=self._on_event,
            on_journal=lambda problem: self.set_problem("journal", problem),
            clock=self.clock,
        )
        self.door.record(Entry(EventKind.NODE_START, detail=f"direction={config.direction}"))
        self.expire_journal()
        self.lists = ListReceiver(
            config.path(config.trust_list),
            config.path(config.status_list),
            config.path(config.list_keys),
            in_use=lambda: InUse(self.policy.trust, self.policy.statuses),
            reload=self.reload_lists,
            applied=self._lists_applied,
            problem=self._list_problem,
        )
        self.lists.start()
        self.uplink = Uplink(
            config.mqtt,
            facility_id=config.facility_id,
            node_id=config.node_id,
            journal=journal,
            status=self.status,
            on_command=self.handle_command,
            on_facility_state=self.on_facility_state,
            on_lists=self.lists.submit,
            on_passage=self.policy.note_passage,
        )
        self.uplink.start()
        self.door.start()
        self.scanner = Scanner(
            open_source=self._open_source,
            decoder=decoder,
            door=self.door,
            cooldown_s=config.scan.cooldown_s,
            restart_after_s=config.scan.restart_source_after_s,
            notifier=self.notifier,
            on_health=lambda problem: self.set_problem("camera", problem),
            on_decoder=lambda problem: self.set_problem("decoder", problem),
        )
        self.scanner.start()
        self.notifier.ready(f"door {config.door_id} ({config.direction}) ready")
        logger.info(
            "node %s ready at %s/%s (%s)",
            config.node_id,
            config.facility_id,
            config.door_id,
            config.direction,
        )

    def _settle_interrupted(self, journal: Journal) -> None:
        """Journal, before anything else, the admissions the last run left unsettled.

        The relay is not touched: those people were let through once already.
        """
        try:
            events = journal.settle_interrupted()
        except JournalError as err:
            # The admissions stay in the journal and are settled at the next start.
            logger.error("interrupted admissions not settled: %s", err)
            self.set_problem("journal", f"journal: {err}"[:200])
            return
        for event in events:
            if event.kind is EventKind.ENTRY and event.subject is not None:
                self.policy.entered(event.subject, event.ts.timestamp())

    def _list_problem(self, kind: ListKind, text: str | None) -> None:
        # A list refused (unsigned, a key not pinned, a bad signature...) shows at the hub
        # until a good copy of that list arrives.
        self.set_problem(f"lists_{kind}", None if text is None else f"lists: {text}"[:200])

    def _lists_applied(self, kind: ListKind) -> None:
        # The hub watches list ages in the retained status: tell it at once.
        if self.uplink is not None:
            self.uplink.publish_status()

    def _on_event(self) -> None:
        if self.uplink is not None:
            self.uplink.wake()

    def stop(self) -> None:
        """Stop cleanly: lock the door, record the stop, hand events to the broker."""
        self.notifier.stopping()
        if self.devices is not None:
            # Locked first, whatever the door thread is doing and however long the camera
            # takes to stop: a stalled capture must not keep a pulse going until SIGKILL.
            self.devices.relay.lockdown(True)
        if self.scanner is not None:
            self.scanner.stop()
        if self.door is not None:
            self.door.stop()
            self.door.record(Entry(EventKind.NODE_STOP, detail="stopped"))
        if self.uplink is not None:
            self.uplink.stop()
        if self.lists is not None:
            self.lists.stop()
        if self.devices is not None:
            self.devices.close()
        if self.journal is not None:
            self.journal.close()
        self.stopped.set()

    def run(self, stop: threading.Event | None = None) -> None:
        """Run until SIGTERM or SIGINT (or ``stop`` is set), then stop cleanly."""
        stop = stop or threading.Event()

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            logger.info("signal %d: stopping", signum)
            stop.set()

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_signal)
            signal.signal(signal.SIGINT, on_signal)
        try:
            self.start()
        except ControllerError:
            self.stop()
            raise
        try:
            while not stop.wait(EXPIRE_EVERY_S):
                self.expire_journal()
        finally:
            self.stop()

    def expire_journal(self, now: float | None = None) -> int:
        """Drop the journal's events older than ``journal_max_age_days`` that the hub never
        acknowledged, with an alarm saying how many. Returns how many."""
        journal, door = self.journal, self.door
        if journal is None or door is None:
            return 0
        days = self.config.journal_max_age_days
        try:
            dropped = journal.expire(days * 86_400, time.time() if now is None else now)
        except JournalError as err:
            logger.error("%s", err)
            return 0
        if dropped:
            logger.error(
                "%d events the hub never acknowledged were older than %g days: dropped",
                dropped,
                days,
            )
            door.record(
                Entry(
                    EventKind.ALARM,
                    detail="journal_expired",
                    message=f"{dropped} events older than {days:g} days never reached the hub",
                )
            )
        return dropped
