"""The store on its own: counting, de-duplication, gaps, alerts, adjustments, accounts,
migrations. Every test runs on each backend: SQLite, and PostgreSQL when a server answers
(see ``pg_server`` in conftest.py)."""

from __future__ import annotations

import os
import random
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from controller.journal import Journal
from hub.config import FacilityConfig, HubConfig
from hub.errors import AlreadyExists, NotFound, StoreError
from hub.store import Store, open_store
from hub.store.migrations import HEAD
from hub.store.postgres import PgStore
from hub.store.sqlite import SqliteStore
from hub.upstream.records import StatusChange
from protocol.events import Event, EventKind, NodeState, NodeStatus, new_event_id
from protocol.status import Status

F = "mall-a"
FACILITY = FacilityConfig.model_validate(
    {
        "id": F,
        "name": "Mall A",
        "capacity": 4,
        "soft_threshold_percent": 75,
        "zones": [{"id": "north", "name": "North", "doors": ["north"]}],
        "doors": [
            {"id": "main", "name": "Main", "direction": "both"},
            {"id": "north", "name": "North", "direction": "both"},
        ],
    }
)


class Node:
    def __init__(self, node_id: str = "n1", door_id: str = "main") -> None:
        self.node_id, self.door_id, self.seq = node_id, door_id, 0

    def __call__(self, kind: str = "entry", **fields: Any) -> Event:
        self.seq += 1
        data: dict[str, Any] = {
            "event_id": new_event_id(),
            "node_id": self.node_id,
            "facility_id": F,
            "door_id": self.door_id,
            "seq": self.seq,
            "ts": datetime.now(UTC),
            "kind": kind,
        }
        data.update(fields)
        # As it arrives: through the wire format, with its millisecond times.
        event: Event = Event.parse(Event.model_validate(data).dumps())
        return event


class Backend:
    """One store backend: opens its store, and reaches past it into the database for what
    a test breaks on purpose."""

    def __init__(self, name: str, where: str) -> None:
        self.name = name
        self.where = where  # the SQLite file, or the PostgreSQL DSN

    @property
    def config(self) -> dict[str, Any]:
        """The ``[store]`` section that names this store."""
        if self.name == "sqlite":
            return {"backend": "sqlite", "path": self.where}
        return {"backend": "postgresql", "dsn": self.where}

    @property
    def migrations(self) -> str:
        return HEAD

    def open(self, facilities: Sequence[FacilityConfig] = (FACILITY,)) -> SqliteStore | PgStore:
        if self.name == "sqlite":
            return SqliteStore(self.where, facilities)
        return PgStore(self.where, facilities)

    def execute(self, sql: str) -> None:
        """Run ``sql`` on the database directly, as someone with a SQL shell would."""
        if self.name == "sqlite":
            with closing(sqlite3.connect(self.where)) as conn, conn:
                conn.execute(sql)
        else:
            with psycopg.connect(self.where, autocommit=True) as pg:
                pg.execute(sql.encode())


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", str(tmp_path / "hub.db"))
    return Backend("postgresql", request.getfixturevalue("pg_dsn"))


@pytest.fixture
def store(backend: Backend) -> Iterator[SqliteStore | PgStore]:
    with backend.open() as opened:
        yield opened


def test_entries_exits_and_manual_by_direction(store: Store) -> None:
    node = Node()
    result = store.store_batch(
        [
            node("entry"),
            node("manual", direction="entry"),
            node("entry"),
            node("exit"),
            node("manual", direction="exit"),
            node("manual"),  # no direction: counts nothing
            node("denied", admit=False),
            node("not_passed"),
            node("alarm", detail="forced_passage"),
            node("node_start"),
            node("node_stop"),
        ]
    )
    assert len(result.stored) == 11
    assert result.occupancy[F].occupancy == 1
    assert store.occupancy(F).occupancy == 1


def test_passages_a_stopped_node_left_unconfirmed_count_on_the_safe_side(
    store: Store, tmp_path: Path
) -> None:
    # The node's own journal makes the events, as it does at its start after a kill.
    journal = Journal(tmp_path / "journal.db", node_id="n1", facility_id=F, door_id="main")
    try:
        journal.admit(EventKind.ENTRY, direction="entry", subject="00112233445566778899aabb")
        journal.admit(EventKind.ENTRY, direction="entry")
        journal.admit(EventKind.EXIT, direction="exit")
        settled = journal.settle_interrupted()
    finally:
        journal.close()
    result = store.store_batch(settled)
    assert len(result.stored) == 3
    # Both people let in are counted; the exit nobody saw is not subtracted.
    assert store.occupancy(F).occupancy == 2
    for event in settled:
        stored = store.event(event.event_id)
        assert stored is not None and stored.event == event
        assert stored.event.reason == "unconfirmed"


