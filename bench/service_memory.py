"""Hub and registry memory benchmark: the resident memory of both services at work.

    python -m bench.service_memory                 # print the table
    python -m bench.service_memory --write         # ... and put it into docs/benchmarks.md
    python -m bench.service_memory --seconds 20    # a quicker run

Each service runs as a process of its own, as under systemd, and is sampled once a
second (``bench.rss``) beside its baseline, a bare Python that has imported the libraries
the service cannot do without and does nothing else:

- ``pintu hub serve`` (SQLite store) under a steady ingest: a publisher in a process of
  its own sends the events of a crowd going in and out of many doors at a fixed rate
  (QoS 1), while a staff member's dashboard keeps its live event stream (SSE) open;
- ``pintu registry serve`` with a seeded status feed, while hubs read the whole feed page
  by page, over and over (each read is a fresh hub's first sync), and push visits.

The question is whether memory stays flat: what the process still gains over the second
half of the run, once its caches and pools have filled.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import platform
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.doors import publish_steadily
from bench.ingest import make_payloads
from bench.latency import broker_version, library_versions, write_section
from bench.registry import Server, free_port, hub_token, make_config, seed_statuses
from bench.rss import (
    MB,
    ReadySocket,
    Samples,
    end_baseline,
    sample_together,
    start_baseline,
    stop_process,
)
from hub.auth import hash_password
from hub.config import load_config
from hub.store import open_store
from protocol.trust import format_time
from provisioning.mosquitto import Mosquitto
from registry.config import SqliteStoreConfig
from registry.service import Registry

START = "<!-- bench:service-memory:start -->"
END = "<!-- bench:service-memory:end -->"
HEADING = "## Hub and registry memory"
FACILITY = "bench"  # the facility bench.ingest's events belong to
HUB_IMPORTS = "paho.mqtt.client, sqlite_utils, starlette, uvicorn, jinja2, pydantic, httpx"
REGISTRY_IMPORTS = "sqlite3, starlette, uvicorn, pydantic, cryptography, argon2"
FLAT_MB = 2.0  # growth over the second half that still counts as flat
READY_TIMEOUT_S = 60.0
PASSWORD = "benchmark viewer password"  # noqa: S105 - a throw-away account in a temp dir


@dataclass(frozen=True)
class HubLoad:
    events: int  # published and acknowledged by the broker
    stored: int  # in the hub's store at the end
    nodes: int
    rate: float  # events a second, as published
    stream: dict[str, int]  # SSE messages the dashboard got, by type


@dataclass(frozen=True)
class RegistryLoad:
    statuses: int  # in the feed
    page_size: int
    full_reads: int  # whole-feed reads completed
    changes_read: int
    visits_per_s: int
    visits: int  # pushed and acknowledged
    stored_visits: int  # in the registry's store at the end


@dataclass(frozen=True)
class Run:
    service: Samples
    baseline: Samples
    seconds: float


@dataclass(frozen=True)
class Result:
    hub: Run
    hub_load: HubLoad
    registry: Run
    registry_load: RegistryLoad


# --- the hub ------------------------------------------------------------------------------
class Dashboard:
    """A viewer logged in to the hub with the facility's dashboard open: the page once,
    then its live event stream, read until the hub ends it."""

    def __init__(self, url: str, username: str) -> None:
        self.messages: Counter[str] = Counter()
        self.error: str | None = None
        self.connected = threading.Event()
        self._http = httpx.Client(base_url=url, timeout=httpx.Timeout(10, read=None))
        token = self._http.get("/api/v1/session").json()["csrf_token"]
        login = self._http.post(
            "/api/v1/session",
            json={"username": username, "password": PASSWORD},
            headers={"X-CSRF-Token": token},
        )
        login.raise_for_status()
        self._http.get(f"/facilities/{FACILITY}").raise_for_status()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        if not self.connected.wait(10):
            raise RuntimeError(f"the dashboard's event stream did not open: {self.error}")

    def _read(self) -> None:
        try:
            with self._http.stream("GET", "/events/stream", params={"facility": FACILITY}) as r:
                r.raise_for_status()
                self.connected.set()
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        self.messages[line[7:]] += 1
        except httpx.HTTPError as err:
            self.error = str(err)

    def close(self) -> None:
        self._thread.join(10)
        self._http.close()


def hub_config(work: Path, broker: Mosquitto, web_port: int) -> Path:
    path = work / "hub.toml"
    path.write_text(
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
        f'client_id = "bench-hub"\n\n'
        f'[store]\nbackend = "sqlite"\npath = "{work / "hub.db"}"\n\n'
        f'[web]\nport = {web_port}\nsecret_key_file = "{work / "web-secret"}"\n\n'
        "[homeassistant]\nenabled = false\n\n"
        f'[[facilities]]\nid = "{FACILITY}"\nname = "Benchmark"\ncapacity = 100000\n',
        encoding="utf-8",
    )
    return path


def add_viewer(config: Path) -> None:
    """The staff account the dashboard logs in with, as ``pintu hub add-user`` adds it."""
    store = open_store(load_config(config))
    try:
        store.add_user("viewer", hash_password(PASSWORD), "viewer")
    finally:
        store.close()


def stored_events(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {timeout_s:g} s")
        pause.wait(0.1)


def tail(path: Path, chars: int = 2000) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-chars:]


def measure_hub(seconds: float, rate: float, nodes: int) -> tuple[Run, HubLoad]:
    """``pintu hub serve`` for ``seconds`` under ``rate`` events a second, and its baseline;
    started again on another port if another program took the free one first."""
    for attempt in range(3):
        try:
            return _measure_hub(seconds, rate, nodes)
        except RuntimeError as err:
            if "Address already in use" not in str(err) or attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def _measure_hub(seconds: float, rate: float, nodes: int) -> tuple[Run, HubLoad]:
    count = max(1, round(rate * seconds))
    hub_samples, base_samples = Samples("hub"), Samples("baseline")
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pintu-bench-")))
        broker = stack.enter_context(Mosquitto(work / "broker"))
        web_port = free_port()
        config = hub_config(work, broker, web_port)
        add_viewer(config)
        ready = ReadySocket(work / "notify.sock")
        stack.callback(ready.close)
        env = {**os.environ, "NOTIFY_SOCKET": str(ready.path)}
        env.pop("WATCHDOG_USEC", None)
        log_path = work / "hub.log"
        with log_path.open("wb") as log:
            hub = subprocess.Popen(
                [sys.executable, "-m", "pintu", "hub", "serve", "--config", str(config)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        stack.callback(stop_process, hub)
        # The doors' process starts beside the hub and waits, connected, for the go.
        context = multiprocessing.get_context("spawn")
        ready_to_send, go, failed = context.Event(), context.Event(), context.Value("i", -1)
        doors = context.Process(
            target=publish_steadily,
            args=(
                broker.host,
                broker.port,
                make_payloads(count, nodes),
                rate,
                ready_to_send,
                go,
                failed,
            ),
        )
        doors.start()
        stack.callback(doors.kill)
        baseline = start_baseline(HUB_IMPORTS)
        stack.callback(stop_process, baseline)
        try:
            ready.wait(READY_TIMEOUT_S)
        except RuntimeError as err:
            raise RuntimeError(f"the hub: {err}; its log:\n{tail(log_path)}") from err
        dashboard = Dashboard(f"http://127.0.0.1:{web_port}", "viewer")
        stack.callback(dashboard.close)
        if not ready_to_send.wait(60):
            raise RuntimeError("the doors' publisher did not connect")
        go.set()

        elapsed = sample_together(
            seconds,
            [(hub, hub_samples), (baseline, base_samples)],
            died=lambda p: f"the hub, exit code {p.returncode}; its log:\n{tail(log_path)}",
        )
        doors.join(120)
        if doors.exitcode != 0 or failed.value != 0:
            raise RuntimeError(f"the doors' publisher failed ({failed.value} not acknowledged)")
        db = work / "hub.db"
        wait_for(lambda: stored_events(db) >= count, 60, f"the hub did not store {count} events")

        hub.send_signal(signal.SIGTERM)
        code = hub.wait(30)
        if code != 0:
            raise RuntimeError(f"the hub stopped with {code}; its log:\n{tail(log_path)}")
        dashboard.close()
        end_baseline(baseline)
        stored = stored_events(db)
    load = HubLoad(count, stored, nodes, rate, dict(dashboard.messages))
    return Run(hub_samples, base_samples, elapsed), load


# --- the registry -------------------------------------------------------------------------
@dataclass
class _Hubs:
    """The hubs' side of the registry's load: whole-feed reads and visit pushes, each in a
    thread of its own until ``stop`` is set."""

    url: str
    token: str
    facility_id: str
    page_size: int
    visits_per_s: int
    stop: threading.Event = field(default_factory=threading.Event)
    full_reads: int = 0
    changes_read: int = 0
    visits: int = 0
    errors: list[str] = field(default_factory=list)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        threads = [
            threading.Thread(target=self._guard(work), daemon=True)
            for work in (self._sync, self._push)
        ]
        for thread in threads:
            thread.start()
        try:
            yield
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(60)
        if self.errors:
            raise RuntimeError(f"the hubs' load failed: {self.errors[0]}")

    def _guard(self, work: Callable[[httpx.Client], None]) -> Callable[[], None]:
        def run() -> None:
            headers = {"Authorization": f"Bearer {self.token}"}
            try:
                with httpx.Client(base_url=self.url, timeout=60, headers=headers) as http:
                    work(http)
            except (httpx.HTTPError, KeyError, ValueError) as err:
                self.errors.append(f"{type(err).__name__}: {err}")

        return run

    def _sync(self, http: httpx.Client) -> None:
        while not self.stop.is_set():
            since = 0
            while not self.stop.is_set():
                r = http.get("/api/v1/statuses", params={"since": since, "limit": self.page_size})
                r.raise_for_status()
                page = r.json()
                self.changes_read += len(page["changes"])
                since = page["next"]
                if not page["more"]:
                    self.full_reads += 1
                    break

    def _push(self, http: httpx.Client) -> None:
        rng = random.Random(2021)
        now = int(time.time())
        started = time.monotonic()
        second = 0
        while not self.stop.wait(max(0.0, started + second - time.monotonic())):
            batch = []
            for i in range(self.visits, self.visits + self.visits_per_s):
                check_in = now - rng.randint(3 * 3600, 86_400)
                batch.append(
                    {
                        "visit_id": f"hub-{i}",
                        "facility_id": self.facility_id,
                        "subject": rng.randbytes(12).hex(),
                        "door_id": "main-in",
                        "check_in": format_time(check_in),
                        "check_out": format_time(check_in + rng.randint(300, 3 * 3600)),
                    }
                )
            http.post("/api/v1/visits", json=batch).raise_for_status()
            self.visits += len(batch)
            second += 1


def stored_visits(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT COUNT(*) FROM visits").fetchone()[0])


def measure_registry(
    seconds: float, statuses: int, page_size: int, visits_per_s: int
) -> tuple[Run, RegistryLoad]:
    """``pintu registry serve`` for ``seconds`` under the hubs' reads and pushes."""
    reg_samples, base_samples = Samples("registry"), Samples("baseline")
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pintu-bench-")))
        port = free_port()
        config, config_path = make_config(work, port)
        registry = Registry.open(config)
        try:
            token, facility_id = hub_token(registry)
            seed_statuses(registry, statuses, random.Random(2021))
        finally:
            registry.close()
        server = Server(config_path, port)
        stack.callback(server.stop)
        baseline = start_baseline(REGISTRY_IMPORTS)
        stack.callback(stop_process, baseline)
        hubs = _Hubs(server.url, token, facility_id, page_size, visits_per_s)
        with hubs.running():
            elapsed = sample_together(
                seconds,
                [(server.process, reg_samples), (baseline, base_samples)],
                died=lambda p: f"the registry, exit code {p.returncode}",
            )
        server.stop()
        if server.process.returncode != 0:
            raise RuntimeError(f"the registry stopped with {server.process.returncode}")
        end_baseline(baseline)
        store = config.store
        assert isinstance(store, SqliteStoreConfig)  # the benchmark writes its own config
        stored = stored_visits(store.path)
    load = RegistryLoad(
        statuses, page_size, hubs.full_reads, hubs.changes_read, visits_per_s, hubs.visits, stored
    )
    return Run(reg_samples, base_samples, elapsed), load


