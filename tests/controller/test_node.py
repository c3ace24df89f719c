"""A whole door node, off the Pi: mock pins, a synthetic camera, a real Mosquitto.

Each test shows a pass to the camera and checks what a visitor and a guard would notice:
the signal, the relay, and the event that reaches the hub.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPin
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from PIL import Image

from controller.config import NodeConfig
from controller.errors import JournalError
from controller.journal import Entry, Journal
from controller.node import Node
from firmware.synthetic import PRESETS, SyntheticSource, render
from protocol import passes, topics
from protocol.events import Command, CommandReply, EventKind, FacilityState, NodeStatus
from protocol.signals import Signal
from protocol.status import Status
from protocol.trust import SigningKey, TrustList
from provisioning.mosquitto import Mosquitto

FACILITY, NODE, DOOR = "f1", "n1", "d1"
RELAY_PIN = 5
PULSE_MS = 150
KEY = SigningKey.generate()
STRANGER = SigningKey.generate()


def subject(n: int) -> bytes:
    return n.to_bytes(12, "big")


def make_pass(
    status: Status = Status.GREEN,
    n: int = 1,
    key: SigningKey = KEY,
    issued: float | None = None,
    valid_s: int = 3600,
) -> str:
    start = int(time.time() - 60 if issued is None else issued)
    return passes.issue(key, subject(n), status, 2, start, start + valid_s)


BASE_PINS: dict[str, Any] = {
    "pin_factory": "mock",
    "leds": {"kind": "three", "red": 17, "yellow": 27, "green": 22},
    "buzzer": {"pin": 18},
    "relay": {"pin": RELAY_PIN, "active_high": True, "pulse_ms": PULSE_MS, "wiring": "fail_secure"},
}


def node_config(state_dir: Path, broker: Mosquitto, **overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "node_id": NODE,
        "facility_id": FACILITY,
        "door_id": DOOR,
        "direction": "entry",
        "state_dir": str(state_dir),
        "source": {"kind": "synthetic", "preset": "easy", "fps": 30},
        "pins": dict(BASE_PINS),
        "gate": {"passage": "assume", "signal_s": 0.3},
        "scan": {"cooldown_s": 2.0},
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "reconnect_min_s": 0.05,
            "reconnect_max_s": 0.5,
            "ack_timeout_s": 2.0,
        },
    }
    doc.update(overrides)
    return doc


def write_trust(state_dir: Path) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    TrustList.of([KEY.trusted()], updated_at=int(time.time())).save(state_dir / "trust.json")


class RunningNode:
    def __init__(self, node: Node, source: SyntheticSource) -> None:
        self.node = node
        self.source = source

    @property
    def relay_pin(self) -> MockPin:
        pin: MockPin = Device.pin_factory.pin(RELAY_PIN)
        return pin

    def relay_levels(self) -> list[bool]:
        return [bool(s.state) for s in self.relay_pin.states]

    def pulses(self) -> list[float]:
        """Lengths in seconds of each time the relay was energised.

        A mock pin stamps each state with the time since the previous change.
        """
        states = self.relay_pin.states
        return [
            after.timestamp
            for before, after in itertools.pairwise(states)
            if before.state and not after.state
        ]

    def show(self, text: str, frames: int = 10) -> None:
        self.source.show(text, frames)


@pytest.fixture
def start_node(
    tmp_path: Path, broker: Mosquitto, mock_pins: MockFactory
) -> Iterator[Callable[..., RunningNode]]:
    started: list[Node] = []

    def start(**overrides: Any) -> RunningNode:
        state_dir = tmp_path / "node"
        write_trust(state_dir)
        config = NodeConfig.model_validate(node_config(state_dir, broker, **overrides))
        source = SyntheticSource(PRESETS["easy"], seed=7, fps=30)
        node = Node(config, source=source)
        node.start()
        started.append(node)
        return RunningNode(node, source)

    yield start
    for node in started:
        if not node.stopped.is_set():
            node.stop()


def events_of(hub: Any, kind: EventKind) -> list[Any]:
    return [e for e in hub.events() if e.kind is kind]


def test_green_pass_opens_once_and_reaches_the_hub(
    start_node: Callable[..., RunningNode], hub: Any, wait_for: Any
) -> None:
    running = start_node()
    assert running.relay_levels() == [False], "relay must start locked with no pulse"
    running.show(make_pass(Status.GREEN, n=1), frames=30)
    wait_for(lambda: events_of(hub, EventKind.ENTRY), what="an entry event at the hub")
    wait_for(lambda: running.relay_levels() == [False, True, False], what="one whole pulse")
    (length,) = running.pulses()
    assert PULSE_MS / 1000 <= length < PULSE_MS / 1000 + 0.1
    (entry,) = events_of(hub, EventKind.ENTRY)
    assert entry.subject == subject(1).hex()
    assert (entry.signal, entry.admit, entry.reason, entry.direction) == (
        "green",
        True,
        "ok",
        "entry",
    )
    assert (entry.node_id, entry.facility_id, entry.door_id) == (NODE, FACILITY, DOOR)
    assert entry.seq >= 2  # node_start came first
    assert entry.ts.tzinfo is not None
    # Held in view for 30 frames: still one decision.
    wait_for(lambda: running.source.pending == 0, what="all 30 frames shown")
    assert running.node.door is not None
    assert running.node.door.stats.decisions == 1
    wait_for(lambda: running.node.journal is not None and running.node.journal.pending_count() == 0)


@pytest.mark.parametrize(
    ("status", "signal", "reason"),
    [(Status.RED, Signal.RED, "status_red"), (Status.BLACK, Signal.BLACK, "status_black")],
)
def test_red_and_black_are_denied_without_a_pulse(
    start_node: Callable[..., RunningNode],
    hub: Any,
    wait_for: Any,
    status: Status,
    signal: Signal,
    reason: str,
) -> None:
    running = start_node()
    running.show(make_pass(status, n=2))
    wait_for(lambda: events_of(hub, EventKind.DENIED), what="a denied event")
    (denied,) = events_of(hub, EventKind.DENIED)
    assert (denied.signal, denied.admit, denied.reason) == (signal.value, False, reason)
    if status is Status.BLACK:
        wait_for(lambda: events_of(hub, EventKind.ALARM), what="the black-pass alarm")
        assert events_of(hub, EventKind.ALARM)[0].detail == "black_pass"
    assert running.relay_levels() == [False]
    assert not events_of(hub, EventKind.ENTRY)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (lambda: make_pass(key=STRANGER), "unknown_key"),
        (lambda: make_pass(issued=time.time() - 7200, valid_s=3600), "expired"),
        (lambda: make_pass()[:-12] + "AAAAAAAAAAAA", "bad_signature"),
    ],
    ids=["unknown_key", "expired", "forged"],
)
def test_bad_passes_are_denied_with_their_reason(
    start_node: Callable[..., RunningNode],
    hub: Any,
    wait_for: Any,
    text: Callable[[], str],
    reason: str,
) -> None:
    running = start_node()
    running.show(text())
    wait_for(lambda: events_of(hub, EventKind.DENIED), what="a denied event")
    assert events_of(hub, EventKind.DENIED)[0].reason == reason
    assert running.relay_levels() == [False]


def test_second_entry_without_exit_is_refused(
    start_node: Callable[..., RunningNode], hub: Any, wait_for: Any
) -> None:
    running = start_node(scan={"cooldown_s": 0.2})
    text = make_pass(n=3)
    running.show(text, frames=5)
    wait_for(lambda: events_of(hub, EventKind.ENTRY), what="the first entry")
    wait_for(lambda: running.source.pending == 0)
    # The code leaves the view for longer than the cooldown (15 idle frames at 30 fps),
    # then the same visitor shows it again.
    scanner = running.node.scanner
    assert scanner is not None
    seen = scanner.stats.frames
    wait_for(lambda: scanner.stats.frames > seen + 15, what="idle frames")
    running.show(text, frames=5)
    wait_for(lambda: events_of(hub, EventKind.DENIED), what="the refused second entry")
    assert events_of(hub, EventKind.DENIED)[0].reason == "anti_passback"
    assert len(running.pulses()) == 1


def test_a_journal_that_refuses_writes_refuses_entries_until_it_records_again(
    start_node: Callable[..., RunningNode],
    hub: Any,
    wait_for: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The journal's own failure (a full disk) is shown with a real tmpfs in
    # tests/faults/test_disk.py; here it is its error alone, so it runs without root.
    running = start_node(scan={"cooldown_s": 0.2}, policy={"anti_passback_s": 0})
    journal = running.node.journal
    assert journal is not None
    real_write = journal.write
    full = [True]

    def write(*args: Any, **kwargs: Any) -> Any:
        if full[0]:
            raise JournalError("event journal: cannot append an event: the disk is full")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(journal, "write", write)
    running.show(make_pass(n=20), frames=3)
    wait_for(lambda: running.node.status().state == "degraded", what="degraded")
    assert any(p.startswith("journal:") for p in running.node.status().problems)
    wait_for(lambda: running.source.pending == 0)
    running.show(make_pass(n=21), frames=3)
    door = running.node.door
    assert door is not None
    wait_for(lambda: door.stats.decisions == 2, what="the second decision")
    # The first visitor found the disk full on the way through; the second is refused.
    levels = running.relay_levels()
    assert sum(1 for a, b in itertools.pairwise(levels) if b and not a) == 1
    full[0] = False
    wait_for(lambda: running.node.status().state == "online", what="recovered")
    wait_for(lambda: len(events_of(hub, EventKind.DENIED)) == 1, what="the kept events")
    (refused,) = events_of(hub, EventKind.DENIED)
    assert (refused.reason, refused.admit, refused.subject) == (
        "journal_unavailable",
        False,
        subject(21).hex(),
    )
    assert [e.subject for e in events_of(hub, EventKind.ENTRY)] == [subject(20).hex()]
    (alarm,) = events_of(hub, EventKind.ALARM)
    assert alarm.detail == "journal_failed"
    running.show(make_pass(n=22), frames=3)
    wait_for(lambda: len(events_of(hub, EventKind.ENTRY)) == 2, what="entries again")


def test_full_facility_refuses_entry_and_admits_when_a_place_frees(
    start_node: Callable[..., RunningNode], hub: Any, wait_for: Any, broker: Mosquitto
) -> None:
    running = start_node()
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    publisher.connect(broker.host, broker.port)
    publisher.loop_start()
    try:
        full = FacilityState(facility_id=FACILITY, occupancy=50, capacity=50, full=True)
        publisher.publish(topics.facility_state(FACILITY), full.dumps(), qos=1, retain=True)
        wait_for(lambda: running.node.policy.full, what="the node to learn it is full")
        running.show(make_pass(n=4))
        wait_for(lambda: events_of(hub, EventKind.DENIED), what="a refused entry")
        denied = events_of(hub, EventKind.DENIED)[0]
        assert (denied.reason, denied.signal) == ("facility_full", "full")
        assert running.relay_levels() == [False]
        free = FacilityState(facility_id=FACILITY, occupancy=49, capacity=50, full=False)
        publisher.publish(topics.facility_state(FACILITY), free.dumps(), qos=1, retain=True)
        wait_for(lambda: not running.node.policy.full, what="a freed place")
        running.show(make_pass(n=5))
        wait_for(lambda: events_of(hub, EventKind.ENTRY), what="the entry once a place is free")
    finally:
        publisher.publish(topics.facility_state(FACILITY), b"", qos=1, retain=True)
        publisher.loop_stop()
        publisher.disconnect()


def test_an_entry_is_journaled_before_its_pulse_and_refused_if_it_cannot_be(
    start_node: Callable[..., RunningNode],
    hub: Any,
    wait_for: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    running = start_node(scan={"cooldown_s": 0.2}, policy={"anti_passback_s": 0})
    journal = running.node.journal
    assert journal is not None
    real_admit = journal.admit
    seen_at_pulse: list[int] = []
    refuse = [False]

    def admit(*args: Any, **kwargs: Any) -> Any:
        if refuse[0]:
            raise JournalError("event journal: cannot record an admission: disk I/O error")
        return real_admit(*args, **kwargs)

    monkeypatch.setattr(journal, "admit", admit)
    # What the journal holds at the moment the relay is driven open.
    running.node.devices.relay.on_change(  # type: ignore[union-attr]
        lambda is_open, _t: seen_at_pulse.append(len(journal.admissions())) if is_open else None
    )
    running.show(make_pass(n=30), frames=3)
    wait_for(lambda: events_of(hub, EventKind.ENTRY), what="the first entry")
    assert seen_at_pulse == [1]
    assert journal.admissions() == []
    wait_for(lambda: running.source.pending == 0)
    refuse[0] = True
    running.show(make_pass(n=31), frames=3)
    wait_for(lambda: events_of(hub, EventKind.DENIED), what="the refused entry")
    (refused,) = events_of(hub, EventKind.DENIED)
    assert (refused.reason, refused.subject) == ("journal_unavailable", subject(31).hex())
    assert seen_at_pulse == [1], "no pulse without a journaled admission"
    assert [e.subject for e in events_of(hub, EventKind.ENTRY)] == [subject(30).hex()]


def test_commands_open_lockdown_and_unknown(
    start_node: Callable[..., RunningNode], hub: Any, wait_for: Any, broker: Mosquitto
) -> None:
    running = start_node()
    replies: dict[str, CommandReply] = {}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        reply = CommandReply.parse(msg.payload)
        replies[reply.id] = reply

    subscribed = threading.Event()
    client.on_message = on_message
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect(broker.host, broker.port)
    client.subscribe(topics.node_cmd_resp(FACILITY, NODE), qos=1)
    client.loop_start()
    # Both ends' subscriptions confirmed by the broker: no command or reply can be missed.
    wait_for(subscribed.is_set, what="the hub side's subscription")
    wait_for(lambda: running.node.uplink is not None and running.node.uplink.subscribed)

    def send(request_id: str, cmd: str, **args: Any) -> CommandReply:
        command = Command(id=request_id, cmd=cmd, args=args)
        client.publish(topics.node_cmd(FACILITY, NODE), command.dumps(), qos=1)
        wait_for(lambda: request_id in replies, what=f"the reply to {cmd}")
        return replies[request_id]

    try:
        unknown = send("r1", "self_destruct")
        assert not unknown.ok and unknown.error is not None
        assert "unknown command 'self_destruct'" in unknown.error
        opened = send("r2", "open", reason="manual check-in by guard")
        assert opened.ok, opened.error
        wait_for(lambda: events_of(hub, EventKind.MANUAL), what="the manual passage event")
        assert events_of(hub, EventKind.MANUAL)[0].direction == "entry"
        wait_for(lambda: len(running.pulses()) == 1, what="the pulse to end")
        assert send("r3", "lockdown", on=True).ok
        refused = send("r4", "open")
        assert not refused.ok and refused.error == "door is locked down"
        running.show(make_pass(n=6))
        wait_for(lambda: events_of(hub, EventKind.DENIED), what="entry refused in lockdown")
        assert events_of(hub, EventKind.DENIED)[0].reason == "lockdown"
        bad_policy = send("r5", "set_policy", yellow="maybe")
        assert not bad_policy.ok and bad_policy.error is not None and "yellow" in bad_policy.error
        assert len(running.pulses()) == 1
    finally:
        client.loop_stop()
        client.disconnect()


def test_camera_failure_raises_an_alarm_and_degrades_the_node(
    tmp_path: Path, broker: Mosquitto, mock_pins: MockFactory, hub: Any, wait_for: Any
) -> None:
    state_dir = tmp_path / "node"
    write_trust(state_dir)
    config = NodeConfig.model_validate(
        node_config(state_dir, broker, scan={"restart_source_after_s": 30})
    )
    node = Node(config, source=SyntheticSource(PRESETS["easy"], fps=60, fail_after=5))
    node.start()
    try:
        wait_for(lambda: events_of(hub, EventKind.ALARM), what="the camera alarm")
        assert events_of(hub, EventKind.ALARM)[0].detail == "camera_failed"
        status = node.status()
        assert status.state == "degraded"
        assert any(p.startswith("camera:") for p in status.problems)
    finally:
        node.stop()


# -- a real node process, killed and restarted ---------------------------------------


def pass_images(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(count):
        frame = render(make_pass(n=100 + i, valid_s=86_400), PRESETS["easy"], rng)
        Image.fromarray(frame).save(folder / f"{i:03d}.png")


def open_journal(state_dir: Path) -> Journal:
    return Journal(state_dir / "journal.db", node_id=NODE, facility_id=FACILITY, door_id=DOOR)


def node_process(config_path: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock"}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pintu", "-v", "node", "run", "--config", str(config_path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )


def write_toml(path: Path, doc: dict[str, Any]) -> None:
    """A tiny TOML writer for the test's own config (two levels of tables)."""

    def value(v: Any) -> str:
        return json.dumps(v)

    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for key, v in doc.items():
        if isinstance(v, dict):
            tables.append((key, v))
        else:
            lines.append(f"{key} = {value(v)}")
    while tables:
        name, table = tables.pop(0)
        lines.append(f"[{name}]")
        for key, v in table.items():
            if isinstance(v, dict):
                tables.append((f"{name}.{key}", v))
            else:
                lines.append(f"{key} = {value(v)}")
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_node_killed_mid_stream_resends_and_seq_continues(
    tmp_path: Path, broker: Mosquitto, hub_factory: Any, wait_for: Any
) -> None:
    hub = hub_factory(ack_every=3)  # a hub that acks only every third event: plenty unacked
    state_dir = tmp_path / "node"
    write_trust(state_dir)
    frames = tmp_path / "frames"
    pass_images(frames, 12)
    doc = node_config(
        state_dir,
        broker,
        source={"kind": "folder", "path": str(frames), "loop": True, "fps": 25},
        scan={"cooldown_s": 0.3},
        policy={"anti_passback_s": 0},
    )
    config_path = tmp_path / "node.toml"
    write_toml(config_path, doc)
    first = node_process(config_path, tmp_path / "first.log")
    try:
        wait_for(lambda: hub.count() >= 15, timeout=60, what="a stream of events")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    j = open_journal(state_dir)
    try:
        assert j.integrity_ok()
        unacked = {e.event_id: e.seq for e in j.pending(100_000)}
        killed_at_seq = j.last_seq()
    finally:
        j.close()
    assert unacked, "the kill should leave events the hub had not acked"
    hub.ack_every = 1
    second = node_process(config_path, tmp_path / "second.log")
    try:
        wait_for(lambda: set(unacked) <= hub.ids(), timeout=60, what="the journal's resend")
        wait_for(
            lambda: max(e.seq for e in hub.events()) > killed_at_seq + 3,
            timeout=60,
            what="new events after the restart",
        )
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    assert second.returncode == 0, (tmp_path / "second.log").read_text()[-2000:]
    j = open_journal(state_dir)
    try:
        still_pending = {e.seq for e in j.pending(100_000)}
        last = j.last_seq()
    finally:
        j.close()
    seen = {e.seq for e in hub.events()}
    assert seen | still_pending == set(range(1, last + 1)), "a seq is missing: an event was lost"
    starts = [e for e in hub.events() if e.kind is EventKind.NODE_START]
    assert len(starts) == 2
    assert min(s.seq for s in starts if s.seq > 1) == killed_at_seq + 1
    resent = [e for e in hub.events() if e.event_id in unacked]
    assert resent, "the events left in the journal reached the hub"


