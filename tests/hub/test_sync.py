"""The hub's sync with a real registry (its ASGI app in-process, or served over HTTP): the
signed door lists with their ETags, relayed unchanged, the status feed page by page with a
stored cursor, the desk lookup, and ``POST /api/v1/sync``."""

from __future__ import annotations

import asyncio
import importlib
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

import hub.auth
import hub.upstream.sync
from hub.auth import hash_password
from hub.config import HubConfig
from hub.errors import ConfigError, StoreError
from hub.metrics import HubMetrics
from hub.store.sqlite import SqliteStore
from hub.upstream.client import HttpRegistryClient
from hub.upstream.sync import ListPublisher, RegistrySync, SyncMetrics, SyncResult
from hub.web.server import ServiceThread
from protocol import topics
from protocol.errors import ProtocolError
from protocol.signedlist import OVERHEAD, Kind, ListKeys, seal
from protocol.status import Status
from protocol.statuslist import StatusList, door_items
from protocol.trust import SigningKey, TrustList
from provisioning.mosquitto import Mosquitto
from registry.app import create_app
from registry.config import parse_config
from registry.models import FacilityRequestIn
from registry.server import run as run_registry
from registry.service import Registry
from runtime.listen import bind, url_of

from ..signing import flipped


class Recorder(httpx.AsyncBaseTransport):
    """The registry's app in-process; records each request and its answer's status."""

    def __init__(self, registry: Registry) -> None:
        self.inner: httpx.AsyncBaseTransport = httpx.ASGITransport(app=create_app(registry))
        self.seen: list[tuple[str, dict[str, str], int]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        self.seen.append((request.url.path, dict(request.url.params), response.status_code))
        return response

    def statuses_since(self) -> list[int]:
        return [int(p["since"]) for path, p, _ in self.seen if path.endswith("/statuses")]

    def trust_answers(self) -> list[int]:
        return [status for path, _, status in self.seen if path.endswith("/lists/trust")]


class World:
    """A registry with an active facility and people, and a hub store that syncs with it."""

    def __init__(self, tmp_path: Path, people: int = 25) -> None:
        (tmp_path / "registry").mkdir()
        self.registry = Registry.open(parse_config("[web]\nport = 0\n", base=tmp_path / "registry"))
        facility = self.registry.request_facility(
            FacilityRequestIn(
                name="Mall A",
                address="Jl. Sudirman 1",
                type="mall",
                capacity=300,
                pic_name="Dewi",
                pic_email="pic@mall.example",
            )
        )
        verification = self.registry.verify_facility(facility.id, "operator")
        self.token = self.registry.activate_facility(
            facility.id, verification.token, "a long password"
        ).hub_token
        self.facility_id = facility.id
        for i in range(people):
            self.person(i, Status(i % 4))
        self.store = SqliteStore(tmp_path / "hub.db")
        self.transport = Recorder(self.registry)
        self.published: list[tuple[str, bytes]] = []
        self.metrics = HubMetrics()
        self.clients: list[HttpRegistryClient] = []

    @staticmethod
    def nik(i: int) -> str:
        return f"3174050101{i:06d}"

    def person(self, i: int, status: Status, doses: int = 2) -> str:
        person, _ = self.registry.set_person(self.nik(i), f"Person {i}", status, doses, "operator")
        return person.subject

    def sync(self, page_size: int = 10, refresh_s: float = 3600.0) -> RegistrySync:
        client = HttpRegistryClient(
            "http://registry", {self.facility_id: self.token}, transport=self.transport
        )
        self.clients.append(client)
        metrics = SyncMetrics(self.metrics)
        publisher = ListPublisher(
            self.publish, [self.facility_id], refresh_s=refresh_s, metrics=metrics
        )
        return RegistrySync(self.store, client, publisher, metrics=metrics, page_size=page_size)

    def publish(self, topic: str, payload: bytes, *, retain: bool) -> None:
        assert retain, "the doors' lists are retained: a door that connects later gets them"
        self.published.append((topic, payload))

    def last(self, topic: str) -> bytes:
        return [payload for t, payload in self.published if t == topic][-1]

    def pinned(self) -> ListKeys:
        """The list keys a door enrolled now pins (``pintu registry list-keys``)."""
        return self.registry.list_keys.state().pinned

    def status_list(self) -> StatusList:
        signed = self.last(topics.lists_status(self.facility_id))
        return StatusList.loads(self.pinned().open(signed, Kind.STATUS))

    def trust_list(self) -> TrustList:
        signed = self.last(topics.lists_trust(self.facility_id))
        return TrustList.loads(self.pinned().open(signed, Kind.TRUST))

    def close(self) -> None:
        for client in self.clients:
            asyncio.run(client.aclose())
        self.store.close()
        self.registry.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    made = World(tmp_path)
    yield made
    made.close()


def run(sync: RegistrySync, times: int = 1) -> list[SyncResult]:
    async def go() -> list[SyncResult]:
        return [await sync.sync_now() for _ in range(times)]

    return asyncio.run(go())


def test_a_fresh_hub_reads_everything_then_only_what_changed(world: World) -> None:
    sync = world.sync(page_size=10)
    [first] = run(sync)
    signed_at = world.registry.now()
    [again] = run(sync)
    assert (first.ok, first.trust, first.statuses, first.pages) == (True, "changed", 25, 3)
    assert first.cursor == world.registry.store.last_cursor() == 25
    assert first.published == ["keys", "trust", "status"]
    # The second time: the trust list is not sent again (304), the feed is empty.
    assert (again.trust, again.statuses, again.pages, again.published) == ("unchanged", 0, 1, [])
    assert world.transport.trust_answers() == [200, 304]
    assert world.transport.statuses_since() == [0, 10, 20, 25]
    # What the doors get, signed by the registry's list key and relayed unchanged: the
    # subjects a still-valid pass could contradict (every status here changed just now;
    # the green ones need no record), and the registry's pass keys.
    doors = world.status_list()
    assert len(doors) == sum(Status(i % 4) is not Status.GREEN for i in range(25)) == 18
    for i in range(25):
        entry = doors.lookup(bytes.fromhex(world.registry.subject_of(world.nik(i))))
        if Status(i % 4) is Status.GREEN:
            assert entry is None
        else:
            assert entry is not None and entry.status is Status(i % 4)
    trust = world.trust_list()
    registry_trust = world.registry.keyring.trust_list()
    assert set(trust.keys) == set(registry_trust.keys)
    state = world.store.sync_state()
    assert state.statuses == 25 and state.statuses_checked_at is not None
    # Dated when the registry signed them: a door's list age is the time since.
    assert trust.updated_at is not None and abs(trust.updated_at - signed_at) <= 2
    assert world.store.sync_state().trust is not None  # the hub's record of the keys
    chain = world.last(topics.lists_keys(world.facility_id))
    assert ListKeys.from_chain(chain) == world.pinned()
    assert 'pintu_hub_lists_published_total{list="status"} 1' in world.metrics.render()


def test_a_change_goes_out_with_a_newer_list_at_once(world: World) -> None:
    sync = world.sync()
    first = run(sync)[0]
    stamp = world.status_list().updated_at
    subject = world.person(0, Status.BLACK)  # person 0 was green
    second = run(sync)[0]
    assert (first.statuses, second.statuses, second.published) == (25, 1, ["status"])
    doors = world.status_list()
    entry = doors.lookup(bytes.fromhex(subject))
    assert entry is not None and entry.status is Status.BLACK
    # Newer even within the same second, so a door can refuse an older copy.
    assert doors.updated_at is not None and stamp is not None and doors.updated_at > stamp


def test_unchanged_lists_are_published_again_with_a_fresh_time_when_due(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    sync = world.sync(refresh_s=3600)
    run(sync)
    stamp = world.status_list().updated_at
    count = len(world.published)
    assert run(sync)[0].published == []  # a minute later: nothing new to say
    # Half an hour on, the registry confirms the lists (304): still nothing to say, and
    # the hub's copies keep the time they were signed.
    half = datetime.now(UTC) + timedelta(minutes=30)
    monkeypatch.setattr(hub.upstream.sync, "utcnow", lambda: half)
    assert run(sync)[0].published == []
    later = datetime.now(UTC) + timedelta(hours=1, seconds=5)
    monkeypatch.setattr(hub.upstream.sync, "utcnow", lambda: later)
    monkeypatch.setattr(world.registry, "clock", later.timestamp)
    result = run(sync)[0]
    # Nothing changed, but the hub asked for fresh copies an hour later and the registry
    # dated them anew: the doors hear it, so their list ages stay small while the hub is
    # in touch. The key chain carries no date and is not asked for again.
    assert result.published == ["trust", "status"]
    assert len(world.published) == count + 2
    assert world.status_list().updated_at == world.trust_list().updated_at == int(later.timestamp())
    assert stamp is not None and int(later.timestamp()) > stamp


def test_a_sync_stopped_half_way_resumes_from_the_last_stored_page(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    save = world.store.save_statuses
    calls = 0

    def fail_on_the_second_page(*args: Any, **kwargs: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise StoreError("the disk is full")
        return save(*args, **kwargs)

    monkeypatch.setattr(world.store, "save_statuses", fail_on_the_second_page)
    sync = world.sync(page_size=10)
    broken = run(sync)[0]
    assert not broken.ok and broken.error is not None and "disk is full" in broken.error
    state = world.store.sync_state()
    assert (state.cursor, state.statuses, state.statuses_checked_at) == (10, 10, None)
    healed = run(sync)[0]
    assert healed.ok and healed.statuses == 15 and healed.cursor == 25
    assert world.transport.statuses_since()[-2:] == [10, 20]  # from the stored cursor
    assert world.store.sync_state().statuses == 25


@pytest.mark.parametrize(
    "junk",
    [
        {"changes": [{"subject": "x", "status": "green", "doses": 2, "cursor": 1,
                      "changed_at": "2026-11-22T08:00:00Z"}], "next": 1, "more": False},
        {"changes": [{"subject": "a" * 24, "status": "purple", "doses": 2, "cursor": 1,
                      "changed_at": "2026-11-22T08:00:00Z"}], "next": 1, "more": False},
        {"changes": [], "next": "1", "more": False},
        "not a page",
    ],
    ids=["bad subject", "bad status", "bad cursor", "not an object"],
)  # fmt: skip
def test_junk_from_the_registry_changes_nothing(world: World, junk: Any) -> None:
    registry = world.transport.inner

    class Junk(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/statuses"):
                return httpx.Response(200, json=junk)
            return await registry.handle_async_request(request)

    world.transport.inner = Junk()
    result = run(world.sync())[0]
    assert not result.ok and result.error is not None and "feed" in result.error
    assert world.store.sync_state().cursor == 0 and world.store.sync_state().statuses == 0
    # The doors' lists (the registry's, signed) still went out; nothing of the junk did.
    assert [t for t, _ in world.published] == [
        topics.lists_keys(world.facility_id),
        topics.lists_trust(world.facility_id),
        topics.lists_status(world.facility_id),
    ]


@pytest.mark.parametrize(
    "forgery", ["a forged key id", "unsigned", "signed by another key", "signature changed"]
)
def test_a_bad_trust_list_never_reaches_the_doors(world: World, forgery: str) -> None:
    sync = world.sync()
    run(sync)
    good = world.store.sync_state().trust
    registry = world.transport.inner
    published = len(world.published)
    signer = world.registry.list_keys.current()

    class Forged(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await registry.handle_async_request(request)
            if not request.url.path.endswith("/lists/trust"):
                return response
            doc = json.loads(world.registry.trust_document().body)
            if forgery == "a forged key id":
                doc["keys"][0]["kid"] = "00000000"
            body = json.dumps(doc).encode()
            signed = {
                "a forged key id": lambda: seal(signer, Kind.TRUST, body),
                "unsigned": lambda: body,
                "signed by another key": lambda: seal(SigningKey.generate(), Kind.TRUST, body),
                "signature changed": lambda: flipped(seal(signer, Kind.TRUST, body)),
            }[forgery]()
            return httpx.Response(200, content=signed, headers={"ETag": '"forged"'})

    world.transport.inner = Forged()
    for hub_sync in (sync, world.sync()):  # this hub, and one that starts afresh
        result = run(hub_sync)[0]
        assert not result.ok and result.trust == "error"
        assert result.error is not None and "the doors would refuse" in result.error
    assert world.store.sync_state().trust == good
    # Only the fresh hub's first copy of the chain went out, never the forged trust list.
    assert [t for t, _ in world.published[published:]] == [topics.lists_keys(world.facility_id)]


def test_rotation_and_revocation_reach_the_doors_trust_list(world: World) -> None:
    sync = world.sync()
    run(sync)
    old = world.registry.keyring.current().kid
    rotation = world.registry.rotate_key("operator")
    result = run(sync)[0]
    assert result.trust == "changed" and "trust" in result.published
    trust = world.trust_list()
    assert trust.keys[old].not_after is not None and not trust.keys[old].revoked
    assert bytes.fromhex(rotation.new_kid) in trust.keys
    world.registry.revoke_key(old.hex(), "operator")
    run(sync)
    assert world.trust_list().keys[old].revoked


def test_a_status_list_too_large_for_the_broker_is_not_published_nor_fetched_again(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for i in range(25, 45):
        world.person(i, Status.RED)
    # 38 subjects make a status list of 740 bytes; the chain and the trust list are smaller.
    monkeypatch.setattr(hub.upstream.sync, "MAX_LIST_BYTES", 500)
    sync = world.sync()
    first, again = run(sync, times=2)
    # Not a failed sync: the feed is read, the other lists go out, the doors keep theirs.
    assert first.ok and again.ok and first.statuses == 45
    assert first.published == ["keys", "trust"] and again.published == []
    assert caplog.text.count("over the 500 a message may carry") == 1
    statuses = [status for path, _, status in world.transport.seen if path.endswith("/status")]
    assert statuses == [200, 304]  # asked for again only with its ETag
    world.person(50, Status.RED)  # the list changes (and is still too large)
    assert run(sync)[0].published == []
    assert caplog.text.count("over the 500 a message may carry") == 2


def test_a_list_key_rotation_reaches_the_doors_and_they_follow_it(world: World) -> None:
    sync = world.sync()
    run(sync)
    enrolled = world.pinned()  # what a door enrolled before the rotation pins
    rotation = world.registry.rotate_list_key("operator")
    assert rotation.old_kids == tuple(enrolled.kids) and rotation.seq == enrolled.seq + 1
    result = run(sync)[0]
    # The chain names the new key, and both lists come signed by it.
    assert result.published == ["keys", "trust", "status"]
    chain = world.last(topics.lists_keys(world.facility_id))
    followed = enrolled.advance(chain)
    assert followed.kids == [rotation.new_kid] == world.pinned().kids
    trust = world.last(topics.lists_trust(world.facility_id))
    TrustList.loads(followed.open(trust, Kind.TRUST))
    with pytest.raises(ProtocolError, match="not pinned"):
        enrolled.open(trust, Kind.TRUST)
    assert run(sync)[0].published == []


def test_the_desk_asks_the_registry(world: World) -> None:
    subject = world.person(7, Status.GREEN)
    client = HttpRegistryClient(
        "http://registry", {world.facility_id: world.token}, transport=world.transport
    )

    async def ask() -> list[Any]:
        try:
            return [
                await client.lookup(world.nik(7), "  person   7 "),
                await client.lookup(world.nik(7), "Someone Else"),
                await client.lookup("1074050101900003", "Bad Province"),
            ]
        finally:
            await client.aclose()

    found, wrong_name, typo = asyncio.run(ask())
    assert (found.found, found.status, found.subject) == (True, "green", subject)
    assert (wrong_name.found, wrong_name.status) == (False, None)
    assert not typo.found and "province" in typo.reason


def test_each_facility_needs_its_own_token(tmp_path: Path) -> None:
    def config(registry: dict[str, Any], facilities: int = 1) -> HubConfig:
        return HubConfig.model_validate(
            {
                "store": {"backend": "sqlite", "path": str(tmp_path / "hub.db")},
                "registry": {"kind": "http", "url": "https://registry.example", **registry},
                "facilities": [{"id": f"f{i}", "name": f"F {i}"} for i in range(facilities)],
            }
        )

    config({"credentials_file": "token"})
    config({"credentials": {"f0": "t0", "f1": "t1"}}, facilities=2)
    for bad, facilities, message in (
        ({}, 1, "needs the hub token"),
        ({"credentials_file": "token"}, 2, "speaks for one facility"),
        ({"credentials": {"f0": "t0"}}, 2, "no token file for facility 'f1'"),
        ({"credentials": {"f0": "t0", "zz": "t"}}, 1, "unknown facility 'zz'"),
    ):
        with pytest.raises(ValueError, match=message):
            config(bad, facilities)
    with pytest.raises(ConfigError, match="secret file not found"):
        HttpRegistryClient.from_config(
            config({"credentials_file": str(tmp_path / "nope")}).registry
        )  # type: ignore[arg-type]


# --- over HTTP: the admin's sync, and the retained lists on the broker ---------------------
class RegistryServer:
    """The registry's API served over HTTP from a thread of its own."""

    def __init__(self, registry: Registry) -> None:
        self.sock = bind("127.0.0.1", 0)
        self.url = url_of(self.sock)
        self.loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, args=(registry,), daemon=True)
        self._thread.start()

    def _main(self, registry: Registry) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(run_registry(registry, self.sock, self._stop))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self.sock.close()
        self.loop.close()


@pytest.fixture
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        hub.auth, "HASHER", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    )


def test_an_admin_syncs_now_and_the_doors_get_retained_lists(
    world: World,
    tmp_path: Path,
    make_config: Callable[..., HubConfig],
    broker: Mosquitto,
    clients: Callable[..., Any],
    cheap_hashes: None,
) -> None:
    server = RegistryServer(world.registry)
    token = tmp_path / "registry-token"
    token.write_text(world.token + "\n")
    config = make_config(
        facility={"id": world.facility_id, "doors": [], "zones": []},
        registry={
            "kind": "http",
            "url": server.url,
            "credentials_file": str(token),
            "sync_interval_s": 3600,  # only the admin's sync runs in this test
        },
        web={"secret_key_file": str(tmp_path / "secret")},
    )
    thread = ServiceThread(config, sock=bind("127.0.0.1", 0)).start()
    try:
        thread.hub.store.add_user("admin1", hash_password("admin-pass-1"), "admin")
        thread.hub.store.add_user("viewer1", hash_password("viewer-pass-1"), "viewer")
        with httpx.Client(base_url=thread.url, timeout=30) as http:
            csrf = http.get("/api/v1/session").json()["csrf_token"]
            r = http.post(
                "/api/v1/session",
                json={"username": "admin1", "password": "admin-pass-1"},
                headers={"X-CSRF-Token": csrf},
            )
            csrf = r.json()["csrf_token"]
            # The scheduled first sync may have run already; this one must succeed.
            r = http.post("/api/v1/sync", headers={"X-CSRF-Token": csrf})
            assert r.status_code == 200, r.text
            assert r.json()["ok"] is True and r.json()["cursor"] == 25
            world.person(1, Status.BLACK)
            r = http.post("/api/v1/sync", headers={"X-CSRF-Token": csrf})
            assert (r.json()["statuses"], r.json()["published"]) == (1, ["status"])
            state = http.get("/api/v1/sync").json()
            assert (state["registry"], state["cursor"], state["statuses"]) == (True, 26, 25)
            assert state["outbox"] == {"pending": 0, "sent": 0, "failed": 0}
            doc = http.get("/api/v1/openapi.json").json()
            assert doc["paths"]["/api/v1/sync"]["post"]["x-pintu-role"] == "admin"
        # A door connecting later still gets both lists: they are retained.
        door = clients(topics=[topics.lists_filter(world.facility_id)])
        pinned = world.pinned().advance(door.last(topics.lists_keys(world.facility_id)))
        signed = door.last(topics.lists_status(world.facility_id))
        status = StatusList.loads(pinned.open(signed, Kind.STATUS))
        entry = status.lookup(bytes.fromhex(world.registry.subject_of(world.nik(1))))
        assert entry is not None and entry.status is Status.BLACK
        TrustList.loads(pinned.open(door.last(topics.lists_trust(world.facility_id)), Kind.TRUST))
        with httpx.Client(base_url=thread.url, timeout=30) as http:
            csrf = http.get("/api/v1/session").json()["csrf_token"]
            http.post(
                "/api/v1/session",
                json={"username": "viewer1", "password": "viewer-pass-1"},
                headers={"X-CSRF-Token": csrf},
            )
            csrf = http.get("/api/v1/session").json()["csrf_token"]
            assert http.post("/api/v1/sync", headers={"X-CSRF-Token": csrf}).status_code == 403
    finally:
        thread.stop()
        server.close()


def test_the_sync_benchmark_still_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    # The benchmarks live beside the packages, not in them: importable from the checkout.
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    bench = importlib.import_module("bench.sync")
    figures = bench.measure(2_500, 1_000, seed=1)
    assert (figures.changes, figures.pages) == (2_500, 3)
    assert figures.sync_s > 0 and figures.read_s > 0 and figures.sql_s > 0
    # The doors' list: a record for each subject not green (the statuses are random), in
    # the registry's signed envelope.
    psl = figures.list_bytes - OVERHEAD
    assert psl > 16 and (psl - 16) % 17 == 0
    assert psl < 16 + 17 * 2_500
    assert "| **hub: sync into SQLite" in bench.report(figures, "python -m bench.sync")


def test_doors_are_told_only_of_subjects_a_valid_pass_could_contradict() -> None:
    day, now = 86_400, 1_800_000_000
    items = [
        (b"a" * 12, Status.BLACK, now - 3600),  # turned black an hour ago: needed
        (b"b" * 12, Status.RED, now - 20 * day),  # within a 30-day pass: needed
        (b"c" * 12, Status.RED, now - 40 * day),  # every valid pass says red already
        (b"d" * 12, Status.GREEN, now - 3600),  # green: an older pass says worse, refused
        (b"e" * 12, Status.YELLOW, now - 30 * day - 3600),  # within the clock margin
    ]
    kept = [subject[:1] for subject, _, _ in door_items(items, now, 30 * day)]
    assert kept == [b"a", b"b", b"e"]
