"""Hub workers benchmark: events a second stored and acked by one and by two hub workers on
PostgreSQL, beside the broker alone and one worker on SQLite, and where the CPU goes.

    python -m bench.workers                  # print the tables
    python -m bench.workers --write          # ... and put them into docs/benchmarks.md
    python -m bench.workers --pg-dsn "host=db dbname=bench user=bench"

One private Mosquitto and one PostgreSQL serve every measurement of the run, in rounds that
take the setups in turn:

- the broker alone: ``bench.ingest``'s baseline, a plain paho publisher (a process of its
  own, as the door nodes are other machines) to a plain paho subscriber, QoS 1;
- one hub worker on PostgreSQL; two hub workers on PostgreSQL in one share group (their
  combined rate); one hub worker on SQLite, for reference. Each worker is a process of its
  own, as a service manager runs them, with ``session_expiry_s = 0`` (see
  docs/scaling.md), and is done when a listener has seen every event acked; every event
  is then checked to be in the store once.

Each PostgreSQL measurement gets a schema of its own, dropped after it. CPU time is read
per process (psutil) over each measurement: the load generator, the broker, the hub
workers, PostgreSQL's processes (when the server runs on this machine) and the listener.
Last, one more (untimed) run profiles a PostgreSQL worker's writer thread with cProfile.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import logging
import multiprocessing
import os
import pstats
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bench.ingest import (
    Listener,
    Result,
    _median,
    _profiled_writer,
    _spread,
    facility_ids,
    make_payloads,
    measure_raw,
    publish_all,
    settle_collector,
    versions,
    write_section,
)
from hub.config import HubConfig
from hub.service import Hub
from hub.store import open_store
from protocol import topics
from protocol.events import Ack
from provisioning.mosquitto import Mosquitto

START = "<!-- bench:workers:start -->"
END = "<!-- bench:workers:end -->"
TITLE = "Hub workers"
DEFAULT_PG_DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"


def add_pg_dsn_option(parser: argparse.ArgumentParser, use: str) -> None:
    """``--pg-dsn``, the PostgreSQL a benchmark measures on; ``use`` says how it uses it."""
    parser.add_argument(
        "--pg-dsn",
        default=os.environ.get("PINTU_BENCH_PG_DSN", os.environ.get("PINTU_TEST_PG_DSN")),
        help="PostgreSQL to measure on (default: $PINTU_BENCH_PG_DSN, $PINTU_TEST_PG_DSN, "
        f"or {DEFAULT_PG_DSN!r}); {use}",
    )


def reachable_pg(given: str | None, bench: str) -> str | None:
    """The DSN to measure on, once it answers; None (and why, on stderr) when it does not."""
    dsn = given or DEFAULT_PG_DSN
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as err:
        sys.stderr.write(f"{bench} needs PostgreSQL: {str(err).strip()}\n")
        return None
    return dsn


# Share of the broker alone, per backend: the PostgreSQL workers' is the hub's ingest goal
# (docs/benchmarks.md); SQLite's here is a reference (``bench.ingest`` holds its goal).
TARGETS = {"sqlite": 0.5, "postgresql": 0.7}
# The modules that call the driver: the store's own connection handling, the statements of
# the events' path (run on the driver's cursor) and SQLAlchemy itself.
_PG_MODULES = ("hub/store/postgres.py", "hub/store/dialect.py", "sqlalchemy/engine/default.py")
GROUPS = ("load generator", "broker", "hub workers", "PostgreSQL", "listener")
OTHERS = "other processes"


@dataclass(frozen=True)
class Setup:
    key: str
    label: str
    backend: str  # "sqlite" or "postgresql"
    workers: int


SETUPS = (
    Setup("pg1", "one hub worker, PostgreSQL", "postgresql", 1),
    Setup("pg2", "two hub workers, PostgreSQL (combined)", "postgresql", 2),
    Setup("sqlite1", "one hub worker, SQLite (reference)", "sqlite", 1),
)


@dataclass
class Run:
    result: Result
    cpu: dict[str, float]  # CPU seconds by group over the measurement
    busy: float  # share of the machine's CPU time that was busy
    metrics: dict[str, float] = field(default_factory=dict)  # summed over the workers


# --- a hub worker in a process of its own ----------------------------------------------
def _worker(config_json: str, ready: Any, stop: Any, results: Any, profile: bool) -> None:
    # Logged as the service would, formatting included, to nowhere: several workers report
    # the seq gaps they see between them, and that is part of their cost.
    logging.basicConfig(level=logging.WARNING, handlers=[logging.FileHandler(os.devnull)])
    config = HubConfig.model_validate_json(config_json)
    profiler = cProfile.Profile() if profile else None
    with _profiled_writer(profiler):
        asyncio.run(_serve(config, ready, stop, results))
    if profiler is not None:
        results.put(("profile", _profile_summary(profiler)))


async def _serve(config: HubConfig, ready: Any, stop: Any, results: Any) -> None:
    hub = Hub(config)
    await hub.start()
    settle_collector()  # as the service does once it has started
    try:
        if not await hub.wait_ready(20):
            raise RuntimeError("the worker did not connect")
        ready.set()
        await asyncio.to_thread(stop.wait)
        m = hub.metrics
        results.put(
            (
                "metrics",
                {
                    "events": m.events_in.total(),
                    "batches": float(m.batch_size.count),
                    "batched": m.batch_size.sum,
                    "ack latency sum": m.ack_latency.sum,
                    "acked": float(m.ack_latency.count),
                    "duplicates": m.duplicates.value(),
                    "rejected": m.rejected.total(),
                    "seq gaps": m.seq_gaps.total(),
                    "store errors": m.store_errors.value(),
                },
            )
        )
    finally:
        await hub.stop()


def _profile_summary(profiler: cProfile.Profile) -> dict[str, float]:
    """Seconds of the writer thread's batch handling, and of what it spent them on."""
    stats: dict[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    summary = {"batches": 0.0, "store": 0.0, "database calls": 0.0, "validate": 0.0, "acks": 0.0}
    for (filename, _, function), (_, _, _, cumulative, callers) in stats.items():
        path = filename.replace(os.sep, "/")
        if path.endswith("hub/ingest/mqtt.py"):
            key = {"_process": "batches", "_validate": "validate", "_after_store": "acks"}
            if function in key:
                summary[key[function]] += cumulative
        elif path.endswith("hub/store/batch.py") and function == "store_batch":
            summary["store"] += cumulative
        elif "/psycopg/" in path:
            # Time in the driver called straight from the store: the round trips to the
            # server, waiting for it included.
            for (caller_file, _, _), (_, _, _, from_caller) in callers.items():
                if caller_file.replace(os.sep, "/").endswith(_PG_MODULES):
                    summary["database calls"] += from_caller
    return summary


class Workers:
    """``count`` hub workers, each a process of its own, on one store and one share group."""

    def __init__(self, configs: list[HubConfig], profile: bool = False) -> None:
        context = multiprocessing.get_context("spawn")
        self.results: Any = context.Queue()
        self.stop_event = context.Event()
        self.ready = [context.Event() for _ in configs]
        self.processes = [
            context.Process(
                target=_worker,
                args=(config.model_dump_json(), ready, self.stop_event, self.results, profile),
                name=f"hub-worker-{index}",
            )
            for index, (config, ready) in enumerate(zip(configs, self.ready, strict=True))
        ]
        self.profiling = profile
        self.metrics: dict[str, float] = {}
        self.profile: dict[str, float] = {}

    def __enter__(self) -> Workers:
        for process in self.processes:
            process.start()
        for ready, process in zip(self.ready, self.processes, strict=True):
            if not ready.wait(60):
                self._end()
                raise RuntimeError(f"{process.name} did not start (exit code {process.exitcode})")
        return self

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def __exit__(self, *exc_info: object) -> None:
        self.stop_event.set()
        wanted = len(self.processes) + (1 if self.profiling else 0)
        for _ in range(wanted):
            try:
                kind, data = self.results.get(timeout=60)
            except Exception:  # queue.Empty: a worker died; its exit code says more
                break
            if kind == "metrics":
                for key, value in data.items():
                    self.metrics[key] = self.metrics.get(key, 0.0) + value
            else:
                self.profile = data
        self._end()

    def _end(self) -> None:
        self.stop_event.set()
        for process in self.processes:
            process.join(30)
            if process.is_alive():
                process.kill()
                process.join(10)


# --- CPU time by process ------------------------------------------------------------------
@dataclass(frozen=True)
class _Sample:
    at: float  # time.monotonic()
    system: Any  # psutil.cpu_times()
    cpu: dict[int, float]  # pid -> CPU seconds so far


class CpuMeter:
    """CPU seconds used by groups of processes, and how busy the machine was, between two
    moments of a measurement (``window``), from samples taken every ``interval_s``.

    Sampling lets the window be the flow of events itself, without the start of the load
    generator's process before it or the workers' stop after it. Processes are grouped
    by id: the broker, the workers, PostgreSQL's that serve them (when the server runs on
    this machine; ``database`` is the workers' DSN), this process (the listener), and any
    other child of it (the load generator).
    """

    def __init__(
        self,
        broker: int,
        workers: list[int],
        database: str | None = None,
        interval_s: float = 0.05,
    ) -> None:
        self.database = database
        self.groups: dict[int, str] = {broker: "broker", os.getpid(): "listener"}
        self.groups.update((pid, "hub workers") for pid in workers)
        self._scan()
        self.interval_s = interval_s
        self.samples: list[_Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-meter", daemon=True)

    def _scan(self) -> None:
        """Find processes started since: a worker's new database connection, the load
        generator. A scan reads every process's details, so it runs every few samples."""
        if self.database is not None:
            # The server's processes that serve this measurement: the workers' connections
            # (named by the DSN) and the server's own (WAL writer, checkpointer, ...), not
            # those of anything else the server serves.
            with contextlib.suppress(psycopg.Error), psycopg.connect(self.database) as conn:
                for (pid,) in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = "
                    "current_setting('application_name') AND pid <> pg_backend_pid() "
                    "OR backend_type <> 'client backend'"
                ):
                    self.groups.setdefault(pid, "PostgreSQL")
        for child in psutil.Process().children():
            self.groups.setdefault(child.pid, "load generator")

    def _sample(self) -> None:
        if len(self.samples) % 4 == 3:
            self._scan()
        cpu: dict[int, float] = {}
        for pid in self.groups:
            try:
                times = psutil.Process(pid).cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            cpu[pid] = times.user + times.system
        self.samples.append(_Sample(time.monotonic(), psutil.cpu_times(), cpu))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval_s)

    def __enter__(self) -> CpuMeter:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sample()

    def window(self, start: float, end: float) -> tuple[dict[str, float], float]:
        """CPU seconds by group from ``start`` to ``end``, and the machine's busy share."""
        first = max(
            (s for s in self.samples if s.at <= start), key=lambda s: s.at, default=self.samples[0]
        )
        last = min(
            (s for s in self.samples if s.at >= end), key=lambda s: s.at, default=self.samples[-1]
        )
        used: dict[str, float] = dict.fromkeys(GROUPS, 0.0)
        for pid, group in self.groups.items():
            # A process that ended inside the window counts up to its last sample.
            seen = [s.cpu[pid] for s in self.samples if s.at <= last.at and pid in s.cpu]
            if seen:
                used[group] += seen[-1] - first.cpu.get(pid, 0.0)
        spent = sum(last.system) - sum(first.system)  # every core's time, busy or not
        idle = (last.system.idle + getattr(last.system, "iowait", 0.0)) - (
            first.system.idle + getattr(first.system, "iowait", 0.0)
        )
        # What the machine did besides: other programs on a shared machine.
        used[OTHERS] = max(0.0, spent - idle - sum(used.values()))
        return used, (spent - idle) / spent if spent > 0 else 0.0