def test_never_negative_an_exit_with_nobody_inside_is_flagged(store: Store) -> None:
    node = Node()
    exits = [node("exit"), node("exit")]
    result = store.store_batch(exits)
    assert result.occupancy == {}  # nothing changed
    assert [(f.event_id, f.flag) for f in result.flagged] == [
        (e.event_id, "exit_without_entry") for e in exits
    ]
    [alert] = result.alerts
    assert (alert.kind, alert.count) == ("exit_without_entry", 2)
    assert store.occupancy(F).occupancy == 0
    store.store_batch([node("entry")])
    assert store.occupancy(F).occupancy == 1


def test_zones_count_the_doors_of_the_zone(store: Store) -> None:
    main, north = Node("n1", "main"), Node("n2", "north")
    store.store_batch([main("entry"), north("entry"), north("entry"), main("exit")])
    occupancy = store.occupancy(F)
    assert occupancy.occupancy == 2
    assert occupancy.zones == {"north": 2}
    store.store_batch([north("exit"), north("exit"), north("exit")])
    assert store.occupancy(F).zones == {"north": 0}  # clamped at zero on its own


def test_full_and_soft_follow_capacity(store: Store) -> None:
    node = Node()
    assert store.store_batch([node(), node()]).occupancy[F].soft is False
    third = store.store_batch([node()]).occupancy[F]
    assert (third.soft, third.full) == (True, False)  # 3 of 4 is 75 %
    fourth = store.store_batch([node()]).occupancy[F]
    assert (fourth.occupancy, fourth.capacity, fourth.full) == (4, 4, True)


def test_duplicates_are_stored_once(store: Store) -> None:
    node = Node()
    first = node()
    result = store.store_batch([first, first])
    assert [e.event_id for e in result.stored] == [first.event_id]
    assert result.duplicates == [first.event_id]
    again = store.store_batch([first.model_copy(update={"late": True})])
    assert again.stored == [] and again.duplicates == [first.event_id]
    assert again.occupancy == {}
    assert store.occupancy(F).occupancy == 1
    assert len(store.events(facility_id=F).events) == 1


def test_every_field_of_an_event_is_kept(store: Store) -> None:
    event = Node()(
        "entry",
        direction="entry",
        subject="00112233445566778899aabb",
        signal="green",
        admit=True,
        reason="ok",
        message="Welcome",
        late=True,
    )
    store.store_batch([event])
    stored = store.event(event.event_id)
    assert stored is not None
    assert stored.event == event
    assert stored.delta == 1 and stored.flag is None
    assert stored.as_dict()["received_at"].endswith("Z")


def test_gaps_are_found_and_filled(store: Store) -> None:
    node = Node()
    events = [node() for _ in range(8)]
    result = store.store_batch([events[0], events[3], events[2], events[6]])
    # 2 is missing, 3 and 4 arrived out of order in one batch, 6 is missing
    assert [(g.first_seq, g.last_seq) for g in result.gaps] == [(2, 2), (5, 6)]
    [alert] = store.alerts(F)  # one open alert per node, counted again
    assert (alert.kind, alert.count) == ("seq_gap", 2)
    store.store_batch([events[1], events[4]])
    assert [(g.first_seq, g.missing) for g in store.gaps(F)] == [(5, 1)]
    assert store.alerts(F) != []
    result = store.store_batch([events[5], events[7]])
    assert result.gaps == [] and store.gaps(F) == []
    assert [a.kind for a in result.cleared] == ["seq_gap"]
    assert store.alerts(F) == []
    assert store.nodes(F)[0].last_seq == 8


def test_a_node_whose_numbering_starts_again_is_reported(store: Store) -> None:
    node = Node()
    store.store_batch([node() for _ in range(5)])
    node.seq = 0
    result = store.store_batch([node(), node()])
    assert [a.kind for a in result.alerts] == ["seq_reset"]
    assert store.nodes(F)[0].last_seq == 2
    assert store.store_batch([node()]).alerts == []  # follows the new numbering


