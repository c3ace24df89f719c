"""The PostgreSQL store with several hub workers writing at once: each ``PgStore`` below
is a worker of its own (its own connections), all on one database. The behaviour every
backend shares is tested in test_store.py."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from hub.config import FacilityConfig
from hub.errors import StoreError
from hub.store.migrations import HEAD
from hub.store.postgres import PgStore
from hub.store.sqlite import SqliteStore
from protocol.events import Event, NodeState, NodeStatus, new_event_id

F, G = "mall-a", "mall-b"
FACILITIES = [
    FacilityConfig.model_validate(
        {
            "id": F,
            "name": "Mall A",
            "zones": [{"id": "north", "name": "North", "doors": ["north"]}],
        }
    ),
    FacilityConfig.model_validate({"id": G, "name": "Mall B", "capacity": 100}),
]


def make_event(facility_id: str, node_id: str, seq: int, kind: str, door_id: str = "main") -> Event:
    return Event(
        event_id=new_event_id(),
        node_id=node_id,
        facility_id=facility_id,
        door_id=door_id,
        seq=seq,
        ts=datetime.now(UTC).replace(microsecond=0),
        kind=kind,  # type: ignore[arg-type]
    )


@pytest.fixture
def workers(pg_dsn: str) -> Iterator[Callable[[int], list[PgStore]]]:
    """``workers(n)``: n stores on the test's database, as n hub workers would open them."""
    opened: list[PgStore] = []

    def open_workers(count: int) -> list[PgStore]:
        made = [PgStore(pg_dsn, FACILITIES) for _ in range(count)]
        opened.extend(made)
        return made

    yield open_workers
    for store in opened:
        store.close()


def run_together(*jobs: Callable[[], None]) -> None:
    """Run the jobs in threads released at the same moment; re-raise the first failure."""
    start = threading.Barrier(len(jobs))
    failures: list[BaseException] = []

    def run(job: Callable[[], None]) -> None:
        start.wait()
        try:
            job()
        except BaseException as err:
            failures.append(err)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive(), "a worker did not finish"
    if failures:
        raise failures[0]


def test_the_schema_has_the_tables_and_columns_of_the_sqlite_one(
    tmp_path: Path, workers: Callable[[int], list[PgStore]], pg_dsn: str
) -> None:
    [store] = workers(1)
    assert store.schema_version == HEAD
    with SqliteStore(tmp_path / "hub.db") as sqlite:
        tables = [
            r[0] for r in sqlite.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        sqlite_columns = {
            table: {r[1] for r in sqlite.conn.execute(f"PRAGMA table_info({table})")}
            for table in tables
        }
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema()"
        ).fetchall()
    pg_columns: dict[str, set[str]] = {}
    for table, column in rows:
        pg_columns.setdefault(table, set()).add(column)
    # One schema: the lock rows and the schema's revision are in both.
    assert set(pg_columns) == set(sqlite_columns)
    assert {t: pg_columns[t] for t in sqlite_columns} == sqlite_columns


def test_workers_storing_at_once_count_exactly_and_never_below_zero(
    workers: Callable[[int], list[PgStore]],
) -> None:
    stores = workers(4)
    sent: list[list[Event]] = [[] for _ in stores]

    def work(index: int) -> Callable[[], None]:
        rng = random.Random(index)
        seqs: dict[str, int] = {}

        def run() -> None:
            for _ in range(25):
                batch = []
                for _ in range(rng.randint(1, 12)):
                    # Each worker has nodes of its own here (seq gaps are another test);
                    # the facilities, and their counters, are shared by every worker.
                    facility = rng.choice([F, G])
                    node = f"w{index}-{facility}-{rng.randint(1, 2)}"
                    seqs[node] = seqs.get(node, 0) + 1
                    kind = rng.choice(["entry", "entry", "exit", "exit", "denied"])
                    door = rng.choice(["main", "north"])
                    batch.append(make_event(facility, node, seqs[node], kind, door))
                stores[index].store_batch(batch)
                sent[index].extend(batch)

        return run

    run_together(*(work(i) for i in range(len(stores))))
    store = stores[0]
    events = sorted(store.events(limit=1000).events, key=lambda e: e.id)
    assert len(events) == sum(map(len, sent)) == len({e.event.event_id for e in events})
    for facility_id in (F, G):
        # Replayed in the counting order (the events' own times, whichever worker stored
        # them when), every exit flagged "nobody inside" met a count of zero, no count went
        # below zero, and the counter holds the sum.
        inside = 0
        mine = [e for e in events if e.event.facility_id == facility_id]
        for stored in sorted(mine, key=lambda e: (e.event.ts, e.event.seq, e.event.event_id)):
            assert inside + stored.delta >= 0
            assert (stored.flag == "exit_without_entry") == (
                stored.event.kind == "exit" and inside == 0
            )
            inside += stored.delta
        assert store.occupancy(facility_id).occupancy == inside
    before = {o.facility_id: (o.occupancy, o.zones) for o in store.occupancies()}
    rebuilt = stores[1].rebuild_occupancy()
    assert {f: (o.occupancy, o.zones) for f, o in rebuilt.items()} == before
    assert [(e.id, e.delta, e.flag) for e in events] == [
        (e.id, e.delta, e.flag) for e in sorted(store.events(limit=1000).events, key=lambda e: e.id)
    ]