# --- stores --------------------------------------------------------------------------------
@contextlib.contextmanager
def pg_schema(dsn: str) -> Iterator[str]:
    """A DSN whose tables go into a fresh schema, dropped afterwards; its connections are
    named after the schema (``application_name``), so that they can be told apart."""
    schema = f"pintu_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield make_conninfo(dsn, options=f"-c search_path={schema}", application_name=schema)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@contextlib.contextmanager
def store_section(setup: Setup, pg_dsn: str, folder: Path) -> Iterator[dict[str, Any]]:
    if setup.backend == "postgresql":
        with pg_schema(pg_dsn) as dsn:
            yield {"backend": "postgresql", "dsn": dsn}
    else:
        folder.mkdir(parents=True, exist_ok=True)
        yield {"backend": "sqlite", "path": str(folder / "hub.db")}


def worker_configs(
    broker: Mosquitto, store: dict[str, Any], count: int, facilities: int, name: str
) -> list[HubConfig]:
    return [
        HubConfig.model_validate(
            {
                "mqtt": {
                    "host": broker.host,
                    "port": broker.port,
                    "client_id": f"bench-{name}-{index}",
                    "share_group": "bench",
                    # A worker's session ends with its connection: Mosquitto would otherwise
                    # keep dealing a stopped worker its share of the next measurement.
                    "session_expiry_s": 0,
                },
                "store": store,
                "homeassistant": {"enabled": False},
                "facilities": [{"id": f, "name": f} for f in facility_ids(facilities)],
            }
        )
        for index in range(count)
    ]


