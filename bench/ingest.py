"""Ingest benchmark: how many events a second the hub stores and acks, against what the
same broker carries between two plain MQTT clients.

    python -m bench.ingest                  # print the table
    python -m bench.ingest --write          # ... and put it into docs/benchmarks.md
    python -m bench.ingest --profile        # ... with a profile of the hub's writer thread
    python -m bench.ingest --smoke          # a short run that fails only on a gross regression
    python -m bench.ingest --tls --write    # the same over a plain and a TLS listener

One private Mosquitto serves the three measurements, in the same run:

- the baseline: one plain paho publisher (in a process of its own, as the door nodes are
  other machines) sends N serialised events at QoS 1 to the broker, one plain paho
  subscriber receives them; the time from the first publish to the last receipt;
- the hub: the same publisher, the same payloads, the hub (SQLite store in a temporary
  folder) validating, storing and acking them; the time from the first publish until a
  listener on the ack topics has seen every event acked (an ack is sent after its commit);
- the hub with a viewer: the same, with the whole service (dashboard and API) running and
  one logged-in viewer reading the dashboard's live event stream all along, as a
  facility's dashboard is open all day.

The broker runs on Mosquitto's defaults, as the provisioned one does (in-flight limit 20 a
client, which the hub widens for itself with MQTT 5's Receive Maximum).

With ``--tls`` the three measurements run on two brokers in the same run, each one taken in
turn on the plain one and on one that speaks TLS only, with a certificate from a facility
CA that the provisioning tools' own code makes (``provisioning.tlsca``, as ``pintu
provision broker init`` does): the publisher, the subscriber, the ack listener and the hub
verify it against the CA, as the doors and the hub of a facility do. Besides the rates, the
CPU time per event of the broker, the publisher and the measuring process is read, since
TLS costs each of them. It writes a section of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import multiprocessing
import os
import platform
import pstats
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from bench import provenance
from bench.brokers import tls_broker, tls_session
from hub.auth import hash_password
from hub.config import HubConfig
from hub.ingest.mqtt import Ingest
from hub.service import Hub
from hub.web.server import ServiceThread
from protocol import topics
from protocol.events import Ack, Event, EventKind, new_event_id
from provisioning.mosquitto import Mosquitto, find_mosquitto

try:
    from runtime.collector import settle_collector as settle_collector
except ImportError:  # code from before the collector was settled (bench.compare --before)

    def settle_collector() -> None:
        pass


from runtime.listen import bind

START = "<!-- bench:ingest:start -->"
END = "<!-- bench:ingest:end -->"
TLS_START = "<!-- bench:ingest-tls:start -->"
TLS_END = "<!-- bench:ingest-tls:end -->"
TLS_TITLE = "Hub ingest over TLS"
FACILITY = "bench"
TARGET_RATIO = 0.9  # the hub with a viewer must store and ack this share of the broker alone
# A gross regression for the smoke run: the hub, with a viewer, spending more than this
# many times the CPU a bare subscriber spends on an event (1.0x to 1.5x measured here
# since the hub reads door events past paho's message objects; 2.0x to 2.2x before that,
# 3.5x to 4.2x with the passages sent one message an event). CPU time is swayed by a busy
# machine far less than a rate.
SMOKE_CPU_RATIO = 2.5
INFLIGHT = 1000  # QoS 1 messages the publisher keeps in flight
VIEWER = "bench-viewer"
VIEWER_PASSWORD = "bench viewer password"  # noqa: S105 - a throwaway account of the run


@dataclass(frozen=True)
class Result:
    events: int
    seconds: float
    # CPU time of this process (the subscriber, or the hub and its ack listener) meanwhile:
    # what a busy machine does not change, unlike ``seconds``.
    cpu_s: float = 0.0
    # CPU time of the broker's process and of the publisher's meanwhile.
    broker_cpu_s: float = 0.0
    publisher_cpu_s: float = 0.0

    @property
    def cpu_per_event_us(self) -> float:
        return 1e6 * self.cpu_s / self.events

    @property
    def broker_cpu_per_event_us(self) -> float:
        return 1e6 * self.broker_cpu_s / self.events

    @property
    def publisher_cpu_per_event_us(self) -> float:
        return 1e6 * self.publisher_cpu_s / self.events

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def facility_ids(facilities: int) -> list[str]:
    """The ids of the benchmark's facilities."""
    return [FACILITY] if facilities == 1 else [f"{FACILITY}-{i}" for i in range(facilities)]