def test_a_gap_one_worker_finds_is_filled_by_another(
    workers: Callable[[int], list[PgStore]],
) -> None:
    stores = workers(3)
    events = [make_event(F, "n1", seq, "not_passed") for seq in range(1, 241)]
    # Dealt out in runs, as a shared subscription deals a node's events to the workers:
    # each worker stores its runs in order, but the workers race each other.
    rng = random.Random(3)
    runs: list[list[list[Event]]] = [[] for _ in stores]
    start = 0
    while start < len(events):
        size = rng.randint(1, 9)
        runs[rng.randrange(len(stores))].append(events[start : start + size])
        start += size

    def work(index: int) -> Callable[[], None]:
        def run() -> None:
            for batch in runs[index]:
                stores[index].store_batch(batch)

        return run

    run_together(*(work(i) for i in range(len(stores))))
    store = stores[0]
    assert store.gaps(F) == []
    assert all(gap.missing == 0 for gap in store.gaps(F, open_only=False))
    assert store.alerts(F, kind="seq_gap") == []
    assert store.alerts(F, open_only=False, kind="seq_reset") == []
    [node] = store.nodes(F)
    assert node.last_seq == 240
    assert store.count_events(F) == 240


def test_capacity_set_through_one_worker_is_what_the_others_count_with(
    workers: Callable[[int], list[PgStore]],
) -> None:
    one, other = workers(2)
    one.set_capacity(G, "admin1", capacity=2, soft_threshold_percent=50)
    result = other.store_batch([make_event(G, "n1", 1, "entry"), make_event(G, "n1", 2, "entry")])
    assert (result.occupancy[G].capacity, result.occupancy[G].full) == (2, True)
    assert other.occupancy(G).capacity == 2
    config = other.facility_config(G)
    assert config is not None and config.soft_threshold_percent == 50
    # What is left out stays as it was set, whichever worker changes it next.
    changed = other.set_capacity(G, "admin2", capacity=3)
    assert (changed.capacity, changed.soft_threshold_percent) == (3, 50)
    assert one.occupancy(G).capacity == 3


def test_a_status_every_worker_hears_is_one_change(
    workers: Callable[[int], list[PgStore]],
) -> None:
    stores = workers(3)
    changes = []

    def record(store: PgStore) -> Callable[[], None]:
        return lambda: changes.append(
            store.upsert_node_status(F, "n1", NodeStatus(state=NodeState.OFFLINE))
        )

    run_together(*(record(s) for s in stores))
    assert sorted(c.previous for c in changes) == ["offline", "offline", "unknown"]
    assert len({c.node.state_since for c in changes}) == 1


def test_an_alert_raised_by_several_workers_is_counted_not_repeated(
    workers: Callable[[int], list[PgStore]],
) -> None:
    stores = workers(3)

    def raise_it(store: PgStore) -> Callable[[], None]:
        def run() -> None:
            for _ in range(10):
                store.add_alert(F, "node_offline", "n1 offline", node_id="n1", coalesce=True)

        return run

    run_together(*(raise_it(s) for s in stores))
    [alert] = stores[0].alerts(F)
    assert alert.count == 30


def test_workers_starting_together_migrate_once(pg_dsn: str) -> None:
    opened: list[PgStore] = []
    lock = threading.Lock()

    def start() -> None:
        store = PgStore(pg_dsn, FACILITIES)
        with lock:
            opened.append(store)

    try:
        run_together(*(start for _ in range(4)))
        assert [s.schema_version for s in opened] == [HEAD] * 4
    finally:
        for store in opened:
            store.close()