def test_node_killed_during_a_passage_journals_the_entry_once_unconfirmed(
    tmp_path: Path, broker: Mosquitto, hub: Any, wait_for: Any
) -> None:
    state_dir = tmp_path / "node"
    write_trust(state_dir)
    frames = tmp_path / "frames"
    pass_images(frames, 1)
    # A turnstile that never turns: the passage is still pending when the node dies.
    doc = node_config(
        state_dir,
        broker,
        source={"kind": "folder", "path": str(frames), "loop": True, "fps": 10},
        pins=pins_with_sensors(rotation_sensor=True),
        gate={"passage": "sensor", "passage_timeout_s": 120.0, "signal_s": 0.2},
    )
    config_path = tmp_path / "node.toml"
    write_toml(config_path, doc)
    first_log = tmp_path / "first.log"
    first = node_process(config_path, first_log)
    try:
        wait_for(lambda: "pulsed open" in first_log.read_text(), timeout=60, what="the release")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    j = open_journal(state_dir)
    try:
        (admission,) = j.admissions()
        killed_at_seq = j.last_seq()
        assert not any(e.kind is EventKind.ENTRY for e in j.pending())
    finally:
        j.close()
    assert admission.subject == subject(100).hex()

    # The restart sees no pass (the synthetic camera shows none): any pulse would be a bug.
    write_toml(config_path, {**doc, "source": {"kind": "synthetic", "preset": "easy", "fps": 10}})
    second_log = tmp_path / "second.log"
    second = node_process(config_path, second_log)
    try:
        wait_for(
            lambda: (
                admission.event_id in hub.ids()
                and any(
                    e.kind is EventKind.NODE_START and e.seq > killed_at_seq for e in hub.events()
                )
            ),
            timeout=60,
            what="the unconfirmed entry and the new start at the hub",
        )
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    assert second.returncode == 0, second_log.read_text()[-2000:]
    entries = events_of(hub, EventKind.ENTRY)
    assert [e.event_id for e in entries] == [admission.event_id]
    (entry,) = entries
    assert entry.subject == admission.subject and entry.direction == "entry"
    assert entry.reason == "unconfirmed"
    assert entry.message is not None and "node stopped during the passage" in entry.message
    assert entry.ts == admission.decided_at
    # Journaled before anything else of the new run, seq continuing.
    assert entry.seq == killed_at_seq + 1
    (restart,) = [e for e in hub.events() if e.kind is EventKind.NODE_START and e.seq > entry.seq]
    assert restart.seq == entry.seq + 1
    assert "pulsed open" not in second_log.read_text(), "the relay pulsed at boot"
    j = open_journal(state_dir)
    try:
        assert j.admissions() == []
        assert j.integrity_ok()
    finally:
        j.close()