def make_payloads(count: int, nodes: int, facilities: int = 1) -> list[tuple[str, bytes]]:
    """(topic, payload) of ``count`` events from ``nodes`` nodes, each going in then out;
    the nodes are dealt out over ``facilities`` facilities."""
    ids = facility_ids(facilities)
    payloads = []
    for index in range(count):
        node = index % nodes
        seq = index // nodes + 1
        event = Event(
            event_id=new_event_id(),
            node_id=f"node-{node}",
            facility_id=ids[node % len(ids)],
            door_id=f"door-{node}",
            seq=seq,
            ts=datetime.now(UTC),
            kind=EventKind.ENTRY if seq % 2 else EventKind.EXIT,
            signal="green",
            admit=True,
            reason="ok",
            subject=f"{index:024x}",
        )
        payloads.append((topics.node_events(event.facility_id, event.node_id), event.dumps()))
    return payloads


class Listener:
    """A plain subscriber that counts what arrives, and says when it has seen enough."""

    def __init__(
        self, broker: Mosquitto, topic: str, count: Callable[[bytes], int], expected: int
    ) -> None:
        self.expected = expected
        self.received = 0
        self.done = threading.Event()
        self.last_at = 0.0
        self._count = count
        subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"bench-listener-{id(self)}",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: subscribed.set()
        if broker.ca_file is not None:
            self.client.tls_set(ca_certs=str(broker.ca_file))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        if not subscribed.wait(10):
            raise RuntimeError(f"no subscription to {topic}")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.received += self._count(bytes(message.payload))
        if self.received >= self.expected and not self.done.is_set():
            self.last_at = time.monotonic()
            self.done.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _publish(
    host: str,
    port: int,
    payloads: list[tuple[str, bytes]],
    started: Any,
    done: Any,
    ca_file: str | None = None,
    cpu: Any = None,
) -> None:
    """The publisher's process: send every payload at QoS 1 as fast as the broker takes them.

    The client runs without paho's network thread: each publish is written to the socket
    at once and the PUBACKs are read in between. With the thread, paho wakes it for every
    message and the publisher, not the broker, sets the pace (about half as fast here).
    """
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-publisher-{time.time_ns()}",
        protocol=mqtt.MQTTv5,
    )
    client.max_inflight_messages_set(INFLIGHT)
    if ca_file is not None:
        client.tls_set(ca_certs=ca_file)
    client.connect(host, port)
    cpu_at = time.process_time()
    started.value = time.monotonic()
    last = None
    for index, (topic, payload) in enumerate(payloads):
        last = client.publish(topic, payload, qos=1)
        if index % 50 == 0:
            client.loop(timeout=0)
    deadline = time.monotonic() + 120
    while last is not None and not last.is_published() and time.monotonic() < deadline:
        client.loop(timeout=0.01)
    done.value = time.monotonic()
    if cpu is not None:
        cpu.value = time.process_time() - cpu_at
    client.disconnect()


@dataclass(frozen=True)
class Published:
    started: float  # time.monotonic() of the first publish
    cpu_s: float  # the publisher's CPU time from its first publish to its last PUBACK


