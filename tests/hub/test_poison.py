"""No poison message: an event the hub cannot take is refused with its reason and acked at
the broker, and the events around it are stored and acked.

These run on the broker configuration the provisioning tools write for a facility (its
in-flight limit, authentication and ACL as in production), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import pwd
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.config import HubConfig
from hub.errors import StoreDataError, StoreError
from hub.records import BatchResult
from hub.store.sqlite import SqliteStore
from hub.web.server import ServiceThread
from protocol.events import Event
from provisioning.enroll import EnrolRequest, enroll
from provisioning.inventory import Facility, init_fleet
from provisioning.mosquitto import Mosquitto, free_port
from runtime.listen import bind

from .conftest import FACILITY, FakeNode, HubRunner

Factory = Callable[..., Any]


class Provisioned:
    """A facility's broker as ``pintu provision`` writes it, a node enrolled on it."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path / "broker-files"
        port = free_port()
        _, hub_password = init_fleet(
            self.dir,
            [Facility(id=FACILITY, name="Mall A")],
            settings={
                "listen": "127.0.0.1",
                "port": port,
                "persistence_dir": tmp_path / "broker-state",
                "tls_names": ("127.0.0.1",),
                # As root the broker would drop to `mosquitto`, which cannot read our files.
                "run_as": pwd.getpwuid(os.geteuid()).pw_name,
            },
        )
        assert hub_password is not None
        self.hub_password_file = tmp_path / "hub-mqtt-password"
        self.hub_password_file.write_text(hub_password)
        enrolment = enroll(
            self.dir, EnrolRequest(FACILITY, "main", "both", f"127.0.0.1:{port}"), tmp_path / "out"
        )
        self.node_id = enrolment.record.node_id
        self.node_user = enrolment.record.username
        self.node_password = (enrolment.bundle_dir / "mqtt-password").read_text().strip()
        self.broker = Mosquitto(
            tmp_path / "run",
            port,
            config_file=self.dir / "mosquitto.conf",
            ca_file=self.dir / "ca.pem",
        )

    def conf(self) -> str:
        return (self.dir / "mosquitto.conf").read_text()


