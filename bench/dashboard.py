"""Dashboard latency: from a door node publishing an event to the dashboard showing it.

    python -m bench.dashboard                 # print the table
    python -m bench.dashboard --write         # ... and put it into docs/benchmarks.md
    python -m bench.dashboard --events 200    # a longer run
    python -m bench.dashboard --check         # exit 1 if the p95 is over 300 ms

A private Mosquitto, the hub and its web server (one asyncio loop, as ``pintu hub serve``
runs them), and Debian's Chromium showing the dashboard, logged in as a viewer. A plain
paho client plays a door node and publishes one entry at a time (QoS 1); the next goes
out once the page has shown the last.

* **publish -> dashboard**: the node's wall-clock time just before ``publish()``, to the
  moment a ``MutationObserver`` on the occupancy number sees it change
  (``performance.timeOrigin + performance.now()``). Both clocks are the same machine's;
  the offset between the browser's clock and Python's is measured before the run (the
  reading with the shortest round trip of many) and taken off.
* **publish -> subscribe** (the baseline, the same events in the same run): a second
  paho client subscribed to the node's events topic timestamps each message as it
  arrives. What the hub adds on top is its batch, the SQLite commit, the live bus, the
  event stream and the browser's handling.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import Page, sync_playwright

from hub.auth import hash_password
from hub.config import HubConfig
from hub.web.server import ServiceThread
from protocol import topics
from protocol.events import Event, new_event_id
from provisioning.mosquitto import Mosquitto
from runtime.listen import bind

START = "<!-- bench:dashboard:start -->"
END = "<!-- bench:dashboard:end -->"
TARGET_MS = 300.0
FACILITY = "bench"
NODE = "gate-1"
DOOR = "gate"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "bench-viewer-password"  # noqa: S105 - a throw-away account in a temporary store
WARMUP = 5

_OBSERVE = """() => {
    window.__changes = [];
    const target = document.getElementById('occ-value');
    new MutationObserver(() => {
        window.__changes.push([performance.timeOrigin + performance.now(), target.textContent]);
    }).observe(target, {childList: true, characterData: true, subtree: true});
}"""


@dataclass
class Stats:
    samples_ms: list[float]

    def pct(self, q: float) -> float:
        ordered = sorted(self.samples_ms)
        index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
        return ordered[index]

    @property
    def p50(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p95(self) -> float:
        return self.pct(95)

    @property
    def worst(self) -> float:
        return max(self.samples_ms)


class Subscriber:
    """Timestamps each message on the node's events topic as it arrives."""

    def __init__(self, broker: Mosquitto) -> None:
        self.arrived: dict[str, float] = {}
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-listener", protocol=mqtt.MQTTv5
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(topics.node_events(FACILITY, NODE), qos=1)
        if not self._subscribed.wait(10):
            raise RuntimeError("the listener got no SUBACK")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        now = time.time()
        event_id = Event.parse(bytes(message.payload)).event_id
        self.arrived[event_id] = now

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def node_client(broker: Mosquitto) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=NODE, protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def clock_offset_ms(page: Page, tries: int = 30) -> tuple[float, float]:
    """(browser clock - Python clock, half the round trip of that reading), in ms."""
    best: tuple[float, float] | None = None
    for _ in range(tries):
        before = time.time() * 1000
        browser = float(page.evaluate("() => performance.timeOrigin + performance.now()"))
        after = time.time() * 1000
        half = (after - before) / 2
        if best is None or half < best[1]:
            best = (browser - (before + half), half)
    assert best is not None
    return best


def config_for(broker: Mosquitto, work: Path) -> HubConfig:
    return HubConfig.model_validate(
        {
            "mqtt": {"host": broker.host, "port": broker.port, "client_id": "bench-hub"},
            "store": {"backend": "sqlite", "path": str(work / "hub.db")},
            "web": {"secret_key_file": str(work / "web-secret")},
            "homeassistant": {"enabled": False},
            "facilities": [
                {
                    "id": FACILITY,
                    "name": "Benchmark",
                    "capacity": 100_000,
                    "doors": [{"id": DOOR, "name": "Gate", "direction": "entry", "nodes": [NODE]}],
                }
            ],
        }
    )


