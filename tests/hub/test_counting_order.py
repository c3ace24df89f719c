"""Counting in the events' own time order: the same events give the same counts, flags,
alerts and history whatever order they arrive in, a late event corrects what it belongs
to, and an existing store migrates to it. Every test runs on SQLite and on PostgreSQL
(when a server answers, see ``pg_server`` in conftest.py)."""

from __future__ import annotations

import random
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hub.store.batch
from hub.config import FacilityConfig
from hub.counting.rules import OpenGap, gap_holding
from hub.store.migrations import HEAD
from hub.store.postgres import PgStore
from hub.store.sqlite import SqliteStore
from protocol.events import Event, new_event_id

from .legacy_schema import MIGRATIONS, PG_MIGRATIONS

F = "mall-a"
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
DOORS = [
    {"id": "main", "name": "Main", "direction": "both"},
    {"id": "north", "name": "North", "direction": "both"},
]
NODES = {"n1": "main", "n2": "north", "n3": "main"}


def facility(facility_id: str = F) -> FacilityConfig:
    return FacilityConfig.model_validate(
        {
            "id": facility_id,
            "name": facility_id,
            "capacity": 50,
            "zones": [{"id": "north", "name": "North", "doors": ["north"]}],
            "doors": DOORS,
        }
    )


Store = SqliteStore | PgStore


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(backend, the SQLite file or the PostgreSQL DSN) of an empty store."""
    if request.param == "sqlite":
        return "sqlite", str(tmp_path / "hub.db")
    return "postgresql", str(request.getfixturevalue("pg_dsn"))


def open_store(where: tuple[str, str], facilities: list[FacilityConfig]) -> Store:
    backend, path = where
    return SqliteStore(path, facilities) if backend == "sqlite" else PgStore(path, facilities)


@pytest.fixture
def store(where: tuple[str, str]) -> Iterator[Store]:
    with open_store(where, [facility()]) as opened:
        yield opened


def event(
    kind: str, ts: datetime, node_id: str = "n1", seq: int = 1, facility_id: str = F, **more: Any
) -> Event:
    data: dict[str, Any] = {
        "event_id": new_event_id(),
        "node_id": node_id,
        "facility_id": facility_id,
        "door_id": NODES[node_id],
        "seq": seq,
        "ts": ts,
        "kind": kind,
    }
    data.update(more)
    parsed: Event = Event.parse(Event.model_validate(data).dumps())  # as it comes off the wire
    return parsed


def exit_alerts(store: Store, facility_id: str = F) -> list[tuple[Any, ...]]:
    return [
        (a.node_id, a.door_id, a.event_id, a.count, a.message)
        for a in store.alerts(facility_id, kind="exit_without_entry")
    ]


def test_the_same_events_in_shuffled_arrival_orders_give_identical_counts_and_alerts(
    where: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(18)
    now = datetime.now(UTC)
    # Every order's corrections are made at one instant: a run that crosses a minute would
    # otherwise put them in different minutes of the history.
    monkeypatch.setattr(hub.store.batch, "utcnow", lambda: now)
    # Two hours of a facility's events, and a few from a door whose clock runs an hour
    # ahead; staff correct the count in between (at the time the test runs). Some share a
    # millisecond; each node numbers its events in its own time order.
    stamps = sorted(
        [T0 + timedelta(milliseconds=rng.randrange(0, 7_200_000, 250)) for _ in range(70)]
        + [now + timedelta(hours=1, seconds=rng.randrange(0, 600)) for _ in range(10)]
    )
    kinds = ["entry", "entry", "entry", "exit", "exit", "exit", "manual", "denied"]
    plan: list[tuple[str, datetime, str, dict[str, Any]]] = [
        ("exit", T0 - timedelta(minutes=5), "n1", {}),  # nobody inside yet: flagged in any order
    ]
    for ts in stamps:
        kind = rng.choice(kinds)
        more = {"direction": rng.choice(["entry", "exit"])} if kind == "manual" else {}
        plan.append((kind, ts, rng.choice(list(NODES)), more))
    orders: list[list[int]] = [list(range(len(plan))), list(reversed(range(len(plan))))]
    for _ in range(3):
        shuffled = list(range(len(plan)))
        rng.shuffle(shuffled)
        orders.append(shuffled)

    ids = [f"order-{n}" for n in range(len(orders))]
    with open_store(where, [facility(i) for i in ids]) as store:
        by_order: list[list[Event]] = []
        for facility_id in ids:
            seqs = dict.fromkeys(NODES, 0)
            events = []
            for kind, ts, node_id, more in plan:
                seqs[node_id] += 1
                events.append(event(kind, ts, node_id, seqs[node_id], facility_id, **more))
            by_order.append(events)
        for facility_id, order, events in zip(ids, orders, by_order, strict=True):
            arrivals = [events[i] for i in order]
            half = len(arrivals) // 2
            position = 0
            while position < len(arrivals):
                if position >= half and not store.adjustments(facility_id):
                    store.adjust(facility_id, "correction", 7, "guard1")
                    store.adjust(facility_id, "correction", 2, "guard1", zone_id="north")
                size = rng.randint(1, 9)
                store.store_batch(arrivals[position : position + size])
                position += size

        def outcome(facility_id: str, events: list[Event]) -> dict[str, Any]:
            occupancy = store.occupancy(facility_id)
            counted = []
            for sent in events:
                stored = store.event(sent.event_id)
                assert stored is not None
                counted.append((stored.delta, stored.flag))
            alerts = store.alerts(facility_id)
            by_id = {e.event_id: n for n, e in enumerate(events)}
            return {
                "occupancy": (occupancy.occupancy, occupancy.zones),
                "events": counted,
                "alerts": sorted(
                    (a.kind, a.node_id, a.door_id, by_id.get(a.event_id or ""), a.count)
                    for a in alerts
                ),
                "history": [(s.minute, s.occupancy, s.peak) for s in store.history(facility_id)],
            }

        live = [outcome(f, events) for f, events in zip(ids, by_order, strict=True)]
        for other in live[1:]:
            assert other == live[0]
        truth = live[0]
        assert truth["alerts"] and ("exit", "exit_without_entry") in [
            (plan[n][0], flag) for n, (_, flag) in enumerate(truth["events"])
        ]
        assert {a[0] for a in truth["alerts"]} == {"exit_without_entry"}  # gaps all filled
        # Counted all again from the start, in the same order: the same answer.
        rebuilt = store.rebuild_occupancy()
        assert {(rebuilt[f].occupancy, tuple(rebuilt[f].zones.items())) for f in ids} == {
            (truth["occupancy"][0], tuple(truth["occupancy"][1].items()))
        }
        assert [outcome(f, events) for f, events in zip(ids, by_order, strict=True)] == live


def test_an_exit_that_arrives_before_its_entry_leaves_occupancy_right(store: Store) -> None:
    inside = event("entry", T0, "n1", 1)
    out = event("exit", T0 + timedelta(seconds=30), "n2", 1)
    flushed = store.store_batch([out])  # the exit door's backlog comes in first
    assert [f.event_id for f in flushed.flagged] == [out.event_id]
    [alert] = flushed.alerts
    assert store.occupancy(F).occupancy == 0

    late = store.store_batch([inside])
    assert store.occupancy(F).occupancy == 0
    assert store.occupancy(F).zones == {"north": 0}
    stored_exit = store.event(out.event_id)
    assert stored_exit is not None and (stored_exit.delta, stored_exit.flag) == (-1, None)
    assert store.alerts(F, kind="exit_without_entry") == []
    assert [a.id for a in late.cleared] == [alert.id]
    [cleared] = store.alerts(F, open_only=False, kind="exit_without_entry")
    assert cleared.cleared_at is not None and cleared.count == 0
    assert store.rebuild_occupancy()[F].occupancy == 0


def test_a_late_entry_takes_back_one_of_several_flagged_exits(store: Store) -> None:
    exits = [event("exit", T0 + timedelta(seconds=s), "n1", n) for n, s in ((1, 10), (2, 20))]
    result = store.store_batch(exits)
    [alert] = result.alerts
    assert (alert.count, alert.event_id) == (2, exits[1].event_id)
    # The entry before both: the first exit counts now, the second still met nobody.
    late = store.store_batch([event("entry", T0, "n3", 1)])
    [reduced] = late.alerts
    assert (reduced.id, reduced.count, reduced.event_id) == (alert.id, 1, exits[1].event_id)
    assert late.cleared == []
    first, second = (store.event(e.event_id) for e in exits)
    assert first is not None and second is not None
    assert (first.flag, second.flag) == (None, "exit_without_entry")
    # An exit flagged only now (the count it met went to someone else) raises its alert.
    earlier = event("exit", T0 + timedelta(seconds=5), "n3", 2)
    moved = store.store_batch([earlier])
    assert {f.event_id for f in moved.flagged} == {first.event.event_id}
    assert [a.count for a in store.alerts(F, kind="exit_without_entry")] == [2]
    assert store.occupancy(F).occupancy == 0


def test_a_late_event_corrects_the_history_of_its_minute_and_after(store: Store) -> None:
    in_order = store.store_batch(
        [
            event("entry", T0 + timedelta(seconds=10), "n1", 1),
            event("entry", T0 + timedelta(seconds=20), "n1", 2),
            event("exit", T0 + timedelta(seconds=65), "n1", 3),
        ]
    )
    assert in_order.corrected == {}
    before = [(s.minute, s.occupancy, s.peak) for s in store.history(F)]
    assert before == [(T0, 2, 2), (T0 + timedelta(minutes=1), 1, 2)]
    # An exit the other door saw at :15, between the two entries, comes in late.
    result = store.store_batch([event("exit", T0 + timedelta(seconds=15), "n2", 1)])
    assert result.occupancy[F].occupancy == 0
    assert result.corrected == {F: T0}
    after = [(s.minute, s.occupancy, s.peak) for s in store.history(F)]
    assert after == [(T0, 1, 1), (T0 + timedelta(minutes=1), 0, 1)]
    store.rebuild_occupancy()
    assert [(s.minute, s.occupancy, s.peak) for s in store.history(F)] == after


def test_an_adjustment_takes_its_place_at_the_time_it_was_made(store: Store) -> None:
    now = datetime.now(UTC)
    # A door whose clock runs an hour ahead: its entry follows the correction made now.
    ahead = event("entry", now + timedelta(hours=1), "n1", 5)
    store.store_batch([event("entry", now - timedelta(hours=1), "n1", 3), ahead])
    assert store.occupancy(F).occupancy == 2
    made = store.adjust(F, "correction", 5, "guard1", "counted by hand")
    assert (made.delta, made.occupancy and made.occupancy.occupancy) == (4, 6)
    # An entry stamped before the correction, late: the correction had counted it already.
    store.store_batch([event("entry", now - timedelta(minutes=30), "n1", 4)])
    assert store.occupancy(F).occupancy == 6
    assert store.rebuild_occupancy()[F].occupancy == 6
    reset = store.adjust(F, "reset", 0, "guard1")
    assert (reset.delta, reset.occupancy and reset.occupancy.occupancy) == (-5, 1)
    assert store.occupancy(F).occupancy == 1


def _old_store(where: tuple[str, str]) -> None:
    """A store at schema 4 (counted in arrival order) holding an exit that arrived before
    its entry: the exit flagged, occupancy one too high, a sample by the arrival minute."""
    backend, path = where
    exit_ts, entry_ts = T0 + timedelta(seconds=30), T0
    received = T0 + timedelta(hours=2)
    rows = [  # in the order they arrived
        ("a" * 32, "n2", "north", 1, exit_ts, "exit", 0, "exit_without_entry"),
        ("b" * 32, "n1", "main", 1, entry_ts, "entry", 1, None),
    ]
    if backend == "sqlite":
        with closing(sqlite3.connect(path)) as conn, conn:
            for statements in MIGRATIONS[:4]:
                for statement in statements:
                    conn.execute(statement)
            conn.execute("PRAGMA user_version = 4")
            for event_id, node, door, seq, ts, kind, delta, flag in rows:
                conn.execute(
                    "INSERT INTO events (event_id, facility_id, node_id, door_id, seq, ts, "
                    "kind, received_at, delta, flag) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (event_id, F, node, door, seq, _iso(ts), kind, _iso(received), delta, flag),
                )
            conn.execute(
                "INSERT INTO occupancy VALUES (?, '', 1, ?), (?, 'north', 0, ?)",
                (F, _iso(received), F, _iso(received)),
            )
            conn.execute("INSERT INTO occupancy_history VALUES (?, ?, 1, 1)", (F, _iso(received)))
        return
    with psycopg.connect(path, autocommit=True) as pg, pg.transaction():
        for statements in PG_MIGRATIONS[:4]:
            for statement in statements:
                pg.execute(statement.encode())
        pg.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        pg.execute("INSERT INTO schema_version VALUES (4)")
        for event_id, node, door, seq, ts, kind, delta, flag in rows:
            pg.execute(
                "INSERT INTO events (event_id, facility_id, node_id, door_id, seq, ts, kind, "
                "received_at, delta, flag) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (event_id, F, node, door, seq, ts, kind, received, delta, flag),
            )
        pg.execute(
            "INSERT INTO occupancy VALUES (%s, '', 1, %s), (%s, 'north', 0, %s)",
            (F, received, F, received),
        )
        pg.execute("INSERT INTO occupancy_history VALUES (%s, %s, 1, 1)", (F, received))


def _iso(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_an_existing_store_migrates_and_is_counted_again_in_time_order(
    where: tuple[str, str],
) -> None:
    _old_store(where)
    with open_store(where, [facility()]) as store:
        assert store.schema_version == HEAD
        assert store.occupancy(F).occupancy == 0
        exit_event = store.event("a" * 32)
        assert exit_event is not None and (exit_event.delta, exit_event.flag) == (-1, None)
        # The history is the events' own minutes now, not the minute they arrived in.
        assert [(s.minute, s.occupancy, s.peak) for s in store.history(F)] == [(T0, 0, 1)]
        # And it counts on from there: a late exit before the entry is flagged, live.
        result = store.store_batch([event("exit", T0 - timedelta(seconds=1), "n3", 1)])
        assert [f.flag for f in result.flagged] == ["exit_without_entry"]
        assert store.occupancy(F).occupancy == 0


_KINDS = st.sampled_from(["entry", "entry", "exit", "exit", "manual-entry", "manual-exit"])


@settings(max_examples=100, deadline=None)
@given(
    plan=st.lists(
        st.tuples(_KINDS, st.integers(0, 600), st.sampled_from(sorted(NODES))),
        min_size=1,
        max_size=25,
    ),
    arrival=st.randoms(use_true_random=False),
)
def test_any_arrival_order_and_batching_counts_as_the_events_own_order(
    plan: list[tuple[str, int, str]], arrival: random.Random
) -> None:
    seqs = dict.fromkeys(NODES, 0)
    events = []
    for kind, seconds, node_id in sorted(plan, key=lambda p: p[1]):
        seqs[node_id] += 1
        more = {"direction": kind[7:]} if kind.startswith("manual") else {}
        ts = T0 + timedelta(seconds=seconds)
        events.append(event(kind[:6] if more else kind, ts, node_id, seqs[node_id], **more))
    shuffled = list(events)
    arrival.shuffle(shuffled)
    with tempfile.TemporaryDirectory() as folder:
        with SqliteStore(Path(folder) / "in-order.db", [facility()]) as in_order:
            in_order.store_batch(events)
            expected = _counted(in_order, events)
        with SqliteStore(Path(folder) / "shuffled.db", [facility()]) as store:
            while shuffled:
                size = arrival.randint(1, 5)
                store.store_batch(shuffled[:size])
                shuffled = shuffled[size:]
            assert _counted(store, events) == expected
            store.rebuild_occupancy()
            assert _counted(store, events) == expected


def _counted(store: Store, events: list[Event]) -> tuple[Any, ...]:
    occupancy = store.occupancy(F)
    flags = []
    for sent in events:
        stored = store.event(sent.event_id)
        assert stored is not None
        flags.append((stored.delta, stored.flag))
    open_exits = sum(a.count for a in store.alerts(F, kind="exit_without_entry"))
    history = [(s.minute, s.occupancy, s.peak) for s in store.history(F)]
    return occupancy.occupancy, occupancy.zones, flags, open_exits, history


@settings(max_examples=300, deadline=None)
@given(
    ranges=st.lists(st.tuples(st.integers(1, 200), st.integers(0, 12)), min_size=0, max_size=25),
    seqs=st.lists(st.integers(0, 220), max_size=40),
)
def test_the_gap_a_late_seq_fills_is_the_first_that_holds_it(
    ranges: list[tuple[int, int]], seqs: list[int]
) -> None:
    """Found by bisection for a node's disjoint gaps (hundreds of them with several
    workers), by the list's order when they overlap: the same gap either way."""
    gaps = [
        OpenGap(id=index, first_seq=first, last_seq=first + length, missing=length + 1)
        for index, (first, length) in enumerate(ranges)
    ]
    holding = gap_holding(gaps)
    for seq in seqs:
        first = next((g for g in gaps if g.first_seq <= seq <= g.last_seq), None)
        assert holding(seq) == first


def test_each_of_a_node_s_many_one_seq_gaps_is_found() -> None:
    gaps = [OpenGap(id=n, first_seq=2 * n, last_seq=2 * n, missing=1) for n in range(1, 500)]
    random.Random(5).shuffle(gaps)
    holding = gap_holding(gaps)
    assert holding(2 * 250) == OpenGap(id=250, first_seq=500, last_seq=500, missing=1)
    assert holding(501) is None and holding(0) is None and holding(10_000) is None
