"""The relay never opens by mistake: not when built, not when closed, not unarmed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Literal

import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from firmware.errors import NotArmed
from firmware.pins import RelayConfig
from firmware.relay import Relay

Wiring = Literal["fail_secure", "fail_safe"]
Levels = Callable[[MockPin], list[bool]]
WaitUntil = Callable[..., None]

PIN = 5
# A pulse short enough to keep the suite fast, long enough to measure on a busy machine.
PULSE_S = 0.05
TOLERANCE_S = 0.1

WIRINGS = [
    pytest.param(True, "fail_secure", id="active-high-fail-secure"),
    pytest.param(False, "fail_secure", id="active-low-fail-secure"),
    pytest.param(True, "fail_safe", id="active-high-fail-safe"),
    pytest.param(False, "fail_safe", id="active-low-fail-safe"),
]


def locked_level(active_high: bool, wiring: Wiring) -> bool:
    """The pin level that keeps the door locked (see the table in firmware.relay)."""
    energised_when_locked = wiring == "fail_safe"
    return energised_when_locked == active_high


@pytest.fixture
def make_relay(mock_factory: MockFactory) -> Iterator[Callable[..., Relay]]:
    made: list[Relay] = []

    def make(
        active_high: bool = True, wiring: Wiring = "fail_secure", pulse_ms: int = 100
    ) -> Relay:
        relay = Relay(
            RelayConfig(pin=PIN, active_high=active_high, wiring=wiring, pulse_ms=pulse_ms)
        )
        made.append(relay)
        return relay

    yield make
    for relay in made:
        relay.close()


def armed(relay: Relay) -> Relay:
    assert relay.self_test() == []
    relay.arm()
    return relay


@pytest.mark.parametrize(("active_high", "wiring"), WIRINGS)
@pytest.mark.parametrize("idle", [False, True], ids=["pin-idle-low", "pin-idle-high"])
def test_built_locked_without_passing_through_open(
    mock_factory: MockFactory,
    make_relay: Callable[..., Relay],
    levels: Levels,
    active_high: bool,
    wiring: Wiring,
    idle: bool,
) -> None:
    # The level the line sits at before the node claims it (boot pull, relay board).
    pin = mock_factory.pin(PIN)
    if idle:
        pin.drive_high()
    pin.clear_states()
    locked = locked_level(active_high, wiring)

    relay = make_relay(active_high, wiring)

    expected = [idle] if idle == locked else [idle, locked]
    assert levels(pin) == expected
    assert pin.function == "output"
    assert not relay.is_open
    assert not relay.armed


@pytest.mark.parametrize(("active_high", "wiring"), WIRINGS)
def test_pulse_opens_for_its_length_then_locks(
    mock_factory: MockFactory,
    make_relay: Callable[..., Relay],
    levels: Levels,
    wait_until: WaitUntil,
    active_high: bool,
    wiring: Wiring,
) -> None:
    locked = locked_level(active_high, wiring)
    relay = armed(make_relay(active_high, wiring))
    pin = mock_factory.pin(PIN)
    pin.clear_states()

    assert relay.pulse(PULSE_S) is True
    assert relay.is_open  # opened before pulse() returned
    wait_until(lambda: len(pin.states) == 3)

    assert levels(pin) == [locked, not locked, locked]
    open_for = pin.states[2].timestamp
    assert PULSE_S - 0.005 <= open_for <= PULSE_S + TOLERANCE_S
    assert not relay.is_open


def test_pulse_defaults_to_configured_length(
    mock_factory: MockFactory, make_relay: Callable[..., Relay], wait_until: WaitUntil
) -> None:
    relay = armed(make_relay(pulse_ms=100))
    pin = mock_factory.pin(PIN)
    pin.clear_states()
    relay.pulse()
    wait_until(lambda: len(pin.states) == 3)
    assert 0.095 <= pin.states[2].timestamp <= 0.1 + TOLERANCE_S


def test_pulse_is_non_blocking(make_relay: Callable[..., Relay]) -> None:
    relay = armed(make_relay())
    started = time.monotonic()
    relay.pulse(5.0)
    assert time.monotonic() - started < 0.5
    assert relay.is_open
    relay.lock()
    assert not relay.is_open


@pytest.mark.parametrize(("active_high", "wiring"), WIRINGS)
def test_pulse_before_arm_is_refused_and_pin_never_moves(
    mock_factory: MockFactory,
    make_relay: Callable[..., Relay],
    levels: Levels,
    active_high: bool,
    wiring: Wiring,
) -> None:
    relay = make_relay(active_high, wiring)
    pin = mock_factory.pin(PIN)
    pin.clear_states()
    with pytest.raises(NotArmed):
        relay.pulse(PULSE_S)
    with pytest.raises(NotArmed):
        relay.hold_open()
    assert levels(pin) == [locked_level(active_high, wiring)]


def test_arm_needs_a_passing_self_test(make_relay: Callable[..., Relay]) -> None:
    relay = make_relay()
    with pytest.raises(NotArmed, match="self-test"):
        relay.arm()
    assert not relay.armed
    assert relay.self_test() == []
    relay.arm()
    assert relay.armed


def test_lockdown_refuses_pulse_and_hold(
    mock_factory: MockFactory, make_relay: Callable[..., Relay], levels: Levels
) -> None:
    relay = armed(make_relay())
    pin = mock_factory.pin(PIN)
    pin.clear_states()
    relay.lockdown(True)
    assert relay.locked_down
    assert relay.pulse(PULSE_S) is False
    assert relay.hold_open() is False
    assert levels(pin) == [False]

    relay.lockdown(False)
    assert relay.hold_open() is True
    assert relay.is_open


def test_lockdown_locks_an_open_door_at_once(
    mock_factory: MockFactory, make_relay: Callable[..., Relay], levels: Levels
) -> None:
    relay = armed(make_relay())
    pin = mock_factory.pin(PIN)
    pin.clear_states()
    relay.pulse(5.0)
    relay.lockdown(True)
    assert levels(pin) == [False, True, False]
    assert not relay.is_open


def test_hold_open_until_lock_and_pulse_does_not_shorten_it(
    mock_factory: MockFactory, make_relay: Callable[..., Relay], levels: Levels
) -> None:
    relay = armed(make_relay())
    pin = mock_factory.pin(PIN)
    pin.clear_states()
    assert relay.hold_open()
    assert relay.pulse(PULSE_S)
    # Still open well after the pulse would have ended: the hold wins.
    assert not threading.Event().wait(PULSE_S * 2)
    assert relay.is_open
    relay.lock()
    assert levels(pin) == [False, True, False]


def test_second_pulse_extends_instead_of_reopening(
    mock_factory: MockFactory,
    make_relay: Callable[..., Relay],
    levels: Levels,
    wait_until: WaitUntil,
) -> None:
    relay = armed(make_relay())
    pin = mock_factory.pin(PIN)
    pin.clear_states()
    relay.pulse(PULSE_S)
    relay.pulse(PULSE_S * 2)
    wait_until(lambda: len(pin.states) == 3)
    assert levels(pin) == [False, True, False]
    assert pin.states[2].timestamp >= PULSE_S * 2 - 0.005


@pytest.mark.parametrize(("active_high", "wiring"), WIRINGS)
def test_close_locks_before_release(
    mock_factory: MockFactory,
    make_relay: Callable[..., Relay],
    levels: Levels,
    active_high: bool,
    wiring: Wiring,
) -> None:
    locked = locked_level(active_high, wiring)
    relay = armed(make_relay(active_high, wiring))
    pin = mock_factory.pin(PIN)
    pin.clear_states()
    relay.hold_open()
    relay.close()
    assert levels(pin) == [locked, not locked, locked]
    assert pin.function == "input"  # released
    assert relay.closed and not relay.armed
    relay.close()  # twice is harmless
    with pytest.raises(NotArmed):
        relay.pulse(PULSE_S)


def test_close_of_a_locked_relay_moves_nothing(
    mock_factory: MockFactory, make_relay: Callable[..., Relay], levels: Levels
) -> None:
    relay = make_relay(False, "fail_safe")
    pin = mock_factory.pin(PIN)
    pin.clear_states()
    relay.close()
    assert levels(pin) == [False]


def test_on_change_reports_each_change_with_its_time(
    mock_factory: MockFactory, make_relay: Callable[..., Relay], wait_until: WaitUntil
) -> None:
    relay = armed(make_relay())
    changes: list[tuple[bool, float]] = []
    remove = relay.on_change(lambda open_, t: changes.append((open_, t)))

    before = time.monotonic()
    relay.pulse(PULSE_S)
    after = time.monotonic()
    wait_until(lambda: len(changes) == 2)

    (opened, t_open), (locked, t_lock) = changes
    assert (opened, locked) == (True, False)
    assert before <= t_open <= after
    assert PULSE_S - 0.005 <= t_lock - t_open <= PULSE_S + TOLERANCE_S

    remove()
    relay.hold_open()
    relay.lock()
    assert len(changes) == 2


def test_a_failing_listener_does_not_keep_the_door_open(
    make_relay: Callable[..., Relay], wait_until: WaitUntil
) -> None:
    relay = armed(make_relay())
    seen: list[bool] = []

    def broken(open_: bool, t: float) -> None:
        raise RuntimeError("listener bug")

    relay.on_change(broken)
    relay.on_change(lambda open_, t: seen.append(open_))
    relay.pulse(PULSE_S)
    wait_until(lambda: not relay.is_open)
    assert seen == [True, False]


def test_disarm_locks_and_refuses(make_relay: Callable[..., Relay]) -> None:
    relay = armed(make_relay())
    relay.hold_open()
    relay.disarm()
    assert not relay.is_open
    with pytest.raises(NotArmed):
        relay.pulse(PULSE_S)


def test_pulse_length_is_checked(make_relay: Callable[..., Relay]) -> None:
    relay = armed(make_relay())
    for bad in (0.0, -1.0, 31.0):
        with pytest.raises(ValueError, match="pulse"):
            relay.pulse(bad)
    assert not relay.is_open
