"""Registry benchmark: a fresh hub's status sync, tracing, and the node's status list.

    python -m bench.registry                 # print the tables
    python -m bench.registry --write         # ... and put them into docs/benchmarks.md
    python -m bench.registry --changes 100000 --visits 100000 --subjects 100000   # quicker
    python -m bench.registry --pg-dsn "host=127.0.0.1 dbname=test user=postgres"  # and PostgreSQL

(a) **Status sync.** A registry store gets 1,000,000 status changes (one per person, through
    the same batched path as a CSV import), then ``pintu registry serve`` runs in its own
    process and a client reads the whole feed the way a fresh hub does: ``GET
    /api/v1/statuses`` page after page, each page parsed from JSON. The baseline, in the same
    run, is one plain SQL ``SELECT`` of the same rows from the same database file.
(b) **Tracing.** 1,000,000 visits over 21 days at 5,000 facilities, bulk-loaded with plain
    SQL; a hub then pushes more through ``POST /api/v1/visits`` (the intake rate), and the
    tracing query runs for subjects with several visits, timed through the HTTP API and in
    the registry itself, median of several subjects. With ``--pg-dsn``, the same visits are
    also loaded (with ``COPY``) into a PostgreSQL store in a schema of their own, and the
    same subjects traced there, in the registry and over HTTP, beside SQLite's figures.
(c) **The node's status list.** A ``protocol.statuslist.StatusList`` of 1,000,000 subjects:
    its bytes per subject, and the time of single lookups (median and p99 of 100,000)
    beside the same lookups in a Python dict built from the same entries.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import random
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from protocol.status import Status
from protocol.statuslist import StatusList
from protocol.trust import format_time
from registry.auth import Principal
from registry.config import RegistryConfig, SqliteStoreConfig, parse_config
from registry.models import DoorIn, FacilityRequestIn
from registry.records import PersonRow
from registry.service import Registry

START = "<!-- bench:registry:start -->"
END = "<!-- bench:registry:end -->"
HEADING = "## Registry"
ROOT = Path(__file__).resolve().parents[1]
SYNC_TARGET_S = 60.0
TRACE_TARGET_S = 1.0
BYTES_TARGET = 64
LOOKUP_TARGET_US = 50.0
DAY = 86_400
PASSWORD = "benchmark operator password"  # noqa: S105 - a throw-away account in a temp dir


@dataclass(frozen=True)
class Sync:
    changes: int
    load_s: float
    pages: int
    page_size: int
    http_s: float
    http_bytes: int
    sql_s: float


@dataclass(frozen=True)
class Tracing:
    visits: int
    facilities: int
    subjects: int
    load_s: float
    intake: int
    intake_s: float
    traced: int
    visits_per_trace: float
    contacts_per_trace: float
    service_ms: list[float]
    http_ms: list[float]


@dataclass(frozen=True)
class PgTracing:
    """The same visits and subjects as ``Tracing``'s, traced on PostgreSQL."""

    visits: int
    server: str
    load_s: float
    traced: int
    service_ms: list[float]
    http_ms: list[float]


@dataclass(frozen=True)
class Lists:
    subjects: int
    file_bytes: int
    dict_bytes: int
    build_s: float
    list_ns: list[int]
    dict_ns: list[int]


