"""Phone check-ins end to end: a real ``pintu registry serve``, a private Mosquitto and the
hub (in-process) with its channel to the registry; phones over HTTP and in a real
Chromium at 390x844.

* an entrance poster's address gives green and occupancy +1 at the hub, under its door,
  from the phone node; a retry of the same check-in is counted once;
* the exit poster checks out; anti-passback holds with the camera doors' passages;
* a subject turned black gets the black screen and the hub's alert; a full facility "full";
* with the hub stopped, the phone gets the pass's own colour (queued) and the check-in is
  counted exactly once when the hub is back;
* the hub's channel refuses malformed answers and cannot answer another facility's.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import Browser, BrowserContext, Page, expect

from hub.config import HttpRegistryConfig
from hub.records import AlertKind
from protocol import topics
from protocol.checkins import PHONE_NODE
from protocol.events import Event, EventKind, new_event_id
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
from .registry.pages import check

_nik = itertools.count(1)
WAIT_MS = 15_000


class Phone:
    """A visitor's wallet over HTTP: the credential its activation gave."""

    def __init__(self, url: str, credential: str) -> None:
        self.http = httpx.Client(
            base_url=url, timeout=30, headers={"Authorization": f"Bearer {credential}"}
        )

    def check_in(self, facility_id: str, door_id: str, checkin_id: str | None = None) -> Any:
        r = self.http.post(
            "/api/v1/wallet/checkins",
            json={
                "id": checkin_id or uuid.uuid4().hex,
                "facility_id": facility_id,
                "door_id": door_id,
            },
        )
        return r


