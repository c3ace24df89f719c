"""A facility end to end: real door node processes, a real broker, the hub.

Capacity is enforced at the entrance by the hub's retained state: when the building is
full the entry node refuses, and an exit at another door frees a place.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from firmware.synthetic import PRESETS, render
from hub.store import Store
from protocol import passes
from protocol.status import Status
from protocol.trust import SigningKey, TrustList
from provisioning.mosquitto import Mosquitto

FACILITY = "mall-a"
KEY = SigningKey.generate()


def pass_for(n: int) -> str:
    now = int(time.time())
    return passes.issue(KEY, n.to_bytes(12, "big"), Status.GREEN, 2, now - 60, now + 86_400)


def frames(folder: Path, subjects: list[int]) -> Path:
    """One image per pass, looped by the node's folder source."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(5)
    for i, n in enumerate(subjects):
        Image.fromarray(render(pass_for(n), PRESETS["easy"], rng)).save(folder / f"{i:02d}.png")
    return folder


def node_toml(state: Path, node: str, door: str, direction: str, images: Path, port: int) -> str:
    state.mkdir(parents=True)
    TrustList.of([KEY.trusted()], int(time.time())).save(state / "trust.json")
    return f"""
node_id = "{node}"
facility_id = "{FACILITY}"
door_id = "{door}"
direction = "{direction}"
state_dir = "{state}"

[source]
kind = "folder"
path = "{images}"
loop = true
fps = 6

[pins]
pin_factory = "mock"
[pins.leds]
kind = "three"
red = 17
yellow = 27
green = 22
[pins.relay]
pin = 5
active_high = true
pulse_ms = 100
wiring = "fail_secure"

[gate]
passage = "assume"
signal_s = 0.2

[scan]
# Each image of the loop comes back every few frames: a short cooldown makes each return
# a fresh visitor, as a queue at a real door is.
cooldown_s = 0.3

[mqtt]
host = "127.0.0.1"
port = {port}
reconnect_min_s = 0.1
reconnect_max_s = 1.0
"""


@pytest.fixture
def start_node(tmp_path: Path, broker: Mosquitto) -> Iterator[Callable[..., Any]]:
    processes: list[subprocess.Popen[bytes]] = []

    def start(node: str, door: str, direction: str, subjects: list[int]) -> None:
        images = frames(tmp_path / f"{node}-frames", subjects)
        config = tmp_path / f"{node}.toml"
        config.write_text(node_toml(tmp_path / node, node, door, direction, images, broker.port))
        with (tmp_path / f"{node}.log").open("wb") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "pintu", "node", "run", "--config", str(config)],
                    env={**os.environ, "GPIOZERO_PIN_FACTORY": "mock"},
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )

    yield start
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def kinds(store: Store, **filters: Any) -> list[tuple[str, str | None, str | None]]:
    page = store.events(facility_id=FACILITY, limit=1000, **filters)
    return [(e.event.kind.value, e.event.reason, e.event.subject) for e in page.events]


@pytest.mark.slow
def test_capacity_is_enforced_at_the_entrance_and_an_exit_frees_a_place(
    make_config: Callable[..., Any],
    run_hub: Callable[..., Any],
    start_node: Callable[..., None],
    wait_until: Callable[..., None],
) -> None:
    config = make_config(
        facility={
            "capacity": 2,
            "zones": [],
            "doors": [
                {"id": "in", "name": "Entrance", "direction": "entry", "nodes": ["in-1"]},
                {"id": "out", "name": "Exit", "direction": "exit", "nodes": ["out-1"]},
            ],
        }
    )
    hub = run_hub(config)
    store = hub.hub.store

    def occupancy() -> int:
        return int(store.occupancy(FACILITY).occupancy)

    # Four visitors queue at the entrance, again and again; capacity is two.
    start_node("in-1", "in", "entry", [1, 2, 3, 4])
    wait_until(lambda: occupancy() == 2, timeout_s=60, what="two people inside")
    wait_until(
        lambda: any(r == "facility_full" for k, r, _ in kinds(store, kind="denied")),
        timeout_s=60,
        what="the entrance refusing while full",
    )
    assert occupancy() == 2
    entered = {s for k, _, s in kinds(store, kind="entry")}
    assert len(entered) == 2

    # One of them leaves by the exit; the entrance admits someone again: a visitor who was
    # waiting, or the leaver coming back (the exit cleared their anti-passback at every
    # entrance of the facility).
    leaver = min(entered)
    start_node("out-1", "out", "exit", [int(leaver, 16)])
    wait_until(
        lambda: len(kinds(store, kind="entry")) >= 3,
        timeout_s=60,
        what="the entrance admitting again once a place was freed",
    )
    assert {s for _, _, s in kinds(store, kind="exit")} == {leaver}
    assert occupancy() <= 2
    # Nothing counted twice: every stored event id is unique, and entries minus exits
    # is what the hub shows (never below zero).
    events = store.events(facility_id=FACILITY, limit=1000).events
    assert len({e.event.event_id for e in events}) == len(events)