def test_status_reports_list_age(
    start_node: Callable[..., RunningNode], probe: Any, wait_for: Any
) -> None:
    running = start_node()
    watcher = probe([topics.node_status(FACILITY, NODE)])
    wait_for(lambda: watcher.payloads(topics.node_status(FACILITY, NODE)), what="retained status")
    status = NodeStatus.parse(watcher.payloads(topics.node_status(FACILITY, NODE))[-1])
    assert status.state == "online"
    assert status.trust_list_age_s is not None and status.trust_list_age_s < 60
    assert running.node.status().direction == "entry"


# -- sensors: passage confirmation, exits, forced doors ------------------------------

SENSOR_PINS = {
    "door_contact": {"pin": 23, "bounce_ms": 0},
    "exit_button": {"pin": 24, "bounce_ms": 0},
    "rotation_sensor": {"pin": 25, "bounce_ms": 0},
}


def pins_with_sensors(**chosen: bool) -> dict[str, Any]:
    pins = dict(BASE_PINS)
    for name, wanted in chosen.items():
        if wanted:
            pins[name] = SENSOR_PINS[name]
    return pins


def rotate(pin_number: int) -> None:
    """One turnstile rotation: the sensor (pulled up) is pulled low, then released."""
    pin: MockPin = Device.pin_factory.pin(pin_number)
    pin.drive_low()
    pin.drive_high()