def publish_timed(broker: Mosquitto, payloads: list[tuple[str, bytes]]) -> Published:
    """Publish every payload from a process of its own (the nodes are other machines: the
    publisher must not share the measured process's interpreter)."""
    context = multiprocessing.get_context("spawn")
    started = context.Value("d", 0.0)
    done = context.Value("d", 0.0)
    cpu = context.Value("d", 0.0)
    ca_file = str(broker.ca_file) if broker.ca_file is not None else None
    process = context.Process(
        target=_publish,
        args=(broker.host, broker.port, payloads, started, done, ca_file, cpu),
    )
    process.start()
    process.join(300)
    if process.exitcode != 0 or not done.value:
        raise RuntimeError(f"the publisher failed (exit code {process.exitcode})")
    return Published(float(started.value), float(cpu.value))


def publish_all(broker: Mosquitto, payloads: list[tuple[str, bytes]]) -> float:
    """Publish every payload from a process of its own; when it began."""
    return publish_timed(broker, payloads).started


class BrokerCpu:
    """The broker process's CPU time (user and system), read before and after a measurement."""

    def __init__(self, broker: Mosquitto) -> None:
        self._process = psutil.Process(broker.process.pid) if broker.process else None
        self._at = self._now()

    def _now(self) -> float:
        if self._process is None:
            return 0.0
        times = self._process.cpu_times()
        return float(times.user + times.system)

    def used(self) -> float:
        return self._now() - self._at


def measure_raw(broker: Mosquitto, payloads: list[tuple[str, bytes]]) -> Result:
    listener = Listener(broker, topics.ALL_NODE_EVENTS, lambda _: 1, len(payloads))
    try:
        broker_cpu = BrokerCpu(broker)
        cpu = time.process_time()
        published = publish_timed(broker, payloads)
        if not listener.done.wait(120):
            raise RuntimeError(f"the subscriber got {listener.received} of {len(payloads)}")
        return Result(
            len(payloads),
            listener.last_at - published.started,
            time.process_time() - cpu,
            broker_cpu.used(),
            published.cpu_s,
        )
    finally:
        listener.close()


class HubThread:
    """The hub on an event loop of its own, as ``serve`` would run it."""

    def __init__(self, config: HubConfig) -> None:
        self.hub = Hub(config)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def __enter__(self) -> HubThread:
        self.thread.start()
        self.call(self.hub.start())
        if not self.call(self.hub.wait_ready(10)):
            raise RuntimeError("the hub did not connect")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.call(self.hub.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def hub_config(broker: Mosquitto, workdir: Path) -> HubConfig:
    return HubConfig.model_validate(
        {
            "mqtt": {
                "host": broker.host,
                "port": broker.port,
                "client_id": f"bench-hub-{workdir.name}",
                # The session ends with the round: a stopped hub's session would otherwise
                # stay in the shared group and be dealt its share of the next round's events.
                "session_expiry_s": 0,
                # On a TLS broker the hub verifies it against the facility CA.
                "tls_ca_file": str(broker.ca_file) if broker.ca_file is not None else None,
            },
            "store": {"backend": "sqlite", "path": str(workdir / "hub.db")},
            "web": {"secret_key_file": str(workdir / "web-secret")},
            "homeassistant": {"enabled": False},
            "facilities": [{"id": FACILITY, "name": "Benchmark"}],
        }
    )


class Viewer:
    """A logged-in viewer reading the dashboard's live stream in a thread of its own."""

    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=30)
        token = self.client.get("/api/v1/session").json()["csrf_token"]
        response = self.client.post(
            "/api/v1/session",
            json={"username": VIEWER, "password": VIEWER_PASSWORD},
            headers={"X-CSRF-Token": token},
        )
        response.raise_for_status()
        self.lines = 0
        self.events = 0
        self.opened = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        if not self.opened.wait(10):
            raise RuntimeError("the live stream did not open")

    def _read(self) -> None:
        try:
            with self.client.stream("GET", "/events/stream", params={"facility": FACILITY}) as r:
                for line in r.iter_lines():
                    self.lines += 1
                    if line.startswith("event: occupancy"):
                        self.opened.set()
                    elif line == "event: event":
                        self.events += 1
        except httpx.HTTPError:
            return  # the hub stopped and closed the stream

    def close(self) -> None:
        self.client.close()
        self._thread.join(10)