# --- measurements -----------------------------------------------------------------------
def interleaved(payloads: list[tuple[str, bytes]], seed: int) -> list[tuple[str, bytes]]:
    """The same events with the nodes' streams mixed at random, each node's own order kept,
    as doors publishing on their own do: the broker then deals one node's events to
    several workers, who see each other's seq numbers out of order."""
    streams: dict[str, deque[tuple[str, bytes]]] = {}
    for item in payloads:
        streams.setdefault(item[0], deque()).append(item)
    rng = random.Random(seed)
    topics_left = list(streams)
    mixed = []
    while topics_left:
        topic = rng.choice(topics_left)
        mixed.append(streams[topic].popleft())
        if not streams[topic]:
            topics_left.remove(topic)
    return mixed


def measure_broker(broker: Mosquitto, payloads: list[tuple[str, bytes]]) -> Run:
    assert broker.process is not None
    with CpuMeter(broker.process.pid, []) as meter:
        result = measure_raw(broker, payloads)
        # measure_raw returns as the subscriber has seen the last event.
        end = time.monotonic()
    cpu, busy = meter.window(end - result.seconds, end)
    return Run(result, cpu, busy)


def measure_workers(
    broker: Mosquitto,
    setup: Setup,
    payloads: list[tuple[str, bytes]],
    pg_dsn: str,
    folder: Path,
    facilities: int,
    profile: bool = False,
) -> tuple[Run, dict[str, float]]:
    assert broker.process is not None
    with store_section(setup, pg_dsn, folder) as store:
        configs = worker_configs(broker, store, setup.workers, facilities, folder.name)
        acks = Listener(
            broker,
            f"{topics.ROOT}/+/node/+/ack",
            lambda p: len(Ack.parse(p).event_ids),
            len(payloads),
        )
        try:
            with (
                Workers(configs, profile) as workers,
                CpuMeter(broker.process.pid, workers.pids, store.get("dsn")) as meter,
            ):
                started = publish_all(broker, payloads)
                if not acks.done.wait(300):
                    raise RuntimeError(f"the workers acked {acks.received} of {len(payloads)}")
            cpu, busy = meter.window(started, acks.last_at)
            result = Result(len(payloads), acks.last_at - started)
        finally:
            acks.close()
        opened = open_store(configs[0])
        try:
            stored = opened.count_events()
        finally:
            opened.close()
        if stored != len(payloads):
            raise RuntimeError(f"the store holds {stored} events, {len(payloads)} were sent")
    return Run(result, cpu, busy, workers.metrics), workers.profile


