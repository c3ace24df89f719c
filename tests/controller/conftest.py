"""Fixtures for the node's journal and uplink: a real Mosquitto, a test hub, a fake node.

Everything that crosses MQTT talks to a private broker on a free port; nothing here uses a
system broker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from controller.journal import Journal
from controller.uplink import MqttConfig, Uplink
from protocol import topics
from protocol.events import (
    Ack,
    Command,
    CommandReply,
    Event,
    FacilityState,
    NodeState,
    NodeStatus,
    PayloadError,
)
from provisioning.mosquitto import Mosquitto

logger = logging.getLogger(__name__)

FACILITY = "f1"
NODE = "n1"
DOOR = "d1"

WaitFor = Callable[..., None]


def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Return as soon as ``predicate()`` holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        pause.wait(0.01)


@pytest.fixture
def wait_for() -> WaitFor:
    return _wait_for


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Callable[[str, object], None]:
    """``figure(name, value)``: a measured figure, logged and kept in the test's properties.

    (``record_property`` itself refuses to work with the default JUnit XML format.)
    """

    def record(name: str, value: object) -> None:
        logger.info("%s: %s = %s", request.node.name, name, value)
        request.node.user_properties.append((name, value))

    return record


# -- broker ----------------------------------------------------------------------------


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """``make_broker(name, extra_conf=..., **options)``: a started private Mosquitto."""
    made: list[Mosquitto] = []

    def make(name: str = "broker", *, extra_conf: str = "", **options: Any) -> Mosquitto:
        server = Mosquitto(tmp_path / name, extra_conf=extra_conf, **options)
        made.append(server)
        server.start()
        return server

    yield make
    for server in made:
        server.stop()


@pytest.fixture
def broker(make_broker: Callable[..., Mosquitto]) -> Mosquitto:
    return make_broker()


def _client(client_id: str) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    client.reconnect_delay_set(0.05, 0.5)  # type: ignore[arg-type]
    return client


class MqttProbe:
    """A plain MQTT client that records what arrives on some topics and publishes others."""

    def __init__(self, broker: Mosquitto, filters: list[str], name: str = "probe") -> None:
        self._filters = filters
        self._lock = threading.Lock()
        self._messages: list[tuple[str, bytes, bool]] = []
        self.subscribed = threading.Event()
        self.client = _client(name)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect_async(broker.host, broker.port, 30, clean_start=True)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        if self._filters:
            client.subscribe([(f, 1) for f in self._filters])
        else:
            self.subscribed.set()

    def _on_subscribe(self, *_: Any) -> None:
        self.subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self._messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def messages(self, topic: str | None = None) -> list[tuple[str, bytes, bool]]:
        with self._lock:
            return [m for m in self._messages if topic is None or m[0] == topic]

    def payloads(self, topic: str) -> list[bytes]:
        return [payload for _, payload, _ in self.messages(topic)]

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5.0)
        assert info.is_published(), f"probe could not publish on {topic}"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def probe(broker: Mosquitto) -> Iterator[Callable[..., MqttProbe]]:
    """``probe(filters)``: a connected, subscribed MqttProbe."""
    made: list[MqttProbe] = []

    def make(filters: list[str], name: str | None = None) -> MqttProbe:
        item = MqttProbe(broker, filters, name or f"probe-{len(made)}")
        made.append(item)
        assert item.subscribed.wait(10), "probe did not subscribe"
        return item

    yield make
    for item in made:
        item.close()


# -- the test hub ------------------------------------------------------------------------


class TestHub:
    """A stand-in for the hub's ingest: stores events by id and acks them.

    ``ack_delay_s`` plays a slow hub; ``ack_every=N`` acks only every Nth message received
    (the rest are stored but not acked, so the node must send them again). With
    ``persistent`` the broker keeps the hub's session (and queues events for it) while it
    is away, as the real hub's is; without it, what arrives while it is away is lost at the
    broker and only the node's journal brings it back.
    """

    __test__ = False  # a helper, not a test class

    def __init__(
        self,
        broker: Mosquitto,
        *,
        ack_delay_s: float = 0.0,
        ack_every: int = 1,
        persistent: bool = True,
        name: str = "test-hub",
    ) -> None:
        self.ack_delay_s = ack_delay_s
        self.ack_every = ack_every
        self._lock = threading.Lock()
        self.stored: dict[str, Event] = {}
        self.received = 0
        self.duplicates = 0
        self.late_received = 0
        self.bad = 0
        self.acks_sent = 0
        self.subscribed = threading.Event()
        self._cond = threading.Condition()
        self._pending_acks: deque[tuple[float, str, str]] = deque()
        self._stopping = False
        self.client = _client(name)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        properties: Properties | None = None
        if persistent:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = 3600
        self.client.connect_async(
            broker.host, broker.port, 30, clean_start=not persistent, properties=properties
        )
        self._acker = threading.Thread(target=self._ack_main, name="test-hub-acks", daemon=True)
        self._acker.start()
        self.client.loop_start()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        # Subscribed again at every connect: a broker that lost the session forgot it.
        client.subscribe(topics.ALL_NODE_EVENTS, qos=1)

    def _on_subscribe(self, *_: Any) -> None:
        self.subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            event: Event = Event.parse(bytes(msg.payload))
        except PayloadError:
            with self._lock:
                self.bad += 1
            return
        with self._lock:
            self.received += 1
            if event.late:
                self.late_received += 1
            if event.event_id in self.stored:
                self.duplicates += 1
            else:
                self.stored[event.event_id] = event
            ack_it = self.received % self.ack_every == 0
        if ack_it:
            topic = topics.node_ack(event.facility_id, event.node_id)
            with self._cond:
                self._pending_acks.append(
                    (time.monotonic() + self.ack_delay_s, topic, event.event_id)
                )
                self._cond.notify_all()

    def _ack_main(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._pending_acks) or self._stopping)
                if self._stopping:
                    return
                now = time.monotonic()
                due_at = self._pending_acks[0][0]
                if due_at > now:
                    # The simulated slowness of the hub, not a wait for a condition.
                    self._cond.wait(due_at - now)
                    continue
                batch: dict[str, list[str]] = {}
                while self._pending_acks and self._pending_acks[0][0] <= now:
                    _, topic, event_id = self._pending_acks.popleft()
                    batch.setdefault(topic, []).append(event_id)
            for topic, ids in batch.items():
                for start in range(0, len(ids), 1000):
                    chunk = ids[start : start + 1000]
                    self.client.publish(topic, Ack(event_ids=chunk).dumps(), qos=1)
                    with self._lock:
                        self.acks_sent += len(chunk)

    def ids(self) -> set[str]:
        with self._lock:
            return set(self.stored)

    def count(self) -> int:
        with self._lock:
            return len(self.stored)

    def events(self) -> list[Event]:
        with self._lock:
            return list(self.stored.values())

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._acker.join(5)
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def hub_factory(broker: Mosquitto) -> Iterator[Callable[..., TestHub]]:
    made: list[TestHub] = []

    def make(**options: Any) -> TestHub:
        item = TestHub(broker, name=f"test-hub-{len(made)}", **options)
        made.append(item)
        assert item.subscribed.wait(10), "test hub did not subscribe"
        return item

    yield make
    for item in made:
        item.stop()


@pytest.fixture
def hub(hub_factory: Callable[..., TestHub]) -> TestHub:
    return hub_factory()


# -- the node side -----------------------------------------------------------------------


class FakeNode:
    """What the uplink calls back into: a status, a command handler, a state sink."""

    def __init__(self) -> None:
        self.state = NodeState.ONLINE
        self.problems: list[str] = []
        self.commands: list[Command] = []
        self.states: list[FacilityState] = []
        self._lock = threading.Lock()

    def status(self) -> NodeStatus:
        return NodeStatus(state=self.state, problems=list(self.problems))

    def handle_command(self, command: Command) -> CommandReply:
        with self._lock:
            self.commands.append(command)
        if command.cmd == "ping":
            return CommandReply(id=command.id, ok=True, result={"pong": True})
        if command.cmd == "boom":
            raise RuntimeError("the handler broke")
        return CommandReply(id=command.id, ok=False, error=f"unknown command {command.cmd!r}")

    def on_facility_state(self, state: FacilityState) -> None:
        with self._lock:
            self.states.append(state)

    def seen_states(self) -> list[FacilityState]:
        with self._lock:
            return list(self.states)


@pytest.fixture
def node() -> FakeNode:
    return FakeNode()


@pytest.fixture
def journal_factory(tmp_path: Path) -> Iterator[Callable[..., Journal]]:
    opened: list[Journal] = []

    def make(name: str = "journal.db", **options: Any) -> Journal:
        item = Journal(tmp_path / name, node_id=NODE, facility_id=FACILITY, door_id=DOOR, **options)
        opened.append(item)
        return item

    yield make
    for item in opened:
        item.close()


@pytest.fixture
def journal(journal_factory: Callable[..., Journal]) -> Journal:
    return journal_factory()


@pytest.fixture
def mqtt_config(broker: Mosquitto) -> Callable[..., MqttConfig]:
    """``mqtt_config(**overrides)``: settings for the test broker, with quick reconnects."""

    def make(**overrides: Any) -> MqttConfig:
        fields: dict[str, Any] = {
            "host": broker.host,
            "port": broker.port,
            "reconnect_min_s": 0.05,
            "reconnect_max_s": 0.5,
            "ack_timeout_s": 2.0,
        }
        fields.update(overrides)
        return MqttConfig(**fields)

    return make


@pytest.fixture
def make_uplink(
    mqtt_config: Callable[..., MqttConfig], node: FakeNode
) -> Iterator[Callable[..., Uplink]]:
    """``make_uplink(journal, **config)``: a started uplink for ``node``; stopped at the end."""
    made: list[Uplink] = []

    def make(journal: Journal, *, start: bool = True, **overrides: Any) -> Uplink:
        item = Uplink(
            mqtt_config(**overrides),
            facility_id=FACILITY,
            node_id=NODE,
            journal=journal,
            status=node.status,
            on_command=node.handle_command,
            on_facility_state=node.on_facility_state,
        )
        made.append(item)
        if start:
            item.start()
        return item

    yield make
    for item in made:
        item.stop()