@dataclass
class World:
    registry: RegistryProcess
    facility_id: str
    hub: HubThread
    broker: Mosquitto
    operator: httpx.Client
    listener: mqtt.Client
    heard: list[dict[str, Any]] = field(default_factory=list)
    phones: list[Phone] = field(default_factory=list)
    camera_seq: int = 0

    def person(self, status: str, name: str = "Siti Rahayu") -> str:
        nik = f"31740501029{next(_nik):05d}"
        r = self.operator.post(
            "/api/v1/persons", json={"nik": nik, "name": name, "status": status, "doses": 2}
        )
        assert r.status_code < 300, r.text
        return nik

    def set_status(self, nik: str, status: str) -> None:
        r = self.operator.post(
            "/api/v1/persons",
            json={"nik": nik, "name": "Siti Rahayu", "status": status, "doses": 2},
        )
        assert r.status_code < 300, r.text

    def link(self, nik: str) -> str:
        r = self.operator.post("/api/v1/wallet/links", json={"nik": nik})
        assert r.status_code == 201, r.text
        link: str = r.json()["link"]
        return link

    def phone(self, nik: str) -> Phone:
        token = self.link(nik).split("token=")[1]
        r = httpx.post(f"{self.registry.url}/api/v1/wallet/activate", json={"token": token})
        assert r.status_code == 201, r.text
        phone = Phone(self.registry.url, r.json()["credential"])
        self.phones.append(phone)  # closed with the world
        return phone

    @property
    def store(self) -> Any:
        return self.hub.hub.store

    def occupancy(self) -> int:
        return int(self.store.occupancy(self.facility_id).occupancy)

    def phone_events(self, kind: EventKind | None = None) -> list[Any]:
        page = self.store.events(
            facility_id=self.facility_id, kind=kind.value if kind else None, limit=1000
        )
        return [e.event for e in page.events if e.event.node_id == PHONE_NODE]

    def passages(self, subject: str) -> list[dict[str, Any]]:
        """The passages of ``subject`` the hub sent the doors (the broker's topic, heard
        since the world started), once there is one."""
        found: list[dict[str, Any]] = wait(
            lambda: [p for p in self.heard if p["subject"] == subject],
            what="the passage on the doors' topic",
        )
        return found

    def camera_entry(self, subject: str, door_id: str) -> None:
        """An entry from a camera door's node, as a node sends it."""
        self.camera_seq += 1
        event = Event(
            event_id=new_event_id(), node_id="main-in-1", facility_id=self.facility_id,
            door_id=door_id, seq=self.camera_seq, ts=datetime.now(UTC), kind=EventKind.ENTRY,
            subject=subject, admit=True, signal="green",
        )  # fmt: skip
        info = self.listener.publish(
            topics.node_events(self.facility_id, "main-in-1"), event.dumps(), 1
        )
        info.wait_for_publish(5)

    def channel_up(self) -> bool:
        link = self.hub.hub.registry
        return link is not None and all(c.connected.is_set() for c in link.channels)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("phones")
    port = free_port()
    doors = [
        ("front-in", "entrance", "poster"),
        ("front-out", "exit", "poster"),
        ("main-in", "entrance", "camera"),
    ]
    config_path, facility_id, hub_token, _ = registry_with_facility(
        tmp, port, doors, public_url=True
    )
    process = RegistryProcess(config_path, port)
    with contextlib.ExitStack() as cleanup:
        # Each part is stopped, in reverse order, however far the setting up got.
        process.start()
        cleanup.callback(process.stop)
        broker = Mosquitto(tmp / "broker")
        broker.start()
        cleanup.callback(broker.stop)
        hub = HubThread(
            linked_hub_config(
                tmp,
                broker,
                process.url,
                hub_token,
                {"id": facility_id, "name": "Mall Kelapa", "capacity": 100},
                client_id="hub-phones",
            )
        )
        cleanup.callback(hub.close)
        hub.start()
        operator = cleanup.enter_context(httpx.Client(base_url=process.url, timeout=10))
        login = {"username": OPERATOR, "password": OPERATOR_PASSWORD}
        r = operator.post("/api/v1/login", json=login)
        operator.headers["Authorization"] = f"Bearer {r.json()['token']}"
        listener = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        heard: list[dict[str, Any]] = []
        listener.on_message = lambda _c, _u, m: heard.extend(json.loads(m.payload)["passages"])
        listener.connect(broker.host, broker.port)
        listener.subscribe(topics.facility_passages(facility_id), qos=1)
        listener.loop_start()
        cleanup.callback(listener.disconnect)
        cleanup.callback(listener.loop_stop)
        world = World(process, facility_id, hub, broker, operator, listener, heard)
        cleanup.callback(lambda: [phone.http.close() for phone in world.phones])
        # The hub has the registry's trust list, and its channel is open.
        wait(lambda: world.store.sync_state().trust is not None, what="the trust list at the hub")
        wait(world.channel_up, what="the phone channel")
        yield world


def test_an_entrance_poster_checks_in_and_the_exit_checks_out(world: World) -> None:
    phone = world.phone(world.person("green"))
    before = world.occupancy()
    checkin_id = uuid.uuid4().hex
    r = phone.check_in(world.facility_id, "front-in", checkin_id)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["state"], answer["signal"], answer["admit"]) == ("answered", "green", True)
    assert answer["direction"] == "entry"
    assert (answer["facility_name"], answer["door_name"]) == ("Mall Kelapa", "Front-In")
    assert answer["occupancy"] == before + 1
    assert world.occupancy() == before + 1
    [entry] = [e for e in world.phone_events(EventKind.ENTRY) if e.event_id == checkin_id]
    assert (entry.door_id, entry.admit, entry.signal) == ("front-in", True, "green")

    # The same check-in again (its answer was lost on the way): counted once.
    again = phone.check_in(world.facility_id, "front-in", checkin_id)
    assert again.status_code == 200 and again.json()["admit"] is True
    assert world.occupancy() == before + 1

    # In again without going out: refused, as a camera door would.
    twice = phone.check_in(world.facility_id, "front-in").json()
    assert (twice["signal"], twice["admit"], twice["reason"]) == (
        "red", False, "anti_passback_facility",
    )  # fmt: skip

    out = phone.check_in(world.facility_id, "front-out").json()
    assert (out["state"], out["admit"], out["direction"]) == ("answered", True, "exit")
    assert out["occupancy"] == before
    assert world.occupancy() == before
    # A visit is made of it, as of a camera door's passages.
    subject = entry.subject
    day = datetime.now(UTC)

    def sent() -> list[Any]:
        visits = world.store.visits_of(
            world.facility_id, subject, day - timedelta(hours=1), day + timedelta(hours=1)
        )
        return [(v.door_id, v.exit_event_id) for v in visits if v.state == "sent"]

    # ... and reaches the registry, for its tracing.
    assert wait(sent, what="the visit at the registry") == [("front-in", out_event_id(world))]