@contextmanager
def running_hub(config: HubConfig, viewer: bool) -> Iterator[tuple[Hub, Viewer | None]]:
    """The bare hub, or the whole service with one viewer's live stream open."""
    if not viewer:
        with HubThread(config) as running:
            settle_collector()  # as the service does once it has started
            yield running.hub, None
        return
    service = ServiceThread(config, sock=bind("127.0.0.1", 0)).start()
    settle_collector()
    watcher: Viewer | None = None
    try:
        service.hub.store.add_user(VIEWER, hash_password(VIEWER_PASSWORD), "viewer")
        if not service.call(service.hub.wait_ready(10)):
            raise RuntimeError("the hub did not connect")
        watcher = Viewer(service.url)
        yield service.hub, watcher
    finally:
        service.stop()
        if watcher is not None:
            watcher.close()


def measure_hub(
    broker: Mosquitto,
    payloads: list[tuple[str, bytes]],
    workdir: Path,
    profile: bool,
    viewer: bool = False,
) -> tuple[Result, dict[str, float], str]:
    workdir.mkdir(parents=True, exist_ok=True)
    config = hub_config(broker, workdir)
    profiler = cProfile.Profile() if profile else None
    acks = Listener(
        broker, f"{topics.ROOT}/+/node/+/ack", lambda p: len(Ack.parse(p).event_ids), len(payloads)
    )
    try:
        with _profiled_writer(profiler), running_hub(config, viewer) as (hub, watcher):
            broker_cpu = BrokerCpu(broker)
            cpu = time.process_time()
            published = publish_timed(broker, payloads)
            if not acks.done.wait(300):
                raise RuntimeError(f"the hub acked {acks.received} of {len(payloads)}")
            result = Result(
                len(payloads),
                acks.last_at - published.started,
                time.process_time() - cpu,
                broker_cpu.used(),
                published.cpu_s,
            )
            metrics = hub.metrics
            details = {
                "ack latency mean (ms)": 1000 * metrics.ack_latency.sum / metrics.ack_latency.count,
                "mean batch": metrics.batch_size.sum / metrics.batch_size.count,
                "batches": float(metrics.batch_size.count),
                "duplicates": metrics.duplicates.value(),
                "rejected": metrics.rejected.total(),
            }
            if watcher is not None:
                details["viewer events"] = float(watcher.events)
        stored = _count(workdir / "hub.db")
        if stored != len(payloads):
            raise RuntimeError(f"the store holds {stored} events, {len(payloads)} were sent")
    finally:
        acks.close()
    report = ""
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
        report = out.getvalue()
    return result, details, report


@contextmanager
def _profiled_writer(profiler: cProfile.Profile | None) -> Iterator[None]:
    """Run the ingest's writer thread under ``profiler``: the hub's own work, not paho's.

    cProfile watches only the thread that enables it, so the writer enables it itself.
    """
    if profiler is None:
        yield
        return
    original = Ingest._run_writer

    def run_writer(self: Ingest) -> None:
        profiler.enable()
        try:
            original(self)
        finally:
            profiler.disable()

    Ingest._run_writer = run_writer  # type: ignore[method-assign]
    try:
        yield
    finally:
        Ingest._run_writer = original  # type: ignore[method-assign]


def _count(path: Path) -> int:
    with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as conn:
        count = int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    conn.close()
    return count


def versions() -> str:
    names = ("paho-mqtt", "pydantic", "sqlite-utils")
    libs = ", ".join(f"{n} {metadata.version(n)}" for n in names)
    return (
        f"Run on {platform.platform()} ({platform.machine()}, "
        f"{len(_cpus())} CPUs), Python {platform.python_version()}, SQLite "
        f"{sqlite3.sqlite_version}; {libs}; {_mosquitto_version()}."
    )


def _cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]


def _mosquitto_version() -> str:
    out = subprocess.run([find_mosquitto(), "-h"], capture_output=True, text=True, check=False)
    match = re.search(r"mosquitto version (\S+)", out.stdout + out.stderr)
    return f"Mosquitto {match.group(1)}" if match else "Mosquitto"


