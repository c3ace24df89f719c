"""Door latency benchmark: from the camera frame a pass is in to the relay energised.

    python -m bench.latency                     # print the table
    python -m bench.latency --write             # ... and put it into docs/benchmarks.md
    python -m bench.latency --admissions 100    # a quicker run
    python -m bench.latency --check             # exit 1 if a p99 is over the target
    python -m bench.latency --tls --write       # plain beside TLS, and the signed lists

A whole door node runs in this process, off the Pi: simulated GPIO pins, a synthetic
camera (the ``easy`` scene) that a simulated visitor holds passes up to, a private
Mosquitto, and a stand-in hub in a helper process that acks the node's events. Each
admission is a different subject (so anti-passback never interferes), the gate assumes
the passage, the relay pulse is short, and the next pass is shown only once the pulse has
ended. The node's figure is its own ``Door.stats.latencies``: frame capture
(``Frame.ts``) to the relay pin being driven.

Beside it, in the same run and on the very frame each admission was decided on, the
baseline: the parts alone, ``zxingcpp.read_barcodes`` (with the decoder's options) and
``protocol.passes.verify`` called back to back, timed right after the pulse while the
node goes on scanning. What the node adds on top is the scan loop, the hand-over to the
door thread, the policy and the relay.

The admissions alternate in blocks between an idle MQTT link and a loaded broker: the
helper process publishing QoS 1 events of other doors at a few thousand messages a
second, which the hub receives, as a facility's hub receives every door's events.

With ``--tls`` the node runs in turn on a plain broker and on one that speaks TLS only,
its certificate from a facility CA the provisioning tools' code makes; the node's uplink,
the stand-in hub and the load verify it, as a facility's doors and hub do. The same run
then times what signed lists cost a door: the check of a signed trust list and of signed
status lists of several sizes (``ListKeys.open``) beside the unsigned parse of the same
payload, and a list's whole arrival (``ListReceiver.apply``). It writes a section of its
own.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from importlib import metadata
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from typing import Any

import numpy as np

from bench import provenance
from bench.brokers import tls_broker, tls_session
from controller.config import NodeConfig
from controller.lists import InUse, ListKind, ListReceiver
from controller.node import Node
from firmware.frames import Frame
from firmware.synthetic import PRESETS, SyntheticSource
from protocol import passes, topics
from protocol.events import Ack, Event, EventKind, utcnow
from protocol.signedlist import OVERHEAD, Kind, ListKeys, seal
from protocol.status import Status
from protocol.statuslist import MAX_LIST_BYTES, RECORD_BYTES, StatusList
from protocol.trust import SigningKey, TrustList
from provisioning.mosquitto import BrokerError, Mosquitto, find_mosquitto

START = "<!-- bench:latency:start -->"
END = "<!-- bench:latency:end -->"
HEADING = "## Latency: frame to relay"
TLS_START = "<!-- bench:latency-tls:start -->"
TLS_END = "<!-- bench:latency-tls:end -->"
TLS_HEADING = "## The door over TLS, and its signed lists"
TARGET_MS = 30.0  # p99 of frame capture -> relay energised, off the Pi
FACILITY, NODE, DOOR = "bench", "door-1", "main"
RELAY_PIN = 5
LOAD_DOORS = 20  # the load is spread over this many other doors' event topics
ADMISSION_TIMEOUT_S = 5.0
SHOW_AGAIN_AFTER_S = 0.5  # a pass not admitted by then is shown again ...
SHOW_ATTEMPTS = 5  # ... this many times at most

INTRO = """# Benchmarks

Each section is rewritten by the benchmark named in it (`--write`). Every figure is
measured beside its baseline in the same run, and the machine each run used is named at
the top of its section.

"""


# -- the stand-in hub and the MQTT load, in a helper process ---------------------------


@dataclass(frozen=True)
class HubStats:
    """What the helper process saw, reported when it stops."""

    node_events: int  # events of the measured node received (and acked)
    acks_sent: int
    load_published: int  # load messages published ...
    load_acked: int  # ... and PUBACKed by the broker
    load_seconds: float  # time the load was switched on
    load_received: int  # load messages the hub received back from the broker

    @property
    def load_rate(self) -> float:
        """Load messages PUBACKed per second while the load was on."""
        return self.load_acked / self.load_seconds if self.load_seconds > 0 else 0.0


@dataclass(frozen=True)
class _Signals:
    """Process-shared events between the benchmark and its helper."""

    subscribed: ProcessEvent  # the hub is subscribed
    node_seen: ProcessEvent  # the first event of the measured node arrived
    load_on: ProcessEvent  # set by the benchmark: publish the load
    flowing: ProcessEvent  # set by the helper: the load is running at its rate
    quiet: ProcessEvent  # set by the helper: the load is off and all of it acked
    stop: ProcessEvent


def _client(name: str, ca_file: str | None = None) -> Any:
    """A paho client; on a TLS broker it verifies the broker against ``ca_file``."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=name, protocol=MQTTProtocolVersion.MQTTv5
    )
    if ca_file is not None:
        client.tls_set(ca_certs=ca_file)
    return client


