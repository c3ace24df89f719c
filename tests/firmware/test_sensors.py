"""Door contact, exit button, rotation sensor and the passage watcher, on simulated inputs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from gpiozero.pins.mock import MockFactory

from firmware.pins import InputConfig
from firmware.sensors import DoorContact, ExitButton, PassageWatcher, RotationSensor

DOOR, BUTTON, ROTATION = 23, 24, 25


@pytest.fixture
def closing() -> Iterator[Callable[[DoorContact | ExitButton | RotationSensor], None]]:
    parts: list[DoorContact | ExitButton | RotationSensor] = []
    yield parts.append
    for part in parts:
        part.close()


@pytest.fixture
def door(mock_factory: MockFactory, closing: Callable[..., None]) -> DoorContact:
    contact = DoorContact(InputConfig(pin=DOOR))
    closing(contact)
    return contact


@pytest.fixture
def rotation(mock_factory: MockFactory, closing: Callable[..., None]) -> RotationSensor:
    sensor = RotationSensor(InputConfig(pin=ROTATION, bounce_ms=0))
    closing(sensor)
    return sensor


def test_door_contact_reports_open_and_closed(mock_factory: MockFactory, door: DoorContact) -> None:
    pin = mock_factory.pin(DOOR)
    seen: list[str] = []
    door.when_opened = lambda: seen.append("opened")
    door.when_closed = lambda: seen.append("closed")
    assert door.is_open  # pulled up, contact open

    pin.drive_low()  # magnet closes the contact
    assert door.is_closed
    pin.drive_high()
    assert door.is_open
    assert seen == ["closed", "opened"]


def test_door_contact_with_pull_down(
    mock_factory: MockFactory, closing: Callable[..., None]
) -> None:
    contact = DoorContact(InputConfig(pin=DOOR, pull_up=False))
    closing(contact)
    pin = mock_factory.pin(DOOR)
    assert pin.pull == "down"
    assert contact.is_open
    pin.drive_high()
    assert contact.is_closed


def test_bounce_time_comes_from_config(
    mock_factory: MockFactory, closing: Callable[..., None]
) -> None:
    closing(ExitButton(InputConfig(pin=BUTTON, bounce_ms=30)))
    closing(RotationSensor(InputConfig(pin=ROTATION, bounce_ms=0)))
    assert mock_factory.pin(BUTTON).bounce == pytest.approx(0.03)
    assert mock_factory.pin(ROTATION).bounce is None


def test_exit_button_calls_back_on_press(
    mock_factory: MockFactory, closing: Callable[..., None]
) -> None:
    button = ExitButton(InputConfig(pin=BUTTON))
    closing(button)
    presses: list[float] = []
    button.when_pressed = lambda: presses.append(time.monotonic())
    pin = mock_factory.pin(BUTTON)
    pin.drive_low()
    assert button.is_pressed
    pin.drive_high()
    pin.drive_low()
    pin.drive_high()
    assert len(presses) == 2
    assert not button.is_pressed


def test_rotation_sensor_counts(mock_factory: MockFactory, rotation: RotationSensor) -> None:
    pin = mock_factory.pin(ROTATION)
    rotated: list[int] = []
    rotation.when_rotated = lambda: rotated.append(rotation.count)
    for _ in range(3):
        pin.drive_low()
        pin.drive_high()
    assert rotation.count == 3
    assert rotated == [1, 2, 3]


def test_a_failing_callback_does_not_stop_the_count(
    mock_factory: MockFactory, rotation: RotationSensor
) -> None:
    def broken() -> None:
        raise RuntimeError("callback bug")

    rotation.when_rotated = broken
    pin = mock_factory.pin(ROTATION)
    pin.drive_low()
    pin.drive_high()
    pin.drive_low()
    assert rotation.count == 2


def test_passage_by_rotation(
    mock_factory: MockFactory, rotation: RotationSensor, door: DoorContact
) -> None:
    watcher = PassageWatcher(rotation=rotation, door=door)
    watcher.expect()
    visitor = threading.Timer(0.01, mock_factory.pin(ROTATION).drive_low)
    visitor.start()
    try:
        assert watcher.wait(timeout_s=2.0) is True
    finally:
        visitor.join()
    watcher.close()


def test_passage_by_door_open_then_closed(mock_factory: MockFactory, door: DoorContact) -> None:
    pin = mock_factory.pin(DOOR)
    pin.drive_low()  # door closed before the pulse
    watcher = PassageWatcher(door=door)
    watcher.expect()
    pin.drive_high()  # opened...
    assert watcher.wait(timeout_s=0.01) is False  # ...but not yet closed behind them
    watcher.expect()  # the door is open now: closing it alone proves nothing
    pin.drive_low()
    assert watcher.wait(timeout_s=0.01) is False
    pin.drive_high()
    pin.drive_low()
    assert watcher.wait(timeout_s=2.0) is True


def test_door_closing_alone_is_no_passage(mock_factory: MockFactory, door: DoorContact) -> None:
    pin = mock_factory.pin(DOOR)  # open (pulled up) when we start watching
    watcher = PassageWatcher(door=door)
    watcher.expect()
    pin.drive_low()
    assert watcher.wait(timeout_s=0.02) is False


def test_timeout_when_nobody_passes(rotation: RotationSensor) -> None:
    watcher = PassageWatcher(rotation=rotation)
    watcher.expect()
    started = time.monotonic()
    assert watcher.wait(timeout_s=0.03) is False
    assert time.monotonic() - started >= 0.03


def test_earlier_rotations_are_forgotten(
    mock_factory: MockFactory, rotation: RotationSensor
) -> None:
    watcher = PassageWatcher(rotation=rotation)
    pin = mock_factory.pin(ROTATION)
    pin.drive_low()  # before expect(): somebody else's passage
    pin.drive_high()
    watcher.expect()
    assert watcher.wait(timeout_s=0.01) is False
    watcher.expect()
    pin.drive_low()
    assert watcher.wait(timeout_s=0.01) is True


def test_without_sensors_nothing_can_be_confirmed() -> None:
    watcher = PassageWatcher()
    assert not watcher.can_confirm
    watcher.expect()
    assert watcher.wait(timeout_s=5.0) is False  # at once, not after the timeout


def test_closed_watcher_stops_listening(
    mock_factory: MockFactory, rotation: RotationSensor
) -> None:
    watcher = PassageWatcher(rotation=rotation)
    watcher.expect()
    watcher.close()
    mock_factory.pin(ROTATION).drive_low()
    assert rotation.count == 1
    assert not watcher.can_confirm
