"""Phone check-ins: a door's poster address opened to the result drawn, through the
registry and the hub's channel, beside a bare HTTP round trip to the registry.

    python -m bench.phone                       # print the tables
    python -m bench.phone --write               # ... and put them into docs/benchmarks.md
    python -m bench.phone --checkins 400 --pages 40   # a longer run
    python -m bench.phone --smoke               # a handful of each, for the tests

The world: ``pintu registry serve`` in a process of its own (SQLite store) with an active
facility and two poster doors, an entrance and an exit; a private Mosquitto; and ``pintu
hub serve`` in a process of its own too (SQLite store), linked to the registry over HTTP
with the facility's hub token, keeping its phone channel (``GET /api/v1/hub/checkins
?wait=25``) open, as a facility's hub on another machine does. The benchmark's own process
only plays the phones: neither service shares its interpreter.

(a) **Over HTTP.** Visitors' wallets, each activated once with a link an operator made
    (``POST /api/v1/wallet/links``, ``POST /api/v1/wallet/activate``), check in one at a
    time: ``POST /api/v1/wallet/checkins`` timed from sending it to its JSON answer
    parsed, which the registry gives once the hub has decided, counted and answered.
    Every answer must be ``state: "answered"``; anything else is reported as a failure.
    Each visitor goes in by the entrance poster and then out by the exit poster, so
    anti-passback refuses nobody, and the check-ins go round the wallets so that none
    comes near the wallet's 12 calls a minute. The baseline is ``GET /api/v1/health``
    on the same kept-open connection, alternated with the check-ins (one before a
    check-in, the next after one), so a busy moment of the shared machine falls on both.
(b) **In Chromium** (Debian's, headless, through Playwright), phones of 390x844 with an
    activated wallet open the poster address ``<registry>/d/<facility>/<door>``: timed
    from ``page.goto`` to ``#result`` shown with ``data-state="answered"`` (the check
    polled on every animation frame, so the figure ends at the frame that draws it). The
    baseline, alternated with it in the same tab: ``page.goto(<registry>/api/v1/health)``
    until the page has loaded.
(c) **The wallet's first load**: a fresh phone (empty cache) opens its activation link
    until the wallet shows its card and its service worker controls the page: the bytes
    of every response that came over the network, headers and body as received, the
    service worker's own fetches included (what the HTTP cache or the worker answered
    came over no network and is not counted again), against a budget of 150 kB.

Without Chromium, (b) and (c) are skipped, saying so, and (a) still runs.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import math
import os
import platform
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Request,
    Response,
    ViewportSize,
    sync_playwright,
)
from playwright.sync_api import Error as PlaywrightError

from bench.dashboard import CHROMIUM, CHROMIUM_ARGS
from bench.latency import broker_version, library_versions
from bench.provenance import commit
from bench.registry import ROOT, Server, free_port, percentile, write_section
from bench.rss import ReadySocket, stop_process
from provisioning.mosquitto import Mosquitto
from registry.auth import Principal
from registry.checkins import POLL_S
from registry.config import parse_config
from registry.models import DoorIn, FacilityRequestIn
from registry.service import WALLET_CALLS_PER_ADDRESS, WALLET_CALLS_PER_MINUTE, Registry

START = "<!-- bench:phone:start -->"
END = "<!-- bench:phone:end -->"
HEADING = "## Phone check-ins"
TARGET_MS = 1000.0
FIRST_LOAD_BUDGET = 150_000
OPERATOR = "bench"
PASSWORD = "benchmark operator password"  # noqa: S105 - a throw-away account in a temp dir
ENTRANCE, EXIT = "poster-in", "poster-out"
# Calls one wallet makes, well under its WALLET_CALLS_PER_MINUTE: a browser phone also
# refreshes its pass when the wallet opens.
HTTP_PER_WALLET = WALLET_CALLS_PER_MINUTE - 2
PAGES_PER_PHONE = WALLET_CALLS_PER_MINUTE - 4
# Every call of a wallet counts against its address too, and all the phones here share
# 127.0.0.1: the check-ins of a run (over HTTP and in the browser) stay well under that
# budget, with room for the activations and the wallets' refreshes.
MAX_CHECKINS = WALLET_CALLS_PER_ADDRESS * 5 // 6
PHONE_SCREEN: ViewportSize = {"width": 390, "height": 844}
WAIT_MS = 15_000
READY_TIMEOUT_S = 60.0

# What the poster page shows, checked on every animation frame: its result screen's state
# once drawn, or what went wrong.
_DRAWN = """() => {
    const result = document.getElementById('result');
    if (result && !result.hidden && result.getClientRects().length > 0 && result.dataset.state) {
        return result.dataset.state;
    }
    const nopass = document.getElementById('nopass');
    if (nopass && !nopass.hidden) return 'no pass on this phone';
    const busy = document.getElementById('door-busy');
    if (busy) {
        if (window.__busy === undefined) window.__busy = busy.textContent;
        if (busy.textContent !== window.__busy) return 'failed: ' + busy.textContent;
    }
    return false;
}"""


@dataclass
class Timed:
    """Milliseconds of one kind of request, in the order they were made."""

    label: str
    ms: list[float] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return statistics.median(self.ms)

    @property
    def p95(self) -> float:
        return percentile(self.ms, 95)

    @property
    def worst(self) -> float:
        return max(self.ms)


@dataclass
class Run:
    """One part of the benchmark: the timed requests and their baseline, side by side."""

    measured: Timed
    baseline: Timed
    wallets: int
    warmup: int
    answers: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FirstLoad:
    requests: int
    wire_bytes: int
    body_bytes: int
    largest: list[tuple[str, int]]


@dataclass
class Result:
    http: Run
    browser: Run | None = None
    first_load: FirstLoad | None = None
    chromium: str = ""
    skipped: str = ""  # why (b) and (c) did not run


# --- the world: registry, broker and hub ------------------------------------------------
def tail(path: Path, chars: int = 2000) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-chars:] if path.exists() else ""


def wait_for(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll ``check`` until it is true (and return it), or raise after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()  # never set: its wait is the polling interval
    while not (found := check()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {timeout_s:g} s: {what}")
        pause.wait(0.05)
    return found


def metric(text: str, name: str) -> float | None:
    """A sample's value from Prometheus text (the first of that name), or None."""
    match = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