class _Hub:
    """Receives every door's events, as the facility hub does; acks the measured node's."""

    def __init__(
        self, host: str, port: int, node_id: str, signals: _Signals, ca_file: str | None
    ) -> None:
        self._signals = signals
        self._events_topic = topics.node_events(FACILITY, node_id)
        self._ack_topic = topics.node_ack(FACILITY, node_id)
        self._cond = threading.Condition()
        self._pending: list[str] = []
        self._stopping = False
        self.node_events = 0
        self.acks_sent = 0
        self.load_received = 0
        self.client = _client("bench-hub", ca_file)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self._acker = threading.Thread(target=self._ack_main, name="bench-hub-acks")
        self._acker.start()
        self.client.loop_start()

    def _on_connect(self, client: Any, *_: Any) -> None:
        client.subscribe(topics.ALL_NODE_EVENTS, qos=1)

    def _on_subscribe(self, *_: Any) -> None:
        self._signals.subscribed.set()

    def _on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        if msg.topic != self._events_topic:
            self.load_received += 1  # only paho's network thread writes it
            return
        event = Event.parse(bytes(msg.payload))
        with self._cond:
            self.node_events += 1
            self._pending.append(event.event_id)
            self._cond.notify_all()
        self._signals.node_seen.set()

    def _ack_main(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._pending) or self._stopping)
                if self._stopping:
                    return
                batch, self._pending = self._pending, []
            self.client.publish(self._ack_topic, Ack(event_ids=batch).dumps(), qos=1)
            self.acks_sent += len(batch)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._acker.join(5)
        self.client.disconnect()
        self.client.loop_stop()


class _Load:
    """Publishes QoS 1 events of other doors at ``rate`` messages a second while on."""

    PACE_S = 0.002  # messages due are published in small bursts this far apart

    def __init__(
        self, host: str, port: int, rate: float, signals: _Signals, ca_file: str | None
    ) -> None:
        self.rate = rate
        self._signals = signals
        self._cond = threading.Condition()
        self.published = 0
        self.acked = 0
        self.seconds = 0.0
        self._messages = []
        for i in range(LOAD_DOORS):
            node_id = f"load-{i:02d}"
            event = Event(
                event_id=f"{i:032x}",
                node_id=node_id,
                facility_id=FACILITY,
                door_id=f"door-{i:02d}",
                seq=1,
                ts=utcnow(),
                kind=EventKind.ENTRY,
                direction="entry",
                subject=f"{i:024x}",
                signal="green",
                admit=True,
                reason="ok",
                message="admitted",
            )
            self._messages.append((topics.node_events(FACILITY, node_id), event.dumps()))
        self.client = _client("bench-load", ca_file)
        self.client.max_inflight_messages_set(1000)
        self.client.on_publish = self._on_publish
        self.client.connect(host, port)
        self.client.loop_start()

    def _on_publish(self, *_: Any) -> None:
        with self._cond:
            self.acked += 1
            self._cond.notify_all()

    def run(self) -> None:
        signals = self._signals
        if self.rate <= 0:
            signals.stop.wait()
            return
        while not signals.stop.is_set():
            if not signals.load_on.wait(0.1):  # wakes now and then to see a stop
                continue
            signals.quiet.clear()
            started = time.monotonic()
            sent = 0
            while signals.load_on.is_set() and not signals.stop.is_set():
                now = time.monotonic()
                due = int((now - started) * self.rate)
                while sent < due:
                    topic, payload = self._messages[sent % LOAD_DOORS]
                    self.client.publish(topic, payload, qos=1)
                    sent += 1
                if now - started >= 0.25:
                    signals.flowing.set()
                signals.stop.wait(self.PACE_S)  # the pace of the load, not a condition
            self.seconds += time.monotonic() - started
            self.published += sent
            signals.flowing.clear()
            with self._cond:
                self._cond.wait_for(lambda: self.acked >= self.published, 10.0)
            signals.quiet.set()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _helper_main(
    host: str,
    port: int,
    node_id: str,
    rate: float,
    signals: _Signals,
    pipe: Connection,
    ca_file: str | None = None,
) -> None:
    hub = _Hub(host, port, node_id, signals, ca_file)
    load = _Load(host, port, rate, signals, ca_file)
    signals.quiet.set()
    if not signals.subscribed.wait(30.0):
        raise RuntimeError("the stand-in hub did not subscribe within 30 s")
    pipe.send("ready")
    try:
        load.run()
    finally:
        load.stop()
        hub.stop()
    # Plain values: classes of a module run as __main__ do not unpickle in the parent.
    pipe.send(
        {
            "node_events": hub.node_events,
            "acks_sent": hub.acks_sent,
            "load_published": load.published,
            "load_acked": load.acked,
            "load_seconds": load.seconds,
            "load_received": hub.load_received,
        }
    )


