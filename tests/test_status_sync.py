"""A status change at the registry reaches a door's decision, end to end.

A real ``pintu registry serve`` process, a private Mosquitto, the hub (in-process, syncing
every half second) and a door node (in-process, mock pins, a synthetic camera):

* a green pass is admitted; the registry marks the person black; after the next sync the
  same pass is refused as black, and the node's list ages show at the hub;
* the registry goes away: the hub and the doors keep working, the outbox grows, and when
  the registry is back every visit arrives there once;
* a rotated key's passes keep working; a revoked key's passes are refused after a sync;
* the door believes only lists the registry's list key signed: a rotation of that key
  reaches it through the hub and is followed, a rogue's list or rotation is refused;
* junk on the lists topics changes nothing at the node.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPin
from paho.mqtt.enums import CallbackAPIVersion

from controller.config import NodeConfig
from controller.node import Node
from firmware.synthetic import PRESETS, SyntheticSource
from hub.records import AlertKind
from protocol import passes, topics
from protocol.events import Event, EventKind, new_event_id
from protocol.signedlist import Kind, ListKeys, seal, statement
from protocol.status import Status
from protocol.trust import SigningKey, TrustList
from provisioning.mosquitto import Mosquitto

from .processes import (
    OPERATOR,
    OPERATOR_PASSWORD,
    HubThread,
    RegistryProcess,
    free_port,
    linked_hub_config,
    registry_with_facility,
    wait,
)

ROOT = Path(__file__).resolve().parents[1]
SYNC_S = 0.5
STALE = 2 * 86_400  # the node's trust list at start: two days old
_nik = itertools.count(1)


class Operator:
    """The registry's operator, over its HTTP API."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=10)
        self.token = ""

    def login(self) -> None:
        r = self.http.post(
            "/api/v1/login", json={"username": OPERATOR, "password": OPERATOR_PASSWORD}
        )
        r.raise_for_status()
        self.token = r.json()["token"]

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self.http.request(
            method, f"/api/v1{path}", headers={"Authorization": f"Bearer {self.token}"}, **kwargs
        )
        assert r.status_code < 300, r.text
        return r.json()

    def person(self, status: str, name: str = "Siti Rahayu") -> str:
        """A new person with ``status``; their NIK."""
        nik = f"31740501019{next(_nik):05d}"
        self.call("POST", "/persons", json={"nik": nik, "name": name, "status": status, "doses": 2})
        return nik

    def set_status(self, nik: str, status: str) -> None:
        self.call(
            "POST",
            "/persons",
            json={"nik": nik, "name": "Siti Rahayu", "status": status, "doses": 2},
        )

    def issue(self, nik: str) -> dict[str, Any]:
        pass_: dict[str, Any] = self.call("POST", "/passes", json={"nik": nik})
        return pass_


class Doors:
    """Door events sent the way a node sends them, for visits at other doors."""

    def __init__(self, broker: Mosquitto, facility_id: str) -> None:
        self.facility_id = facility_id
        self.seq = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def send(self, kind: str, subject: str, at: datetime, door: str) -> Event:
        self.seq += 1
        event = Event(
            event_id=new_event_id(),
            node_id="side-1",
            facility_id=self.facility_id,
            door_id=door,
            seq=self.seq,
            ts=at,
            kind=EventKind(kind),
            subject=subject,
            admit=True,
        )
        info = self.client.publish(topics.node_events(self.facility_id, "side-1"), event.dumps(), 1)
        info.wait_for_publish(5)
        return event

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Facility:
    registry: RegistryProcess
    operator: Operator
    facility_id: str
    hub: HubThread
    node: Node
    source: SyntheticSource
    doors: Doors

    def events(self, kind: EventKind) -> list[Event]:
        page = self.hub.hub.store.events(facility_id=self.facility_id, kind=kind.value, limit=1000)
        return [e.event for e in page.events]

    def show(self, text: str) -> None:
        """Hold a pass up to the camera long enough for one decision, then take it away."""
        scanner = self.node.scanner
        assert scanner is not None
        wait(lambda: self.source.pending == 0, what="the camera to be free")
        seen = scanner.stats.frames
        # Past the scan cooldown, so the same pass again is a new decision.
        wait(lambda: scanner.stats.frames > seen + 8, what="idle frames")
        self.source.show(text, 5)


