"""The node's lgpio pins, on a stand-in lgpio that records every level a line is driven to.

gpiozero's own lgpio pins are run on the same stand-in beside them, so the tests show
the very glitch the node's pins remove: a low on the active-low relay at every start.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero import Device

from firmware.lgpio_pins import lgpio_workdir, make_safe_lgpio_factory
from firmware.pins import RelayConfig
from firmware.relay import Relay

PI4_REVISION = 0xC03111
IS_OUT = 1 << 1
PULL_UP, PULL_DOWN, PULL_NONE = 32, 64, 128


class FakeLine:
    def __init__(self) -> None:
        self.output = False
        self.level = 1  # the reference relay's GPIO5 is pulled up at boot
        self.pull = PULL_UP
        self.driven: list[int] = []  # every level the line was driven to, in order
        self.debounce_us = 0
        self.callback: Any = None


class FakeLgpio(types.ModuleType):
    """The calls gpiozero's lgpio pins make, on lines that remember what they did."""

    SET_PULL_NONE = PULL_NONE
    SET_PULL_UP = PULL_UP
    SET_PULL_DOWN = PULL_DOWN
    BOTH_EDGES, RISING_EDGE, FALLING_EDGE = 3, 1, 2

    class error(Exception):  # lgpio's own name
        pass

    def __init__(self) -> None:
        super().__init__("lgpio")
        self.lines: dict[int, FakeLine] = {}

    def line(self, gpio: int) -> FakeLine:
        return self.lines.setdefault(gpio, FakeLine())

    def gpiochip_open(self, chip: int) -> int:
        return 7

    def gpiochip_close(self, handle: int) -> None:
        pass

    def gpio_claim_input(self, handle: int, gpio: int, flags: int = 0) -> None:
        line = self.line(gpio)
        line.output = False
        line.pull = flags
        if flags == PULL_UP:
            line.level = 1
        elif flags == PULL_DOWN:
            line.level = 0

    def gpio_claim_output(self, handle: int, gpio: int, level: int = 0, flags: int = 0) -> None:
        line = self.line(gpio)
        line.output = True
        line.level = level
        line.driven.append(level)

    def gpio_free(self, handle: int, gpio: int) -> None:
        self.line(gpio).output = False

    def gpio_write(self, handle: int, gpio: int, level: int) -> None:
        line = self.line(gpio)
        line.level = int(level)
        line.driven.append(int(level))

    def gpio_read(self, handle: int, gpio: int) -> int:
        return self.line(gpio).level

    def gpio_set_debounce_micros(self, handle: int, gpio: int, micros: int) -> None:
        self.line(gpio).debounce_us = micros

    def gpio_claim_alert(self, handle: int, gpio: int, edges: int, flags: int = 0) -> None:
        self.line(gpio).output = False

    def callback(self, handle: int, gpio: int, edges: int, func: Any) -> Any:
        line = self.line(gpio)
        line.callback = func
        return types.SimpleNamespace(cancel=lambda: None)

    def report(self, gpio: int, level: int, ticks_ns: int) -> None:
        """What lgpio does once a change has held for the debounce time: call back."""
        line = self.line(gpio)
        line.level = level
        line.callback(7, gpio, level, ticks_ns)

    def gpio_get_mode(self, handle: int, gpio: int) -> int:
        line = self.line(gpio)
        return (IS_OUT if line.output else 0) | (0 if line.output else line.pull)


@pytest.fixture
def fake_lgpio(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLgpio]:
    fake = FakeLgpio()
    monkeypatch.setitem(sys.modules, "lgpio", fake)
    # gpiozero's lgpio module binds lgpio when first imported: import it afresh.
    monkeypatch.delitem(sys.modules, "gpiozero.pins.lgpio", raising=False)
    from gpiozero.pins.local import LocalPiFactory

    monkeypatch.setattr(LocalPiFactory, "_get_revision", lambda self: PI4_REVISION)
    monkeypatch.setenv("LG_WD", "/run/pintu-node")
    previous = Device.pin_factory
    yield fake
    Device.pin_factory = previous


def with_factory(factory: Any) -> Callable[[], None]:
    Device.pin_factory = factory

    def done() -> None:
        factory.close()

    return done


