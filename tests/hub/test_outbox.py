"""Visits: derived from the events in their own transaction, pushed to a real registry
(in-process, through its ASGI app) until it has each one once, kept through outages,
parked when refused; tracing over them; retention."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

import hub.auth
import hub.counting.service
from hub.auth import hash_password
from hub.config import FacilityConfig
from hub.errors import StoreError
from hub.metrics import HubMetrics
from hub.records import iso
from hub.retention import Retention
from hub.store.sqlite import SqliteStore
from hub.tracing import trace
from hub.upstream.client import HttpRegistryClient
from hub.upstream.outbox import VisitPusher
from hub.web.server import ServiceThread
from protocol.events import Event, new_event_id
from registry.app import create_app
from registry.auth import Principal
from registry.config import parse_config
from registry.models import DoorIn, FacilityRequestIn
from registry.service import Registry
from runtime.listen import bind

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
AYU, BUDI, CITRA = "a" * 24, "b" * 24, "c" * 24


class Doors:
    """Events of one facility's doors, at chosen times."""

    def __init__(self, facility_id: str) -> None:
        self.facility_id = facility_id
        self.seq = 0

    def __call__(
        self, kind: str, subject: str | None, at: datetime, door: str = "main-in", **more: Any
    ) -> Event:
        self.seq += 1
        data: dict[str, Any] = {
            "event_id": new_event_id(),
            "node_id": "n1",
            "facility_id": self.facility_id,
            "door_id": door,
            "seq": self.seq,
            "ts": at,
            "kind": kind,
            **more,
        }
        if subject is not None:
            data["subject"] = subject
        event: Event = Event.parse(Event.model_validate(data).dumps())
        return event


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    facility = FacilityConfig(id="mall-a", name="Mall A")
    with SqliteStore(tmp_path / "hub.db", [facility]) as opened:
        yield opened


def pairs(store: SqliteStore, facility_id: str = "mall-a") -> set[tuple[str, str]]:
    return {(v.visit_id, v.exit_event_id) for v in store.pending_visits(facility_id)}


# --- deriving ------------------------------------------------------------------------------
def test_an_exit_closes_the_open_check_in_to_the_second(store: SqliteStore) -> None:
    door = Doors("mall-a")
    came = door("entry", AYU, T0 + timedelta(milliseconds=700))
    left = door("exit", AYU, T0 + timedelta(hours=1, milliseconds=200), door="main-out")
    store.store_batch([came])
    assert store.pending_visits("mall-a") == []  # still inside: nothing to push
    store.store_batch([left])
    [visit] = store.pending_visits("mall-a")
    assert (visit.visit_id, visit.exit_event_id, visit.door_id) == (
        came.event_id,
        left.event_id,
        "main-in",
    )
    # As the registry keeps them: check-in rounded down, check-out up.
    assert visit.check_in == T0
    assert visit.check_out == T0 + timedelta(hours=1, seconds=1)
    assert visit.wire()["check_in"] == "2026-11-22T08:00:00Z"


def test_the_order_of_arrival_does_not_matter(store: SqliteStore) -> None:
    door = Doors("mall-a")
    came = door("entry", AYU, T0)
    left = door("exit", AYU, T0 + timedelta(minutes=30))
    store.store_batch([left])  # the entry node was offline: its event comes late
    assert store.pending_visits("mall-a") == []
    store.store_batch([came.model_copy(update={"late": True})])
    assert pairs(store) == {(came.event_id, left.event_id)}
    # Both in one batch, exit first in the batch: the same visit.
    came2, left2 = door("entry", BUDI, T0), door("exit", BUDI, T0 + timedelta(minutes=5))
    store.store_batch([left2, came2])
    assert pairs(store) == {(came.event_id, left.event_id), (came2.event_id, left2.event_id)}