@pytest.fixture
def provisioned(tmp_path: Path) -> Iterator[Provisioned]:
    facility = Provisioned(tmp_path)
    facility.broker.start()
    yield facility
    facility.broker.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_section(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if request.param == "sqlite":
        return {"backend": "sqlite", "path": str(tmp_path / "hub.db")}
    dsn: str = request.getfixturevalue("pg_dsn")
    return {"backend": "postgresql", "dsn": dsn}


def provisioned_hub(facility: Provisioned, store: dict[str, Any]) -> HubConfig:
    return HubConfig.model_validate(
        {
            "mqtt": {
                "host": facility.broker.host,
                "port": facility.broker.port,
                "client_id": "pintu-hub",
                "username": "hub",
                "password_file": str(facility.hub_password_file),
                "tls_ca_file": str(facility.dir / "ca.pem"),
            },
            "store": store,
            "homeassistant": {"enabled": False},
            "facilities": [
                {
                    "id": FACILITY,
                    "name": "Mall A",
                    "doors": [
                        {
                            "id": "main",
                            "name": "Main entrance",
                            "direction": "both",
                            "nodes": [facility.node_id],
                        }
                    ],
                }
            ],
        }
    )


def door(facility: Provisioned) -> FakeNode:
    """The enrolled node, logged in with its own credentials."""
    login = (facility.node_user, facility.node_password)
    return FakeNode(facility.broker, node_id=facility.node_id, door_id="main", login=login)


def with_seq(event: Event, seq: int) -> bytes:
    """The event's wire form with a seq no Event can be built with."""
    data = json.loads(event.dumps())
    data["seq"] = seq
    return json.dumps(data).encode()


def test_the_provisioned_broker_keeps_its_in_flight_default(provisioned: Provisioned) -> None:
    # What this file relies on: Mosquitto's own limit of 20 unacknowledged messages a
    # client, which the hub widens for itself with MQTT 5's Receive Maximum.
    assert "max_inflight_messages" not in provisioned.conf()


def test_seqs_past_64_bits_are_refused_and_the_events_around_them_stored(
    provisioned: Provisioned, store_section: dict[str, Any], run_hub: Factory
) -> None:
    runner: HubRunner = run_hub(provisioned_hub(provisioned, store_section))
    node = door(provisioned)
    try:
        good = [node.event("entry", subject=f"{i:024x}") for i in range(5)]
        # More poison than the broker's in-flight window: had the hub left them
        # unacknowledged, nothing after them would ever reach it.
        poison = [with_seq(node.event("entry"), seq) for seq in (2**63, 2**64) * 15]
        node.send(*good[:2])
        for payload in poison:
            node.publish(node.events_topic, payload)
        node.send(*good[2:])
        node.wait_acked(good, timeout_s=20)
        page = runner.hub.store.events(facility_id=FACILITY, limit=100)
        assert sorted(e.event.event_id for e in page.events) == sorted(e.event_id for e in good)
        assert runner.hub.store.occupancy(FACILITY).occupancy == 5
        assert runner.hub.metrics.rejected.value(reason="schema") == len(poison)
        # ... and the hub goes on taking events: none of the poison holds a slot.
        late = node.emit("exit", subject=good[0].subject)
        node.wait_acked([late])
        assert runner.hub.store.occupancy(FACILITY).occupancy == 4
    finally:
        node.close()


class RefusingStore(SqliteStore):
    """A SQLite store that refuses one event id as a value it cannot hold, and can be
    made to fail every batch (a store that is down)."""

    def __init__(self, path: Path, refuse: set[str]) -> None:
        super().__init__(path)
        self.refuse = refuse
        self.down = threading.Event()
        self.batches: list[int] = []

    def store_batch(self, events: Sequence[Event], received_at: datetime | None = None) -> Any:
        self.batches.append(len(events))
        if self.down.is_set():
            raise StoreError("the database is not answering")
        if any(e.event_id in self.refuse for e in events):
            raise StoreDataError("integer out of range")
        result: BatchResult = super().store_batch(events, received_at)
        return result


def test_an_unstorable_event_is_refused_alone_and_its_batch_stored(
    make_config: Factory, run_hub: Factory, clients: Factory, tmp_path: Path
) -> None:
    config = make_config()
    bad = clients().event("entry", subject="ab" * 12)
    store = RefusingStore(tmp_path / "refusing.db", {bad.event_id})
    store.facilities = {f.id: f for f in config.facilities}
    runner: HubRunner = run_hub(config, store)
    node = clients()
    node.seq = bad.seq
    before = [node.event("entry", subject=f"{i:024x}") for i in range(3)]
    after = [node.event("exit", subject=f"{i:024x}") for i in range(2)]
    node.send(*before, bad, *after)
    node.wait_acked(before + after)
    stored = {e.event.event_id for e in store.events(facility_id=FACILITY, limit=100).events}
    assert stored == {e.event_id for e in before + after}
    assert runner.hub.metrics.rejected.value(reason="unstorable") == 1
    assert bad.event_id not in node.acked()
    assert store.occupancy(FACILITY).occupancy == 1


def test_healthz_reports_a_store_that_refuses_every_batch(
    make_config: Factory, clients: Factory, tmp_path: Path, wait_until: Factory
) -> None:
    # The threshold is a setting (30 s by default); a short one keeps the test short.
    config = make_config(
        ingest={"unhealthy_after_s": 0.2},
        web={"secret_key_file": str(tmp_path / "web-secret")},
    )
    store = RefusingStore(tmp_path / "down.db", set())
    store.facilities = {f.id: f for f in config.facilities}
    service = ServiceThread(config, store=store, sock=bind("127.0.0.1", 0)).start()
    try:
        with httpx.Client(base_url=service.url, timeout=15) as http:
            node = clients()
            first = node.emit("entry")
            node.wait_acked([first])
            health = http.get("/healthz")
            assert health.status_code == 200 and health.json()["store"] is True
            store.down.set()
            node.emit("entry")
            wait_until(lambda: http.get("/healthz").status_code == 503, what="a 503")
            body = http.get("/healthz").json()
            assert body["ok"] is False and body["store"] is False and body["writer"] is True
            assert "store has refused every batch" in body["problem"]
            store.down.clear()
            wait_until(lambda: http.get("/healthz").status_code == 200, timeout_s=20)
    finally:
        service.stop()


def test_an_event_from_the_future_or_before_the_tracing_window_is_refused(
    make_config: Factory, run_hub: Factory, clients: Factory, wait_until: Factory
) -> None:
    runner: HubRunner = run_hub(make_config())
    node = clients()
    node.emit("entry", ts=datetime.now(UTC) + timedelta(minutes=10))
    # A door whose clock was never set: its events would recount the whole history.
    node.emit("entry", ts=datetime(1970, 1, 1, tzinfo=UTC))
    slightly = node.emit("entry", ts=datetime.now(UTC) + timedelta(seconds=20))
    node.wait_acked([slightly])
    rejected = runner.hub.metrics.rejected
    wait_until(lambda: rejected.value(reason="future_time") == 1, what="one refusal")
    wait_until(lambda: rejected.value(reason="too_old") == 1, what="one refusal")
    assert runner.hub.store.occupancy(FACILITY).occupancy == 1