# --- the report -----------------------------------------------------------------------------
def _versions(pg_dsn: str) -> str:
    with contextlib.suppress(psycopg.Error), psycopg.connect(pg_dsn) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        server = f"PostgreSQL {row[0].split()[0]}" if row else "PostgreSQL"
        return (
            f"{versions()[:-1]}; {server} (psycopg {metadata.version('psycopg')}), "
            "synchronous_commit on: a batch is acked after its commit is durable."
        )
    return versions()


def render(
    runs: dict[str, list[Run]],
    profile: dict[str, float],
    command: str,
    facilities: int,
    pg_dsn: str,
) -> str:
    raw = _median([r.result for r in runs["raw"]])
    events = raw.events
    lines = [
        _versions(pg_dsn),
        "",
        f"Command: `{command}`",
        "",
        f"{len(runs['raw'])} rounds, each the broker alone then every setup, {events} events "
        f"from 4 door nodes at {facilities} "
        f"{'facility' if facilities == 1 else 'facilities'} each, the nodes' streams mixed "
        "at random as independent doors send them; the median round is shown. Each hub "
        "worker is a process of its own.",
        "",
        "| measured | seconds | events/s | range over the rounds | share of the broker | target |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        f"| broker alone: paho QoS 1 publisher to paho subscriber | {raw.seconds:.2f} | "
        f"{raw.rate:,.0f} | {_spread([r.result for r in runs['raw']])} | 100% | |",
    ]
    verdicts = []
    for setup in SETUPS:
        median = _median([r.result for r in runs[setup.key]])
        ratio = median.rate / raw.rate
        target = TARGETS[setup.backend]
        met = ratio >= target
        verdicts.append(met)
        lines.append(
            f"| {setup.label} | {median.seconds:.2f} | {median.rate:,.0f} | "
            f"{_spread([r.result for r in runs[setup.key]])} | {ratio:.0%} | "
            f"{'≥' if met else 'MISSES'} {target:.0%} |"
        )
    lines += ["", _details(runs), "", _cpu_table(runs), "", _cpu_verdict(runs)]
    if profile:
        lines += ["", _profile_text(profile)]
    lines += [
        "",
        f"Targets: SQLite at least {TARGETS['sqlite']:.0%} and PostgreSQL at least "
        f"{TARGETS['postgresql']:.0%} of the broker alone; this run "
        f"{'meets them' if all(verdicts) else 'MISSES them'}.",
    ]
    return "\n".join(lines) + "\n"