def test_rotation_confirms_entry_and_timeout_records_not_passed(
    start_node: Callable[..., RunningNode], hub: Any, wait_for: Any
) -> None:
    running = start_node(
        pins=pins_with_sensors(rotation_sensor=True),
        gate={"passage": "sensor", "passage_timeout_s": 1.0, "signal_s": 0.2},
    )
    running.show(make_pass(n=20))
    wait_for(lambda: running.relay_levels()[-1:] == [True], what="the release")
    rotate(25)
    wait_for(lambda: events_of(hub, EventKind.ENTRY), what="the confirmed entry")
    running.show(make_pass(n=21))
    wait_for(lambda: events_of(hub, EventKind.NOT_PASSED), timeout=15, what="not passed")
    not_passed = events_of(hub, EventKind.NOT_PASSED)[0]
    assert not_passed.subject == subject(21).hex()
    assert len(events_of(hub, EventKind.ENTRY)) == 1


def test_exit_door_counts_button_exits_and_free_rotations(
    start_node: Callable[..., RunningNode], hub: Any, wait_for: Any
) -> None:
    running = start_node(
        direction="exit",
        pins=pins_with_sensors(exit_button=True, rotation_sensor=True),
        gate={"passage": "sensor", "passage_timeout_s": 2.0, "signal_s": 0.2},
    )
    button: MockPin = Device.pin_factory.pin(24)
    button.drive_low()
    button.drive_high()
    wait_for(lambda: running.relay_levels()[-1:] == [True], what="the exit release")
    rotate(25)
    wait_for(lambda: events_of(hub, EventKind.EXIT), what="the button exit")
    assert events_of(hub, EventKind.EXIT)[0].detail == "exit button"
    rotate(25)  # a free-exit turnstile turned with no release: someone left
    wait_for(lambda: len(events_of(hub, EventKind.EXIT)) == 2, what="the free exit")
    assert all(e.direction == "exit" for e in events_of(hub, EventKind.EXIT))