def out_event_id(world: World) -> str:
    event_id: str = world.phone_events(EventKind.EXIT)[-1].event_id
    return event_id


def test_anti_passback_holds_between_camera_doors_and_phones(world: World) -> None:
    phone = world.phone(world.person("green"))
    checkin_id = uuid.uuid4().hex
    first = phone.check_in(world.facility_id, "front-in", checkin_id).json()
    assert first["admit"] is True
    [subject] = [e.subject for e in world.phone_events() if e.event_id == checkin_id]
    # The camera doors hear of the phone's passage (facility-wide anti-passback).
    heard = world.passages(subject)
    assert [(p["door_id"], p["direction"], p["node_id"]) for p in heard] == [
        ("front-in", "entry", PHONE_NODE)
    ]
    # A phone cannot use a door that has only a camera.
    r = phone.check_in(world.facility_id, "main-in")
    assert r.status_code == 409 and r.json()["state"] == "camera_door"
    out = phone.check_in(world.facility_id, "front-out").json()
    assert out["admit"] is True

    # A camera door's entry, then the same person's phone at an entrance: refused.
    world.camera_entry(subject, "main-in")
    wait(
        lambda: (
            (last := world.store.last_passage(world.facility_id, subject)) is not None
            and last.event.door_id == "main-in"
        ),
        what="the camera door's entry at the hub",
    )
    again = phone.check_in(world.facility_id, "front-in").json()
    assert (again["admit"], again["reason"]) == (False, "anti_passback_facility")
    phone.check_in(world.facility_id, "front-out")


def test_black_gets_the_black_screen_and_the_hub_alert(world: World) -> None:
    nik = world.person("green")
    phone = world.phone(nik)
    world.set_status(nik, "black")
    before = world.occupancy()
    answer = phone.check_in(world.facility_id, "front-in").json()
    assert (answer["signal"], answer["admit"], answer["reason"]) == ("black", False, "status_black")
    assert world.occupancy() == before
    wait(
        lambda: world.store.alerts(world.facility_id, kind=AlertKind.BLACK_PASS),
        what="the black-pass alert",
    )


def test_a_full_facility_answers_full(world: World) -> None:
    phone = world.phone(world.person("green"))
    now = world.occupancy()
    world.hub.call(world.hub.hub.set_capacity(world.facility_id, "staff", capacity=now))
    try:
        answer = phone.check_in(world.facility_id, "front-in").json()
        assert (answer["signal"], answer["admit"], answer["reason"]) == (
            "full", False, "facility_full",
        )  # fmt: skip
        assert world.occupancy() == now
    finally:
        world.hub.call(world.hub.hub.set_capacity(world.facility_id, "staff", capacity=100))


def test_with_the_hub_away_the_check_in_is_queued_and_counted_once(world: World) -> None:
    phone = world.phone(world.person("yellow"))
    before = world.occupancy()
    world.hub.stop()
    try:
        checkin_id = uuid.uuid4().hex
        r = phone.check_in(world.facility_id, "front-in", checkin_id)
        assert r.status_code == 200, r.text
        answer = r.json()
        # The pass's own colour, for staff to look at; nothing decided or counted yet.
        assert (answer["state"], answer["signal"], answer["admit"]) == ("queued", "yellow", None)
        pending = phone.http.get(f"/api/v1/wallet/checkins/{checkin_id}")
        assert pending.status_code == 202
    finally:
        world.hub.start()
    wait(lambda: world.occupancy() == before + 1, what="the queued check-in counted")
    counted = [e for e in world.phone_events(EventKind.ENTRY) if e.event_id == checkin_id]
    assert len(counted) == 1 and counted[0].late is True
    done = wait(
        lambda: (
            (r := phone.http.get(f"/api/v1/wallet/checkins/{checkin_id}")).status_code == 200
            and r.json()
        ),
        what="the hub's answer for the phone",
    )
    assert (done["state"], done["signal"], done["admit"]) == ("answered", "yellow", True)
    assert world.occupancy() == before + 1
    phone.check_in(world.facility_id, "front-out")