def percentile(values: list[float] | list[int], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return float(ordered[index])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``pintu registry serve`` in its own process, as it runs in production."""

    def __init__(self, config_path: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pintu", "registry", "serve", "--config", str(config_path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        with httpx.Client(base_url=self.url, timeout=5) as http:
            deadline = time.monotonic() + 30
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(self.process.communicate()[1].decode())
                try:
                    http.get("/api/v1/health")
                    return
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError("the registry did not start") from None
                    time.sleep(0.05)  # waiting for "it answers", with a deadline

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.communicate()


def make_config(directory: Path, port: int, store: str = "") -> tuple[RegistryConfig, Path]:
    """A registry's configuration file; ``store`` is its ``[store]`` section (SQLite if "")."""
    path = directory / "registry.toml"
    path.write_text(f'[web]\nhost = "127.0.0.1"\nport = {port}\n{store}', encoding="utf-8")
    return parse_config(path.read_text(), str(path), directory), path


def db_path(config: RegistryConfig) -> Path:
    """The SQLite file of a benchmark's registry (make_config always gives one)."""
    if not isinstance(config.store, SqliteStoreConfig):
        raise TypeError("the benchmark's registry keeps its data in SQLite")
    return config.store.path


def credentials(registry: Registry) -> str:
    """An operator account (the feed and tracing both accept operators); returns the name."""
    registry.add_operator("bench", PASSWORD)
    return "bench"


def login(http: httpx.Client, username: str) -> dict[str, str]:
    r = http.post("/api/v1/login", json={"username": username, "password": PASSWORD})
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['token']}"}


def hub_token(registry: Registry) -> tuple[str, str]:
    """A facility registered the PeduliLindungi way, with a door; its hub's token and id."""
    facility = registry.request_facility(
        FacilityRequestIn(
            name="Benchmark Mall",
            address="Jl. Benchmark 1",
            type="mall",
            capacity=1000,
            pic_name="Bench",
            pic_email="bench@example.com",
        )
    )
    verification = registry.verify_facility(facility.id, "bench")
    token = registry.activate_facility(facility.id, verification.token, PASSWORD).hub_token
    door = DoorIn(door_id="main-in", name="Main entrance", direction="entrance")
    registry.add_door(Principal("operator", "bench"), facility.id, door)
    return token, facility.id


def seed_statuses(registry: Registry, changes: int, rng: random.Random) -> float:
    """``changes`` status changes, one per new person, written through the store's batched
    import path (as a CSV import writes them); the seconds it took."""
    statuses = list(Status)
    started = time.perf_counter()
    batch = 10_000
    for first in range(0, changes, batch):
        rows = [
            PersonRow(rng.randbytes(12).hex(), f"Person {i}", rng.choice(statuses), 2)
            for i in range(first, min(changes, first + batch))
        ]
        registry.store.apply_persons(rows, int(time.time()))
    return time.perf_counter() - started


def measure_sync(changes: int, page_size: int, seed: int) -> Sync:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="pintu-bench-registry-") as tmp:
        port = free_port()
        config, config_path = make_config(Path(tmp), port)
        registry = Registry.open(config)
        try:
            token, _ = hub_token(registry)
            load_s = seed_statuses(registry, changes, rng)
        finally:
            registry.close()
        server = Server(config_path, port)
        try:
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=server.url, timeout=60, headers=headers) as http:
                http.get("/api/v1/statuses", params={"limit": 1}).raise_for_status()  # warm-up
                started = time.perf_counter()
                since, pages, total, received = 0, 0, 0, 0
                while True:
                    r = http.get("/api/v1/statuses", params={"since": since, "limit": page_size})
                    r.raise_for_status()
                    page = r.json()
                    received += len(r.content)
                    pages += 1
                    total += len(page["changes"])
                    since = page["next"]
                    if not page["more"]:
                        break
                http_s = time.perf_counter() - started
        finally:
            server.stop()
        if total != changes:
            raise RuntimeError(f"the feed gave {total} changes, expected {changes}")
        sql_s = read_feed_sql(db_path(config), changes)
    return Sync(changes, load_s, pages, page_size, http_s, received, sql_s)


def read_feed_sql(path: Path, changes: int) -> float:
    """The baseline: one plain SQL ``SELECT`` of the whole feed from the registry's database
    file; the seconds it took."""
    db = sqlite3.connect(path)
    try:
        started = time.perf_counter()
        rows_read = db.execute(
            "SELECT cursor, subject, status, doses, changed_at FROM status_changes ORDER BY cursor"
        ).fetchall()
        sql_s = time.perf_counter() - started
    finally:
        db.close()
    if len(rows_read) != changes:
        raise RuntimeError("the SQL baseline read a different number of rows")
    return sql_s


