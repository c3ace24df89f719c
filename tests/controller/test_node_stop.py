"""A node stopping while its camera is stalled: the door locks first, and the stop ends.

The camera is a stand-in for picamera2 whose capture never returns until it is cancelled,
as a Pi camera does when its cable works loose.
"""

from __future__ import annotations

import concurrent.futures
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPin

from controller.config import NodeConfig
from controller.node import Node
from protocol.trust import SigningKey, TrustList
from provisioning.mosquitto import Mosquitto

RELAY_PIN = 5


class StalledPicamera2:
    """Delivers one frame, then waits in ``capture_array`` until cancelled."""

    log: ClassVar[list[str]] = []
    instances: ClassVar[list[StalledPicamera2]] = []
    camera_controls: ClassVar[dict[str, Any]] = {}

    def __init__(self, tuning: dict[str, Any] | None = None) -> None:
        self.waiting = threading.Event()
        self.cancelled = threading.Event()
        self.delivered = False
        StalledPicamera2.instances.append(self)

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        return []

    def create_video_configuration(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs

    def configure(self, config: dict[str, Any]) -> None:
        self.size = config["lores"]["size"]

    def stream_configuration(self, name: str) -> dict[str, Any]:
        return {"size": self.size, "stride": self.size[0], "format": "YUV420"}

    def start(self) -> None:
        pass

    def capture_array(self, name: str, wait: float | None = None) -> np.ndarray:
        if not self.delivered:
            self.delivered = True
            width, height = self.size
            return np.full((height * 3 // 2, width), 128, dtype=np.uint8)
        self.waiting.set()
        if self.cancelled.wait(wait):
            raise concurrent.futures.CancelledError()
        raise TimeoutError()

    def cancel_all_and_flush(self) -> None:
        self.log.append("camera: pending capture cancelled")
        self.cancelled.set()

    def stop(self) -> None:
        # picamera2's stop() waits behind a pending capture: only a cancelled one lets it go.
        if not self.cancelled.wait(30):
            raise AssertionError("stop() called with a capture still pending")
        self.log.append("camera: stopped")

    def close(self) -> None:
        self.log.append("camera: closed")


@pytest.fixture
def stalled_camera(monkeypatch: pytest.MonkeyPatch) -> type[StalledPicamera2]:
    module = types.ModuleType("picamera2")
    module.Picamera2 = StalledPicamera2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", module)
    StalledPicamera2.log = []
    StalledPicamera2.instances = []
    return StalledPicamera2


def test_stop_locks_the_door_before_it_waits_for_a_stalled_camera(
    tmp_path: Path,
    broker: Mosquitto,
    mock_pins: MockFactory,
    stalled_camera: type[StalledPicamera2],
    wait_for: Any,
) -> None:
    state = tmp_path / "node"
    state.mkdir()
    TrustList.of([SigningKey.generate().trusted()], updated_at=int(time.time())).save(
        state / "trust.json"
    )
    config = NodeConfig.model_validate(
        {
            "node_id": "n1",
            "facility_id": "f1",
            "door_id": "d1",
            "direction": "entry",
            "state_dir": str(state),
            "source": {"kind": "picamera2", "width": 320, "height": 240, "capture_timeout_s": 30},
            "pins": {
                "pin_factory": "mock",
                "leds": {"kind": "three", "red": 17, "yellow": 27, "green": 22},
                "relay": {"pin": RELAY_PIN, "active_high": False, "wiring": "fail_secure"},
            },
            "mqtt": {"host": broker.host, "port": broker.port},
        }
    )
    node = Node(config)
    node.start()
    try:
        wait_for(lambda: stalled_camera.instances and stalled_camera.instances[0].waiting.is_set())
        assert node.devices is not None
        relay = node.devices.relay
        relay.on_change(
            lambda is_open, _t: StalledPicamera2.log.append(
                f"relay: {'open' if is_open else 'locked'}"
            )
        )
        assert relay.pulse(20.0)  # a visitor admitted, the door open for a long pulse
        started = time.monotonic()
        node.stop()
        took = time.monotonic() - started
    finally:
        if not node.stopped.is_set():
            node.stop()
    assert StalledPicamera2.log[:3] == [
        "relay: open",
        "relay: locked",
        "camera: pending capture cancelled",
    ]
    assert "camera: stopped" in StalledPicamera2.log
    pin: MockPin = Device.pin_factory.pin(RELAY_PIN)
    assert pin.state  # active low: high is locked
    assert took < 5.0, f"stopping took {took:.1f} s"
