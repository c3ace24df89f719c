"""`pintu demo` as a newcomer runs it: a whole facility provisioned for real, the dashboard
live in Chromium, the desk looking people up at the registry, Ctrl-C stops all, and a
second run after it starts over."""

from __future__ import annotations

import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import Page, expect, sync_playwright

from provisioning.mosquitto import free_port

from .conftest import CHROMIUM, CHROMIUM_ARGS


@dataclass
class DemoRun:
    """``pintu demo`` in a process of its own, its output read line by line."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    seen: threading.Event = field(default_factory=threading.Event)

    def read(self) -> None:
        assert self.process.stdout is not None
        for raw in iter(self.process.stdout.readline, ""):
            self.lines.append(raw.rstrip("\n"))
            self.seen.set()

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if found := regex.search(line):
                    return found
            if self.process.poll() is not None and not self.seen.is_set():
                break
            self.seen.clear()
            self.seen.wait(1.0)
        pytest.fail(f"no line matching {pattern!r} in {timeout} s; output:\n" + self.output)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def interrupt(self) -> int:
        """Ctrl-C, as a terminal sends it; the exit status."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(60)


@pytest.fixture
def start_demo(tmp_path: Path) -> Iterator[Callable[[], DemoRun]]:
    web_port, registry_port = free_port(), free_port()
    runs: list[tuple[DemoRun, threading.Thread]] = []

    def start() -> DemoRun:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "pintu", "demo",
                "--workdir", str(tmp_path / "demo"),
                "--port", str(web_port),
                "--registry-port", str(registry_port),
                "--visitors-per-minute", "120",
                "--capacity", "500",
                "--population", "30",
                "--sync-interval", "1",
                "--status-every", "3",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        run = DemoRun(process)
        reader = threading.Thread(target=run.read, daemon=True)
        reader.start()
        runs.append((run, reader))
        return run

    yield start
    for run, reader in runs:
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()
        if run.process.stdout is not None:
            run.process.stdout.close()
        reader.join(5)


def anonymous_connack(port: int) -> str:
    """What the broker answers a client that gives no user name."""
    answered = threading.Event()
    reasons: list[str] = []

    def on_connect(
        client: mqtt.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        reasons.append(str(reason))
        answered.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_connect = on_connect
    # The broker speaks TLS only; this client skips checking its certificate, as the
    # question here is only whether it lets a client in without a user name.
    client.tls_set(cert_reqs=ssl.CERT_NONE)
    client.tls_insecure_set(True)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert answered.wait(10), "the broker did not answer"
    finally:
        client.disconnect()
        client.loop_stop()
    return reasons[0]


def desk_lookup(page: Page, nik: str, name: str, status: str) -> None:
    page.fill("#nik", nik)
    page.fill("#person-name", name)
    page.click("#lookup-button")
    expect(page.locator("#verdict")).to_have_attribute("data-status", status, timeout=15_000)


def processes_of(run: DemoRun) -> list[psutil.Process]:
    return psutil.Process(run.process.pid).children(recursive=True)


def left_running(processes: list[psutil.Process]) -> list[list[str]]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process.cmdline())
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="needs Debian's chromium")
def test_demo_runs_a_provisioned_facility_live_and_stops_cleanly_on_ctrl_c(
    start_demo: Callable[[], DemoRun], tmp_path: Path
) -> None:
    run = start_demo()
    url = run.wait_for(r"dashboard:\s+(http://\S+)", 120).group(1)
    password = run.wait_for(r"log in as:\s+admin / (\S+)", 5).group(1)
    desk = run.wait_for(r"try NIK (\d{16}) and name (.+)$", 5)
    broker_port = int(run.wait_for(r"broker at mqtts://127\.0\.0\.1:(\d+)", 5).group(1))
    assert run.wait_for(r"registry serving at http://", 5)
    assert run.wait_for(r"operator:\s+operator / \S+", 5)
    console = run.wait_for(r"console:\s+(http://\S+/console/login)", 5).group(1)
    pic_password = run.wait_for(r"PIC:\s+pic@demo-mall\.example / (\S+)", 5).group(1)
    wallet_link = run.wait_for(r"(http://\S+/wallet/activate\?token=wl_\S+)", 5).group(1)
    poster = run.wait_for(r"Entrance 1\s+(http://\S+/d/\S+/entrance-1)$", 5).group(1)

    children = processes_of(run)
    commands = [" ".join(p.cmdline()) for p in children]
    for part in ("registry serve", "hub serve", "mosquitto -c"):
        assert sum(part in c for c in commands) == 1, f"one {part!r} in {commands}"
    assert sum("node run" in c for c in commands) == 3, commands
    # Auth is on: a client without credentials is turned away.
    assert anonymous_connack(broker_port) == "Not authorized"

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url + "login")
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", password)
            page.click("button[type=submit]")
            # Visitors arrive at random: within 60 s somebody has come in.
            expect(page.locator("#occ-value")).not_to_have_text(
                re.compile(r"^\s*0\s*$"), timeout=60_000
            )
            # The desk asks the registry: the printed person, and one who just turned black.
            desk_lookup(page, desk.group(1), desk.group(2).strip(), "green")
            black = run.wait_for(r"registry: (.+) \((\d{16})\) is now black", 30)
            desk_lookup(page, black.group(2), black.group(1), "black")
            page.screenshot(path=str(tmp_path / "demo.png"))
            # The printed PIC logs in to the registry's console and finds the demo's doors.
            pic = browser.new_page(locale="en-GB")
            pic.goto(console)
            pic.fill("#username", "pic@demo-mall.example")
            pic.fill("#password", pic_password)
            pic.click("main button[type=submit]")
            pic.get_by_role("link", name="Demo Mall").click()
            expect(pic.locator("#doors li")).not_to_have_count(0)
            # The printed wallet link puts the desk example's pass on a phone.
            phone = browser.new_page(locale="en-GB", viewport={"width": 390, "height": 844})
            phone.goto(wallet_link)
            phone.wait_for_url("**/wallet/")
            expect(phone.locator("#card")).to_be_visible()
            # The printed poster address checks the phone in: the hub answers.
            phone.goto(poster)
            expect(phone.locator("#result")).to_have_attribute("data-state", "answered")
            # The simulated phone visitors show on the dashboard, marked as phones.
            expect(page.locator("#decisions li[data-via=phone]")).not_to_have_count(
                0, timeout=90_000
            )
        finally:
            browser.close()

    assert run.interrupt() == 0, run.output
    assert not left_running(children)
    assert "stopped." in run.lines

    # A second run after Ctrl-C starts over in the same directory, on the same ports.
    again = start_demo()
    assert again.wait_for(r"dashboard:\s+(http://\S+)", 120).group(1) == url
    children = processes_of(again)
    assert again.interrupt() == 0, again.output
    assert not left_running(children)