def test_alarms_raise_alerts_and_acks_record_who(store: Store) -> None:
    node = Node()
    result = store.store_batch(
        [
            node("alarm", detail="black_pass", message="status black"),
            node("alarm", detail="black_pass_exit"),
            node("alarm", detail="forced_door"),
            node("alarm", detail="camera_failed"),
            node("alarm", detail="tamper"),
        ]
    )
    kinds = [a.kind for a in result.alerts]
    assert kinds == ["black_pass", "black_pass", "forced_door", "camera_failed", "alarm"]
    assert "status black" in result.alerts[0].message
    acked = store.ack_alert(result.alerts[0].id, "guard1")
    assert acked.acknowledged_by == "guard1" and acked.acknowledged_at is not None
    assert len(store.alerts(F)) == 4
    assert len(store.alerts(F, open_only=False)) == 5
    assert store.ack_alert(acked.id, "someone-else").acknowledged_by == "guard1"
    with pytest.raises(NotFound):
        store.ack_alert(999, "guard1")
    assert store.audit_log()[0].action == "alert.ack"


def test_coalesced_alerts_and_clearing(store: Store) -> None:
    first = store.add_alert(F, "node_offline", "n1 offline", node_id="n1", coalesce=True)
    again = store.add_alert(F, "node_offline", "n1 offline", node_id="n1", coalesce=True)
    other = store.add_alert(F, "node_offline", "n2 offline", node_id="n2", coalesce=True)
    assert again.id == first.id and again.count == 2
    assert other.id != first.id
    cleared = store.clear_alerts(F, "node_offline", "n1")
    assert [a.id for a in cleared] == [first.id]
    assert [a.id for a in store.alerts(F)] == [other.id]


def test_corrections_and_resets_are_recorded_with_the_user(store: Store) -> None:
    main, north = Node("n1", "main"), Node("n2", "north")
    store.store_batch([main(), main(), north()])
    correction = store.adjust(F, "correction", 7, "guard1", "counted by hand")
    assert (correction.value, correction.delta, correction.user) == (7, 4, "guard1")
    assert correction.occupancy is not None and correction.occupancy.occupancy == 7
    assert store.occupancy(F).occupancy == 7
    store.store_batch([main("exit")])
    assert store.occupancy(F).occupancy == 6
    zone = store.adjust(F, "correction", 3, "guard1", zone_id="north")
    assert zone.occupancy is not None and zone.occupancy.zones == {"north": 3}
    reset = store.adjust(F, "reset", 99, "system", "end of day")
    assert (reset.value, reset.delta) == (0, -6)
    occupancy = store.occupancy(F)
    assert (occupancy.occupancy, occupancy.zones) == (0, {"north": 0})
    history = store.adjustments(F)
    assert [(a.kind, a.user) for a in history] == [
        ("reset", "system"),
        ("correction", "guard1"),
        ("correction", "guard1"),
    ]
    actions = [entry.action for entry in store.audit_log(facility_id=F)]
    assert actions == ["occupancy.reset", "occupancy.correction", "occupancy.correction"]
    with pytest.raises(ValueError, match="negative"):
        store.adjust(F, "correction", -1, "guard1")
    with pytest.raises(NotFound):
        store.adjust("elsewhere", "reset", 0, "guard1")
    with pytest.raises(NotFound):
        store.adjust(F, "correction", 1, "guard1", zone_id="south")


def test_rebuild_equals_the_incremental_counters(store: Store) -> None:
    rng = random.Random(7)
    nodes = [Node("n1", "main"), Node("n2", "north")]
    for round_ in range(30):
        kinds = [
            rng.choice(["entry", "entry", "exit", "exit", "manual", "denied"])
            for _ in range(rng.randint(1, 12))
        ]
        batch = [
            rng.choice(nodes)(kind, direction=kind if kind in ("entry", "exit") else way)
            if kind != "denied"
            else rng.choice(nodes)(kind)
            for kind, way in ((k, rng.choice(["entry", "exit"])) for k in kinds)
        ]
        store.store_batch(batch)
        if round_ % 7 == 3:
            store.adjust(F, "correction", rng.randint(0, 5), "guard1")
        if round_ % 11 == 5:
            store.adjust(F, "reset", 0, "system")
        if round_ % 13 == 6:
            store.adjust(F, "correction", rng.randint(0, 3), "guard1", zone_id="north")
    incremental = store.occupancy(F)
    flags = [(e.id, e.delta, e.flag) for e in store.events(limit=1000).events]
    rebuilt = store.rebuild_occupancy()[F]
    assert (rebuilt.occupancy, rebuilt.zones) == (incremental.occupancy, incremental.zones)
    assert store.occupancy(F).occupancy == incremental.occupancy
    assert [(e.id, e.delta, e.flag) for e in store.events(limit=1000).events] == flags


def test_rebuild_after_the_counters_are_lost(store: Store, backend: Backend) -> None:
    node = Node()
    store.store_batch([node(), node(), node("exit"), node()])
    backend.execute("DELETE FROM occupancy")
    assert store.occupancy(F).occupancy == 0
    assert store.rebuild_occupancy()[F].occupancy == 2
    assert store.occupancy(F).occupancy == 2