def test_what_makes_no_visit(store: SqliteStore) -> None:
    door = Doors("mall-a")
    store.store_batch(
        [
            door("exit", AYU, T0),  # an exit with no check-in
            door("entry", BUDI, T0),
            door("exit", BUDI, T0 + timedelta(hours=25)),  # longer than a visit can be
            door("entry", CITRA, T0),
            door("denied", CITRA, T0 + timedelta(minutes=1), admit=False),
            door("not_passed", CITRA, T0 + timedelta(minutes=2)),
            door("exit", None, T0 + timedelta(minutes=3)),  # no subject: a button exit
            door("manual", None, T0 + timedelta(minutes=4), direction="exit"),
        ]
    )
    assert store.pending_visits("mall-a") == []
    # Another facility's exit does not close this facility's check-in.
    other = Doors("mall-b")
    store.store_batch([other("exit", CITRA, T0 + timedelta(minutes=5))])
    assert store.pending_visits("mall-a") == store.pending_visits("mall-b") == []


def test_an_exit_closes_the_latest_check_in_once(store: SqliteStore) -> None:
    door = Doors("mall-a")
    first = door("entry", AYU, T0)
    second = door("manual", AYU, T0 + timedelta(minutes=10), direction="entry")
    left = door("exit", AYU, T0 + timedelta(minutes=40))
    again = door("manual", AYU, T0 + timedelta(minutes=41), direction="exit")
    store.store_batch([first, second, left, again])
    # The second exit finds the latest check-in closed: no visit from the older one.
    assert pairs(store) == {(second.event_id, left.event_id)}
    # A late check-in before a check-out that belongs to a later check-in pairs with nothing.
    store.store_batch([door("entry", AYU, T0 + timedelta(minutes=5), late=True)])
    assert pairs(store) == {(second.event_id, left.event_id)}


