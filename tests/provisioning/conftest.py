"""Fixtures for the provisioning tools: a facility broker directory and a real Mosquitto
running on the configuration the tools wrote, and MQTT peers that log in to it."""

from __future__ import annotations

import os
import pwd
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from provisioning.broker import HUB_PASSWORD
from provisioning.inventory import Facility, init_fleet
from provisioning.mosquitto import Mosquitto, free_port

FACILITY = "mall-a"

WaitFor = Callable[..., None]


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Return as soon as ``predicate()`` holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        pause.wait(0.01)


@pytest.fixture
def wait_for() -> WaitFor:
    return wait_until


@dataclass
class FacilityBroker:
    dir: Path
    broker: Mosquitto
    hub_password: str

    @property
    def address(self) -> str:
        return f"{self.broker.host}:{self.broker.port}"

    def start(self) -> Mosquitto:
        self.broker.start()
        return self.broker


def init_broker_dir(directory: Path, port: int, state: Path) -> str:
    _, hub_password = init_fleet(
        directory,
        [Facility(id=FACILITY, name="Mall A"), Facility(id="clinic", name="Clinic")],
        settings={
            "listen": "127.0.0.1",
            "port": port,
            "persistence_dir": state,
            # The names the tests' nodes are enrolled with, in the broker's certificate.
            "tls_names": ("127.0.0.1", "localhost", "hub.local"),
            # As root the broker would drop to `mosquitto`, which cannot read a test's files.
            "run_as": pwd.getpwuid(os.geteuid()).pw_name,
        },
    )
    assert hub_password is not None
    assert (directory / HUB_PASSWORD).read_text().strip() == hub_password
    return hub_password


@pytest.fixture
def broker_dir(tmp_path: Path) -> tuple[Path, str]:
    """A fresh broker directory (not running): (directory, hub password)."""
    directory = tmp_path / "broker"
    return directory, init_broker_dir(directory, free_port(), tmp_path / "state")


@pytest.fixture
def facility_broker(tmp_path: Path) -> Iterator[FacilityBroker]:
    """A broker directory and a Mosquitto for its mosquitto.conf; ``start()`` starts it.

    Tests enrol their nodes first and start the broker after, so that no test has to wait
    for a reload except the ones about reloading.
    """
    port = free_port()
    directory = tmp_path / "broker"
    hub_password = init_broker_dir(directory, port, tmp_path / "state")
    server = Mosquitto(
        tmp_path / "run",
        port,
        config_file=directory / "mosquitto.conf",
        ca_file=directory / "ca.pem",
    )
    yield FacilityBroker(directory, server, hub_password)
    server.stop()


class Peer:
    """An MQTT v5 client logged in as someone; records CONNACK, SUBACKs, PUBACKs, messages."""

    def __init__(
        self,
        broker: Mosquitto,
        username: str | None,
        password: str | None,
        client_id: str | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self.connack: ReasonCode | None = None
        self.connacked = threading.Event()
        self.disconnected = threading.Event()
        self.messages: list[tuple[str, bytes]] = []
        self._subacks: dict[int, list[ReasonCode]] = {}
        self._pubacks: dict[int, ReasonCode] = {}
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"peer-{username}-{id(self)}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if broker.ca_file is not None:
            self.client.tls_set(ca_certs=str(broker.ca_file))
        self.client.reconnect_delay_set(5, 10)  # keep refused peers from hammering the broker
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, 30)
        self.client.loop_start()
        assert self.connacked.wait(10), "no CONNACK"

    @property
    def accepted(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                    properties: Properties | None) -> None:  # fmt: skip
        self.connack = rc
        self.connacked.set()

    def _on_disconnect(self, *_: Any) -> None:
        self.disconnected.set()

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      codes: list[ReasonCode], properties: Properties | None) -> None:  # fmt: skip
        with self._lock:
            self._subacks[mid] = codes

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: ReasonCode,
                    properties: Properties | None) -> None:  # fmt: skip
        with self._lock:
            self._pubacks[mid] = rc

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def subscribe(self, topic: str) -> ReasonCode:
        _, mid = self.client.subscribe(topic, qos=1)
        assert mid is not None
        wait_until(lambda: mid in self._subacks, what=f"SUBACK for {topic}")
        return self._subacks[mid][0]

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> ReasonCode:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        wait_until(lambda: info.mid in self._pubacks, what=f"PUBACK for {topic}")
        return self._pubacks[info.mid]

    def received(self, topic: str | None = None) -> list[bytes]:
        with self._lock:
            return [p for t, p in self.messages if topic is None or t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def peers() -> Iterator[Callable[..., Peer]]:
    """``peers(broker, username, password)``: a connected :class:`Peer`, closed at the end."""
    made: list[Peer] = []

    def make(
        broker: Mosquitto, username: str | None, password: str | None, client_id: str | None = None
    ) -> Peer:
        peer = Peer(broker, username, password, client_id)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.close()