def visit_rows(
    visits: int, facilities: int, pool: list[str], now: int, seed: int
) -> tuple[list[tuple[str, str, str, str, int, int, int]], dict[str, int]]:
    """The stored visits, in index order, and the longest visit per facility."""
    rng = random.Random(seed)
    window = 21 * DAY
    rows = []
    longest: dict[str, int] = {}
    for i in range(visits):
        facility_id = f"facility-{i % facilities:05d}"
        length = rng.randint(300, 3 * 3600)
        check_in = now - rng.randint(length, window)
        rows.append(
            (facility_id, f"v{i}", rng.choice(pool), "main", check_in, check_in + length, now)
        )
        longest[facility_id] = max(longest.get(facility_id, 0), length)
    # In index order, so that the primary key and the facility index grow at their end.
    rows.sort(key=lambda r: (r[0], r[4]))
    return rows, longest


def bulk_load_visits(
    path: Path, visits: int, facilities: int, pool: list[str], now: int, seed: int
) -> float:
    """Fill the visits table with plain SQL in one transaction; seconds taken."""
    rows, longest = visit_rows(visits, facilities, pool, now, seed)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA cache_size = -262144")  # 256 MiB: a one-off load, not the service
        started = time.perf_counter()
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO visits (facility_id, visit_id, subject, door_id, check_in, check_out, "
            "received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        db.executemany(
            "INSERT INTO visit_bounds (facility_id, max_length) VALUES (?, ?)",
            sorted(longest.items()),
        )
        db.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        db.close()