def measure(
    seconds: float, rate: float, nodes: int, statuses: int, page_size: int, visits_per_s: int
) -> Result:
    if seconds < 2:
        raise ValueError("sample for at least two seconds")
    hub, hub_load = measure_hub(seconds, rate, nodes)
    registry, registry_load = measure_registry(seconds, statuses, page_size, visits_per_s)
    return Result(hub, hub_load, registry, registry_load)


# --- the report ---------------------------------------------------------------------------
def flat(samples: Samples) -> bool:
    return abs(samples.half_growth_mb) < FLAT_MB


def _rows(run: Run, name: str, imports: str) -> list[str]:
    rows = []
    for samples, label in ((run.service, name), (run.baseline, f"baseline: `import {imports}`")):
        rows.append(
            f"| {label} | {samples.first_mb:.1f} | {samples.max_mb:.1f} "
            f"| {samples.final_mb:.1f} | {samples.uss / MB:.1f} "
            f"| {samples.first_half_growth_mb:+.1f} | {samples.half_growth_mb:+.1f} |"
        )
    return rows


def shape(samples: Samples) -> str:
    """Whether memory stayed flat, in words, from the growth over each half of the run."""
    first, second = samples.first_half_growth_mb, samples.half_growth_mb
    if flat(samples):
        return f"stayed flat ({second:+.1f} MB over the second half, against ±{FLAT_MB:g} MB)"
    if second < first / 2:
        return (
            f"was still growing at the end, but more slowly: {first:+.1f} MB over the first "
            f"half, {second:+.1f} MB over the second (flat is within ±{FLAT_MB:g} MB)"
        )
    return (
        f"grew steadily: {first:+.1f} MB over the first half and {second:+.1f} MB over the "
        "second, as a leak would"
    )


