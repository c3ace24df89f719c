"""On a real Raspberry Pi only (marked ``pi``; skipped elsewhere): the camera and the relay
line as the node drives them. Wire nothing to GPIO6 when running these: it is driven."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.pi


def test_the_relay_line_is_claimed_locked_and_released_pulled_there() -> None:
    from gpiozero import Device

    from firmware.lgpio_pins import make_safe_lgpio_factory
    from firmware.pins import RelayConfig
    from firmware.relay import Relay

    previous = Device.pin_factory
    factory = make_safe_lgpio_factory()
    Device.pin_factory = factory
    try:
        relay = Relay(RelayConfig(pin=6, active_high=False, wiring="fail_secure"))
        assert relay.self_test() == []  # an output, reading back locked (high)
        relay.close()
        pin = factory.pin(6)
        assert pin.function == "input" and pin.pull == "up" and pin.state
    finally:
        factory.close()
        Device.pin_factory = previous


def test_the_camera_delivers_focused_frames_within_its_timeout() -> None:
    from firmware.camera import PiCameraSource, PiCameraSourceConfig

    source = PiCameraSource(config=PiCameraSourceConfig(capture_timeout_s=2.0))
    try:
        start = time.monotonic()
        frames = iter(source)
        first = next(frames)
        assert first.pixels.shape == (source.height, source.width)
        for _ in range(14):
            next(frames)
        assert time.monotonic() - start < 5.0  # about a second of frames at 15 fps
    finally:
        source.close()