def test_events_are_paged_newest_first_and_filtered(store: Store) -> None:
    main, north = Node("n1", "main"), Node("n2", "north")
    start = datetime.now(UTC)
    events = [main(), north(), main("exit"), main("denied"), north(), main()]
    for event in events:
        store.store_batch([event])
    page = store.events(facility_id=F, limit=4)
    assert [e.event for e in page.events] == events[::-1][:4]
    rest = store.events(facility_id=F, limit=4, before=page.next_before)
    assert [e.event for e in rest.events] == events[::-1][4:]
    assert rest.next_before is None
    assert [e.event for e in store.events(door_id="north").events] == [events[4], events[1]]
    assert [e.event for e in store.events(kind="denied").events] == [events[3]]
    assert len(store.events(since=start - timedelta(minutes=1)).events) == 6
    assert store.events(until=start - timedelta(minutes=1)).events == []
    assert store.event("0" * 32) is None
    assert store.count_events() == 6
    assert store.count_events(F, since=start + timedelta(minutes=1)) == 0


def test_history_has_a_sample_per_minute_of_the_events_own_time(store: Store) -> None:
    node = Node()
    minute = datetime(2026, 1, 5, 8, 30, tzinfo=UTC)

    def at(seconds: int) -> datetime:
        return minute + timedelta(seconds=seconds)

    # Received a day later: the minutes are the ones the doors saw the events in.
    late = minute + timedelta(days=1)
    store.store_batch([node(ts=at(5)), node(ts=at(6)), node(ts=at(7))], received_at=late)
    store.store_batch([node("exit", ts=at(40))], received_at=late)
    store.store_batch([node(ts=at(70))], received_at=late)
    samples = store.history(F, since=minute)
    assert [(s.minute, s.occupancy, s.peak) for s in samples] == [
        (minute, 2, 3),
        (minute + timedelta(minutes=1), 3, 3),
    ]


def test_node_status_is_kept(store: Store) -> None:
    status = NodeStatus(
        state=NodeState.DEGRADED,
        problems=["camera: no frames"],
        trust_list_age_s=10.0,
        status_list_age_s=20.0,
        direction="entry",
    )
    change = store.upsert_node_status(F, "n1", status, door_id="main")
    assert change.previous == "unknown"
    assert (change.node.state, change.node.problems) == ("degraded", ["camera: no frames"])
    store.store_batch([Node("n1")()])
    change = store.upsert_node_status(F, "n1", NodeStatus(state=NodeState.OFFLINE))
    assert change.previous == "degraded"
    [node] = store.nodes(F)
    assert (node.state, node.door_id, node.last_seq) == ("offline", "main", 1)
    assert node.last_event_ts is not None and node.state_since is not None


def test_users(store: Store) -> None:
    user = store.add_user("ayu", "$argon2id$...", "guard")
    assert (user.username, user.role, user.disabled) == ("ayu", "guard", False)
    assert "password_hash" not in user.as_dict()
    with pytest.raises(AlreadyExists):
        store.add_user("ayu", "x", "admin")
    with pytest.raises(ValueError, match="role"):
        store.add_user("budi", "x", "root")  # type: ignore[arg-type]
    store.add_user("budi", "x", "viewer")
    assert [u.username for u in store.list_users()] == ["ayu", "budi"]
    updated = store.update_user("budi", role="admin", disabled=True, password_hash="y")  # noqa: S106
    assert (updated.role, updated.disabled, updated.password_hash) == ("admin", True, "y")
    store.delete_user("budi")
    assert store.get_user("budi") is None
    with pytest.raises(NotFound):
        store.delete_user("budi")
    entry = store.audit("ayu", "login", detail="from the desk")
    assert store.audit_log(user="ayu") == [entry]


def test_reopening_keeps_data_and_migrates_once(backend: Backend) -> None:
    with backend.open() as first:
        first.store_batch([Node()()])
        assert first.schema_version == backend.migrations
    with backend.open() as second:
        assert second.schema_version == backend.migrations
        assert second.occupancy(F).occupancy == 1
    if backend.name == "sqlite":
        with closing(sqlite3.connect(backend.where)) as conn:
            with conn:
                conn.execute("UPDATE alembic_version SET version_num = '9999'")
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    else:
        backend.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(StoreError, match="newer"):
        backend.open()


def test_readers_see_writes_from_other_threads(store: Store) -> None:
    node = Node()
    seen: list[int] = []

    def read() -> None:
        seen.append(store.occupancy(F).occupancy)

    for expected in range(1, 4):
        store.store_batch([node()])
        reader = threading.Thread(target=read)
        reader.start()
        reader.join()
        assert seen[-1] == expected