def _verdict(run: Run, name: str) -> str:
    s, b = run.service, run.baseline
    return (
        f"The {name}'s own share over its baseline: {s.max_mb - b.max_mb:+.1f} MB at its "
        f"largest (USS {(s.uss - b.uss) / MB:+.1f} MB); it was at its largest from "
        f"{s.max_at_s} s on and {shape(s)}."
    )


def versions() -> str:
    names = ["paho-mqtt", "starlette", "uvicorn", "sqlite-utils", "pydantic", "httpx", "psutil"]
    return (
        f"Run on {platform.platform()} ({platform.machine()}, {os.cpu_count()} CPUs), "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}; "
        f"{library_versions(names)}; {broker_version()}."
    )


def report(result: Result, command: str) -> str:
    h, r = result.hub_load, result.registry_load
    stream = ", ".join(f"{n:,} {kind}" for kind, n in sorted(h.stream.items())) or "nothing"
    header = (
        "| process | RSS at start | RSS max | RSS final | USS final | first half "
        "| second half |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    lines = [
        versions(),
        "",
        f"Command: `{command}`",
        "",
        "Each service runs as a process of its own and is sampled once a second, beside its "
        "baseline in the same run: a bare Python that has imported the libraries the service "
        "cannot do without and then waits. MB are 10^6 bytes; USS is the memory the process "
        "alone holds (not shared with others), at the end; *first half* and *second half* "
        "are what the process gained from the start of the load to the middle of the run "
        "and from there to its end: the second near zero when memory stays flat, as large "
        "as the first when it leaks.",
        "",
        "### Hub under a steady ingest",
        "",
        f"`pintu hub serve` (SQLite store) for {result.hub.seconds:.0f} s while a publisher "
        f"in another process sent {h.events:,} events of {h.nodes} doors at {h.rate:g} a "
        "second (QoS 1; each subject goes in then out, so visits are made too) through a "
        f"private Mosquitto, and a viewer's dashboard kept its live stream open. The store "
        f"held {h.stored:,} events at the end; the stream delivered {stream}.",
        "",
        header,
        *_rows(result.hub, "hub", HUB_IMPORTS),
        "",
        _verdict(result.hub, "hub"),
        "",
        "### Registry under sync and visit pushes",
        "",
        f"`pintu registry serve` with a feed of {r.statuses:,} status changes, for "
        f"{result.registry.seconds:.0f} s while one hub read the whole feed over and over "
        f"({r.page_size:,} a page, each read a fresh hub's first sync: {r.full_reads} reads, "
        f"{r.changes_read:,} changes) and another pushed {r.visits_per_s} visits a second "
        f"in one batch ({r.visits:,} in all, {r.stored_visits:,} stored at the end).",
        "",
        header,
        *_rows(result.registry, "registry", REGISTRY_IMPORTS),
        "",
        _verdict(result.registry, "registry"),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.service_memory",
        description="Sample the resident memory of the hub under a steady ingest and of the "
        "registry under sync and visit pushes, each beside a bare Python that has imported "
        "the same libraries.",
    )
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="how long each service is sampled (60)"
    )
    parser.add_argument("--rate", type=float, default=100.0, help="events a second (100)")
    parser.add_argument("--nodes", type=int, default=20, help="doors the events come from (20)")
    parser.add_argument(
        "--statuses", type=int, default=200_000, help="status changes in the feed (200000)"
    )
    parser.add_argument("--page-size", type=int, default=10_000, help="feed page size (10000)")
    parser.add_argument("--visits", type=int, default=500, help="visits pushed a second (500)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("docs/benchmarks.md"),
        help="the file --write updates (default docs/benchmarks.md)",
    )
    parser.add_argument(
        "--write", action="store_true", help="replace the section of --out with the results"
    )
    args = parser.parse_args(argv)
    if args.seconds < 2 or args.rate <= 0 or args.nodes < 1 or args.statuses < 1:
        parser.error("--seconds at least 2; --rate, --nodes and --statuses positive")
    if args.page_size < 1 or args.visits < 1:
        parser.error("--page-size and --visits must be positive")

    shown = ["python -m bench.service_memory"]
    defaults = {
        "seconds": 60.0,
        "rate": 100.0,
        "nodes": 20,
        "statuses": 200_000,
        "page_size": 10_000,
        "visits": 500,
    }
    for name, default in defaults.items():
        value = getattr(args, name)
        if value != default:
            shown.append(f"--{name.replace('_', '-')} {value:g}")
    print(f"sampling the hub, then the registry, {args.seconds:g} s each ...", flush=True)
    result = measure(
        args.seconds, args.rate, args.nodes, args.statuses, args.page_size, args.visits
    )
    section = report(result, " ".join(shown))
    print()
    print(section)
    if args.write:
        write_section(args.out, section, START, END, HEADING)
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