class HubHelper:
    """The stand-in hub and the MQTT load, run in a process of their own.

    Out of the node's process, so neither takes the node's interpreter lock: on a real
    site the hub and the other doors are other machines. ``rate=0`` is a hub alone.
    """

    def __init__(self, broker: Mosquitto, node_id: str, rate: float) -> None:
        context = multiprocessing.get_context("spawn")
        self.signals = _Signals(
            subscribed=context.Event(),
            node_seen=context.Event(),
            load_on=context.Event(),
            flowing=context.Event(),
            quiet=context.Event(),
            stop=context.Event(),
        )
        self._reader, self._writer = context.Pipe(duplex=False)
        ca_file = str(broker.ca_file) if broker.ca_file is not None else None
        self.process: SpawnProcess = context.Process(
            target=_helper_main,
            args=(broker.host, broker.port, node_id, rate, self.signals, self._writer, ca_file),
            name="bench-hub",
            daemon=True,
        )

    def start(self, timeout_s: float = 30.0) -> None:
        self.process.start()
        self._writer.close()  # the helper's end now
        try:
            self._receive(timeout_s)
        except RuntimeError:
            self.close()
            raise

    def _receive(self, timeout_s: float) -> Any:
        """The helper's next message; RuntimeError if it exits or stays silent."""
        ready = wait([self._reader, self.process.sentinel], timeout_s)
        if self._reader in ready:
            return self._reader.recv()
        if ready:
            raise RuntimeError(f"the helper process exited with {self.process.exitcode}")
        raise RuntimeError(f"no word from the helper process within {timeout_s} s")

    def wait_for_node(self, timeout_s: float = 30.0) -> None:
        """Return once the node's first event (node_start) reached the hub."""
        if not self.signals.node_seen.wait(timeout_s):
            raise RuntimeError(f"no event from the node reached the hub within {timeout_s} s")

    def load(self, on: bool, timeout_s: float = 10.0) -> None:
        """Switch the load on (return once it runs) or off (return once all of it is acked)."""
        if on:
            self.signals.load_on.set()
            if not self.signals.flowing.wait(timeout_s):
                raise RuntimeError("the MQTT load did not start")
        else:
            self.signals.load_on.clear()
            if not self.signals.quiet.wait(timeout_s):
                raise RuntimeError("the MQTT load did not drain")

    def stop(self, timeout_s: float = 15.0) -> HubStats:
        """Stop the helper and return what it counted."""
        self.signals.stop.set()
        try:
            values: dict[str, Any] = self._receive(timeout_s)
        finally:
            self.close(timeout_s)
        return HubStats(**values)

    def close(self, timeout_s: float = 15.0) -> None:
        """Stop the helper without waiting for its figures; safe to call again."""
        self.signals.stop.set()
        if self.process.pid is None:
            return
        self.process.join(timeout_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


# -- the node --------------------------------------------------------------------------


class RecordingSource:
    """A frame source that keeps the frames a pass was in, so the baseline can use them."""

    def __init__(self, inner: SyntheticSource) -> None:
        self.inner = inner
        self.name = inner.name
        self._lock = threading.Lock()
        self._frames: list[Frame] = []

    def __iter__(self) -> Iterator[Frame]:
        seen = self.inner.frames_with_code
        for frame in self.inner:
            shown = self.inner.frames_with_code
            if shown != seen:
                seen = shown
                with self._lock:
                    self._frames.append(frame)
            yield frame

    def take(self) -> list[Frame]:
        """The frames with a pass since the last call."""
        with self._lock:
            frames, self._frames = self._frames, []
        return frames

    def close(self) -> None:
        self.inner.close()


def subject(n: int) -> bytes:
    return n.to_bytes(12, "big")


def node_config(
    state_dir: Path, broker: Mosquitto, pulse_ms: int, source: dict[str, Any]
) -> dict[str, Any]:
    """A node on simulated pins: three LEDs, a buzzer, a fail-secure relay."""
    return {
        "node_id": NODE,
        "facility_id": FACILITY,
        "door_id": DOOR,
        "direction": "entry",
        "state_dir": str(state_dir),
        "source": source,
        "pins": {
            "pin_factory": "mock",
            "leds": {"kind": "three", "red": 17, "yellow": 27, "green": 22},
            "buzzer": {"pin": 18},
            "relay": {
                "pin": RELAY_PIN,
                "active_high": True,
                "pulse_ms": pulse_ms,
                "wiring": "fail_secure",
            },
        },
        "gate": {"passage": "assume", "signal_s": 0.5},
        "scan": {"cooldown_s": 1.0},
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "reconnect_min_s": 0.05,
            "reconnect_max_s": 0.5,
            # On a TLS broker the node verifies it against the facility CA, as enrolled.
            "tls_ca_file": str(broker.ca_file) if broker.ca_file is not None else None,
        },
    }


@dataclass
class Arm:
    """The admissions measured in one condition, in milliseconds."""

    label: str
    node_ms: list[float] = field(default_factory=list)
    parts_ms: list[float] = field(default_factory=list)

    def node(self, q: float) -> float:
        return float(np.percentile(self.node_ms, q))

    def parts(self, q: float) -> float:
        return float(np.percentile(self.parts_ms, q))

    @property
    def added_ms(self) -> float:
        """Median over admissions of node minus parts, each pair on the same frame."""
        return statistics.median(n - p for n, p in zip(self.node_ms, self.parts_ms, strict=True))


@dataclass(frozen=True)
class Result:
    idle: Arm
    loaded: Arm
    hub: HubStats
    load_target: float
    fps: float | None
    pulse_ms: int
    shown_again: int  # passes whose frame was not read and that were shown once more
    tls: str | None = None  # the TLS version and cipher with the broker; None: plain

    @property
    def worst_p99(self) -> float:
        return max(self.idle.node(99), self.loaded.node(99))