@pytest.fixture(scope="module")
def facility(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Facility]:
    tmp = tmp_path_factory.mktemp("facility")
    port = free_port()
    config_path, facility_id, hub_token, pinned = registry_with_facility(
        tmp, port, [("main-in", "entrance", "camera"), ("main-out", "exit", "camera")]
    )
    process = RegistryProcess(config_path, port)
    broker = Mosquitto(tmp / "broker")
    broker.start()
    previous = Device.pin_factory
    Device.pin_factory = MockFactory(pin_class=MockPin)
    node, source = start_node(tmp / "node", broker, facility_id, pinned)
    hub = HubThread(
        linked_hub_config(
            tmp,
            broker,
            process.url,
            hub_token,
            {"id": facility_id, "name": "Mall Kelapa"},
            client_id="hub-e2e",
            sync_interval_s=SYNC_S,
            node_offline_after_s=600,
        )
    ).start()
    # The registry is not up yet: the hub keeps trying, and the node's two-day-old trust
    # list shows on the dashboard as stale.
    wait(
        lambda: hub.hub.store.alerts(facility_id, kind=AlertKind.STALE_LISTS),
        what="the stale-lists alert",
    )
    process.start()
    operator = Operator(process.url)
    operator.login()
    doors = Doors(broker, facility_id)
    try:
        yield Facility(process, operator, facility_id, hub, node, source, doors)
    finally:
        doors.close()
        node.stop()
        Device.pin_factory.reset()
        Device.pin_factory = previous
        hub.close()
        operator.http.close()
        process.stop()
        broker.stop()


def start_node(
    state_dir: Path, broker: Mosquitto, facility_id: str, pinned: ListKeys
) -> tuple[Node, SyntheticSource]:
    state_dir.mkdir()
    TrustList(updated_at=int(time.time()) - STALE).save(state_dir / "trust.json")
    pinned.save(state_dir / "list-keys.json")
    node_config = NodeConfig.model_validate(
        {
            "node_id": "main-in-1",
            "facility_id": facility_id,
            "door_id": "main-in",
            "direction": "entry",
            "state_dir": str(state_dir),
            "source": {"kind": "synthetic", "preset": "easy", "fps": 30},
            "pins": {
                "pin_factory": "mock",
                "leds": {"kind": "three", "red": 17, "yellow": 27, "green": 22},
                "buzzer": {"pin": 18},
                "relay": {"pin": 5, "active_high": True, "pulse_ms": 150, "wiring": "fail_secure"},
            },
            "gate": {"passage": "assume", "signal_s": 0.1},
            "scan": {"cooldown_s": 0.2},
            "policy": {"anti_passback_s": 0},
            "mqtt": {
                "host": broker.host,
                "port": broker.port,
                "reconnect_min_s": 0.05,
                "reconnect_max_s": 0.5,
                "ack_timeout_s": 2.0,
            },
        }
    )
    source = SyntheticSource(PRESETS["easy"], seed=3, fps=30)
    node = Node(node_config, source=source)
    node.start()
    return node, source