REFERENCE_RELAY = RelayConfig(pin=5, active_high=False, wiring="fail_secure")


def test_gpiozero_lgpio_pins_pulse_an_active_low_relay_at_start(fake_lgpio: FakeLgpio) -> None:
    from gpiozero.pins.lgpio import LGPIOFactory

    done = with_factory(LGPIOFactory())
    relay = Relay(REFERENCE_RELAY)
    # Claimed as an output at low (open), then written high (locked).
    assert fake_lgpio.line(5).driven == [0, 1]
    relay.close()
    done()
    assert fake_lgpio.line(5).pull == PULL_NONE  # released: floating


def test_the_node_claims_the_relay_at_its_locked_level(fake_lgpio: FakeLgpio) -> None:
    done = with_factory(make_safe_lgpio_factory())
    relay = Relay(REFERENCE_RELAY)
    line = fake_lgpio.line(5)
    assert relay.locked_level is True
    assert line.driven and set(line.driven) == {1}  # never low, not for a moment
    assert line.output and not relay.is_open
    assert relay.self_test() == []
    relay.arm()
    assert relay.pulse(0.05)
    assert line.driven[-1] == 0  # active low: open
    relay.close()
    assert line.driven[-1] == 1
    # Released pulled up, as the boot pull left it: the relay board stays released.
    assert not line.output and line.pull == PULL_UP and line.level == 1
    done()


@pytest.mark.parametrize(
    ("active_high", "wiring", "locked"),
    [(True, "fail_secure", 0), (True, "fail_safe", 1), (False, "fail_safe", 0)],
)
def test_every_wiring_is_claimed_at_its_locked_level(
    fake_lgpio: FakeLgpio, active_high: bool, wiring: Any, locked: int
) -> None:
    done = with_factory(make_safe_lgpio_factory())
    relay = Relay(RelayConfig(pin=6, active_high=active_high, wiring=wiring))
    assert set(fake_lgpio.line(6).driven) == {locked}
    relay.close()
    assert fake_lgpio.line(6).pull == (PULL_UP if locked else PULL_DOWN)
    done()


def test_other_lines_behave_as_gpiozero_makes_them(fake_lgpio: FakeLgpio) -> None:
    from gpiozero import LED

    done = with_factory(make_safe_lgpio_factory())
    led = LED(17)
    assert fake_lgpio.line(17).driven == [0]
    led.on()
    assert fake_lgpio.line(17).driven == [0, 1]
    led.close()
    assert fake_lgpio.line(17).pull == PULL_NONE
    done()


def test_lgpio_gets_a_writable_directory_under_a_read_only_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.delenv("LG_WD", raising=False)
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(run))
    monkeypatch.chdir("/")
    # / as ProtectSystem=strict leaves it, even for root.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: path != "/" and real_access(path, mode))
    assert lgpio_workdir() == str(run)
    assert os.environ["LG_WD"] == str(run)
    monkeypatch.setenv("LG_WD", "/elsewhere")
    assert lgpio_workdir() == "/elsewhere"


def test_bounce_ms_reaches_lgpio_as_a_stability_filter(fake_lgpio: FakeLgpio) -> None:
    """lgpio's debounce is a stability filter: a change is reported only once the line has
    held its new level for bounce_ms, so a shorter pulse never passes and every reported
    change comes bounce_ms late (RPi.GPIO's bouncetime instead reports the first edge at
    once and ignores the others for that long). A rotation sensor's pulse must therefore
    last longer than its bounce_ms to be counted at all."""
    from firmware.pins import InputConfig
    from firmware.sensors import RotationSensor

    done = with_factory(make_safe_lgpio_factory())
    sensor = RotationSensor(InputConfig(pin=25, bounce_ms=20))
    line = fake_lgpio.line(25)
    assert line.debounce_us == 20_000
    assert sensor.count == 0
    # A pulse that held for the 20 ms: lgpio reports the fall, one person through.
    fake_lgpio.report(25, 0, 1_000_000_000)
    fake_lgpio.report(25, 1, 1_030_000_000)
    assert sensor.count == 1
    sensor.close()
    done()