def _details(runs: dict[str, list[Run]]) -> str:
    parts = []
    for setup in SETUPS:
        total: dict[str, float] = {}
        for run in runs[setup.key]:
            for key, value in run.metrics.items():
                total[key] = total.get(key, 0.0) + value
        batch = total.get("batched", 0.0) / max(total.get("batches", 0.0), 1.0)
        latency = 1000 * total.get("ack latency sum", 0.0) / max(total.get("acked", 0.0), 1.0)
        parts.append(
            f"{setup.label}: mean batch {batch:.0f} events, mean ack latency {latency:.0f} ms, "
            f"{total.get('seq gaps', 0.0) / len(runs[setup.key]):,.0f} seq gaps seen a round, "
            f"{total.get('duplicates', 0.0):.0f} duplicates, "
            f"{total.get('store errors', 0.0):.0f} store errors"
        )
    return "Over all rounds: " + "; ".join(parts) + "."


def _cpu_table(runs: dict[str, list[Run]]) -> str:
    lines = [
        "CPU time per 1,000 events (ms, median round; the listener is the benchmark's own "
        "process, which also samples the others), and how busy the machine's "
        f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else 1} "
        "cores were:",
        "",
        "| measured | " + " | ".join(GROUPS) + f" | all these | {OTHERS} | machine busy |",
        "| --- | " + " | ".join("---:" for _ in GROUPS) + " | ---: | ---: | ---: |",
    ]
    for key, label in [("raw", "broker alone"), *((s.key, s.label) for s in SETUPS)]:
        run = _median_run(runs[key])
        per = 1e6 / run.result.events  # CPU seconds -> ms per 1000 events
        cells = [f"{run.cpu.get(g, 0.0) * per:.0f}" for g in GROUPS]
        total = sum(run.cpu.get(g, 0.0) for g in GROUPS) * per
        others = run.cpu.get(OTHERS, 0.0) * per
        lines.append(
            f"| {label} | "
            + " | ".join(cells)
            + f" | {total:.0f} | {others:.0f} | {run.busy:.0%} |"
        )
    return "\n".join(lines)