class _Admitter:
    """Shows one pass at a time to a running node and times the admission."""

    def __init__(
        self, node: Node, source: SyntheticSource, recorder: RecordingSource, key: SigningKey
    ) -> None:
        import zxingcpp

        assert node.door is not None and node.devices is not None
        self.door = node.door
        self.source = source
        self.recorder = recorder
        self.key = key
        self._read = zxingcpp.read_barcodes
        self._formats = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
        self._opened_at: float | None = None
        self._opened = threading.Event()
        self._pulse_over = threading.Event()
        self.shown_again = 0
        self._remove = node.devices.relay.on_change(self._on_relay)
        self._next_subject = 1

    def _on_relay(self, is_open: bool, t: float) -> None:
        # Runs on the door thread with the relay's lock held: record and go.
        if is_open:
            self._opened_at = t
            self._opened.set()
        elif self._opened_at is not None:
            self._pulse_over.set()

    def admit(self, trust: TrustList) -> tuple[float, float]:
        """One admission: (node latency, parts alone) in milliseconds."""
        now = int(time.time())
        text = passes.issue(
            self.key, subject(self._next_subject), Status.GREEN, 2, now - 60, now + 3600
        )
        self._next_subject += 1
        before = len(self.door.stats.latencies)
        self._opened_at = None
        self._pulse_over.clear()
        self._opened.clear()
        self.recorder.take()
        for _ in range(SHOW_ATTEMPTS):
            # One frame: the next ones are the camera's idle frames again, so drawing
            # the scene never competes with the node while it decides.
            self.source.show(text, frames=1)
            if self._opened.wait(SHOW_AGAIN_AFTER_S):
                break
            self.shown_again += 1  # the frame was not read: the visitor holds it up again
        if not self._pulse_over.wait(ADMISSION_TIMEOUT_S):
            stats = self.door.stats
            raise RuntimeError(
                f"pass {self._next_subject - 1} not admitted "
                f"(decisions {stats.decisions}, admitted {stats.admitted}, "
                f"denied {stats.denied})"
            )
        latencies = self.door.stats.latencies
        if len(latencies) != before + 1 or self._opened_at is None:
            raise RuntimeError("expected exactly one relay opening for the pass")
        latency = latencies[-1]
        # The door times the frame whose scan it acted on; find that frame.
        frame_ts = self._opened_at - latency
        frame = min(self.recorder.take(), key=lambda f: abs(f.ts - frame_ts))
        if abs(frame.ts - frame_ts) > 1e-6:
            raise RuntimeError("the admitted frame is not among the frames shown")
        return latency * 1000, self._parts(frame.pixels, trust, text) / 1e6

    def _parts(self, pixels: np.ndarray, trust: TrustList, expected: str) -> int:
        """Nanoseconds to read the pass in the frame and verify it, with nothing between."""
        start = time.perf_counter_ns()
        found = self._read(
            pixels, formats=self._formats, try_rotate=False, try_downscale=True, try_invert=False
        )
        text = found[0].text
        verdict = passes.verify(text, trust)
        elapsed = time.perf_counter_ns() - start
        if text != expected or not verdict.ok:
            raise RuntimeError(f"the baseline did not read a valid pass: {verdict.reason}")
        return elapsed

    def close(self) -> None:
        self._remove()


@contextlib.contextmanager
def started(node: Node) -> Iterator[Node]:
    """A started node, stopped (relay locked first) on the way out."""
    try:
        node.start()
        yield node
    finally:
        node.stop()


def measure(
    admissions: int,
    *,
    load_rate: float = 3000.0,
    block: int = 50,
    warmup: int = 5,
    pulse_ms: int = 100,
    fps: float | None = 120.0,
    seed: int = 2024,
    tls: bool = False,
) -> Result:
    """Run a node and admit ``admissions`` passes with the MQTT link idle and as many loaded.

    The two conditions alternate in blocks of ``block`` admissions, after ``warmup``
    admissions that are not counted. With ``tls`` the broker speaks TLS only, and the node,
    the stand-in hub and the load verify it against a facility CA.
    """
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory, MockPin

    if admissions < 1 or block < 1 or warmup < 0:
        raise ValueError("admissions and block must be at least 1, warmup at least 0")
    idle, loaded = Arm("idle"), Arm("loaded")
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pintu-bench-")))
        previous_factory = Device.pin_factory
        Device.pin_factory = MockFactory(pin_class=MockPin)

        def restore_pins() -> None:
            Device.pin_factory.reset()
            Device.pin_factory = previous_factory

        stack.callback(restore_pins)
        broker = tls_broker(work, FACILITY, "broker") if tls else Mosquitto(work / "broker")
        broker.start()
        stack.callback(broker.stop)
        session = tls_session(broker) if tls else None
        helper = HubHelper(broker, NODE, load_rate)
        helper.start()
        stack.callback(helper.close)
        state_dir = work / "node"
        state_dir.mkdir()
        key = SigningKey.generate()
        trust = TrustList.of([key.trusted()], updated_at=int(time.time()))
        trust.save(state_dir / "trust.json")
        source = SyntheticSource(PRESETS["easy"], seed=seed, fps=fps)
        recorder = RecordingSource(source)
        synthetic = {"kind": "synthetic", "preset": "easy", "fps": fps or 30}
        config = NodeConfig.model_validate(node_config(state_dir, broker, pulse_ms, synthetic))
        node = Node(config, source=recorder)
        with started(node):
            admitter = _Admitter(node, source, recorder, key)
            try:
                helper.wait_for_node()
                for _ in range(warmup):
                    admitter.admit(trust)
                turn = 0
                while len(idle.node_ms) < admissions or len(loaded.node_ms) < admissions:
                    arm = (idle, loaded)[turn % 2]
                    turn += 1
                    count = min(block, admissions - len(arm.node_ms))
                    if count == 0:
                        continue
                    if arm is loaded:
                        helper.load(True)
                    try:
                        for _ in range(count):
                            node_ms, parts_ms = admitter.admit(trust)
                            arm.node_ms.append(node_ms)
                            arm.parts_ms.append(parts_ms)
                    finally:
                        if arm is loaded:
                            helper.load(False)
            finally:
                admitter.close()
        hub = helper.stop()
    return Result(idle, loaded, hub, load_rate, fps, pulse_ms, admitter.shown_again, session)