def test_a_closed_store_refuses_work(backend: Backend) -> None:
    store = backend.open()
    store.close()
    store.close()  # twice is fine
    with pytest.raises(StoreError, match="closed"):
        store.store_batch([Node()()])
    with pytest.raises(StoreError, match="closed"):
        store.occupancy(F)


def test_unknown_facility_and_the_configured_backend(store: Store, backend: Backend) -> None:
    with pytest.raises(NotFound):
        store.occupancy("elsewhere")
    store.store_batch([Node()()])
    config = HubConfig.model_validate(
        {"store": backend.config, "facilities": [{"id": F, "name": "Mall A"}]}
    )
    opened = open_store(config)
    try:
        assert isinstance(opened, type(store))
        assert opened.occupancy(F).occupancy == 1  # the same database
    finally:
        opened.close()


# --- the registry's part: synced lists, visits, retention ---------------------------------
def test_visits_pair_check_ins_with_check_outs_in_any_order(store: Store) -> None:
    main = Node()
    ayu, budi = "a" * 24, "b" * 24
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    came = main("entry", subject=ayu, ts=start)
    left = main("exit", subject=ayu, ts=start + timedelta(minutes=30))
    budi_in = main("manual", direction="entry", subject=budi, ts=start + timedelta(minutes=5))
    budi_out = main("exit", subject=budi, ts=start + timedelta(minutes=50))
    store.store_batch([came, budi_out])
    store.store_batch([left, budi_in])  # budi's check-in arrives after his check-out
    visits = sorted(store.pending_visits(F), key=lambda v: v.subject)
    assert [(v.visit_id, v.exit_event_id) for v in visits] == [
        (came.event_id, left.event_id),
        (budi_in.event_id, budi_out.event_id),
    ]
    assert visits[0].check_in == start and visits[0].door_id == "main"
    assert [v.visit_id for v in store.visits_of(F, ayu, start, start + timedelta(hours=2))] == [
        came.event_id
    ]
    others = store.overlapping(F, start, start + timedelta(hours=2), exclude_subject=ayu)
    assert [v.subject for v in others] == [budi]
    assert store.mark_visits([came.event_id], "sent") == 1
    assert store.mark_visits([budi_in.event_id], "failed", reason="unknown door") == 1
    assert store.outbox_counts().counts == {"sent": 1, "failed": 1}
    [failed] = store.failed_visits(F)
    assert (failed.visit_id, failed.reason, failed.attempts) == (
        budi_in.event_id,
        "unknown door",
        1,
    )
    purged = store.purge_before(start + timedelta(hours=2))
    assert (purged.visits, purged.events) == (2, 4)
    assert store.pending_visits(F) == [] and store.failed_visits(F) == []
    assert all(e.event.subject is None for e in store.events().events)


def test_the_synced_lists_are_kept(store: Store) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    assert store.sync_state().trust is None
    store.save_trust('{"keys": []}', "etag-1", now)
    store.save_trust(None, None, now + timedelta(minutes=5))
    trust = store.sync_state().trust
    assert trust is not None
    assert (trust.body, trust.etag, trust.changed_at, trust.checked_at) == (
        '{"keys": []}',
        "etag-1",
        now,
        now + timedelta(minutes=5),
    )
    subject = "c" * 24
    changes = [
        StatusChange(subject, Status.YELLOW, 1, 1_700_000_000, 5),
        StatusChange(subject, Status.GREEN, 2, 1_700_000_100, 6),  # the later change wins
        StatusChange("d" * 24, Status.BLACK, 0, 1_700_000_200, 7),
    ]
    assert store.save_statuses(changes, 7, now, complete=True) == 3
    store.save_statuses([StatusChange(subject, Status.RED, 0, 1, 4)], 7, now, complete=False)
    state = store.sync_state()
    assert (state.cursor, state.statuses, state.statuses_checked_at) == (7, 2, now)
    assert sorted(store.status_items()) == [
        (bytes.fromhex(subject), Status.GREEN, 1_700_000_100),
        (bytes.fromhex("d" * 24), Status.BLACK, 1_700_000_200),
    ]


def test_a_new_hub_database_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    """Finding 14: a hub run by hand with a umask of 022 made its database 0644."""
    old = os.umask(0o022)
    try:
        store = SqliteStore(tmp_path / "hub.db", [])
    finally:
        os.umask(old)
    try:
        store.add_user("ana", "x" * 20, "admin")  # a write, so the WAL exists too
        for name in ("hub.db", "hub.db-wal"):
            assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
    finally:
        store.close()
