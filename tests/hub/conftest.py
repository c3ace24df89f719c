"""Fixtures for the hub tests: a private Mosquitto on a free port, a hub running on an event
loop of its own, and plain paho clients that play door nodes and listeners."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hub.config import HubConfig
from hub.service import Hub
from hub.store import Store
from protocol import topics
from protocol.events import Ack, Event, EventKind, new_event_id
from provisioning.mosquitto import Mosquitto

T = TypeVar("T")
FACILITY = "mall-a"
_ids = itertools.count(1)


def _wait_until(condition: Callable[[], bool], timeout_s: float = 10.0, what: str = "") -> None:
    """Return once ``condition()`` holds; fail the test if it does not within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not met within {timeout_s} s: {what or condition}")
        time.sleep(0.005)  # a poll interval under a deadline, not a guess at how long to wait


@pytest.fixture
def wait_until() -> Callable[..., None]:
    """``wait_until(condition, timeout_s=10, what="")``: poll until it holds, or fail."""
    return _wait_until


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "broker") as running:
        yield running


def hub_config(broker: Mosquitto, tmp_path: Path, **overrides: Any) -> HubConfig:
    """A hub for one facility (capacity 3, two doors, a zone) on the test broker."""
    facility: dict[str, Any] = {
        "id": FACILITY,
        "name": "Mall A",
        "capacity": 3,
        "zones": [{"id": "north", "name": "North wing", "doors": ["north"]}],
        "doors": [
            {"id": "main", "name": "Main entrance", "direction": "both", "nodes": ["main-1"]},
            {"id": "north", "name": "North door", "direction": "both", "nodes": ["north-1"]},
        ],
    }
    facility.update(overrides.pop("facility", {}))
    data: dict[str, Any] = {
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": "hub-test"},
        "store": {"backend": "sqlite", "path": str(tmp_path / "hub.db")},
        "facilities": [facility],
        "node_offline_after_s": 0,
    }
    data.update(overrides)
    return HubConfig.model_validate(data)


@pytest.fixture
def make_config(broker: Mosquitto, tmp_path: Path) -> Callable[..., HubConfig]:
    """``make_config(facility={...}, **top_level)``: a hub config on the test broker."""
    return lambda **overrides: hub_config(broker, tmp_path, **overrides)


class HubRunner:
    """A ``Hub`` on an event loop in a thread of its own, so a test stays a plain function
    while paho clients play the nodes."""

    def __init__(self, config: HubConfig, store: Store | None = None) -> None:
        self.hub = Hub(config, store=store)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.running = False

    def start(self, timeout_s: float = 10.0) -> HubRunner:
        self._thread.start()
        self.call(self.hub.start())
        self.running = True
        assert self.call(self.hub.wait_ready(timeout_s)), "the hub did not connect"
        return self

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 20.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.call(self.hub.stop())
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        if not self.loop.is_closed():
            self.loop.close()


@pytest.fixture
def run_hub() -> Iterator[Callable[..., HubRunner]]:
    """Start hubs; every one still running is stopped after the test."""
    runners: list[HubRunner] = []

    def start(config: HubConfig, store: Store | None = None) -> HubRunner:
        runner = HubRunner(config, store)
        runners.append(runner)
        return runner.start()

    yield start
    for runner in runners:
        runner.stop()


class Client:
    """A plain paho client that records what it receives."""

    def __init__(
        self,
        broker: Mosquitto,
        subscribe: Sequence[str] = (),
        name: str = "",
        login: tuple[str, str] | None = None,
    ) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        # Called from paho's thread for each message, e.g. to answer a command.
        self.hook: Callable[[mqtt.MQTTMessage], None] | None = None
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._want = list(subscribe)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{name or 'client'}-{next(_ids)}",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        if login is not None:
            self.client.username_pw_set(*login)
        if broker.ca_file is not None:
            self.client.tls_set(ca_certs=str(broker.ca_file))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        if self._want:
            self.client.subscribe([(t, 1) for t in self._want])
            assert self._subscribed.wait(10), "no SUBACK"

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()
        if self.hook is not None:
            self.hook(message)

    def wait_for(
        self, predicate: Callable[[], bool], timeout_s: float = 10.0, what: str = ""
    ) -> None:
        with self._cond:
            if not self._cond.wait_for(predicate, timeout_s):
                pytest.fail(f"not received within {timeout_s} s: {what or predicate}")

    def on(self, topic: str) -> list[bytes]:
        with self._cond:
            return [m.payload for m in self.messages if m.topic == topic]

    def last(self, topic: str, timeout_s: float = 10.0) -> bytes:
        self.wait_for(lambda: bool(self.on(topic)), timeout_s, f"a message on {topic}")
        return self.on(topic)[-1]

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class FakeNode(Client):
    """A door node played by a plain paho client: publishes events, collects its acks."""

    def __init__(
        self,
        broker: Mosquitto,
        node_id: str = "main-1",
        door_id: str = "main",
        facility_id: str = FACILITY,
        login: tuple[str, str] | None = None,
    ) -> None:
        self.node_id, self.door_id, self.facility_id = node_id, door_id, facility_id
        self.seq = 0
        self.events_topic = topics.node_events(facility_id, node_id)
        self.ack_topic = topics.node_ack(facility_id, node_id)
        super().__init__(broker, [self.ack_topic], name=node_id, login=login)

    def event(self, kind: str | EventKind = "entry", **fields: Any) -> Event:
        self.seq += 1
        data: dict[str, Any] = {
            "event_id": new_event_id(),
            "node_id": self.node_id,
            "facility_id": self.facility_id,
            "door_id": self.door_id,
            "seq": self.seq,
            "ts": datetime.now(UTC),
            "kind": kind,
        }
        data.update(fields)
        return Event.model_validate(data)

    def send(self, *events: Event) -> list[Event]:
        for event in events:
            self.publish(self.events_topic, event.dumps())
        return list(events)

    def emit(self, kind: str | EventKind = "entry", **fields: Any) -> Event:
        return self.send(self.event(kind, **fields))[0]

    def acked(self) -> list[str]:
        """Every event id acked so far, in order, repeats included."""
        return [i for payload in self.on(self.ack_topic) for i in Ack.parse(payload).event_ids]

    def wait_acked(self, events: list[Event], timeout_s: float = 10.0) -> None:
        wanted = {e.event_id for e in events}
        self.wait_for(lambda: wanted <= set(self.acked()), timeout_s, f"acks of {len(wanted)}")


@pytest.fixture
def clients(broker: Mosquitto) -> Iterator[Callable[..., Any]]:
    """Make nodes (``clients(node=...)``) or listeners (``clients(topics=[...])``), all
    closed after the test."""
    made: list[Client] = []

    def make(*, topics: list[str] | None = None, **node: Any) -> Any:
        client = Client(broker, topics) if topics is not None else FakeNode(broker, **node)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