def test_door_opened_without_release_is_a_forced_door_alarm(
    start_node: Callable[..., RunningNode], hub: Any, wait_for: Any
) -> None:
    start_node(pins=pins_with_sensors(door_contact=True))
    contact: MockPin = Device.pin_factory.pin(23)
    contact.drive_low()  # closed at rest
    contact.drive_high()  # opened with no release
    wait_for(lambda: events_of(hub, EventKind.ALARM), what="the forced-door alarm")
    assert events_of(hub, EventKind.ALARM)[0].detail == "forced_door"


# -- systemd ---------------------------------------------------------------------------


def test_node_process_tells_systemd_ready_and_pets_the_watchdog(
    tmp_path: Path, broker: Mosquitto
) -> None:
    import socket

    state_dir = tmp_path / "node"
    write_trust(state_dir)
    frames = tmp_path / "frames"
    pass_images(frames, 1)
    config_path = tmp_path / "node.toml"
    write_toml(
        config_path,
        node_config(
            state_dir,
            broker,
            source={"kind": "folder", "path": str(frames), "loop": True, "fps": 20},
        ),
    )
    address = str(tmp_path / "notify.sock")
    messages: list[str] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(30)
        env = {
            **os.environ,
            "GPIOZERO_PIN_FACTORY": "mock",
            "NOTIFY_SOCKET": address,
            "WATCHDOG_USEC": "400000",
        }
        log = (tmp_path / "node.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "pintu", "node", "run", "--config", str(config_path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            while not (
                any("READY=1" in m for m in messages)
                and sum("WATCHDOG=1" in m for m in messages) >= 3
            ):
                messages.append(sock.recv(4096).decode())
            process.send_signal(signal.SIGTERM)
            while not any("STOPPING=1" in m for m in messages):
                messages.append(sock.recv(4096).decode())
            assert process.wait(30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()
    ready = next(i for i, m in enumerate(messages) if "READY=1" in m)
    assert "STATUS=door d1 (entry) ready" in messages[ready]


def test_events_the_hub_never_acknowledged_are_kept_only_for_the_tracing_window(
    tmp_path: Path, start_node: Callable[..., RunningNode]
) -> None:
    # A door cut off from its hub for weeks: no hub acknowledges anything here.
    state_dir = tmp_path / "node"
    state_dir.mkdir()
    now = datetime.now(UTC)
    journal = Journal(state_dir / "journal.db", node_id=NODE, facility_id=FACILITY, door_id=DOOR)
    old, recent = (
        journal.write(
            Entry(EventKind.ENTRY, direction="entry", subject=subject(n).hex(), admit=True,
                  ts=now - timedelta(days=days))
        )
        for n, days in ((1, 30), (2, 2))
    )  # fmt: skip
    journal.close()
    node = start_node(journal_max_age_days=21).node
    assert node.journal is not None
    pending = node.journal.pending()
    ids = {event.event_id for event in pending}
    assert old.event_id not in ids and recent.event_id in ids
    (alarm,) = [e for e in pending if e.detail == "journal_expired"]
    assert alarm.kind is EventKind.ALARM and alarm.message is not None
    assert alarm.message.startswith("1 events older than 21 days")
    # Checked again later: nothing more is old enough until the recent one is.
    assert node.expire_journal() == 0
    assert node.expire_journal(now=time.time() + 20 * 86_400) == 1
