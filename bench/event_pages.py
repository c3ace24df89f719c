"""How full the PostgreSQL store fills the events' pages: what a recount's update costs,
and what the room left for it costs on disk.

    python -m bench.event_pages                 # print the table
    python -m bench.event_pages --write         # ... and put it into docs/benchmarks.md
    python -m bench.event_pages --pg-dsn "host=db dbname=bench user=bench"

Several hub workers count each other's events again all the time (docs/scaling.md): a
batch one worker stores changes the counts kept with the events another worker stored a
moment before. With full pages, each updated row moves to another page and gets a new
entry in every index of the table; with room on its page it stays there (a "HOT" update).
Two arms, each in a PostgreSQL schema of its own made from the hub's tables, taking turns
batch by batch:

1. pages filled full (``fillfactor`` 100, PostgreSQL's default): the baseline;
2. the store's own setting (``hub.store.tables.EVENTS_FILLFACTOR``).

Each batch of ``bench.ingest``'s events is stored by the hub's store (``store_batch``, as
the ingest stores it), and then every event of it is counted again once, as the other
worker's next batch would: one update of the recount's columns (``update_rows``). Last,
each arm's table size per event after ``VACUUM``, and that of the same events stored in
time order and never counted again (one worker, no late events).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import psycopg
from sqlalchemy import Connection

from bench.ingest import make_payloads
from bench.registry import ROOT, write_section
from bench.workers import add_pg_dsn_option, pg_schema, reachable_pg
from hub.config import FacilityConfig
from hub.store.dialect import update_rows
from hub.store.events import RECOUNTED
from hub.store.postgres import PgStore
from hub.store.tables import EVENTS_FILLFACTOR, events
from protocol.events import Event
from runtime.db import driver_cursor

START = "<!-- bench:event-pages:start -->"
END = "<!-- bench:event-pages:end -->"
HEADING = "## The events' pages on PostgreSQL"
FACILITY = "bench-0"


@dataclass
class Arm:
    fillfactor: int
    insert_ms: list[float] = field(default_factory=list)
    update_ms: list[float] = field(default_factory=list)
    bytes_recounted: float = 0.0  # table and indexes an event, every event updated once
    bytes_in_order: float = 0.0  # the same, no event updated

    @property
    def label(self) -> str:
        if self.fillfactor == 100:
            return "pages filled full (fillfactor 100, the baseline)"
        return f"the store's pages (fillfactor {self.fillfactor})"


@contextmanager
def _store(dsn: str, fillfactor: int) -> Iterator[tuple[PgStore, str]]:
    with pg_schema(dsn) as schema_dsn:
        store = PgStore(schema_dsn, [FacilityConfig(id=FACILITY, name=FACILITY)])
        try:
            with psycopg.connect(schema_dsn, autocommit=True) as conn:
                conn.execute(f"ALTER TABLE events SET (fillfactor = {int(fillfactor)})")
            yield store, schema_dsn
        finally:
            store.close()


def _batches(count: int, size: int) -> list[list[Event]]:
    parsed = [Event.parse(payload) for _, payload in make_payloads(count, 4)]
    return [parsed[at : at + size] for at in range(0, len(parsed), size)]


def _recount(store: PgStore, batch: list[Event]) -> float:
    """Every event of ``batch`` counted again once, as another worker's next batch would:
    the count kept with each one higher by one (``update_rows``, as the store's recount
    writes it). Milliseconds the update took."""
    ids = [e.event_id for e in batch]

    def work(conn: Connection) -> float:
        with driver_cursor(conn) as cursor:
            cursor.execute(
                "SELECT id, delta, flag, occupancy_after, zones_after, minute_peak, alert_id "
                "FROM events WHERE event_id = ANY(%s)",
                (ids,),
            )
            rows = cursor.fetchall()
        fixes = [
            (id_, delta, flag, (after or 0) + 1, zones, (peak or 0) + 1, alert)
            for id_, delta, flag, after, zones, peak, alert in rows
        ]
        start = time.perf_counter()
        update_rows(conn, events, "id", RECOUNTED, fixes)
        return (time.perf_counter() - start) * 1000

    return store._sa("count again", work)


def _size_per_event(dsn: str) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM events")
        row = conn.execute(
            "SELECT pg_total_relation_size('events'), (SELECT count(*) FROM events)"
        ).fetchone()
    assert row is not None
    total, count = row
    return float(total) / max(1, int(count))


def measure(dsn: str, count: int, size: int) -> list[Arm]:
    """Both arms, taking turns batch by batch; then each arm's size in both cases."""
    arms = [Arm(100), Arm(EVENTS_FILLFACTOR)]
    batches = _batches(count, size)
    with _store(dsn, 100) as (full, full_dsn), _store(dsn, EVENTS_FILLFACTOR) as (room, room_dsn):
        for batch in batches:
            for arm, store in zip(arms, (full, room), strict=True):
                start = time.perf_counter()
                store.store_batch(batch)
                arm.insert_ms.append((time.perf_counter() - start) * 1000)
                arm.update_ms.append(_recount(store, batch))
        for arm, where in zip(arms, (full_dsn, room_dsn), strict=True):
            arm.bytes_recounted = _size_per_event(where)
    for arm in arms:
        with _store(dsn, arm.fillfactor) as (store, where):
            for batch in batches:
                store.store_batch(batch)
            arm.bytes_in_order = _size_per_event(where)
    return arms