def merge(results: Sequence[Result]) -> Result:
    """The admissions and counts of several runs of the same condition as one result."""
    idle, loaded = Arm("idle"), Arm("loaded")
    for result in results:
        for into, arm in ((idle, result.idle), (loaded, result.loaded)):
            into.node_ms += arm.node_ms
            into.parts_ms += arm.parts_ms
    counts = {f.name: sum(getattr(r.hub, f.name) for r in results) for f in fields(HubStats)}
    first = results[0]
    return Result(
        idle,
        loaded,
        HubStats(**counts),
        first.load_target,
        first.fps,
        first.pulse_ms,
        sum(r.shown_again for r in results),
        first.tls,
    )


def measure_links(admissions: int, rounds: int, **options: Any) -> tuple[Result, Result]:
    """``admissions`` per condition with the node on a plain broker, and as many on a TLS
    one, in ``rounds`` runs on each taken in turn (the order swapped every round, so
    neither gets the machine's quieter minutes); (plain, TLS)."""
    if rounds < 1 or admissions < rounds:
        raise ValueError("at least one round, and an admission a round")
    runs: dict[bool, list[Result]] = {False: [], True: []}
    for round_ in range(rounds):
        count = admissions // rounds + (1 if round_ < admissions % rounds else 0)
        for tls in (False, True) if round_ % 2 == 0 else (True, False):
            runs[tls].append(measure(count, tls=tls, **options))
    return merge(runs[False]), merge(runs[True])


# -- signed lists at the door ------------------------------------------------------------

# Trust lists hold the registry's pass keys: a few in use, the rest revoked or expired.
TRUST_SIZES = (4, 100)
# Status lists hold the subjects a still-valid pass could contradict; the last size is the
# largest the hub sends a door: its signed envelope within MAX_LIST_BYTES (the header of a
# status list is 16 bytes).
STATUS_SIZES = (10_000, 100_000, (MAX_LIST_BYTES - OVERHEAD - 16) // RECORD_BYTES)


@dataclass
class ListCost:
    """One list's times at the door, in milliseconds, each call timed on its own."""

    label: str
    records: int
    payload_bytes: int
    parse_ms: list[float] = field(default_factory=list)  # unsigned: the payload parsed
    verify_ms: list[float] = field(default_factory=list)  # ListKeys.open alone
    signed_ms: list[float] = field(default_factory=list)  # open, then parse, as now
    arrival_ms: list[float] = field(default_factory=list)  # ListReceiver.apply, all of it

    @staticmethod
    def median(values: list[float]) -> float:
        return float(statistics.median(values))


def _trust_payload(keys: int, now: int) -> bytes:
    trusted = [SigningKey.generate().trusted(not_before=now - 86_400) for _ in range(keys)]
    return TrustList.of(trusted, updated_at=now).dumps().encode("utf-8")


def _status_payload(records: int, now: int, seed: int) -> bytes:
    rng = random.Random(seed)
    statuses = (Status.YELLOW, Status.RED, Status.BLACK)
    items = [
        (rng.randbytes(12), rng.choice(statuses), now - rng.randrange(30 * 86_400))
        for _ in range(records)
    ]
    return StatusList.from_items(items, updated_at=now).dumps()


def _list_arms(
    cost: ListCost,
    kind: Kind,
    envelope: bytes,
    payload: bytes,
    pins: ListKeys,
    receiver: ListReceiver,
) -> list[tuple[list[float], Callable[[], object]]]:
    """The four calls timed for one list, each with where its times go."""
    parse: Callable[[bytes], object] = TrustList.loads if kind is Kind.TRUST else StatusList.loads
    name: ListKind = "trust" if kind is Kind.TRUST else "status"

    def unsigned() -> object:
        return parse(payload)

    def verify() -> bytes:
        return pins.open(envelope, kind)

    def signed() -> object:
        return parse(pins.open(envelope, kind))

    def arrive() -> object:
        if not receiver.apply(name, envelope):
            raise RuntimeError(f"the {name} list was not applied: {receiver.stats}")
        return None

    return [
        (cost.parse_ms, unsigned),
        (cost.verify_ms, verify),
        (cost.signed_ms, signed),
        (cost.arrival_ms, arrive),
    ]


def list_costs(
    repeats: int = 50,
    seed: int = 2024,
    trust_sizes: Sequence[int] = TRUST_SIZES,
    status_sizes: Sequence[int] = STATUS_SIZES,
) -> tuple[list[ListCost], str]:
    """Time the signed lists' check beside the unsigned parse of the same payload, for
    trust and status lists of several sizes; and where the lists' files were written."""
    now = int(time.time())
    list_key = SigningKey.generate()
    pins = ListKeys.of(1, [list_key.public_key], now)
    cases: list[tuple[ListCost, Kind, bytes]] = []
    for keys in trust_sizes:
        payload = _trust_payload(keys, now)
        cost = ListCost(f"trust list, {keys} pass keys", keys, len(payload))
        cases.append((cost, Kind.TRUST, payload))
    for records in status_sizes:
        payload = _status_payload(records, now, seed)
        cost = ListCost(f"status list, {records:,} subjects", records, len(payload))
        cases.append((cost, Kind.STATUS, payload))
    with tempfile.TemporaryDirectory(prefix="pintu-bench-") as tmp:
        state = Path(tmp)
        trust_path, status_path = state / "trust.json", state / "status.psl"
        pins.save(state / "list_keys.json")
        TrustList.of([list_key.trusted()], updated_at=now).save(trust_path)
        StatusList(updated_at=now).save(status_path)

        def reload() -> None:
            # What the node's reload does on every list applied: both lists read again.
            TrustList.load(trust_path)
            StatusList.load(status_path)

        receiver = ListReceiver(
            trust_path,
            status_path,
            state / "list_keys.json",
            # Older lists in use, so every copy is checked, written and loaded.
            in_use=lambda: InUse(TrustList(), StatusList()),
            reload=reload,
        )
        for cost, kind, payload in cases:
            arms = _list_arms(cost, kind, seal(list_key, kind, payload), payload, pins, receiver)
            for turn in range(repeats):
                # Each call on its own, the order turned each time: no arm always runs
                # right after another has brought the bytes into the cache.
                for times, call in arms[turn % 4 :] + arms[: turn % 4]:
                    start = time.perf_counter_ns()
                    call()
                    times.append((time.perf_counter_ns() - start) / 1e6)
        where = provenance.filesystem(state)
    return [cost for cost, _, _ in cases], where


# -- the report ------------------------------------------------------------------------


def library_versions(names: Sequence[str]) -> str:
    parts = []
    for name in names:
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)