def test_a_black_status_reaches_the_door_within_a_sync(facility: Facility) -> None:
    node, hub = facility.node, facility.hub.hub
    nik = facility.operator.person("green")
    issued = facility.operator.issue(nik)
    subject = issued["subject"]
    # The registry is up: the hub's lists arrive, and the node tells the hub they are fresh.
    wait(lambda: bytes.fromhex(issued["kid"]) in node.policy.trust.keys, what="the trust list")
    # A green subject is not on the doors' list (least data): wait for the list itself.
    wait(lambda: node.policy.statuses.updated_at is not None, what="the status list")
    assert node.policy.statuses.lookup(bytes.fromhex(subject)) is None

    # The node reports each list as it applies it: wait for the report that has both.
    def fresh() -> bool:
        [seen] = [n for n in hub.store.nodes(facility.facility_id) if n.node_id == "main-in-1"]
        ages = (seen.trust_list_age_s, seen.status_list_age_s)
        return all(age is not None and age < 60 for age in ages)

    wait(fresh, what="the node to report both lists fresh")
    wait(
        lambda: not hub.store.alerts(facility.facility_id, kind=AlertKind.STALE_LISTS),
        what="the stale-lists alert to clear",
    )

    facility.show(issued["text"])
    entry = wait(
        lambda: [e for e in facility.events(EventKind.ENTRY) if e.subject == subject],
        what="the entry at the hub",
    )[0]
    assert (entry.signal, entry.admit) == ("green", True)

    facility.operator.set_status(nik, "black")
    changed = time.monotonic()
    wait(
        lambda: (
            (found := node.policy.statuses.lookup(bytes.fromhex(subject)))
            and found.status.label == "black"
        ),
        what="the black status at the node",
    )
    latency = time.monotonic() - changed
    # Within one sync interval, plus the time to read, build and deliver the list.
    assert latency < SYNC_S + 2.0, latency
    facility.show(issued["text"])
    denied = wait(
        lambda: [e for e in facility.events(EventKind.DENIED) if e.subject == subject],
        what="the refusal at the hub",
    )[0]
    assert (denied.reason, denied.signal, denied.admit) == ("status_black", "black", False)


def test_the_outbox_rides_out_a_registry_outage(facility: Facility) -> None:
    hub = facility.hub.hub
    store = hub.store
    registry = hub.registry
    assert registry is not None
    subjects = [f"{i:024x}" for i in range(0xE0, 0xE4)]
    now = datetime.now(UTC)
    facility.registry.stop()
    try:
        for subject in subjects:
            facility.doors.send("entry", subject, now - timedelta(minutes=30), "main-in")
            facility.doors.send("exit", subject, now - timedelta(minutes=1), "main-out")
        # The hub stores the events and records the visits; nobody takes them.
        wait(
            lambda: len(_ours(store.pending_visits(facility.facility_id), subjects)) == 4,
            what="four visits in the outbox",
        )
        failed = wait(
            lambda: registry.sync.last is not None and not registry.sync.last.ok,
            what="a failed sync",
        )
        assert failed and hub.healthy
        # The doors keep deciding with the lists they have.
        assert len(facility.node.policy.trust.keys) >= 1
    finally:
        facility.registry.start()
    wait(
        lambda: not _ours(store.pending_visits(facility.facility_id), subjects),
        what="the outbox to empty",
    )
    assert store.outbox_counts().get("failed") == 0
    for subject in subjects:
        trace = facility.operator.call("GET", "/tracing", params={"subject": subject})
        [at] = trace["facilities"]
        assert at["facility_id"] == facility.facility_id
        assert [v["door_id"] for v in at["visits"]] == ["main-in"]  # once, not twice


def _ours(visits: list[Any], subjects: list[str]) -> list[Any]:
    return [v for v in visits if v.subject in subjects]


def test_rotation_keeps_old_passes_and_revocation_refuses_them(facility: Facility) -> None:
    node = facility.node
    operator = facility.operator
    nik = operator.person("green", name="Budi Santoso")
    old = operator.issue(nik)
    rotation = operator.call("POST", "/keys/rotate")
    new_kid = bytes.fromhex(rotation["kid"])
    wait(lambda: new_kid in node.policy.trust.keys, what="the rotated trust list")
    new = operator.issue(nik)
    assert new["kid"] == rotation["kid"] != old["kid"]
    now = time.time()
    assert node.policy.decide(old["text"], "entry", now).admit  # signed before the rotation
    assert node.policy.decide(new["text"], "entry", now).admit
    operator.call("POST", f"/keys/{old['kid']}/revoke")
    old_kid = bytes.fromhex(old["kid"])
    wait(lambda: node.policy.trust.keys[old_kid].revoked, what="the revocation at the node")
    refused = node.policy.decide(old["text"], "entry", time.time())
    assert (refused.admit, refused.reason) == (False, "key_revoked")
    assert node.policy.decide(new["text"], "entry", time.time()).admit