def _median_run(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda r: r.result.rate)[len(runs) // 2]


def _cpu_verdict(runs: dict[str, list[Run]]) -> str:
    pg1, pg2 = _median_run(runs["pg1"]), _median_run(runs["pg2"])

    def ms(run: Run, group: str) -> str:
        return f"{run.cpu.get(group, 0.0) * 1e6 / run.result.events:.0f} ms"

    def share(run: Run, group: str) -> str:
        ours = sum(run.cpu.get(g, 0.0) for g in GROUPS)
        return f"{run.cpu.get(group, 0.0) / max(ours, 1e-9):.0%}"

    def others(run: Run) -> float:
        return run.cpu.get(OTHERS, 0.0) / max(sum(run.cpu.values()), 1e-9)

    bound = (
        "the run is bound by CPU"
        if min(pg1.busy, pg2.busy) >= 0.9
        else "the cores are not saturated, and the writer waits on its round trips to "
        "PostgreSQL (see the profile below)"
    )
    if max(others(pg1), others(pg2)) >= 0.1:
        bound += (
            f" (other programs on the machine took {others(pg1):.0%} and {others(pg2):.0%} "
            "of the busy time: the rates above are lower than on a quiet machine)"
        )
    return (
        f"What caps the rate: while the events flow, the two cores are {pg1.busy:.0%} busy "
        f"with one PostgreSQL worker and {pg2.busy:.0%} with two: {bound}. PostgreSQL itself "
        f"takes {share(pg1, 'PostgreSQL')} of the CPU the run used ({ms(pg1, 'PostgreSQL')} per "
        "1,000 "
        f"events). A worker spends {ms(pg1, 'hub workers')} per 1,000 events alone and "
        f"{ms(pg2, 'hub workers')} as two, where each sees the other's seq numbers out of "
        f"order and records and fills the gaps; the broker {ms(pg1, 'broker')}; the load "
        f"generator, a Python publisher standing in for the door nodes (other machines in "
        f"a deployment), {ms(pg1, 'load generator')} ({share(pg1, 'load generator')}). A "
        "second worker on the same two cores only moves work around; it adds throughput "
        "where it has cores of its own (docs/scaling.md)."
    )


def _profile_text(profile: dict[str, float]) -> str:
    busy = profile.get("batches", 0.0)
    if busy <= 0:
        return ""

    def share(key: str) -> str:
        return f"{profile.get(key, 0.0) / busy:.0%}"

    return (
        "A PostgreSQL worker's writer thread, profiled (cProfile, one more run, untimed): of "
        f"its time handling batches, storing takes {share('store')} (of which calls into "
        f"psycopg, the round trips to the server included, {share('database calls')}), "
        f"validating the payloads {share('validate')}, and the acks and facility state "
        f"{share('acks')}."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000, help="events per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every measurement")
    parser.add_argument(
        "--facilities", type=int, default=1, help="facilities the 4 door nodes are dealt over"
    )
    add_pg_dsn_option(parser, "each measurement uses a fresh schema, dropped after it")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args(argv)
    settle_collector()  # the baseline's process set as the workers are
    pg_dsn = reachable_pg(args.pg_dsn, "bench.workers")
    if pg_dsn is None:
        return 2
    command = "python -m bench.workers" + "".join(
        f" --{name} {value}"
        for name, value, default in (
            ("events", args.events, 20_000),
            ("facilities", args.facilities, 1),
        )
        if value != default
    )
    runs: dict[str, list[Run]] = {"raw": [], **{s.key: [] for s in SETUPS}}
    with tempfile.TemporaryDirectory(prefix="pintu-bench-") as tmp:
        workdir = Path(tmp)
        with Mosquitto(workdir / "broker") as broker:
            for round_ in range(args.rounds):
                # Taking the setups in turn spreads a busy moment of the machine over all.
                payloads = interleaved(make_payloads(args.events, 4, args.facilities), round_)
                runs["raw"].append(measure_broker(broker, payloads))
                for setup in SETUPS:
                    run, _ = measure_workers(
                        broker,
                        setup,
                        payloads,
                        pg_dsn,
                        workdir / f"{setup.key}-{round_}",
                        args.facilities,
                    )
                    runs[setup.key].append(run)
                    sys.stderr.write(
                        f"round {round_ + 1}: {setup.label}: {run.result.rate:,.0f} events/s\n"
                    )
            _, profile = measure_workers(
                broker,
                SETUPS[0],
                interleaved(make_payloads(args.events // 2, 4, args.facilities), 99),
                pg_dsn,
                workdir / "profile",
                args.facilities,
                profile=True,
            )
    section = render(runs, profile, command, args.facilities, pg_dsn)
    sys.stdout.write(section)
    if args.write:
        target = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
        write_section(target, section, START, END, TITLE)
        sys.stdout.write(f"wrote {target.name}\n")
    raw = _median([r.result for r in runs["raw"]]).rate
    met = all(
        _median([r.result for r in runs[s.key]]).rate / raw >= TARGETS[s.backend] for s in SETUPS
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
