"""A facility for attacks end to end: a private Mosquitto, the hub in-process on an event
loop of its own, and door nodes in-process (mock pins, synthetic cameras)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPin

from controller.config import NodeConfig
from controller.node import Node
from firmware.frames import FrameSource
from firmware.synthetic import PRESETS, SyntheticSource
from hub.config import HubConfig
from hub.service import Hub
from protocol import passes
from protocol.events import Event, EventKind
from protocol.signedlist import ListKeys
from protocol.status import Status
from protocol.trust import SigningKey, TrustList
from provisioning.mosquitto import Mosquitto

from ..processes import wait as wait

FACILITY = "mall-hostile"
KEY = SigningKey.generate()
# The registry's list key, which the doors pin at enrolment: it signs the lists they believe.
LIST_KEY = SigningKey.generate()
PINNED = ListKeys.of(1, [LIST_KEY.public_key], None)
# Each in-process node gets pins of its own: (red, yellow, green, buzzer, relay).
PINS = [(17, 27, 22, 18, 5), (23, 24, 25, 12, 6), (16, 20, 21, 13, 19), (2, 3, 4, 7, 8)]


def issue(subject: bytes, status: Status = Status.GREEN, key: SigningKey = KEY) -> str:
    now = int(time.time())
    return passes.issue(key, subject, status, 2, now - 60, now + 86_400)


class HubThread:
    """The hub on an event loop of its own."""

    def __init__(self, config: HubConfig) -> None:
        self.hub = Hub(config)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self.hub.start())
        assert self.call(self.hub.wait_ready(10))

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.call(self.hub.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Door:
    node: Node
    source: SyntheticSource

    def show(self, text: str) -> None:
        """Hold a code up to the camera long enough for one decision, then take it away."""
        scanner = self.node.scanner
        assert scanner is not None
        wait(lambda: self.source.pending == 0, what="the camera to be free")
        seen = scanner.stats.frames
        # Past the scan cooldown, so the same code again is a new decision.
        wait(lambda: scanner.stats.frames > seen + 8, what="idle frames")
        self.source.show(text, 5)

    @property
    def decisions(self) -> int:
        assert self.node.door is not None
        return self.node.door.stats.decisions


@dataclass
class Site:
    tmp: Path
    broker: Mosquitto
    hub: HubThread
    doors: dict[str, Door] = field(default_factory=dict)

    def events(self, kind: EventKind | None = None, subject: str | None = None) -> list[Event]:
        page = self.hub.hub.store.events(
            facility_id=FACILITY, kind=None if kind is None else kind.value, limit=1000
        )
        found = [e.event for e in page.events]
        return [e for e in found if subject is None or e.subject == subject]

    def add_door(
        self,
        node_id: str,
        door_id: str,
        direction: str,
        *,
        anti_passback_s: float = 600,
        wrap: Callable[[SyntheticSource], FrameSource] | None = None,
    ) -> Door:
        state_dir = self.tmp / node_id
        state_dir.mkdir()
        TrustList.of([KEY.trusted()], updated_at=int(time.time())).save(state_dir / "trust.json")
        PINNED.save(state_dir / "list-keys.json")
        red, yellow, green, buzzer, relay = PINS[len(self.doors)]
        config = NodeConfig.model_validate(
            {
                "node_id": node_id,
                "facility_id": FACILITY,
                "door_id": door_id,
                "direction": direction,
                "state_dir": str(state_dir),
                "source": {"kind": "synthetic", "preset": "easy", "fps": 30},
                "pins": {
                    "pin_factory": "mock",
                    "leds": {"kind": "three", "red": red, "yellow": yellow, "green": green},
                    "buzzer": {"pin": buzzer},
                    "relay": {
                        "pin": relay,
                        "active_high": True,
                        "pulse_ms": 100,
                        "wiring": "fail_secure",
                    },
                },
                "gate": {"passage": "assume", "signal_s": 0.1},
                "scan": {"cooldown_s": 0.2},
                "policy": {"anti_passback_s": anti_passback_s},
                "mqtt": {
                    "host": self.broker.host,
                    "port": self.broker.port,
                    "reconnect_min_s": 0.05,
                    "reconnect_max_s": 0.5,
                    "ack_timeout_s": 2.0,
                },
            }
        )
        source = SyntheticSource(PRESETS["easy"], seed=len(self.doors) + 1, fps=30)
        node = Node(config, source=source if wrap is None else wrap(source))
        node.start()
        door = Door(node, source)
        self.doors[node_id] = door
        assert node.uplink is not None
        wait(lambda: node.uplink is not None and node.uplink.subscribed, what=f"{node_id} online")
        return door


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    previous = Device.pin_factory
    Device.pin_factory = MockFactory(pin_class=MockPin)
    hub = HubThread(
        HubConfig.model_validate(
            {
                "mqtt": {"host": broker.host, "port": broker.port, "client_id": "hub-hostile"},
                "store": {"backend": "sqlite", "path": str(tmp_path / "hub.db")},
                "facilities": [{"id": FACILITY, "name": "Mall Hostile"}],
                "node_offline_after_s": 600,
            }
        )
    )
    made = Site(tmp_path, broker, hub)
    try:
        yield made
    finally:
        for door in made.doors.values():
            door.node.stop()
        Device.pin_factory.reset()
        Device.pin_factory = previous
        hub.stop()
        broker.stop()