def test_a_visit_is_stored_with_its_exit_or_not_at_all(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    door = Doors("mall-a")
    store.store_batch([door("entry", AYU, T0)])
    left = door("exit", AYU, T0 + timedelta(minutes=5))

    def broken(*args: Any) -> None:
        raise StoreError("the disk is full")

    # A failure after the visit was derived, inside the same transaction.
    monkeypatch.setattr(hub.counting.service.Counting, "_track_nodes", broken)
    with pytest.raises(StoreError):
        store.store_batch([left])
    assert store.event(left.event_id) is None
    assert store.pending_visits("mall-a") == []
    monkeypatch.undo()
    store.store_batch([left])  # the node sends it again
    assert len(store.pending_visits("mall-a")) == 1


# --- pushing ----------------------------------------------------------------------------
class Switch(httpx.AsyncBaseTransport):
    """The registry's app in-process, behind a switch that can make it unreachable."""

    def __init__(self, registry: Registry) -> None:
        self.inner = httpx.ASGITransport(app=create_app(registry))
        self.down = False
        self.requests: list[tuple[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)


class World:
    """A registry with an active facility (doors main-in and main-out) and a hub store."""

    def __init__(self, tmp_path: Path) -> None:
        (tmp_path / "registry").mkdir()
        self.registry = Registry.open(parse_config("[web]\nport = 0\n", base=tmp_path / "registry"))
        request = FacilityRequestIn(
            name="Mall A",
            address="Jl. Sudirman 1",
            type="mall",
            capacity=300,
            pic_name="Dewi",
            pic_email="pic@mall.example",
        )
        facility = self.registry.request_facility(request)
        verification = self.registry.verify_facility(facility.id, "operator")
        self.token = self.registry.activate_facility(
            facility.id, verification.token, "a long password"
        ).hub_token
        self.facility_id = facility.id
        for door_id, direction in (("main-in", "entrance"), ("main-out", "exit")):
            self.registry.add_door(
                Principal("operator", "op"),
                facility.id,
                DoorIn(door_id=door_id, name=door_id, direction=direction),
            )
        self.path = tmp_path / "hub.db"
        self.store = SqliteStore(self.path, [FacilityConfig(id=facility.id, name="Mall A")])
        self.transport = Switch(self.registry)
        self.metrics = HubMetrics()
        self.doors = Doors(facility.id)

    def pusher(self, batch: int = 1000) -> VisitPusher:
        client = HttpRegistryClient(
            "http://registry", {self.facility_id: self.token}, transport=self.transport
        )
        return VisitPusher(
            self.store, client, [self.facility_id], metrics=self.metrics, batch=batch
        )

    def visits(self, count: int, *, door: str = "main-in", first: int = 0) -> list[Event]:
        """``count`` closed visits (of subjects ``first``, ``first + 1``...) that ended a
        minute ago."""
        now = datetime.now(UTC)
        events = []
        for i in range(first, first + count):
            subject = f"{i:024x}"
            events.append(self.doors("entry", subject, now - timedelta(hours=1), door=door))
            events.append(self.doors("exit", subject, now - timedelta(minutes=1), door="main-out"))
        self.store.store_batch(events)
        return events

    def at_registry(self) -> int:
        return self.registry.store.count_visits()

    def close(self) -> None:
        self.store.close()
        self.registry.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    made = World(tmp_path)
    yield made
    made.close()


def push(pusher: VisitPusher, *, close: bool = True) -> Any:
    async def run() -> Any:
        try:
            return await pusher.push_all()
        finally:
            if close:
                await pusher.client.aclose()

    return asyncio.run(run())


def test_visits_reach_the_registry_once_through_an_outage(world: World) -> None:
    world.visits(5)
    world.transport.down = True
    report = push(world.pusher(batch=2))
    assert (report.sent, report.kept) == (0, 2)  # the first batch failed: the rest wait
    assert len(world.store.pending_visits(world.facility_id)) == 5
    assert world.at_registry() == 0
    # The hub restarts while the registry is away: the outbox is in the store.
    world.store.close()
    world.store = SqliteStore(world.path)
    world.visits(2, first=5)
    world.transport.down = False
    report = push(world.pusher(batch=2))
    assert (report.sent, report.failed, report.kept) == (7, 0, 0)
    assert world.at_registry() == 7
    assert world.store.pending_visits(world.facility_id) == []
    assert world.store.outbox_counts().get("sent") == 7
    # A replay (an answer lost on the way back) is counted as duplicates, stored once.
    now = datetime.now(UTC)
    visits = world.store.visits_of(
        world.facility_id, f"{0:024x}", now - timedelta(days=1), now + timedelta(days=1)
    )
    assert world.store.mark_visits([v.visit_id for v in visits], "pending") == 1
    assert push(world.pusher()).sent == 1
    assert world.at_registry() == 7


def test_refused_rows_are_parked_with_the_reason_and_the_rest_go_through(world: World) -> None:
    world.visits(3)
    world.visits(1, door="side-door", first=3)  # a door the facility never registered
    report = push(world.pusher())
    assert (report.sent, report.failed) == (6 - 3, 1)
    assert world.at_registry() == 3
    [failed] = world.store.failed_visits(world.facility_id)
    assert failed.door_id == "side-door"
    assert failed.reason is not None and "422" in failed.reason and "side-door" in failed.reason
    assert 'pintu_hub_visits{state="failed"} 1' in world.metrics.render()
    assert 'pintu_hub_visits_failed_total{facility="' in world.metrics.render()


def test_a_refusal_that_names_no_row_is_narrowed_down(world: World) -> None:
    events = world.visits(4)
    poison = events[4].event_id  # the third visit's check-in: its visit id
    registry = world.transport.inner

    async def refuse_poison(request: httpx.Request) -> httpx.Response:
        if poison.encode() in request.content:
            return httpx.Response(400, json={"error": "bad_request", "detail": "no"})
        return await registry.handle_async_request(request)

    world.transport = _Handler(refuse_poison)  # type: ignore[assignment]
    report = push(world.pusher())
    assert (report.sent, report.failed) == (3, 1)
    assert [v.visit_id for v in world.store.failed_visits()] == [poison]


def test_a_refused_token_stops_the_facility_until_the_configuration_changes(
    world: World,
) -> None:
    world.visits(2)
    pusher = world.pusher()
    pusher.client.tokens[world.facility_id] = "rh_not-a-token"
    report = push(pusher, close=False)
    # The visits are not at fault: none is parked, and they wait.
    assert (report.sent, report.failed, report.kept) == (0, 0, 2)
    assert len(world.store.pending_visits(world.facility_id)) == 2
    # Shown on the dashboard (an alert with the registry's reason) and in the metrics.
    [alert] = world.store.alerts(world.facility_id, kind="visits_refused")
    assert "401" in alert.message
    assert f'pintu_hub_visit_push_stopped{{facility="{world.facility_id}"}} 1.0' in (
        world.metrics.render()
    )
    # Not retried forever: the next passes send nothing at all.
    sent_before = len(world.transport.requests)
    report = push(pusher, close=False)
    assert (report.sent, report.kept) == (0, 0)
    assert len(world.transport.requests) == sent_before
    # The token mended (a new configuration), the facility is tried again and goes through.
    pusher.client.tokens[world.facility_id] = world.token
    asyncio.run(pusher.retry())
    assert push(pusher).sent == 2
    assert world.at_registry() == 2
    assert world.store.alerts(world.facility_id, kind="visits_refused") == []
    assert f'pintu_hub_visit_push_stopped{{facility="{world.facility_id}"}} 0.0' in (
        world.metrics.render()
    )


def test_visits_refused_for_an_unregistered_door_are_tried_again_once_it_is_registered(
    world: World,
) -> None:
    world.visits(1, door="side-door")
    pusher = world.pusher()
    assert push(pusher, close=False).failed == 1
    [alert] = world.store.alerts(world.facility_id, kind="visits_refused")
    assert "422" in alert.message and "side-door" in alert.message
    # Parked: later passes leave it alone.
    assert push(pusher, close=False).sent == 0
    assert len(world.store.failed_visits(world.facility_id)) == 1
    # The PIC registers the door at the registry; the hub restarts (or an admin syncs).
    world.registry.add_door(
        Principal("operator", "op"),
        world.facility_id,
        DoorIn(door_id="side-door", name="Side door", direction="entrance"),
    )
    assert asyncio.run(pusher.retry()) == 1
    assert push(pusher).sent == 1
    assert world.at_registry() == 1
    assert world.store.failed_visits(world.facility_id) == []


class _Handler(httpx.AsyncBaseTransport):
    def __init__(self, handler: Callable[[httpx.Request], Any]) -> None:
        self.handler = handler

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response: httpx.Response = await self.handler(request)
        return response


# --- tracing and retention ----------------------------------------------------------------
def test_tracing_finds_the_overlaps_as_the_registry_defines_them(store: SqliteStore) -> None:
    door = Doors("mall-a")
    store.store_batch(
        [
            door("entry", AYU, T0),
            door("exit", AYU, T0 + timedelta(hours=1)),
            door("entry", BUDI, T0 - timedelta(minutes=30)),  # overlaps 15 minutes
            door("exit", BUDI, T0 + timedelta(minutes=15)),
            door("entry", CITRA, T0 + timedelta(minutes=10)),  # overlaps 20 minutes
            door("exit", CITRA, T0 + timedelta(minutes=30)),
            door("entry", "d" * 24, T0 + timedelta(hours=1)),  # came as Ayu left: none
            door("exit", "d" * 24, T0 + timedelta(hours=2)),
        ]
    )
    result = trace(store, "mall-a", "Mall A", AYU, T0 - timedelta(days=1), T0 + timedelta(days=1))
    doc = result.to_json()
    assert doc["contact_count"] == 2
    assert [(c["subject"], c["overlap_seconds"]) for c in doc["contacts"]] == [
        (CITRA, 1200),
        (BUDI, 900),
    ]
    assert doc["contacts"][1]["overlaps"][0]["start"] == "2026-11-22T08:00:00Z"
    assert doc["contacts"][1]["overlaps"][0]["end"] == "2026-11-22T08:15:00Z"
    rows = result.to_csv().splitlines()
    assert rows[0].startswith("facility_id,facility_name,visit_id,door_id,check_in")
    assert sorted(row.rsplit(",", 1)[1] for row in rows[1:]) == ["1200", "900"]
    # Outside the window asked for: nothing.
    empty = trace(store, "mall-a", "Mall A", AYU, T0 + timedelta(hours=3), T0 + timedelta(days=1))
    assert empty.to_json()["visits"] == [] and empty.overlaps == []


def test_retention_forgets_subjects_past_the_window(store: SqliteStore) -> None:
    door = Doors("mall-a")
    now = datetime.now(UTC)
    old = now - timedelta(days=22)
    store.store_batch(
        [
            door("entry", AYU, old),
            door("exit", AYU, old + timedelta(hours=1)),
            door("entry", BUDI, now - timedelta(hours=2)),
            door("exit", BUDI, now - timedelta(hours=1)),
        ]
    )
    store.audit("guard1", "desk.lookup", facility_id="mall-a", target=AYU, detail="found: green")
    store.audit(
        "guard1", "desk.admit", facility_id="mall-a", target="main", detail=f"green, subject {AYU}"
    )
    store.conn.execute("UPDATE audit SET ts = ?", (iso(old),))
    metrics = HubMetrics()
    retention = Retention(store, days=21, metrics=metrics)
    purged = asyncio.run(retention.purge())
    assert (purged.visits, purged.events, purged.audit) == (1, 2, 2)
    assert [v.subject for v in store.pending_visits("mall-a")] == [BUDI]
    subjects = [e.event.subject for e in store.events(facility_id="mall-a").events]
    assert subjects.count(None) == 2 and subjects.count(BUDI) == 2
    # The counts stay: occupancy is recounted from the events, names or not.
    assert store.count_events("mall-a") == 4
    assert store.rebuild_occupancy()["mall-a"].occupancy == 0
    log = store.audit_log()
    assert [(e.target, e.detail) for e in log] == [("main", "green"), (None, "found: green")]
    assert 'pintu_hub_purged_total{what="visits"} 1' in metrics.render()
    assert asyncio.run(retention.purge()).visits == 0  # nothing left to purge


def test_the_outbox_shows_in_the_metrics(world: World) -> None:
    world.visits(2)
    asyncio.run(world.pusher().update_counts())
    assert 'pintu_hub_visits{state="pending"} 2' in world.metrics.render()


def test_an_admin_traces_a_subject_through_the_api(
    make_config: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        hub.auth, "HASHER", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    )
    config = make_config(web={"secret_key_file": str(tmp_path / "secret")})
    thread = ServiceThread(config, sock=bind("127.0.0.1", 0)).start()
    opened: list[httpx.Client] = []
    try:
        store = thread.hub.store
        for name, role in (("admin1", "admin"), ("viewer1", "viewer")):
            store.add_user(name, hash_password(f"{name}-password"), role)
        door = Doors("mall-a")
        now = datetime.now(UTC).replace(microsecond=0)
        store.store_batch(
            [
                door("entry", AYU, now - timedelta(hours=2), door="main"),
                door("exit", AYU, now - timedelta(hours=1), door="main"),
                door("entry", BUDI, now - timedelta(minutes=90), door="main"),
                door("exit", BUDI, now - timedelta(minutes=30), door="main"),
            ]
        )

        def login(name: str) -> httpx.Client:
            client = httpx.Client(base_url=thread.url, timeout=10)
            opened.append(client)
            csrf = client.get("/api/v1/session").json()["csrf_token"]
            r = client.post(
                "/api/v1/session",
                json={"username": name, "password": f"{name}-password"},
                headers={"X-CSRF-Token": csrf},
            )
            assert r.status_code == 200, r.text
            return client

        url = "/api/v1/facilities/mall-a/tracing"
        admin, viewer = login("admin1"), login("viewer1")
        doc = admin.get(url, params={"subject": AYU}).json()
        assert (doc["facility_id"], doc["contact_count"]) == ("mall-a", 1)
        assert doc["contacts"][0]["subject"] == BUDI
        assert doc["contacts"][0]["overlap_seconds"] == 1800
        assert "from" in doc and "from_" not in doc
        csv = admin.get(url, params={"subject": AYU, "format": "csv"})
        assert csv.headers["content-type"].startswith("text/csv")
        assert csv.text.splitlines()[1].endswith(",1800")
        assert admin.get(url).status_code == 400  # which subject?
        assert admin.get(url, params={"subject": "NOT-HEX"}).status_code == 400
        assert viewer.get(url, params={"subject": AYU}).status_code == 403
        assert store.audit_log(facility_id="mall-a")[0].action == "tracing.query"
    finally:
        for client in opened:
            client.close()
        thread.stop()