def test_the_channel_refuses_what_is_not_an_answer(world: World, tmp_path: Path) -> None:
    registry = world.hub.config.registry
    assert isinstance(registry, HttpRegistryConfig) and registry.credentials_file is not None
    token = registry.credentials_file.read_text().strip()
    hub_http = httpx.Client(
        base_url=world.registry.url, timeout=10, headers={"Authorization": f"Bearer {token}"}
    )
    url = "/api/v1/hub/checkins/answers"
    at = int(datetime.now(UTC).timestamp() * 1000)
    good = {"id": uuid.uuid4().hex, "signal": "green", "admit": True, "reason": "ok", "at_ms": at}
    for bad in (
        {**good, "admit": "yes"},
        {**good, "signal": "purple"},
        {**good, "id": "1"},
        {**good, "reason": "Not a code"},
        {**good, "extra": 1},
    ):
        r = hub_http.post(url, json={"v": 1, "answers": [bad]})
        assert r.status_code == 422, (bad, r.text)
    # An answer to a check-in nobody made changes nothing.
    assert hub_http.post(url, json={"v": 1, "answers": [good]}).json() == {"stored": 0}
    # Phones cannot use the hub's channel.
    phone = world.phone(world.person("green"))
    assert phone.http.get("/api/v1/hub/checkins?wait=0").status_code == 401
    hub_http.close()


# --- in a real Chromium on a phone's screen ---------------------------------------------


@pytest.fixture
def phones(browser: Browser) -> Iterator[list[BrowserContext]]:
    made: list[BrowserContext] = []
    yield made
    for context in made:
        context.close()


def browser_phone(browser: Browser, phones: list[BrowserContext], world: World, nik: str) -> Page:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, locale="en-GB", service_workers="allow"
    )
    phones.append(context)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(world.link(nik))
    page.wait_for_url("**/wallet/")
    expect(page.locator("#card")).to_be_visible()
    return page


def poster(world: World, door_id: str) -> str:
    return f"{world.registry.url}/d/{world.facility_id}/{door_id}"


def test_a_phone_checks_in_and_out_by_the_posters(
    browser: Browser, world: World, phones: list[BrowserContext]
) -> None:
    page = browser_phone(browser, phones, world, world.person("green"))
    # Offline, the pass still shows.
    page.wait_for_function("() => navigator.serviceWorker.controller !== null")
    page.context.set_offline(True)
    page.reload()
    expect(page.locator("#qr svg")).to_be_visible()
    page.context.set_offline(False)

    before = world.occupancy()
    page.goto(poster(world, "front-in"))
    screen = page.locator("#result")
    expect(screen).to_be_visible()
    expect(screen).to_have_attribute("data-signal", "green")
    expect(page.locator("#r-headline")).to_have_text("Checked in: welcome")
    expect(page.locator("#r-facility")).to_have_text("Mall Kelapa")
    expect(page.locator("#r-door")).to_have_text("Front-In")
    assert world.occupancy() == before + 1
    # The clock is live: it changes while the guard looks.
    shown = page.locator("#r-clock").text_content()
    page.wait_for_function(
        "(was) => document.getElementById('r-clock').textContent !== was", arg=shown
    )
    box = screen.bounding_box()
    assert box is not None and box["width"] >= 380 and box["height"] >= 800
    check(page)

    page.goto(poster(world, "front-out"))
    expect(page.locator("#r-word")).to_have_text("Checked out")
    expect(screen).to_have_attribute("data-direction", "exit")
    assert world.occupancy() == before