def _median(results: list[Result]) -> Result:
    return sorted(results, key=lambda r: r.rate)[len(results) // 2]


def _spread(results: list[Result]) -> str:
    rates = sorted(r.rate for r in results)
    return f"{rates[0]:,.0f} to {rates[-1]:,.0f}" if len(rates) > 1 else "-"


def _cpu(results: list[Result]) -> float:
    return statistics.median(r.cpu_per_event_us for r in results)


def render(
    raws: list[Result],
    hubs: list[Result],
    viewed: list[Result],
    details: dict[str, float],
    command: str,
) -> str:
    raw, hub, seen = _median(raws), _median(hubs), _median(viewed)
    ratio = seen.rate / raw.rate
    verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
    lines = [
        versions(),
        "",
        f"Command: `{command}`",
        "",
        f"{len(raws)} rounds, each the broker alone, then the hub, then the hub with a "
        f"viewer, {raw.events} events each; the median round of each is shown.",
        "",
        "| measured | seconds | events/s | range over the rounds | share of the broker |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| broker alone: paho QoS 1 publisher to paho subscriber | {raw.seconds:.2f} | "
        f"{raw.rate:,.0f} | {_spread(raws)} | 100% |",
        f"| hub: validated, stored (SQLite, one transaction a batch) and acked | "
        f"{hub.seconds:.2f} | {hub.rate:,.0f} | {_spread(hubs)} | {hub.rate / raw.rate:.0%} |",
        f"| hub with one viewer's live stream open (dashboard and API running) | "
        f"{seen.seconds:.2f} | {seen.rate:,.0f} | {_spread(viewed)} | {ratio:.0%} |",
        "",
        f"Hub, over all rounds: mean batch {details['mean batch']:.0f} events, mean ack "
        f"latency {details['ack latency mean (ms)']:.1f} ms, {details['duplicates']:.0f} "
        f"duplicates, {details['rejected']:.0f} rejected; the viewer was sent "
        f"{details['viewer events']:.0f} of the {raw.events} events a round (the stream "
        "sends the latest of each quarter second). The publisher runs in a process of its "
        "own, as the door nodes are other machines.",
        "",
        "CPU time per event, median over the rounds (the measuring process: the bare "
        "subscriber, or the hub with its ack listener; a busy machine sways it far less "
        f"than a rate): subscriber {_cpu(raws):.0f} µs, hub {_cpu(hubs):.0f} µs "
        f"({_cpu(hubs) / _cpu(raws):.1f}x), hub with a viewer {_cpu(viewed):.0f} µs "
        f"({_cpu(viewed) / _cpu(raws):.1f}x).",
        "",
        f"Target: with a viewer, at least {TARGET_RATIO:.0%} of the broker alone; this run "
        f"{verdict} it ({seen.rate:,.0f} events/s, {ratio:.0%}).",
    ]
    return "\n".join(lines) + "\n"


def write_section(
    path: Path, section: str, start: str = START, end: str = END, title: str = "Hub ingest"
) -> None:
    """Put ``section`` between the ``start`` and ``end`` marks, or append it under ``title``."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    block = f"{start}\n{section}{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + f"\n\n## {title}\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


# -- the same over TLS -------------------------------------------------------------------


@dataclass
class Link:
    """The measurements over one broker: plain or TLS."""

    name: str
    broker: Mosquitto
    raws: list[Result] = field(default_factory=list)
    hubs: list[Result] = field(default_factory=list)
    viewed: list[Result] = field(default_factory=list)
    details: dict[str, list[float]] = field(default_factory=dict)

    def mean(self, key: str) -> float:
        values = self.details.get(key, [])
        return sum(values) / len(values) if values else float("nan")

    def total(self, key: str) -> float:
        return sum(self.details.get(key, []))


@dataclass(frozen=True)
class TlsRun:
    plain: Link
    tls: Link
    session: str  # what the TLS clients agreed with the broker
    events: int
    rounds: int


def measure_links(events: int, nodes: int, rounds: int, workdir: Path) -> TlsRun:
    """The three measurements on a plain broker and on a TLS one, each taken on both in
    turn (the order swapped every round, so neither gets the machine's quieter moments)."""
    with Mosquitto(workdir / "broker") as bare, tls_broker(workdir, FACILITY) as verified:
        plain, secure = Link("plain", bare), Link("tls", verified)
        session = tls_session(verified)
        for round_ in range(rounds):
            order = (plain, secure) if round_ % 2 == 0 else (secure, plain)
            for link in order:
                link.raws.append(measure_raw(link.broker, make_payloads(events, nodes)))
            for viewer in (False, True):
                for link in order:
                    hub, details, _ = measure_hub(
                        link.broker,
                        make_payloads(events, nodes),
                        workdir / f"round-{round_}-{link.name}-{'viewer' if viewer else 'bare'}",
                        profile=False,
                        viewer=viewer,
                    )
                    (link.viewed if viewer else link.hubs).append(hub)
                    for key, value in details.items():
                        link.details.setdefault(key, []).append(value)
    return TlsRun(plain, secure, session, events, rounds)


def run_tls(events: int, nodes: int, rounds: int) -> TlsRun:
    with tempfile.TemporaryDirectory(prefix="pintu-bench-") as tmp:
        return measure_links(events, nodes, rounds, Path(tmp))


def _times(after: float, before: float) -> str:
    """``after`` as a multiple of ``before``; a dash when ``before`` is nothing (the broker's
    CPU time is counted in ticks of 10 ms, which a very short run may not reach)."""
    return f"{after / before:.2f}x" if before > 0 else "-"


def _cpu_of(results: list[Result], what: str) -> float:
    return float(statistics.median(getattr(r, what) for r in results))


def render_tls(run: TlsRun, command: str, load: tuple[float, float], commit: str) -> str:
    plain, tls = run.plain, run.tls
    rows = []
    rates: dict[str, tuple[float, float]] = {}
    for label, key in (
        ("broker alone: paho QoS 1 publisher to paho subscriber", "raws"),
        ("hub: validated, stored (SQLite, one transaction a batch) and acked", "hubs"),
        ("hub with one viewer's live stream open (dashboard and API running)", "viewed"),
    ):
        p, t = _median(getattr(plain, key)), _median(getattr(tls, key))
        p_raw, t_raw = _median(plain.raws), _median(tls.raws)
        rates[key] = (p.rate, t.rate)
        rows.append(
            f"| {label} | {p.rate:,.0f} ({_spread(getattr(plain, key))}) "
            f"| {t.rate:,.0f} ({_spread(getattr(tls, key))}) | {t.rate / p.rate:.2f}x "
            f"| {p.rate / p_raw.rate:.0%} | {t.rate / t_raw.rate:.0%} |"
        )
    cpu_rows = []
    cpu: dict[tuple[str, str], tuple[float, float]] = {}
    for label, key in (("broker alone", "raws"), ("hub", "hubs"), ("hub with a viewer", "viewed")):
        measuring = "the subscriber" if key == "raws" else "the hub"
        for process, what in (
            (measuring, "cpu_per_event_us"),
            ("the broker", "broker_cpu_per_event_us"),
            ("the publisher", "publisher_cpu_per_event_us"),
        ):
            before = _cpu_of(getattr(plain, key), what)
            after = _cpu_of(getattr(tls, key), what)
            cpu[key, what] = (before, after)
            cpu_rows.append(
                f"| {label} | {process} | {before:.0f} | {after:.0f} | {after - before:+.0f} "
                f"| {_times(after, before)} |"
            )
    raw_p, raw_t = rates["raws"]
    hub_p, hub_t = rates["hubs"]
    seen_p, seen_t = rates["viewed"]
    hub_cpu = cpu["hubs", "cpu_per_event_us"]
    seen_cpu = cpu["viewed", "cpu_per_event_us"]
    broker_cpu = cpu["hubs", "broker_cpu_per_event_us"]
    publisher_cpu = cpu["hubs", "publisher_cpu_per_event_us"]

    def verdict(share: float) -> str:
        return f"{'meets' if share >= TARGET_RATIO else 'MISSES'} it ({share:.0%})"

    lines = [
        versions(),
        "",
        f"Command: `{command}`, {provenance.today()}, at commit {commit}. Load average "
        f"(1 min) {load[0]:.1f} when the run began and {load[1]:.1f} at its end, on "
        f"{len(_cpus())} CPUs shared with other work.",
        "",
        f"Two brokers of the same Mosquitto side by side, on Mosquitto's defaults (as above): "
        "one on a plain listener, one speaking TLS only with a certificate from a facility "
        "CA made by the provisioning tools' code. On the TLS broker the publisher, the "
        "subscriber, the ack listener and the hub all verify its certificate against the "
        f"CA ({run.session}). {run.rounds} round{'s' if run.rounds != 1 else ''} of "
        f"{run.events} events a measurement; in "
        "every round each of the three measurements is taken on both brokers, one after the "
        "other, the order swapped every round. The median round of each is shown, with the "
        "range over the rounds.",
        "",
        "| measured | plain: events/s | TLS: events/s | TLS / plain | plain: share of the "
        "broker alone | TLS: share of the broker alone |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        "CPU time per event in µs, median over the rounds, of the measuring process (the "
        "subscriber, or the hub with its ack listener), of the broker, and of the publisher "
        "standing in for the doors:",
        "",
        "| measured | process | plain | TLS | TLS - plain | TLS / plain |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
        *cpu_rows,
        "",
        f"Hub, over all rounds, plain and TLS: mean batch {plain.mean('mean batch'):.0f} and "
        f"{tls.mean('mean batch'):.0f} events, mean ack latency "
        f"{plain.mean('ack latency mean (ms)'):.1f} and {tls.mean('ack latency mean (ms)'):.1f}"
        f" ms, {plain.total('duplicates') + tls.total('duplicates'):.0f} duplicates, "
        f"{plain.total('rejected') + tls.total('rejected'):.0f} rejected.",
        "",
        f"The cost of TLS in this run: the broker alone carries {raw_t / raw_p:.0%} of its "
        f"plain rate over TLS, the hub stores and acks {hub_t / hub_p:.0%} of its plain rate "
        f"({seen_t / seen_p:.0%} with a viewer). An event costs the hub "
        f"{hub_cpu[1] - hub_cpu[0]:+.0f} µs of CPU over TLS ({_times(hub_cpu[1], hub_cpu[0])}; "
        f"{seen_cpu[1] - seen_cpu[0]:+.0f} µs with a viewer), the broker "
        f"{broker_cpu[1] - broker_cpu[0]:+.0f} µs ({_times(broker_cpu[1], broker_cpu[0])}) and "
        f"the publisher {publisher_cpu[1] - publisher_cpu[0]:+.0f} µs "
        f"({_times(publisher_cpu[1], publisher_cpu[0])}).",
        "",
        f"Target: with a viewer, at least {TARGET_RATIO:.0%} of the broker alone on the same "
        f"link; plain {verdict(seen_p / raw_p)}, TLS {verdict(seen_t / raw_t)}.",
    ]
    return "\n".join(lines) + "\n"


def smoke(events: int, nodes: int, attempts: int = 3) -> int:
    """Short rounds of the broker alone and the hub with a viewer; 0 as soon as the hub
    spends at most ``SMOKE_CPU_RATIO`` times the subscriber's CPU time on an event in one
    round, 1 if it spends more in every round."""
    with tempfile.TemporaryDirectory(prefix="pintu-bench-") as tmp:
        workdir = Path(tmp)
        with Mosquitto(workdir / "broker") as broker:
            for attempt in range(attempts):
                raw = measure_raw(broker, make_payloads(events, nodes))
                seen, _, _ = measure_hub(
                    broker,
                    make_payloads(events, nodes),
                    workdir / f"smoke-{attempt}",
                    profile=False,
                    viewer=True,
                )
                cpu = seen.cpu_per_event_us / raw.cpu_per_event_us
                sys.stdout.write(
                    f"CPU per event: subscriber {raw.cpu_per_event_us:.0f} µs, hub with a "
                    f"viewer {seen.cpu_per_event_us:.0f} µs ({cpu:.1f}x; a gross regression "
                    f"is over {SMOKE_CPU_RATIO:g}x); rates: broker alone {raw.rate:,.0f} "
                    f"events/s, hub {seen.rate:,.0f} events/s ({seen.rate / raw.rate:.0%})\n"
                )
                if cpu <= SMOKE_CPU_RATIO:
                    return 0
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000, help="events per measurement")
    parser.add_argument("--nodes", type=int, default=4, help="door nodes the events come from")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the measurements")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument("--profile", action="store_true", help="profile the hub's writer")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="short rounds; fail only if the hub spends over "
        f"{SMOKE_CPU_RATIO:g}x a bare subscriber's CPU on an event in each",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="each measurement on a plain broker and on a TLS one verified against a "
        "facility CA, in the same run; writes a section of its own",
    )
    args = parser.parse_args(argv)
    # The collector set as the hub service sets it, for the baseline too: every
    # measurement of the run in the same process then runs under the same settings. Put
    # back after, for a caller that goes on (the test suite runs the smoke).
    threshold = gc.get_threshold()
    settle_collector()
    try:
        return _run(args)
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def _run(args: argparse.Namespace) -> int:
    if args.smoke:
        return smoke(min(args.events, 5000), args.nodes)
    if args.tls:
        return main_tls(args)
    command = "python -m bench.ingest" + (
        f" --events {args.events}" if args.events != 20_000 else ""
    )
    raws: list[Result] = []
    hubs: list[Result] = []
    viewed: list[Result] = []
    totals: dict[str, list[float]] = {}
    report = ""
    with tempfile.TemporaryDirectory(prefix="pintu-bench-") as tmp:
        workdir = Path(tmp)
        with Mosquitto(workdir / "broker") as broker:
            for round_ in range(args.rounds):
                # Alternating the measurements spreads a busy moment of the machine over
                # all of them, so the ratios hold better than any one figure.
                raws.append(measure_raw(broker, make_payloads(args.events, args.nodes)))
                for viewer, results in ((False, hubs), (True, viewed)):
                    hub, details, profile = measure_hub(
                        broker,
                        make_payloads(args.events, args.nodes),
                        workdir / f"round-{round_}-{'viewer' if viewer else 'bare'}",
                        args.profile and round_ == 0 and not viewer,
                        viewer=viewer,
                    )
                    results.append(hub)
                    report = report or profile
                    for key, value in details.items():
                        totals.setdefault(key, []).append(value)
    mean = {key: sum(values) / len(values) for key, values in totals.items()}
    raw, seen = _median(raws), _median(viewed)
    section = render(raws, hubs, viewed, mean, command)
    sys.stdout.write(section)
    if report:
        sys.stderr.write(report)
    if args.write:
        target = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
        write_section(target, section)
        sys.stdout.write(f"wrote {target.name}\n")
    return 0 if seen.rate / raw.rate >= TARGET_RATIO else 1


def main_tls(args: argparse.Namespace) -> int:
    command = "python -m bench.ingest --tls"
    for name, default in (("events", 20_000), ("nodes", 4), ("rounds", 3)):
        if getattr(args, name) != default:
            command += f" --{name} {getattr(args, name)}"
    commit = provenance.commit()  # the code that runs, before the documents change
    began = provenance.load()
    run = run_tls(args.events, args.nodes, args.rounds)
    section = render_tls(run, command, (began, provenance.load()), commit)
    sys.stdout.write(section)
    if args.write:
        target = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
        write_section(target, section, TLS_START, TLS_END, TLS_TITLE)
        sys.stdout.write(f"wrote {target.name}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