def bulk_load_visits_pg(
    dsn: str, visits: int, facilities: int, pool: list[str], now: int, seed: int
) -> float:
    """The same visits into a PostgreSQL store with COPY, in one transaction, then ANALYZE
    (as autovacuum would soon do); seconds taken."""
    rows, longest = visit_rows(visits, facilities, pool, now, seed)
    with psycopg.connect(dsn) as conn:
        started = time.perf_counter()
        with conn.cursor() as cur:
            columns = "facility_id, visit_id, subject, door_id, check_in, check_out, received_at"
            with cur.copy(f"COPY visits ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            with cur.copy("COPY visit_bounds (facility_id, max_length) FROM STDIN") as copy:
                for item in sorted(longest.items()):
                    copy.write_row(item)
        conn.commit()
        conn.execute("ANALYZE visits")
        conn.commit()
        return time.perf_counter() - started


def traced_subjects(
    rng: random.Random, pool: list[str], traced: int, visits_of: Callable[[str], int]
) -> list[str]:
    """Subjects with several visits (the case a tracer cares about), drawn from ``pool``;
    ``visits_of(subject)`` counts a subject's stored visits."""
    chosen = []
    for subject in rng.sample(pool, min(len(pool), 50 * traced)):
        if visits_of(subject) >= 5:
            chosen.append(subject)
        if len(chosen) == traced:
            break
    return chosen


def time_traces(
    config: RegistryConfig, config_path: Path, port: int, chosen: list[str], operator: str
) -> tuple[list[float], list[float], int, int, int]:
    """Trace each subject over HTTP, then in the registry itself: the milliseconds of each,
    the visits stored, and the visits and contacts found."""
    server = Server(config_path, port)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            headers = login(http, operator)
            http.get("/api/v1/tracing", params={"subject": chosen[0]}, headers=headers)
            http_ms = []
            for subject in chosen:
                started = time.perf_counter()
                r = http.get("/api/v1/tracing", params={"subject": subject}, headers=headers)
                r.raise_for_status()
                r.json()
                http_ms.append((time.perf_counter() - started) * 1000)
    finally:
        server.stop()
    registry = Registry.open(config)
    try:
        stored = registry.store.count_visits()
        service_ms, found_visits, found_contacts = [], 0, 0
        for subject in chosen:
            started = time.perf_counter()
            result = registry.trace(subject)
            service_ms.append((time.perf_counter() - started) * 1000)
            found_visits += sum(len(f.visits) for f in result.facilities)
            found_contacts += len(result.contacts)
    finally:
        registry.close()
    return service_ms, http_ms, stored, found_visits, found_contacts


def measure_tracing(
    visits: int, facilities: int, subjects: int, traced: int, intake: int, seed: int
) -> Tracing:
    rng = random.Random(seed)
    now = int(time.time())
    pool = [rng.randbytes(12).hex() for _ in range(subjects)]
    with tempfile.TemporaryDirectory(prefix="pintu-bench-registry-") as tmp:
        port = free_port()
        config, config_path = make_config(Path(tmp), port)
        registry = Registry.open(config)
        try:
            operator = credentials(registry)
            token, facility_id = hub_token(registry)
        finally:
            registry.close()
        load_s = bulk_load_visits(db_path(config), visits, facilities, pool, now, seed)
        db = sqlite3.connect(db_path(config))
        try:
            chosen = traced_subjects(
                rng,
                pool,
                traced,
                lambda subject: db.execute(
                    "SELECT COUNT(*) FROM visits WHERE subject = ?", (subject,)
                ).fetchone()[0],
            )
        finally:
            db.close()
        server = Server(config_path, port)
        try:
            with httpx.Client(base_url=server.url, timeout=60) as http:
                # A hub's pushes, through the API, on top of the stored million.
                hub = {"Authorization": f"Bearer {token}"}
                batch_size = 1_000
                started = time.perf_counter()
                for first in range(0, intake, batch_size):
                    batch = []
                    for i in range(first, min(intake, first + batch_size)):
                        check_in = now - rng.randint(3 * 3600, DAY)
                        batch.append(
                            {
                                "visit_id": f"hub-{i}",
                                "facility_id": facility_id,
                                # Other people than the traced population: the pushes
                                # measure intake and leave the tracing figures alone.
                                "subject": rng.randbytes(12).hex(),
                                "door_id": "main-in",
                                "check_in": format_time(check_in),
                                "check_out": format_time(check_in + rng.randint(300, 3 * 3600)),
                            }
                        )
                    r = http.post("/api/v1/visits", json=batch, headers=hub)
                    r.raise_for_status()
                intake_s = time.perf_counter() - started
        finally:
            server.stop()
        service_ms, http_ms, stored, found_visits, found_contacts = time_traces(
            config, config_path, port, chosen, operator
        )
    n = max(1, len(chosen))
    return Tracing(
        stored,
        facilities,
        subjects,
        load_s,
        intake,
        intake_s,
        len(chosen),
        found_visits / n,
        found_contacts / n,
        service_ms,
        http_ms,
    )


def measure_tracing_pg(
    server_dsn: str, visits: int, facilities: int, subjects: int, traced: int, seed: int
) -> PgTracing:
    """``measure_tracing``'s visits and subjects (the same seed draws the same ones), on a
    PostgreSQL store in a fresh schema of ``server_dsn``'s database, dropped afterwards.
    Without the HTTP intake: that is not what is compared."""
    rng = random.Random(seed)
    now = int(time.time())
    pool = [rng.randbytes(12).hex() for _ in range(subjects)]
    schema = f"pintu_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        version = admin.execute("SHOW server_version").fetchone()
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    dsn = make_conninfo(server_dsn, options=f"-c search_path={schema}")
    try:
        with tempfile.TemporaryDirectory(prefix="pintu-bench-registry-") as tmp:
            port = free_port()
            store = f'[store]\nkind = "postgresql"\ndsn = {json.dumps(dsn)}\n'
            config, config_path = make_config(Path(tmp), port, store)
            registry = Registry.open(config)
            try:
                operator = credentials(registry)
            finally:
                registry.close()
            load_s = bulk_load_visits_pg(dsn, visits, facilities, pool, now, seed)
            with psycopg.connect(dsn) as conn:

                def count(subject: str) -> int:
                    row = conn.execute(
                        "SELECT COUNT(*) FROM visits WHERE subject = %s", (subject,)
                    ).fetchone()
                    return int(row[0]) if row else 0

                chosen = traced_subjects(rng, pool, traced, count)
            service_ms, http_ms, stored, _, _ = time_traces(
                config, config_path, port, chosen, operator
            )
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    server = f"PostgreSQL {version[0].split()[0] if version else '?'}"
    return PgTracing(stored, server, load_s, len(chosen), service_ms, http_ms)


def measure_lists(subjects: int, lookups: int, seed: int) -> Lists:
    rng = random.Random(seed)
    now = int(time.time())
    keys = [rng.randbytes(12) for _ in range(subjects)]
    items = [(k, Status(rng.randrange(4)), now - rng.randrange(DAY * 30)) for k in keys]
    started = time.perf_counter()
    status_list = StatusList.from_items(items, updated_at=now)
    build_s = time.perf_counter() - started
    file_bytes = len(status_list.dumps())
    gc.collect()
    tracemalloc.start()
    baseline = {k: (s, t) for k, s, t in items}
    dict_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    probes = [rng.choice(keys) for _ in range(lookups)]
    list_ns, dict_ns = [], []
    clock = time.perf_counter_ns
    lookup, get = status_list.lookup, baseline.get
    # Interleaved in blocks, so that both see the same machine state.
    for start in range(0, lookups, 1000):
        block = probes[start : start + 1000]
        for key in block:
            t0 = clock()
            lookup(key)
            list_ns.append(clock() - t0)
        for key in block:
            t0 = clock()
            get(key)
            dict_ns.append(clock() - t0)
    return Lists(subjects, file_bytes, dict_bytes, build_s, list_ns, dict_ns)


def library_versions(names: list[str]) -> str:
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return (
        f"Run on {platform.platform()} ({cpu}, {os.cpu_count()} CPUs), "
        f"Python {platform.python_version()}; SQLite {sqlite3.sqlite_version}, "
        f"{library_versions(['starlette', 'uvicorn', 'httpx', 'pydantic'])}."
    )


def verdict(ok: bool) -> str:
    return "within the target" if ok else "OVER the target"


def pg_lines(tracing: Tracing, pg: PgTracing | None) -> list[str]:
    """The tracing table's PostgreSQL rows, and what they mean beside SQLite's."""
    if pg is None:
        return []
    sqlite_med = statistics.median(tracing.service_ms)
    pg_med = statistics.median(pg.service_ms)
    return [
        f"| `Registry.trace` on {pg.server} (in the registry) | {pg_med:.2f} ms "
        f"| {max(pg.service_ms):.2f} ms |",
        f"| `GET /api/v1/tracing` on {pg.server} (HTTP, JSON) "
        f"| {statistics.median(pg.http_ms):.2f} ms | {max(pg.http_ms):.2f} ms |",
        "",
        f"On PostgreSQL (the server on this machine, a fresh schema), the same "
        f"{pg.visits:,} visits were loaded with `COPY` and `ANALYZE`d ({pg.load_s:.1f} s) "
        f"and the same {pg.traced} subjects traced, without the hub's pushes: a trace in "
        f"the registry takes {pg_med / sqlite_med:.1f}x its SQLite median, the cost of "
        "asking a server (a round trip a query) rather than reading a local file.",
    ]


def report(
    sync: Sync,
    tracing: Tracing,
    lists: Lists,
    command: str,
    pg: PgTracing | None = None,
    load: float | None = None,
) -> str:
    rate = sync.changes / sync.http_s
    sync_1m = sync.http_s * 1_000_000 / sync.changes
    trace_med = statistics.median(tracing.service_ms)
    http_med = statistics.median(tracing.http_ms)
    worst_trace = max(max(tracing.service_ms), max(tracing.http_ms))
    if pg is not None:
        worst_trace = max(worst_trace, max(pg.service_ms), max(pg.http_ms))
    bytes_per = lists.file_bytes / lists.subjects
    list_med = statistics.median(lists.list_ns) / 1000
    list_p99 = percentile(lists.list_ns, 99) / 1000
    dict_med = statistics.median(lists.dict_ns) / 1000
    dict_p99 = percentile(lists.dict_ns, 99) / 1000
    return "\n".join(
        [
            machine(),
            *(
                [
                    "",
                    f"Load average (1 min) when the run began: {load:.1f}. Other work on the "
                    "machine slows every row of a run alike; compare within a run.",
                ]
                if load is not None
                else []
            ),
            "",
            f"Command: `{command}`",
            "",
            "### Status sync: a fresh hub reads the whole feed",
            "",
            f"{sync.changes:,} status changes (one per person) were written through the "
            f"store's batched import path in {sync.load_s:.1f} s "
            f"({sync.changes / sync.load_s:,.0f} rows/s). `pintu registry serve` then ran in "
            "its own process and a client with a hub token read `GET /api/v1/statuses` page "
            f"by page ({sync.page_size:,} a page, each parsed from JSON), as a hub's first "
            "sync does. The baseline is one plain SQL `SELECT` of the same rows from the same "
            "file, in the same run. The hub's own writing of what it reads is not included.",
            "",
            "| read | changes | pages | time | changes/s | bytes |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            f"| HTTP feed, paged | {sync.changes:,} | {sync.pages} | {sync.http_s:.2f} s "
            f"| {rate:,.0f} | {sync.http_bytes / 1e6:,.1f} MB |",
            f"| SQL SELECT (baseline) | {sync.changes:,} | 1 | {sync.sql_s:.2f} s "
            f"| {sync.changes / sync.sql_s:,.0f} | - |",
            "",
            f"The feed over HTTP costs {sync.http_s / sync.sql_s:.1f}x the bare SELECT. "
            f"Target: 1,000,000 changes in under {SYNC_TARGET_S:g} s; at this rate they take "
            f"{sync_1m:.1f} s ({verdict(sync_1m < SYNC_TARGET_S)}).",
            "",
            "### Tracing over the stored visits",
            "",
            f"{tracing.visits - tracing.intake:,} visits at {tracing.facilities:,} facilities "
            f"over 21 days, {tracing.subjects:,} subjects, visits of 5 minutes to 3 hours, "
            f"bulk-loaded with plain SQL in one transaction ({tracing.load_s:.1f} s). Then a "
            f"hub pushed {tracing.intake:,} more (other subjects, at one facility) through "
            f"`POST /api/v1/visits` in batches of 1,000: {tracing.intake_s:.1f} s, "
            f"{tracing.intake / tracing.intake_s:,.0f} visits/s (validation, idempotency check "
            f"and storage included). Traced: {tracing.traced} "
            f"subjects with at least 5 visits (on average {tracing.visits_per_trace:.1f} visits "
            f"and {tracing.contacts_per_trace:.1f} contacts each), over the whole 21-day window "
            f"of {tracing.visits:,} stored visits.",
            "",
            "| query | median | max |",
            "| --- | ---: | ---: |",
            f"| `Registry.trace` (in the registry) | {trace_med:.2f} ms "
            f"| {max(tracing.service_ms):.2f} ms |",
            f"| `GET /api/v1/tracing` (HTTP, JSON) | {http_med:.2f} ms "
            f"| {max(tracing.http_ms):.2f} ms |",
            *pg_lines(tracing, pg),
            "",
            f"Target: under {TRACE_TARGET_S * 1000:g} ms; slowest in this run "
            f"{worst_trace:.2f} ms ({verdict(worst_trace < TRACE_TARGET_S * 1000)}).",
            "",
            "### The node's status list",
            "",
            f"A `StatusList` of {lists.subjects:,} random subjects (built in "
            f"{lists.build_s:.1f} s), against a Python dict of the same entries "
            "(subject bytes -> (status, changed_at)). Memory of the dict is what tracemalloc "
            f"saw while building it. {len(lists.list_ns):,} lookups of present subjects, "
            "each timed alone with `perf_counter_ns` (the timer's own cost included, the "
            "same for both), interleaved in blocks of 1,000.",
            "",
            "| structure | bytes per subject | lookup median | lookup p99 |",
            "| --- | ---: | ---: | ---: |",
            f"| `StatusList` (.psl) | {bytes_per:.2f} | {list_med:.2f} µs | {list_p99:.2f} µs |",
            f"| dict (baseline) | {lists.dict_bytes / lists.subjects:.1f} | {dict_med:.2f} µs "
            f"| {dict_p99:.2f} µs |",
            "",
            f"Targets: at most {BYTES_TARGET} bytes a subject "
            f"({verdict(bytes_per <= BYTES_TARGET)}) and lookups under "
            f"{LOOKUP_TARGET_US:g} µs ({verdict(list_p99 < LOOKUP_TARGET_US)} at p99).",
        ]
    )


def write_section(
    path: Path, section: str, start: str = START, end: str = END, heading: str = HEADING
) -> None:
    """Replace the text between the markers in ``path``; append them if absent."""
    block = f"{start}\n{section}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + f"\n\n{heading}\n\n{block}\n"
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.registry", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--changes", type=int, default=1_000_000, help="status changes (a)")
    parser.add_argument("--page-size", type=int, default=10_000, help="feed page size (a)")
    parser.add_argument("--visits", type=int, default=1_000_000, help="visits stored (b)")
    parser.add_argument("--facilities", type=int, default=5_000, help="facilities (b)")
    parser.add_argument("--visitors", type=int, default=100_000, help="distinct subjects (b)")
    parser.add_argument("--traces", type=int, default=20, help="subjects traced (b)")
    parser.add_argument("--intake", type=int, default=50_000, help="visits pushed over HTTP (b)")
    parser.add_argument("--subjects", type=int, default=1_000_000, help="status list size (c)")
    parser.add_argument("--lookups", type=int, default=100_000, help="lookups timed (c)")
    parser.add_argument("--seed", type=int, default=2021, help="random seed")
    parser.add_argument(
        "--pg-dsn",
        default=None,
        help="a PostgreSQL server to trace the same visits on too, in a schema of their own "
        "(created and dropped); without it, only SQLite is measured",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs" / "benchmarks.md", help="file for --write"
    )
    parser.add_argument("--write", action="store_true", help="update the registry section of --out")
    args = parser.parse_args(argv)
    # The registry announces its new keys as warnings; in a throw-away directory they are noise.
    logging.getLogger("registry").setLevel(logging.ERROR)
    if min(args.changes, args.page_size, args.visits, args.facilities, args.visitors) < 1:
        parser.error("the sizes must be at least 1")
    defaults: dict[str, Any] = {
        "changes": 1_000_000,
        "page_size": 10_000,
        "visits": 1_000_000,
        "facilities": 5_000,
        "visitors": 100_000,
        "traces": 20,
        "intake": 50_000,
        "subjects": 1_000_000,
        "lookups": 100_000,
        "seed": 2021,
    }
    shown = ["python -m bench.registry"] + [
        f"--{name.replace('_', '-')} {getattr(args, name)}"
        for name, default in defaults.items()
        if getattr(args, name) != default
    ]
    if args.pg_dsn:
        shown.append(f"--pg-dsn '{args.pg_dsn}'")
    load = os.getloadavg()[0]
    print(f"(a) {args.changes:,} status changes, read through the feed ...", flush=True)
    sync = measure_sync(args.changes, args.page_size, args.seed)
    print(f"(b) {args.visits:,} visits, {args.traces} traces ...", flush=True)
    tracing = measure_tracing(
        args.visits, args.facilities, args.visitors, args.traces, args.intake, args.seed
    )
    pg = None
    if args.pg_dsn:
        print("(b) the same on PostgreSQL ...", flush=True)
        pg = measure_tracing_pg(
            args.pg_dsn, args.visits, args.facilities, args.visitors, args.traces, args.seed
        )
    print(f"(c) a status list of {args.subjects:,} subjects ...", flush=True)
    lists = measure_lists(args.subjects, args.lookups, args.seed)
    section = report(sync, tracing, lists, " ".join(shown), pg, load)
    print()
    print(section)
    if args.write:
        write_section(args.out, section)
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
