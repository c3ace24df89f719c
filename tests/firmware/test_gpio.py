"""The GPIO seam: pin factory choice and a whole door's devices built, tested and armed."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

import pytest
from gpiozero import LED, Device
from gpiozero.pins.mock import MockFactory, MockPin

from firmware.errors import FirmwareError, NotArmed, PinConfigError
from firmware.gpio import Devices, select_pin_factory
from firmware.pins import PinMap, RgbLedConfig
from protocol.signals import Signal

Levels = Callable[[MockPin], list[bool]]

RELAY = 5  # the default map's relay: active low, fail-secure, so locked = high
GREEN = 22


class StuckPin(MockPin):
    """A pin whose output driver does nothing."""

    def _set_state(self, value: float) -> None:
        pass


@pytest.fixture
def build(mock_factory: MockFactory) -> Iterator[Callable[[PinMap], Devices]]:
    built: list[Devices] = []

    def make(pin_map: PinMap) -> Devices:
        devices = Devices.build(pin_map)
        built.append(devices)
        return devices

    yield make
    for devices in built:
        devices.close()


def booted(factory: MockFactory) -> MockPin:
    """The relay pin as a Pi leaves GPIO5 at boot: pulled up (relay released)."""
    pin = factory.pin(RELAY)
    pin.drive_high()
    pin.clear_states()
    return pin


def test_auto_leaves_gpiozero_to_choose(mock_factory: MockFactory) -> None:
    select_pin_factory("auto")
    assert Device.pin_factory is mock_factory


def test_mock_keeps_mock_pins_already_in_use(mock_factory: MockFactory) -> None:
    select_pin_factory("mock")
    assert Device.pin_factory is mock_factory


def test_mock_replaces_another_factory(mock_factory: MockFactory) -> None:
    Device.pin_factory = None  # the fixture puts its own back afterwards
    select_pin_factory("mock")
    assert isinstance(Device.pin_factory, MockFactory)
    assert Device.pin_factory is not mock_factory
    Device.pin_factory.close()


def test_unknown_factory_is_a_config_error() -> None:
    with pytest.raises(PinConfigError, match="wiringpi"):
        select_pin_factory("wiringpi")


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("lgpio", "gpiozero.pins.lgpio"),
        ("rpigpio", "gpiozero.pins.rpigpio"),
        ("pigpio", "gpiozero.pins.pigpio"),
    ],
)
def test_real_factory_missing_is_a_firmware_error(
    mock_factory: MockFactory, monkeypatch: pytest.MonkeyPatch, name: str, module: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as on a machine that is not a Pi
    with pytest.raises(FirmwareError, match=name) as caught:
        select_pin_factory(name)
    assert isinstance(caught.value.__cause__, ImportError)
    assert Device.pin_factory is mock_factory


def test_default_map_builds_tests_and_arms(
    mock_factory: MockFactory, build: Callable[[PinMap], Devices], levels: Levels
) -> None:
    relay_pin = booted(mock_factory)
    devices = build(PinMap.default())

    assert levels(relay_pin) == [True]  # claimed locked, never moved
    assert devices.door_contact is None and devices.rotation_sensor is None
    assert devices.self_test(step_s=0) == []
    assert not devices.relay.armed
    devices.arm(step_s=0)
    assert devices.relay.armed
    assert devices.relay.pulse(0.05)
    assert levels(relay_pin) == [True, False]  # active low: low is open


def test_map_with_sensors_and_rgb(
    mock_factory: MockFactory, build: Callable[[PinMap], Devices]
) -> None:
    pin_map = PinMap.default(sensors=True).model_copy(
        update={"leds": RgbLedConfig(red=17, green=27, blue=22)}
    )
    devices = build(pin_map)
    assert devices.door_contact is not None
    assert devices.exit_button is not None
    assert devices.rotation_sensor is not None
    watcher = devices.passage_watcher()
    assert watcher.can_confirm
    watcher.expect()
    mock_factory.pin(25).drive_low()
    assert watcher.wait(timeout_s=1.0)
    devices.arm(step_s=0)
    devices.indicator.show(Signal.YELLOW)
    assert (mock_factory.pin(17).state, mock_factory.pin(27).state) == (True, True)


def test_failed_self_test_keeps_relay_disarmed(
    mock_factory: MockFactory, build: Callable[[PinMap], Devices], levels: Levels
) -> None:
    mock_factory.pin(GREEN, pin_class=StuckPin)
    relay_pin = booted(mock_factory)
    devices = build(PinMap.default())

    assert devices.self_test(step_s=0)
    with pytest.raises(NotArmed, match=f"GPIO{GREEN}"):
        devices.arm(step_s=0)
    assert not devices.relay.armed
    with pytest.raises(NotArmed):
        devices.relay.pulse(0.05)
    assert levels(relay_pin) == [True]


def test_close_locks_the_relay_first(
    mock_factory: MockFactory,
    build: Callable[[PinMap], Devices],
    levels: Levels,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    relay_pin = booted(mock_factory)
    devices = build(PinMap.default(sensors=True))
    devices.arm(step_s=0)
    devices.relay.hold_open()
    devices.indicator.show(Signal.BLACK)

    order: list[str] = []
    for name in ("relay", "indicator", "door_contact", "exit_button", "rotation_sensor"):
        part = getattr(devices, name)
        monkeypatch.setattr(part, "close", _recording(part.close, name, order))
    devices.close()

    assert order == ["relay", "indicator", "door_contact", "exit_button", "rotation_sensor"]
    assert levels(relay_pin) == [True, False, True]
    assert relay_pin.function == "input"
    for _, pin in PinMap.default(sensors=True).pins():
        assert mock_factory.pin(pin).function == "input"


def test_pin_in_use_is_a_config_error_and_releases_the_rest(
    mock_factory: MockFactory, build: Callable[[PinMap], Devices]
) -> None:
    squatter = LED(GREEN)
    try:
        with pytest.raises(PinConfigError, match="GPIO22"):
            build(PinMap.default())
        # The relay claimed before the failure was released: its pin is free again.
        LED(RELAY).close()
    finally:
        squatter.close()


def test_explicit_mock_factory_in_the_map(
    mock_factory: MockFactory, build: Callable[[PinMap], Devices]
) -> None:
    devices = build(PinMap.default().model_copy(update={"pin_factory": "mock"}))
    assert Device.pin_factory is mock_factory
    assert devices.self_test(step_s=0) == []


def _recording(close: Callable[[], None], name: str, order: list[str]) -> Callable[[], None]:
    def wrapper() -> None:
        order.append(name)
        close()

    return wrapper