class World:
    """The registry and the hub in processes of their own, a private Mosquitto, and an
    operator logged in to the registry who registers visitors and makes their links."""

    def __init__(self, work: Path, stack: contextlib.ExitStack) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        (work / "registry").mkdir()
        config_path = work / "registry" / "registry.toml"
        config_path.write_text(
            f'public_url = "{self.url}"\n[web]\nhost = "127.0.0.1"\nport = {port}\n',
            encoding="utf-8",
        )
        hub_token = self._facility(config_path)
        self.registry = Server(config_path, port)
        stack.callback(self.registry.stop)
        broker = stack.enter_context(Mosquitto(work / "broker"))
        self.hub_log = work / "hub.log"
        self._start_hub(work, broker, hub_token, stack)
        self.operator = stack.enter_context(httpx.Client(base_url=self.url, timeout=30))
        r = self.operator.post("/api/v1/login", json={"username": OPERATOR, "password": PASSWORD})
        r.raise_for_status()
        self.operator.headers["Authorization"] = f"Bearer {r.json()['token']}"
        self.public = stack.enter_context(httpx.Client(base_url=self.url, timeout=30))
        self._nik = itertools.count(1)

    def _facility(self, config_path: Path) -> str:
        """An active facility with an entrance and an exit poster; its hub's token."""
        config = parse_config(config_path.read_text(), str(config_path), config_path.parent)
        registry = Registry.open(config)
        try:
            registry.add_operator(OPERATOR, PASSWORD)
            created = registry.request_facility(
                FacilityRequestIn(
                    name="Benchmark Mall",
                    address="Jl. Benchmark 1",
                    type="mall",
                    capacity=10_000,
                    pic_name="Bench",
                    pic_email="bench@example.com",
                )
            )
            token = registry.verify_facility(created.id, OPERATOR).token
            hub_token = registry.activate_facility(created.id, token, PASSWORD).hub_token
            for door_id, direction in ((ENTRANCE, "entrance"), (EXIT, "exit")):
                door = DoorIn(door_id=door_id, name=door_id, direction=direction, kind="poster")
                registry.add_door(Principal("operator", OPERATOR), created.id, door)
            self.facility_id = created.id
        finally:
            registry.close()
        return hub_token

    def _start_hub(
        self, work: Path, broker: Mosquitto, hub_token: str, stack: contextlib.ExitStack
    ) -> None:
        """``pintu hub serve``, ready (READY=1), synced and with its channel open."""
        (work / "hub-token").write_text(hub_token + "\n", encoding="utf-8")
        web_port = free_port()
        config = work / "hub.toml"
        config.write_text(
            f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nclient_id = "bench-hub"\n\n'
            f'[store]\nbackend = "sqlite"\npath = "{work / "hub.db"}"\n\n'
            f'[web]\nport = {web_port}\nsecret_key_file = "{work / "web-secret"}"\n\n'
            "[homeassistant]\nenabled = false\n\n"
            f'[registry]\nkind = "http"\nurl = "{self.url}"\n'
            f'credentials_file = "{work / "hub-token"}"\n\n'
            f'[[facilities]]\nid = "{self.facility_id}"\nname = "Benchmark Mall"\n'
            "capacity = 10000\n",
            encoding="utf-8",
        )
        ready = ReadySocket(work / "notify.sock")
        stack.callback(ready.close)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "NOTIFY_SOCKET": str(ready.path)}
        env.pop("WATCHDOG_USEC", None)
        with self.hub_log.open("wb") as log:
            hub = subprocess.Popen(
                [sys.executable, "-m", "pintu", "hub", "serve", "--config", str(config)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        stack.callback(stop_process, hub)
        stack.callback(_terminate, hub)
        try:
            ready.wait(READY_TIMEOUT_S)
        except RuntimeError as err:
            raise RuntimeError(f"the hub: {err}; its log:\n{tail(self.hub_log)}") from err
        url = f"http://127.0.0.1:{web_port}"

        def linked() -> bool:
            # /metrics answers this machine without a token.
            text = httpx.get(f"{url}/metrics", timeout=5).text
            synced = metric(text, "pintu_hub_registry_sync_last_success_timestamp_seconds")
            return bool(synced) and metric(text, "pintu_hub_phone_channel_up") == 1.0

        try:
            wait_for(linked, READY_TIMEOUT_S, "the hub's first sync and its phone channel")
        except RuntimeError as err:
            raise RuntimeError(f"{err}; the hub's log:\n{tail(self.hub_log)}") from err

    def link(self) -> str:
        """A new visitor (green, two doses) and the activation link of their wallet."""
        nik = f"31740501029{next(self._nik):05d}"
        r = self.operator.post(
            "/api/v1/persons",
            json={"nik": nik, "name": "Bench Visitor", "status": "green", "doses": 2},
        )
        r.raise_for_status()
        r = self.operator.post("/api/v1/wallet/links", json={"nik": nik})
        r.raise_for_status()
        link: str = r.json()["link"]
        return link

    def wallet(self) -> str:
        """A new visitor's wallet, activated over HTTP: its credential."""
        token = self.link().split("token=")[1]
        r = self.public.post("/api/v1/wallet/activate", json={"token": token})
        r.raise_for_status()
        credential: str = r.json()["credential"]
        return credential

    def poster(self, door_id: str) -> str:
        return f"{self.url}/d/{self.facility_id}/{door_id}"


def _terminate(process: subprocess.Popen[Any]) -> None:
    """Stop a service as systemd does, SIGTERM first; ``stop_process`` kills what remains."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(20)


@contextlib.contextmanager
def world() -> Iterator[World]:
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pintu-bench-")))
        yield World(work, stack)


def door_of(index: int, visitors: int) -> str:
    """Check-in ``index`` of a run going round ``visitors``: each visitor's first is in by
    the entrance, the next out by the exit, and so on."""
    return ENTRANCE if (index // visitors) % 2 == 0 else EXIT


# --- (a) over HTTP --------------------------------------------------------------------
def measure_http(place: World, checkins: int, warmup: int) -> Run:
    total = warmup + checkins
    credentials = [place.wallet() for _ in range(math.ceil(total / HTTP_PER_WALLET))]
    run = Run(
        Timed("`POST /api/v1/wallet/checkins`, to the hub's answer"),
        Timed("`GET /api/v1/health` (baseline)"),
        len(credentials),
        warmup,
    )
    with httpx.Client(base_url=place.url, timeout=30) as http:

        def check_in(index: int) -> float:
            door = door_of(index, len(credentials))
            credential = credentials[index % len(credentials)]
            body = {"id": uuid.uuid4().hex, "facility_id": place.facility_id, "door_id": door}
            headers = {"Authorization": f"Bearer {credential}"}
            started = time.perf_counter()
            r = http.post("/api/v1/wallet/checkins", json=body, headers=headers)
            try:
                answer = r.json()
            except ValueError:
                answer = {"body": r.text[:200]}
            elapsed = (time.perf_counter() - started) * 1000
            state = answer.get("state") if r.status_code == 200 else None
            if state != "answered":
                run.failures.append(f"{door}: HTTP {r.status_code}, {answer}")
            elif index >= warmup:
                run.answers[f"{answer['signal']} {answer['direction']}"] += 1
            return elapsed

        def health(index: int) -> float:
            started = time.perf_counter()
            r = http.get("/api/v1/health")
            r.json()
            elapsed = (time.perf_counter() - started) * 1000
            if r.status_code != 200:
                run.failures.append(f"health: HTTP {r.status_code}")
            return elapsed

        for index in range(total):
            pair = [(check_in, run.measured), (health, run.baseline)]
            for send, timed in pair if index % 2 == 0 else reversed(pair):
                elapsed = send(index)
                if index >= warmup:
                    timed.ms.append(elapsed)
    return run


# --- (b) and (c) in Chromium -----------------------------------------------------------
def phone_context(browser: Browser) -> BrowserContext:
    context = browser.new_context(viewport=PHONE_SCREEN, locale="en-GB", service_workers="allow")
    context.set_default_timeout(WAIT_MS)
    return context


def open_wallet(page: Page, link: str) -> None:
    """Open an activation link until the wallet shows its card, under its service worker."""
    page.goto(link)
    page.wait_for_url("**/wallet/")
    page.locator("#card").wait_for(state="visible")
    page.wait_for_function("() => navigator.serviceWorker.controller !== null")


def measure_first_load(browser: Browser, place: World) -> FirstLoad:
    context = phone_context(browser)
    try:
        sent: list[Request] = []
        done: list[Request] = []
        bodies: dict[Request, int] = {}

        def body_of(response: Response) -> None:
            # Read as it arrives: a page navigated away from has no body to give later.
            with contextlib.suppress(PlaywrightError):  # a redirect has none
                bodies[response.request] = len(response.body())

        context.on("request", lambda request: sent.append(request))
        context.on("response", body_of)
        context.on("requestfinished", lambda request: done.append(request))
        context.on("requestfailed", lambda request: done.append(request))
        page = context.new_page()
        open_wallet(page, place.link())
        # Events come in while Playwright is called: ask it to wait until none is open.
        deadline = time.monotonic() + WAIT_MS / 1000
        while len(done) < len(sent):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(sent) - len(done)} requests still open")
            page.wait_for_timeout(20)
        return first_load_of(done, bodies)
    finally:
        context.close()


def first_load_of(done: list[Request], bodies: dict[Request, int]) -> FirstLoad:
    """What came over the network: each response's headers and body as received.

    Chromium's own counts say it: a response from the HTTP cache has a body size of minus
    its headers (nothing came), and one the service worker answered is counted as the
    worker's own fetch. Only the worker's script reports no body size; its body's length
    stands in (the registry does not compress)."""
    wire = body = requests = 0
    sizes: dict[str, int] = {}
    for request in done:
        response = request.response()
        if response is None or response.from_service_worker:
            continue
        measured = request.sizes()
        if measured["responseBodySize"] < 0:
            continue  # from the HTTP cache
        received = measured["responseBodySize"] or bodies.get(request, 0)
        on_wire = measured["responseHeadersSize"] + received
        requests += 1
        wire += on_wire
        body += received
        path = urlsplit(request.url).path
        name = path + (" (service worker)" if request.service_worker else "")
        sizes[name] = sizes.get(name, 0) + on_wire
    largest = sorted(sizes.items(), key=lambda item: -item[1])[:4]
    return FirstLoad(requests, wire, body, largest)


def measure_browser(browser: Browser, place: World, pages: int, warmup: int) -> Run:
    total = warmup + pages
    phones: list[Page] = []
    contexts: list[BrowserContext] = []
    try:
        for _ in range(math.ceil(total / PAGES_PER_PHONE)):
            context = phone_context(browser)
            contexts.append(context)
            page = context.new_page()
            open_wallet(page, place.link())
            phones.append(page)
        run = Run(
            Timed("poster address opened to the result drawn"),
            Timed("`page.goto(<registry>/api/v1/health)` (baseline)"),
            len(phones),
            warmup,
        )
        health_url = f"{place.url}/api/v1/health"

        def open_poster(index: int) -> float:
            page = phones[index % len(phones)]
            door = door_of(index, len(phones))
            started = time.perf_counter()
            page.goto(place.poster(door), wait_until="commit")
            try:
                state = page.wait_for_function(_DRAWN).json_value()
            except PlaywrightError as err:
                state = f"nothing shown in {WAIT_MS / 1000:g} s ({str(err).splitlines()[0]})"
            elapsed = (time.perf_counter() - started) * 1000
            if state != "answered":
                run.failures.append(f"{door}: {state}")
            elif index >= warmup:
                shown = page.locator("#result")
                signal_ = shown.get_attribute("data-signal")
                run.answers[f"{signal_} {shown.get_attribute('data-direction')}"] += 1
            return elapsed

        def open_health(index: int) -> float:
            page = phones[index % len(phones)]
            started = time.perf_counter()
            response = page.goto(health_url)
            elapsed = (time.perf_counter() - started) * 1000
            if response is None or response.status != 200:
                run.failures.append(f"health: {response.status if response else 'no response'}")
            return elapsed

        for index in range(total):
            pair = [(open_poster, run.measured), (open_health, run.baseline)]
            for load, timed in pair if index % 2 == 0 else reversed(pair):
                elapsed = load(index)
                if index >= warmup:
                    timed.ms.append(elapsed)
        return run
    finally:
        for context in contexts:
            context.close()


def measure(checkins: int, pages: int, warmup: int) -> Result:
    with world() as place:
        print(f"(a) {checkins} check-ins over HTTP ...", flush=True)
        result = Result(measure_http(place, checkins, warmup))
        if pages == 0:
            result.skipped = "not asked for (`--pages 0`)"
            return result
        if not Path(CHROMIUM).exists():
            result.skipped = f"Chromium is not installed ({CHROMIUM} is missing)"
            return result
        with sync_playwright() as playwright:
            try:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            except PlaywrightError as err:
                result.skipped = f"Chromium did not start: {str(err).splitlines()[0]}"
                return result
            try:
                result.chromium = browser.version
                print(f"(b) {pages} poster addresses opened in Chromium ...", flush=True)
                result.browser = measure_browser(browser, place, pages, max(1, warmup // 2))
                print("(c) the wallet's first load ...", flush=True)
                result.first_load = measure_first_load(browser, place)
            finally:
                browser.close()
    return result


# --- the report ------------------------------------------------------------------------
def machine(chromium: str) -> str:
    cpu = platform.processor() or platform.machine()
    browser = f"; Chromium {chromium} headless" if chromium else ""
    libraries = library_versions(["starlette", "fastapi", "uvicorn", "httpx", "playwright"])
    return (
        f"Run on {platform.platform()} ({cpu}, {os.cpu_count()} CPUs), "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}; "
        f"{libraries}; {broker_version()}{browser}."
    )


def _ms(value: float) -> str:
    return f"{value:,.1f} ms"


def _rows(run: Run) -> list[str]:
    return [
        f"| {timed.label} | {len(timed.ms)} | {_ms(timed.p50)} | {_ms(timed.p95)} "
        f"| {_ms(timed.worst)} |"
        for timed in (run.baseline, run.measured)
    ]


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _answers(run: Run) -> str:
    """What the timed check-ins were answered, and what went wrong (warm-up included)."""
    tally = ", ".join(f"{count} {what}" for what, count in sorted(run.answers.items()))
    answered = f"Answered by the hub: {tally or 'none'}"
    if not run.failures:
        return f"{answered}; none failed."
    return (
        f"{answered}; {len(run.failures)} FAILED, not answered by the hub "
        f"(the first: {run.failures[0]})."
    )


def _late(run: Run) -> str:
    """How many took longer than the median by the registry's look-again interval: a
    waiting request (the hub's for check-ins, the phone's for the answer) that was not
    woken looks at the store again after ``POLL_S``."""
    late = sum(1 for ms in run.measured.ms if ms > run.measured.p50 + POLL_S * 1000)
    return (
        f"{late} of {len(run.measured.ms)} took more than the median plus "
        f"{POLL_S * 1000:.0f} ms, the interval at which the registry's waiting requests "
        "look at the store again when no wake-up came."
    )


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def report(result: Result, command: str, load: float, when: str, at: str) -> str:
    http = result.http
    lines = [
        machine(result.chromium),
        "",
        f"Command: `{command}`, {when}, at commit {at}. Load average (1 min) when the run "
        f"began: {load:.1f} (the machine is shared: each figure is read beside its "
        "baseline from the same minutes).",
        "",
        "`pintu registry serve` and `pintu hub serve` each ran in a process of its own "
        "(SQLite stores), with a private Mosquitto; the hub kept its phone channel open to "
        "the registry over HTTP, as a facility's hub does. The benchmark's process only "
        "played the phones.",
        "",
        "### Over HTTP: a check-in to the hub's answer",
        "",
        f"{len(http.measured.ms)} check-ins, one at a time, after {http.warmup} not "
        f"counted, by {_plural(http.wallets, 'wallet')} (each activated once, at most "
        f"{HTTP_PER_WALLET} calls each against the wallet's {WALLET_CALLS_PER_MINUTE} a "
        "minute), every visitor in by the entrance poster and then out by the exit poster. "
        "Each is timed from sending `POST /api/v1/wallet/checkins` to its JSON answer "
        "parsed: the registry stores it and wakes the hub's waiting request, the hub "
        "decides with the door's decision table, counts it and posts its answer, and the "
        "registry answers the phone. The baseline is `GET /api/v1/health` on the same "
        "kept-open connection, alternated with the check-ins.",
        "",
        "| request | count | p50 | p95 | max |",
        "| --- | ---: | ---: | ---: | ---: |",
        *_rows(http),
        "",
        f"A check-in takes {http.measured.p50 / http.baseline.p50:.1f}x the bare round trip "
        f"at the median, {http.measured.p95 / http.baseline.p95:.1f}x at p95 "
        f"(+{http.measured.p50 - http.baseline.p50:.1f} ms at the median). "
        f"{_late(http)} {_answers(http)}",
        "",
    ]
    browser = result.browser
    if browser is None:
        lines += [
            "### In Chromium: the poster address opened to the result drawn",
            "",
            f"Not measured: {result.skipped}.",
            "",
        ]
    else:
        lines += [
            "### In Chromium: the poster address opened to the result drawn",
            "",
            f"{len(browser.measured.ms)} poster addresses opened, after {browser.warmup} not "
            f"counted, by {_plural(browser.wallets, 'phone')} (390x844, each with a wallet "
            "activated from its link), in turn at the entrance and the exit: timed from "
            '`page.goto` to `#result` shown with `data-state="answered"` (checked on every '
            "animation frame). The baseline, alternated with it in the same tab: `page.goto` "
            "of the registry's `/api/v1/health` until loaded.",
            "",
            "| page | count | p50 | p95 | max |",
            "| --- | ---: | ---: | ---: | ---: |",
            *_rows(browser),
            "",
            f"The poster to the result drawn takes "
            f"{browser.measured.p50 / browser.baseline.p50:.1f}x the bare page load at the "
            f"median, {browser.measured.p95 / browser.baseline.p95:.1f}x at p95. "
            f"{_late(browser)} {_answers(browser)}",
            "",
        ]
    first = result.first_load
    lines += ["### The wallet's first load", ""]
    if first is None:
        lines += [f"Not measured: {result.skipped}.", ""]
    else:
        largest = ", ".join(f"{name} {size / 1000:.1f} kB" for name, size in first.largest)
        lines += [
            "A phone with an empty cache opens its activation link until the wallet shows "
            "its card and the service worker controls the page. Every response that came "
            "over the network is counted, its headers and body as received, the service "
            "worker's own fetches included; what the HTTP cache or the worker answered came "
            "over no network and is not counted again. kB are 1,000 bytes.",
            "",
            "| measured | responses | transferred | of which bodies | budget |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| activation link to the wallet, offline-ready | {first.requests} "
            f"| {first.wire_bytes / 1000:.1f} kB | {first.body_bytes / 1000:.1f} kB "
            f"| {FIRST_LOAD_BUDGET / 1000:.0f} kB |",
            "",
            f"Largest: {largest}.",
            "",
        ]
    lines += ["### Against the targets", ""]
    if browser is not None:
        lines.append(
            f"- Poster address to the result drawn, p95 under {TARGET_MS:.0f} ms: "
            f"{_ms(browser.measured.p95)}, {_verdict(browser.measured.p95 < TARGET_MS)}"
            f"{'' if not browser.failures else ' (with failures: see above)'}."
        )
        lines.append(
            f"- The check-in over HTTP alone: p95 {_ms(http.measured.p95)}"
            f"{'' if not http.failures else ', with failures (see above)'}."
        )
    else:
        lines.append(
            f"- Poster address to the result drawn, p95 under {TARGET_MS:.0f} ms: not "
            "measured in a browser; the check-in over HTTP alone has p95 "
            f"{_ms(http.measured.p95)}"
            f"{'' if not http.failures else ', with failures (see above)'}."
        )
    if first is not None:
        lines.append(
            f"- The wallet's first load under {FIRST_LOAD_BUDGET / 1000:.0f} kB: "
            f"{first.wire_bytes / 1000:.1f} kB, "
            f"{_verdict(first.wire_bytes < FIRST_LOAD_BUDGET)}."
        )
    return "\n".join(lines)


def failed(result: Result) -> bool:
    return bool(result.http.failures or (result.browser and result.browser.failures))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.phone",
        description="Time phone check-ins, from a door's poster address to the hub's answer "
        "drawn, beside a bare HTTP round trip to the registry; and the wallet's first load.",
    )
    parser.add_argument(
        "--checkins", type=int, default=200, help="check-ins timed over HTTP (default 200)"
    )
    parser.add_argument(
        "--pages",
        type=int,
        default=20,
        help="poster addresses opened in Chromium (default 20; 0 leaves the browser out)",
    )
    parser.add_argument(
        "--warmup", type=int, default=5, help="check-ins not counted first (default 5)"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a handful of each (6 check-ins, 2 pages)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs" / "benchmarks.md",
        help="the file --write updates (default docs/benchmarks.md)",
    )
    parser.add_argument(
        "--write", action="store_true", help="replace the phone check-ins section of --out"
    )
    args = parser.parse_args(argv)
    # The registry announces its new keys as warnings; in a throw-away directory they are noise.
    logging.getLogger("registry").setLevel(logging.ERROR)
    if args.smoke:
        args.checkins, args.pages, args.warmup = 6, 2, 1
    if args.checkins < 1 or args.pages < 0 or args.warmup < 0:
        parser.error("--checkins must be at least 1, --pages and --warmup at least 0")
    if args.checkins + args.pages + args.warmup > MAX_CHECKINS:
        parser.error(
            f"at most {MAX_CHECKINS} check-ins a run, pages included: the phones share one "
            f"address, which the registry allows {WALLET_CALLS_PER_ADDRESS} wallet calls a "
            "minute"
        )
    shown = ["python -m bench.phone"]
    if args.smoke:
        shown.append("--smoke")
    else:
        for name, default in (("checkins", 200), ("pages", 20), ("warmup", 5)):
            if getattr(args, name) != default:
                shown.append(f"--{name} {getattr(args, name)}")
    load = os.getloadavg()[0]
    when = time.strftime("%Y-%m-%d")
    result = measure(args.checkins, args.pages, args.warmup)
    section = report(result, " ".join(shown), load, when, commit())
    print()
    print(section)
    if args.write:
        write_section(args.out, section, START, END, HEADING)
        print(f"\nwrote {args.out}")
    return 1 if failed(result) else 0


if __name__ == "__main__":
    raise SystemExit(main())