def report(arms: list[Arm], command: str, dsn: str, count: int, size: int) -> str:
    base, room = arms
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    server = row[0].split()[0] if row else "?"
    lines = [
        f"Run on {platform.platform()} ({platform.machine()}, {os.cpu_count()} CPUs), Python "
        f"{platform.python_version()}; PostgreSQL {server} "
        f"(psycopg {metadata.version('psycopg')}).",
        "",
        f"Command: `{command}`",
        "",
        f"{count:,} events of `bench.ingest` in batches of {size:,}, stored by the hub's "
        "PostgreSQL store and then each counted again once (one update of the recount's "
        "columns for the batch), the two arms taking turns batch by batch; sizes are the "
        "events table with its indexes after `VACUUM`, per event.",
        "",
        "| pages | store a batch, median | count it again, median | size, every event "
        "counted again | size, in time order |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for arm in arms:
        lines.append(
            f"| {arm.label} | {statistics.median(arm.insert_ms):.1f} ms "
            f"| {statistics.median(arm.update_ms):.1f} ms | {arm.bytes_recounted:,.0f} B "
            f"| {arm.bytes_in_order:,.0f} B |"
        )
    update = statistics.median(room.update_ms) / statistics.median(base.update_ms)
    in_order = room.bytes_in_order / base.bytes_in_order
    lines += [
        "",
        f"Counting a batch again costs {update:.2f}x with the store's pages; an event "
        f"stored in time order and never counted again takes {in_order:.2f}x the room "
        f"({room.bytes_in_order - base.bytes_in_order:+,.0f} B).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.event_pages", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--events", type=int, default=20_000, help="events per arm")
    parser.add_argument("--batch", type=int, default=1_000, help="events a batch")
    add_pg_dsn_option(parser, "each arm uses a fresh schema, dropped after it")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs" / "benchmarks.md", help="file for --write"
    )
    parser.add_argument("--write", action="store_true", help="update the section")
    args = parser.parse_args(argv)
    dsn = reachable_pg(args.pg_dsn, "bench.event_pages")
    if dsn is None:
        return 2
    command = "python -m bench.event_pages" + "".join(
        f" --{name} {value}"
        for name, value, default in (("events", args.events, 20_000), ("batch", args.batch, 1_000))
        if value != default
    )
    arms = measure(dsn, args.events, args.batch)
    section = report(arms, command, dsn, args.events, args.batch)
    print(section)
    if args.write:
        write_section(args.out, section, START, END, HEADING)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