def measure(events: int) -> tuple[Stats, Stats, float, float]:
    """(publish -> dashboard, publish -> subscribe, clock offset, its uncertainty) in ms."""
    with tempfile.TemporaryDirectory(prefix="pintu-bench-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "broker")
        broker.start()
        service: ServiceThread | None = None
        subscriber: Subscriber | None = None
        node: mqtt.Client | None = None
        try:
            service = ServiceThread(config_for(broker, work), sock=bind("127.0.0.1", 0)).start()
            service.hub.store.add_user("viewer", hash_password(PASSWORD), "viewer")
            subscriber = Subscriber(broker)
            node = node_client(broker)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    page = browser.new_page(viewport={"width": 1280, "height": 900})
                    page.goto(f"{service.url}/login")
                    page.fill("#username", "viewer")
                    page.fill("#password", PASSWORD)
                    page.click("button[type=submit]")
                    page.wait_for_url(f"**/facilities/{FACILITY}")
                    page.wait_for_function(
                        "() => document.getElementById('live-state').dataset.state === 'live'"
                    )
                    offset, uncertainty = clock_offset_ms(page)
                    page.evaluate(_OBSERVE)
                    shown, raw = run_events(page, node, subscriber, events, offset)
                finally:
                    browser.close()
        finally:
            if node is not None:
                node.disconnect()
                node.loop_stop()
            if subscriber is not None:
                subscriber.close()
            if service is not None:
                service.stop()
            broker.stop()
    return Stats(shown), Stats(raw), offset, uncertainty


def run_events(
    page: Page, node: mqtt.Client, subscriber: Subscriber, events: int, offset_ms: float
) -> tuple[list[float], list[float]]:
    shown: list[float] = []
    raw: list[float] = []
    for seq in range(1, WARMUP + events + 1):
        event = Event(
            event_id=new_event_id(),
            node_id=NODE,
            facility_id=FACILITY,
            door_id=DOOR,
            seq=seq,
            ts=datetime.now(UTC),
            kind="entry",
            direction="entry",
            signal="green",
            admit=True,
            reason="ok",
        )
        payload = event.dumps()
        sent_ms = time.time() * 1000
        node.publish(topics.node_events(FACILITY, NODE), payload, qos=1)
        # A condition wait in the page: the observer has seen this event's number.
        page.wait_for_function(
            "(n) => window.__changes.some(c => c[1] === String(n))", arg=seq, timeout=10_000
        )
        changes = page.evaluate("() => window.__changes")
        seen_ms = next(float(t) for t, text in changes if text == str(seq)) - offset_ms
        deadline = time.monotonic() + 10
        while event.event_id not in subscriber.arrived:
            if time.monotonic() > deadline:
                raise RuntimeError("the listener never got an event")
            time.sleep(0.001)  # the message is due any moment: the page has shown it
        if seq > WARMUP:
            shown.append(seen_ms - sent_ms)
            raw.append(subscriber.arrived[event.event_id] * 1000 - sent_ms)
    return shown, raw


def versions() -> str:
    parts = []
    for name in ("paho-mqtt", "starlette", "uvicorn", "playwright"):
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)


def report(shown: Stats, raw: Stats, offset: float, uncertainty: float, command: str) -> str:
    cpu = platform.processor() or platform.machine()
    verdict = "within" if shown.p95 <= TARGET_MS else "OVER"
    return "\n".join(
        [
            f"Run on {platform.platform()} ({cpu}, {os.cpu_count()} CPUs), Python "
            f"{platform.python_version()}; {versions()}; Chromium headless.",
            "",
            f"Command: `{command}`",
            "",
            f"{len(shown.samples_ms)} entries from one door node, one at a time, after "
            f"{WARMUP} not counted. The browser's clock was {offset:+.2f} ms off Python's "
            f"(read to ±{uncertainty:.2f} ms) and that is taken off.",
            "",
            "| path | p50 | p95 | worst |",
            "| --- | ---: | ---: | ---: |",
            f"| MQTT publish -> subscriber (the broker alone) | {raw.p50:.1f} ms | "
            f"{raw.p95:.1f} ms | {raw.worst:.1f} ms |",
            f"| MQTT publish -> dashboard shows the new occupancy | {shown.p50:.1f} ms | "
            f"{shown.p95:.1f} ms | {shown.worst:.1f} ms |",
            f"| what the hub, the event stream and the page add | "
            f"{shown.p50 - raw.p50:.1f} ms | {shown.p95 - raw.p95:.1f} ms | |",
            "",
            f"Dashboard p95 {shown.p95:.1f} ms: {verdict} the {TARGET_MS:.0f} ms target.",
        ]
    )


def write_section(path: Path, section: str) -> None:
    """Replace the text between the markers in ``path``, or append them with a heading."""
    block = f"{START}\n{section}\n{END}"
    document = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
    if pattern.search(document):
        document = pattern.sub(lambda _: block, document, count=1)
    else:
        intro = (
            "## Dashboard latency\n\n"
            "Measured with `python -m bench.dashboard --write`: from a door node "
            "publishing an event to the dashboard in Chromium showing the new occupancy, "
            "beside the broker's own publish -> subscribe time in the same run.\n\n"
        )
        document = document.rstrip("\n") + "\n\n" + intro + block + "\n"
    path.write_text(document, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dashboard",
        description="Time a door event from its MQTT publish to the dashboard showing it.",
    )
    parser.add_argument("--events", type=int, default=50, help="events to time (default 50)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("docs/benchmarks.md"),
        help="the file --write updates (default docs/benchmarks.md)",
    )
    parser.add_argument(
        "--write", action="store_true", help="replace the dashboard section of --out"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit with status 1 if the dashboard p95 is over {TARGET_MS:.0f} ms",
    )
    args = parser.parse_args(argv)
    if args.events < 1:
        parser.error("--events must be at least 1")
    command = "python -m bench.dashboard" + (
        f" --events {args.events}" if args.events != 50 else ""
    )
    shown, raw, offset, uncertainty = measure(args.events)
    section = report(shown, raw, offset, uncertainty, command)
    print(section)
    if args.write:
        write_section(args.out, section)
        print(f"\nwrote {args.out}")
    if args.check and shown.p95 > TARGET_MS:
        print(f"dashboard p95 {shown.p95:.1f} ms > {TARGET_MS:.0f} ms", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
