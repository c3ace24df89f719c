"""Fixtures for the firmware tests: simulated GPIO pins and ways to wait on them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPin


@pytest.fixture
def mock_factory() -> Iterator[MockFactory]:
    """A fresh set of simulated pins for one test; every device on it is closed after.

    Plain (non-PWM) mock pins: no Pintu device uses PWM, and a released mock PWM pin
    drops to low, which would fake an "open" on an active-low relay being closed.
    """
    previous = Device.pin_factory
    factory = MockFactory(pin_class=MockPin)
    Device.pin_factory = factory
    try:
        yield factory
    finally:
        # gpiozero refuses to reserve a pin twice: close whatever a failing test left
        # open, then forget every pin, so the next test starts clean.
        with factory._res_lock:
            leftovers = {
                device
                for refs in factory._reservations.values()
                for ref in refs
                if (device := ref()) is not None
            }
        for device in leftovers:
            device.close()
        factory.reset()
        Device.pin_factory = previous


WaitUntil = Callable[..., None]


def _wait_until(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s} s")
        time.sleep(0.001)  # a poll interval with a deadline, not a guess at how long to wait


@pytest.fixture
def wait_until() -> WaitUntil:
    """``wait_until(condition, timeout_s=2.0)``: poll until it holds, fail after the deadline."""
    return _wait_until


def _levels(pin: MockPin) -> list[bool]:
    return [bool(state.state) for state in pin.states]


@pytest.fixture
def levels() -> Callable[[MockPin], list[bool]]:
    """``levels(pin)``: every level the pin has had, first its level before the test."""
    return _levels