def test_black_full_and_queued_on_the_phone(
    browser: Browser, world: World, phones: list[BrowserContext]
) -> None:
    nik = world.person("green")
    page = browser_phone(browser, phones, world, nik)
    # Full.
    now = world.occupancy()
    world.hub.call(world.hub.hub.set_capacity(world.facility_id, "staff", capacity=now))
    try:
        page.goto(poster(world, "front-in"))
        expect(page.locator("#result")).to_have_attribute("data-signal", "full")
        expect(page.locator("#r-headline")).to_have_text("Full, please wait")
        check(page)
    finally:
        world.hub.call(world.hub.hub.set_capacity(world.facility_id, "staff", capacity=100))
    # Queued while the hub is away, then counted once when it is back.
    world.hub.stop()
    try:
        page.goto(poster(world, "front-in"))
        expect(page.locator("#result")).to_have_attribute("data-state", "queued")
        expect(page.locator("#r-staff")).to_be_visible()
    finally:
        world.hub.start()
    wait(lambda: world.occupancy() == now + 1, what="the queued check-in counted")
    expect(page.locator("#result")).to_have_attribute("data-state", "answered", timeout=30_000)
    assert world.occupancy() == now + 1
    page.goto(poster(world, "front-out"))
    expect(page.locator("#r-word")).to_have_text("Checked out")
    # Black.
    world.set_status(nik, "black")
    page.goto(poster(world, "front-in"))
    expect(page.locator("#result")).to_have_attribute("data-signal", "black")
    expect(page.locator("#r-staff")).to_be_visible()
    check(page)
    wait(
        lambda: world.store.alerts(world.facility_id, kind=AlertKind.BLACK_PASS),
        what="the black-pass alert",
    )


def test_without_a_pass_the_poster_says_how_to_get_one(
    browser: Browser, world: World, phones: list[BrowserContext]
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="en-GB")
    phones.append(context)
    page = context.new_page()
    page.goto(poster(world, "front-in"))
    expect(page.locator("#nopass")).to_be_visible()
    expect(page.locator("#nopass")).to_contain_text("NIK")
    check(page)
    unknown = page.goto(f"{world.registry.url}/d/{world.facility_id}/nowhere")
    assert unknown is not None and unknown.status == 404


def test_a_wallet_cannot_pile_up_check_ins_while_the_hub_is_away(tmp_path: Path) -> None:
    """At most MAX_WAITING of a wallet's check-ins wait for a hub; a retry of one of them
    is still the same check-in, and the next new one is refused with 429."""
    from protocol.status import Status
    from registry import wallet
    from registry.checkins import MAX_WAITING, Checkins
    from registry.config import load_config
    from registry.errors import CheckinsWaiting
    from registry.readlimit import ReadLimiter
    from registry.service import Registry

    config_path, facility_id, _, _ = registry_with_facility(
        tmp_path, free_port(), [("front-in", "entrance", "poster")]
    )
    registry = Registry.open(load_config(config_path))
    try:
        registry.wallet_calls = ReadLimiter(1000, 1000)  # the per-minute limit is another test's
        nik = "3174050102990001"
        registry.set_person(nik, "Siti Rahayu", Status.GREEN, 2, "test")
        link = wallet.issue_link(registry, nik, "test")
        credential = wallet.activate(registry, link.token, "127.0.0.1").credential
        checkins = Checkins(registry)
        ids = [uuid.uuid4().hex for _ in range(MAX_WAITING)]
        for checkin_id in ids:
            checkins.start(credential, checkin_id, facility_id, "front-in", "127.0.0.1")
        # A retry of one that waits is the same check-in, not a new one.
        again = checkins.start(credential, ids[0], facility_id, "front-in", "127.0.0.1")
        assert again.checkin.id == ids[0]
        with pytest.raises(CheckinsWaiting):
            checkins.start(credential, uuid.uuid4().hex, facility_id, "front-in", "127.0.0.1")
        assert registry.store.waiting_checkins(again.checkin.wallet_hash) == MAX_WAITING
    finally:
        registry.close()