def test_the_door_follows_a_list_key_rotation_and_refuses_a_rogues(facility: Facility) -> None:
    """Finding 1: lists reached a door unsigned, so anyone who could publish on the broker
    could hand it a trust list with their own key. The registry's lists are signed now;
    its list key rotates through a statement the old key signs."""
    node, operator = facility.node, facility.operator
    assert node.lists is not None
    receiver = node.lists
    enrolled = receiver.pins
    rotation = operator.call("POST", "/keys/rotate-list-key")
    assert rotation["previous"] == enrolled.kids
    # The hub relays the chain at its next sync; the door pins the new key and keeps it.
    wait(lambda: receiver.pins.kids == [rotation["kid"]], what="the door to follow the rotation")
    assert ListKeys.load(node.config.path(node.config.list_keys)) == receiver.pins
    # Lists signed by the new key are believed: a status change still reaches the door.
    nik = operator.person("green", name="Rina Wati")
    subject = bytes.fromhex(operator.issue(nik)["subject"])
    operator.set_status(nik, "red")
    wait(
        lambda: (found := node.policy.statuses.lookup(subject)) and found.status.label == "red",
        what="a list signed by the new key applied",
    )
    # A rogue on the broker: a trust list with its key, signed by the old list key's
    # successor it does not have, and a rotation of its own.
    attacker = SigningKey.generate()
    now = int(time.time())
    forged = TrustList.of([*node.policy.trust.keys.values(), attacker.trusted()], updated_at=now)
    rogue_rotation = statement(
        attacker, ListKeys.of(rotation["seq"] + 1, [attacker.public_key], now)
    )
    client = facility.doors.client
    for topic, payload, reason in (
        (topics.lists_trust(facility.facility_id), forged.dumps().encode(), "unsigned"),
        (
            topics.lists_trust(facility.facility_id),
            seal(attacker, Kind.TRUST, forged.dumps().encode()),
            "unknown_key",
        ),
        (topics.lists_keys(facility.facility_id), rogue_rotation, "unknown_key"),
    ):
        ignored = receiver.stats.ignored
        client.publish(topic, payload, qos=1).wait_for_publish(5)
        wait(lambda ignored=ignored: receiver.stats.ignored > ignored, what="a refusal")
        assert receiver.stats.last_reason == reason
    assert receiver.pins.kids == [rotation["kid"]]
    assert attacker.kid not in node.policy.trust.keys
    now = int(time.time())
    text = passes.issue(attacker, bytes.fromhex("e9" * 12), Status.GREEN, 2, now - 60, now + 3600)
    assert node.policy.decide(text, "entry", time.time()).reason == "unknown_key"


def test_junk_on_the_lists_topics_changes_nothing(facility: Facility) -> None:
    node = facility.node
    assert node.lists is not None
    before = (dict(node.policy.trust.keys), node.policy.statuses.dumps())
    ignored = node.lists.stats.ignored
    for topic, junk in (
        (topics.lists_trust(facility.facility_id), b'{"format": "pintu-trust", "v": 1}'),
        (topics.lists_status(facility.facility_id), b"PSL1\xff\xff\xff\xff"),
    ):
        facility.doors.client.publish(topic, junk, qos=1).wait_for_publish(5)
    wait(
        lambda: node.lists is not None and node.lists.stats.ignored >= ignored + 2,
        what="the junk to be looked at and ignored",
    )
    assert (dict(node.policy.trust.keys), node.policy.statuses.dumps()) == before
