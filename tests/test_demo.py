"""`pintu demo` as a newcomer runs it: a whole facility, the dashboard live, Ctrl-C stops all."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from playwright.sync_api import expect, sync_playwright

from provisioning.mosquitto import free_port

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


def read_lines(stream: object, lines: list[str], seen: threading.Event) -> None:
    for raw in iter(stream.readline, ""):  # type: ignore[attr-defined]
        lines.append(raw.rstrip("\n"))
        seen.set()


def wait_for_line(lines: list[str], pattern: str, seen: threading.Event, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    regex = re.compile(pattern)
    while time.monotonic() < deadline:
        for line in list(lines):
            if regex.search(line):
                return line
        seen.clear()
        seen.wait(1.0)
    pytest.fail(f"no line matching {pattern!r} in {timeout}s; output:\n" + "\n".join(lines))


@pytest.mark.slow
@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason="needs Debian's chromium")
def test_demo_shows_live_occupancy_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pintu",
            "demo",
            "--workdir",
            str(tmp_path / "demo"),
            "--port",
            str(port),
            "--visitors-per-minute",
            "120",
            "--capacity",
            "500",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    seen = threading.Event()
    reader = threading.Thread(target=read_lines, args=(demo.stdout, lines, seen), daemon=True)
    reader.start()
    try:
        url = wait_for_line(lines, r"dashboard:\s+http://", seen, 90).split()[-1]
        login = wait_for_line(lines, r"log in as:", seen, 10)
        password = login.split("/")[-1].strip()
        children = psutil.Process(demo.pid).children(recursive=True)
        assert len(children) >= 5, "broker, hub and three nodes"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.goto(url + "login")
                page.fill("input[name=username]", "admin")
                page.fill("input[name=password]", password)
                page.click("button[type=submit]")
                occupancy = page.locator("#occ-value")
                # Visitors arrive at random: within 60 s somebody has come in.
                expect(occupancy).not_to_have_text(re.compile(r"^\s*0\s*$"), timeout=60_000)
                page.screenshot(path=str(tmp_path / "demo.png"))
            finally:
                browser.close()
        demo.send_signal(signal.SIGINT)
        assert demo.wait(60) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        if demo.stdout is not None:
            demo.stdout.close()
        reader.join(5)
    still_running = [p for p in children if p.is_running() and p.status() != "zombie"]
    assert not still_running, f"left running: {[p.cmdline() for p in still_running]}"
    assert any("stopped." in line for line in lines)