def broker_version() -> str:
    try:
        done = subprocess.run(
            [find_mosquitto(), "-h"], capture_output=True, text=True, timeout=10, check=False
        )
    except (BrokerError, OSError, subprocess.TimeoutExpired):
        return "Mosquitto (version unknown)"
    match = re.search(r"mosquitto version (\S+)", done.stdout + done.stderr)
    return f"Mosquitto {match.group(1)}" if match else "Mosquitto (version unknown)"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return (
        f"Run on {platform.platform()} ({cpu}, {os.cpu_count()} CPUs), "
        f"Python {platform.python_version()}; "
        f"{library_versions(['zxing-cpp', 'paho-mqtt', 'gpiozero', 'numpy', 'cryptography'])}, "
        f"{broker_version()}."
    )


def report(result: Result, command: str) -> str:
    hub = result.hub
    fps = "as fast as it can" if result.fps is None else f"{result.fps:g} fps"
    rows = [
        _row([link], arm)
        for arm, link in (
            (result.idle, "idle"),
            (result.loaded, f"loaded ({hub.load_rate:,.0f} msg/s)"),
        )
    ]
    worst = result.worst_p99
    verdict = "within" if worst <= TARGET_MS else "OVER"
    lines = [
        machine(),
        "",
        f"Command: `{command}`",
        "",
        "A whole node in one process: simulated pins, a synthetic camera (`easy` scene, "
        f"{fps}), a private Mosquitto, and a stand-in hub in another process acking the "
        "node's events. Each admission is a new subject's green pass, in one frame "
        f"({result.shown_again} shown again because that frame was not read); the gate "
        f"assumes the passage, the relay pulses {result.pulse_ms} ms, and the next pass "
        "comes once the pulse has ended. *Node* is the door's own figure, frame capture to "
        "the relay pin driven. *Parts alone* is `zxingcpp.read_barcodes` (the decoder's "
        "options) and `passes.verify` back to back on the very frame the node acted on, "
        "timed in the same run while the node goes on scanning. *Node adds* is the median "
        "over admissions of the difference, each pair on the same frame.",
        "",
        "The frames after the pass are the camera's idle frames, which the synthetic camera "
        "draws once in advance. Drawing a frame with a pass takes several milliseconds of "
        "Python on the scan thread, which a real camera does not spend, and the door thread "
        "would wait for the interpreter meanwhile: the visitor is shown one frame so that "
        "this cost of the simulation is not charged to the node.",
        "",
        "The loaded link alternates with the idle one in blocks of admissions: a helper "
        f"process publishes QoS 1 events of {LOAD_DOORS} other doors to the same broker "
        f"(target {result.load_target:,.0f} msg/s; the rate shown is what the broker "
        "acknowledged), and the hub receives every one of them, as a facility's hub does. "
        "Broker, hub and load share this machine's CPUs with the node.",
        "",
        "| MQTT link | admissions | node p50 | node p95 | node p99 | parts alone p50 "
        "| parts alone p95 | parts alone p99 | node adds (median) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        "All times in milliseconds. Slowest admission: "
        f"{max(result.idle.node_ms):.2f} idle, {max(result.loaded.node_ms):.2f} loaded. "
        f"Load: {hub.load_acked:,} messages acknowledged in {hub.load_seconds:.1f} s, "
        f"{hub.load_received:,} delivered to the hub; {hub.node_events} events of the "
        f"node reached the hub and {hub.acks_sent} were acked.",
        "",
        f"Target: p99 <= {TARGET_MS:g} ms off the Pi. Worst p99 in this run: {worst:.2f} ms "
        f"({verdict} the target).",
    ]
    return "\n".join(lines)


def _row(cells: list[str], arm: Arm) -> str:
    return (
        f"| {' | '.join(cells)} | {len(arm.node_ms)} "
        f"| {arm.node(50):.2f} | {arm.node(95):.2f} | {arm.node(99):.2f} "
        f"| {arm.parts(50):.2f} | {arm.parts(95):.2f} | {arm.parts(99):.2f} "
        f"| {arm.added_ms:+.2f} |"
    )