def test_an_event_id_taken_meanwhile_by_another_facility_is_a_duplicate(
    workers: Callable[[int], list[PgStore]], pg_dsn: str, wait_until: Callable[..., None]
) -> None:
    [store] = workers(1)
    event = make_event(F, "n1", 1, "entry")
    with psycopg.connect(pg_dsn) as rogue, psycopg.connect(pg_dsn, autocommit=True) as watch:
        # Another transaction has stored the id, not committed yet: the batch's insert waits
        # for it, finds the row taken, and the batch is stored again without it.
        rogue.execute(
            "INSERT INTO events (event_id, facility_id, node_id, door_id, seq, ts, kind, "
            "received_at) VALUES (%s, %s, 'x', 'main', 1, now(), 'entry', now())",
            (event.event_id, G),
        )
        results: list[Any] = []
        storing = threading.Thread(target=lambda: results.append(store.store_batch([event])))
        storing.start()

        def waiting() -> bool:
            row = watch.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'COPY events%%'"
            ).fetchone()
            return row is not None and row[0] > 0

        wait_until(waiting, what="the batch waiting for the other transaction")
        rogue.commit()
    storing.join(10)
    [result] = results
    assert (result.stored, result.duplicates) == ([], [event.event_id])
    assert store.occupancy(F).occupancy == 0


def test_connections_the_server_closed_are_replaced(
    workers: Callable[[int], list[PgStore]], pg_dsn: str
) -> None:
    name = f"pintu-test-{new_event_id()[:8]}"
    store = PgStore(make_conninfo(pg_dsn, application_name=name), FACILITIES)
    try:
        store.store_batch([make_event(F, "n1", 1, "entry")])
        assert store.occupancy(F).occupancy == 1  # a connection now waits in the pool
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (name,),
            )
        assert store.occupancy(F).occupancy == 1
        store.store_batch([make_event(F, "n1", 2, "entry")])
        assert store.occupancy(F).occupancy == 2
    finally:
        store.close()


def test_an_unreachable_server_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="cannot connect"):
        PgStore("host=127.0.0.1 port=1 dbname=pintu connect_timeout=2")
    with pytest.raises(StoreError, match="dsn"):
        PgStore("this is not a connection string")


def test_visits_are_paired_as_the_sqlite_store_pairs_them(
    tmp_path: Path, workers: Callable[[int], list[PgStore]]
) -> None:
    # The same events in the same batches to both stores: the PostgreSQL store reads what
    # pairing needs in two queries, SQLite asks a query per question; the visits must agree.
    [pg] = workers(1)
    rng = random.Random(11)
    start = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    subjects = [f"{i:024x}" for i in range(4)]
    events = []
    for seq in range(1, 121):
        kind, direction = rng.choice(
            [
                ("entry", None),
                ("exit", None),
                ("manual", "entry"),
                ("manual", "exit"),
                ("denied", None),
            ]
        )
        events.append(
            Event(
                event_id=new_event_id(),
                node_id="n1",
                facility_id=rng.choice([F, G]),
                door_id=rng.choice(["main", "north"]),
                seq=seq,
                ts=start + timedelta(minutes=rng.randint(0, 600)),
                kind=kind,  # type: ignore[arg-type]
                direction=direction,  # type: ignore[arg-type]
                subject=rng.choice(subjects),
            )
        )
    rng.shuffle(events)  # late arrivals: check-outs before their check-ins
    with SqliteStore(tmp_path / "hub.db", FACILITIES) as sqlite:
        for store in (sqlite, pg):
            store.configure_visits(3 * 3600)
        start_at = 0
        while start_at < len(events):
            size = rng.randint(1, 15)
            for store in (sqlite, pg):
                store.store_batch(events[start_at : start_at + size])
            start_at += size

        def visits(store: SqliteStore | PgStore) -> list[tuple[Any, ...]]:
            found = store.pending_visits(F, 10_000) + store.pending_visits(G, 10_000)
            return sorted(
                (v.visit_id, v.exit_event_id, v.subject, v.door_id, v.check_in, v.check_out)
                for v in found
            )

        expected = visits(sqlite)
        assert len(expected) > 10
        assert visits(pg) == expected


def test_a_check_in_and_its_check_out_stored_by_two_workers_are_one_visit(
    workers: Callable[[int], list[PgStore]],
) -> None:
    one, other = workers(2)
    subject = "e" * 24
    came = make_event(F, "n1", 1, "entry").model_copy(update={"subject": subject})
    left = make_event(F, "n2", 1, "exit").model_copy(
        update={"subject": subject, "ts": came.ts + timedelta(minutes=20)}
    )
    run_together(lambda: one.store_batch([left]), lambda: other.store_batch([came]))
    [visit] = one.pending_visits(F)
    assert (visit.visit_id, visit.exit_event_id) == (came.event_id, left.event_id)