def report_tls(
    plain: Result,
    tls: Result,
    costs: list[ListCost],
    where: str,
    rounds: int,
    command: str,
    load: tuple[float, float],
    commit: str,
) -> str:
    """The door on a plain broker beside a TLS one, and the signed lists' check."""
    rows = []
    for name, result in (("plain", plain), ("TLS", tls)):
        rows.append(_row([name, "idle"], result.idle))
        rows.append(_row([name, f"loaded ({result.hub.load_rate:,.0f} msg/s)"], result.loaded))

    def change(arm: str, q: float) -> str:
        before = getattr(plain, arm).node(q)
        after = getattr(tls, arm).node(q)
        return f"{before:.2f} to {after:.2f} ms ({after - before:+.2f})"

    worst = max(plain.worst_p99, tls.worst_p99)
    verdict = "within" if worst <= TARGET_MS else "OVER"
    fps = "as fast as it can" if plain.fps is None else f"{plain.fps:g} fps"
    loads = "; ".join(
        f"{name} broker: {r.hub.load_acked:,} load messages acknowledged in "
        f"{r.hub.load_seconds:.1f} s, {r.hub.load_received:,} delivered to the hub, "
        f"{r.hub.node_events} events of the node reached the hub and {r.hub.acks_sent} "
        "were acked"
        for name, r in (("Plain", plain), ("TLS", tls))
    )
    median = ListCost.median
    list_rows = []
    for cost in costs:
        parse, verify = median(cost.parse_ms), median(cost.verify_ms)
        signed, arrival = median(cost.signed_ms), median(cost.arrival_ms)
        list_rows.append(
            f"| {cost.label} | {cost.payload_bytes / 1e3:,.1f} kB | {parse:.3f} | {verify:.3f} "
            f"| {signed:.3f} | {signed - parse:+.3f} ({signed / parse:.1f}x) | {arrival:.3f} "
            f"| {verify / arrival:.0%} |"
        )
    largest = max(costs, key=lambda c: c.payload_bytes)
    hundred_k = next((c for c in costs if c.records == 100_000), largest)
    lines = [
        machine(),
        "",
        f"Command: `{command}`, {provenance.today()}, at commit {commit}. Load average "
        f"(1 min) {load[0]:.1f} when the run began and {load[1]:.1f} at its end, on "
        f"{os.cpu_count()} CPUs shared with other work.",
        "",
        "### Frame to relay on a plain broker and on a TLS one",
        "",
        "The node, the camera, the passes and the two MQTT links (idle, and loaded by the "
        "events of other doors) as in the section above, in the same run on two brokers: "
        "a plain one, and one that speaks TLS only with a certificate from a facility CA "
        "made by the provisioning tools' code, which the node's uplink, the stand-in hub "
        f"and the load all verify against the CA ({tls.tls}). In each of {rounds} rounds "
        "a node runs on each broker in turn, the order swapped every round; within a "
        "round the idle and loaded blocks alternate as above. Camera: `easy` scene, "
        f"{fps}; relay pulse {plain.pulse_ms} ms; passes shown again because their frame "
        f"was not read: {plain.shown_again} plain, {tls.shown_again} TLS.",
        "",
        "The path from the frame to the relay does not touch the broker: the door thread "
        "journals the admission and pulses the relay, and the uplink publishes the event "
        "from the journal on its own thread (and reads the hub's ack). TLS reaches the "
        "door's latency only through the CPU that work takes beside it: the uplink's "
        "encryption in the node's process, and here also the broker's, the hub's and the "
        "load's, which share this machine's CPUs with the node.",
        "",
        "| broker | MQTT link | admissions | node p50 | node p95 | node p99 | parts alone p50 "
        "| parts alone p95 | parts alone p99 | node adds (median) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        f"All times in milliseconds. {loads}.",
        "",
        f"The cost of TLS in this run, plain to TLS: node p50 {change('idle', 50)} idle and "
        f"{change('loaded', 50)} loaded; p99 {change('idle', 99)} idle and "
        f"{change('loaded', 99)} loaded. What the node adds over the parts alone (median): "
        f"{plain.idle.added_ms:+.2f} and {tls.idle.added_ms:+.2f} ms idle, "
        f"{plain.loaded.added_ms:+.2f} and {tls.loaded.added_ms:+.2f} ms loaded.",
        "",
        f"Target: p99 <= {TARGET_MS:g} ms off the Pi. Worst p99 in this run: {worst:.2f} ms "
        f"({verdict} the target).",
        "",
        "### Signed lists at the door",
        "",
        "A door checks a list's signature once, when the list arrives (a retained message, "
        "after a change and at least every `lists_refresh_s`), on its lists thread; a scan "
        "looks its subject up in the list in memory, signed or not. So the cost of signed "
        "lists is at their arrival. *Parse* is what the door did with a list before lists "
        "were signed: the payload read (`TrustList.loads`, `StatusList.loads`); *signature* "
        "is `ListKeys.open` alone (the envelope read and Ed25519 over header and payload); "
        "*signed* is both, as the door does now. *Arrival* is the whole "
        "`ListReceiver.apply`: signature, parse, the comparison with the list in use, the "
        f"file written with fsync (here on {where}) and both lists loaded again, as the "
        "node's reload does. Medians of "
        f"{len(costs[0].parse_ms)} calls each, the four taken in turn call by call; "
        "status lists of random subjects, the last the largest the hub sends a door.",
        "",
        "| list | payload | parse (unsigned) | signature | signed: signature and parse "
        "| signed - unsigned | arrival | signature's share of the arrival |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *list_rows,
        "",
        "Times in milliseconds. The cost of signed lists in this run: checking the "
        f"signature of a status list of 100,000 subjects takes {median(hundred_k.verify_ms):.1f}"
        f" ms, {median(hundred_k.verify_ms) / median(hundred_k.arrival_ms):.0%} of that "
        f"list's whole arrival ({median(hundred_k.arrival_ms):.1f} ms); the largest list "
        f"takes {median(largest.verify_ms):.1f} ms. It is paid once a list, on the lists "
        "thread, and not on any scan.",
    ]
    return "\n".join(lines)


def write_section(path: Path, section: str, start: str, end: str, heading: str) -> None:
    """Replace the text between ``start`` and ``end`` in ``path``; append them if absent."""
    block = f"{start}\n{section}\n{end}"
    if path.exists():
        document = path.read_text(encoding="utf-8")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        document = INTRO
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(document):
        document = pattern.sub(lambda _: block, document, count=1)
    else:
        document = document.rstrip("\n") + f"\n\n{heading}\n\n" + block + "\n"
    path.write_text(document, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.latency",
        description="Time a door node from the frame a pass is in to the relay energised, "
        "with the MQTT link idle and loaded, beside the QR library and the signature check "
        "alone on the same frames.",
    )
    parser.add_argument(
        "--admissions",
        type=int,
        default=300,
        help="admissions timed per condition, idle and loaded (default 300)",
    )
    parser.add_argument(
        "--load-rate",
        type=float,
        default=3000.0,
        help="QoS 1 messages a second published while loaded (default 3000)",
    )
    parser.add_argument(
        "--block", type=int, default=50, help="admissions per idle or loaded block (default 50)"
    )
    parser.add_argument(
        "--fps",
        type=float,
        default=120.0,
        help="frame rate of the synthetic camera; 0 for as fast as it can (default 120)",
    )
    parser.add_argument(
        "--pulse-ms", type=int, default=100, help="relay pulse in milliseconds (default 100)"
    )
    parser.add_argument("--seed", type=int, default=2024, help="seed of the synthetic scenes")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("docs/benchmarks.md"),
        help="the file --write updates (default docs/benchmarks.md)",
    )
    parser.add_argument(
        "--write", action="store_true", help="replace the latency section of --out with the results"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit with status 1 if a p99 is over {TARGET_MS:g} ms",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="the node on a plain broker and on a TLS one in the same run, and the signed "
        "lists' check beside the unsigned parse; --write fills a section of its own",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="with --tls: runs of the node on each broker, taken in turn (default 3)",
    )
    parser.add_argument(
        "--list-calls",
        type=int,
        default=50,
        help="with --tls: timed calls per list and step (default 50)",
    )
    args = parser.parse_args(argv)
    if args.admissions < 1 or args.block < 1:
        parser.error("--admissions and --block must be at least 1")
    if args.tls and not 1 <= args.rounds <= args.admissions:
        parser.error("--rounds must be from 1 to --admissions")
    if args.list_calls < 1:
        parser.error("--list-calls must be at least 1")
    if args.fps < 0 or args.load_rate < 0 or args.pulse_ms < 100:
        parser.error("--fps and --load-rate must not be negative, --pulse-ms at least 100")

    shown = ["python -m bench.latency"] + (["--tls"] if args.tls else [])
    defaults = {"admissions": 300, "load_rate": 3000.0, "block": 50, "fps": 120.0}
    defaults |= {"pulse_ms": 100, "seed": 2024}
    if args.tls:
        defaults |= {"rounds": 3, "list_calls": 50}
    for name, default in defaults.items():
        value = getattr(args, name)
        if value != default:
            shown.append(f"--{name.replace('_', '-')} {value:g}")
    if args.tls:
        return main_tls(args, " ".join(shown))
    print(f"timing {args.admissions} admissions idle and {args.admissions} loaded ...", flush=True)
    result = measure(
        args.admissions,
        load_rate=args.load_rate,
        block=args.block,
        pulse_ms=args.pulse_ms,
        fps=args.fps or None,
        seed=args.seed,
    )
    section = report(result, " ".join(shown))
    print()
    print(section)
    if args.write:
        write_section(args.out, section, START, END, HEADING)
        print(f"\nwrote {args.out}")
    if args.check and result.worst_p99 > TARGET_MS:
        print(f"p99 over target: {result.worst_p99:.2f} ms > {TARGET_MS:g} ms", file=sys.stderr)
        return 1
    return 0


def main_tls(args: argparse.Namespace, command: str) -> int:
    print(
        f"timing {args.admissions} admissions idle and {args.admissions} loaded, on a plain "
        "broker and on a TLS one ...",
        flush=True,
    )
    commit = provenance.commit()  # the code that runs, before the documents change
    began = provenance.load()
    plain, tls = measure_links(
        args.admissions,
        args.rounds,
        load_rate=args.load_rate,
        block=args.block,
        pulse_ms=args.pulse_ms,
        fps=args.fps or None,
        seed=args.seed,
    )
    print("timing the signed lists ...", flush=True)
    costs, where = list_costs(args.list_calls, args.seed)
    load = (began, provenance.load())
    section = report_tls(plain, tls, costs, where, args.rounds, command, load, commit)
    print()
    print(section)
    if args.write:
        write_section(args.out, section, TLS_START, TLS_END, TLS_HEADING)
        print(f"\nwrote {args.out}")
    worst = max(plain.worst_p99, tls.worst_p99)
    if args.check and worst > TARGET_MS:
        print(f"p99 over target: {worst:.2f} ms > {TARGET_MS:g} ms", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
