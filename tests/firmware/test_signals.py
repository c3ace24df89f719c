"""Each signal lights the right lamp and has a rhythm and a tone of its own."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Mapping

import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from firmware.pins import BuzzerConfig, RgbLedConfig, ThreeLedsConfig
from firmware.signals import PATTERNS, Indicator, Lamp, Pattern
from protocol.signals import Signal

Levels = Callable[[MockPin], list[bool]]

RED, YELLOW, GREEN, BUZZER = 17, 27, 22, 18
R, G, B = 5, 6, 13
THREE = ThreeLedsConfig(red=RED, yellow=YELLOW, green=GREEN)
RGB = RgbLedConfig(red=R, green=G, blue=B)
BUZZ = BuzzerConfig(pin=BUZZER)
# Patterns played twenty times faster, so a test sees a whole pattern in a blink.
SCALE = 0.05
FAST: Mapping[Signal, Pattern] = {s: p.scaled(SCALE) for s, p in PATTERNS.items()}
VISIBLE = [s for s in Signal if s is not Signal.OFF]


class StuckPin(MockPin):
    """A pin whose output driver does nothing, as if damaged or held by other hardware."""

    def _set_state(self, value: float) -> None:
        pass


@pytest.fixture
def make_indicator(mock_factory: MockFactory) -> Iterator[Callable[..., Indicator]]:
    made: list[Indicator] = []

    def make(
        leds: ThreeLedsConfig | RgbLedConfig = THREE,
        buzzer: BuzzerConfig | None = BUZZ,
        patterns: Mapping[Signal, Pattern] = FAST,
    ) -> Indicator:
        indicator = Indicator(leds, buzzer, patterns=patterns)
        made.append(indicator)
        return indicator

    yield make
    for indicator in made:
        indicator.close()


def lit(factory: MockFactory, *pins: int) -> tuple[bool, ...]:
    return tuple(bool(factory.pin(p).state) for p in pins)


def test_every_signal_has_a_pattern_with_its_colour() -> None:
    assert set(PATTERNS) == set(Signal)
    colours = {s: PATTERNS[s].colour for s in Signal}
    assert colours == {
        Signal.GREEN: Lamp.GREEN,
        Signal.YELLOW: Lamp.YELLOW,
        Signal.RED: Lamp.RED,
        Signal.BLACK: Lamp.RED,
        Signal.FULL: Lamp.RED,
        Signal.ERROR: Lamp.RED,
        Signal.PROVISIONING: Lamp.YELLOW,
        Signal.OFF: None,
    }


@pytest.mark.parametrize(("a", "b"), list(itertools.combinations(VISIBLE, 2)))
def test_no_two_signals_share_a_rhythm_or_a_tone(a: Signal, b: Signal) -> None:
    # Colour is taken out of the comparison: a visitor who cannot see it still needs
    # the blink rhythm and the tone to tell the answers apart.
    assert PATTERNS[a].light.shape() != PATTERNS[b].light.shape()
    assert PATTERNS[a].tone != PATTERNS[b].tone


def test_every_answer_to_a_visitor_sounds() -> None:
    for signal in (Signal.GREEN, Signal.YELLOW, Signal.RED, Signal.BLACK, Signal.FULL):
        assert not PATTERNS[signal].tone.silent, signal
    assert PATTERNS[Signal.OFF].tone.silent


def test_black_repeats_until_cleared_red_does_not() -> None:
    assert PATTERNS[Signal.BLACK].light.repeat is None
    assert PATTERNS[Signal.BLACK].tone.repeat is None
    assert PATTERNS[Signal.RED].tone.repeat == 1


FIRST_LAMP = {
    Signal.GREEN: (False, False, True),
    Signal.YELLOW: (False, True, False),
    Signal.RED: (True, False, False),
    Signal.BLACK: (True, False, False),
    Signal.FULL: (True, False, False),
    Signal.ERROR: (True, False, False),
    Signal.PROVISIONING: (False, True, False),
    Signal.OFF: (False, False, False),
}


@pytest.mark.parametrize("signal", list(Signal))
def test_show_lights_the_right_led_before_returning(
    mock_factory: MockFactory, make_indicator: Callable[..., Indicator], signal: Signal
) -> None:
    indicator = make_indicator(patterns=PATTERNS)
    indicator.show(signal)
    assert lit(mock_factory, RED, YELLOW, GREEN) == FIRST_LAMP[signal]
    assert indicator.signal is signal
    assert indicator.sounding == (signal not in (Signal.PROVISIONING, Signal.OFF))


RGB_LEVELS = {
    Lamp.RED: (True, False, False),
    Lamp.YELLOW: (True, True, False),
    Lamp.GREEN: (False, True, False),
    None: (False, False, False),
}


@pytest.mark.parametrize("signal", list(Signal))
def test_rgb_led_mixes_the_colour(
    mock_factory: MockFactory, make_indicator: Callable[..., Indicator], signal: Signal
) -> None:
    indicator = make_indicator(leds=RGB, patterns=PATTERNS)
    indicator.show(signal)
    first_lamp = next(PATTERNS[signal].light.events())[1]
    assert lit(mock_factory, R, G, B) == RGB_LEVELS[first_lamp]
    assert indicator.lit is first_lamp


def test_red_blinks_three_times_then_stays_with_one_long_beep(
    mock_factory: MockFactory, make_indicator: Callable[..., Indicator], levels: Levels
) -> None:
    indicator = make_indicator()
    indicator.show(Signal.RED)
    assert indicator.wait(2.0)
    assert levels(mock_factory.pin(RED)) == [False, True, False, True, False, True, False, True]
    buzzer = mock_factory.pin(BUZZER)
    assert levels(buzzer) == [False, True, False]
    assert buzzer.states[2].timestamp == pytest.approx(1.0 * SCALE, abs=0.04)
    assert indicator.lit is Lamp.RED


def test_black_alarm_repeats_and_differs_from_red(
    mock_factory: MockFactory,
    make_indicator: Callable[..., Indicator],
    levels: Levels,
    wait_until: Callable[..., None],
) -> None:
    indicator = make_indicator()
    buzzer = mock_factory.pin(BUZZER)
    indicator.show(Signal.BLACK)
    wait_until(lambda: len(buzzer.states) >= 6)
    assert not indicator.wait(0)  # still sounding: the alarm runs until cleared
    indicator.off()
    black = levels(buzzer)
    assert black[:6] == [False, True, False, True, False, True]
    assert black[-1] is False
    # Red pin blinks fast while the alarm sounds.
    assert len(mock_factory.pin(RED).states) > len(black)

    buzzer.clear_states()
    indicator.show(Signal.RED)
    assert indicator.wait(2.0)
    assert levels(buzzer) == [False, True, False]  # red: a single beep, never repeated


def test_yellow_beeps_twice_green_once(
    mock_factory: MockFactory, make_indicator: Callable[..., Indicator], levels: Levels
) -> None:
    indicator = make_indicator()
    buzzer = mock_factory.pin(BUZZER)
    indicator.show(Signal.GREEN)
    assert indicator.wait(2.0)
    assert levels(buzzer) == [False, True, False]
    assert levels(mock_factory.pin(GREEN)) == [False, True]

    buzzer.clear_states()
    indicator.show(Signal.YELLOW)
    assert indicator.wait(2.0)
    assert levels(buzzer) == [False, True, False, True, False]
    assert levels(mock_factory.pin(YELLOW)) == [False, True, False, True, False, True]


def test_full_alternates_red_and_yellow(
    mock_factory: MockFactory, make_indicator: Callable[..., Indicator], levels: Levels
) -> None:
    indicator = make_indicator()
    indicator.show(Signal.FULL)
    assert indicator.wait(2.0)
    assert levels(mock_factory.pin(RED)) == [False] + [True, False] * 3 + [True]
    assert levels(mock_factory.pin(YELLOW)) == [False] + [True, False] * 3
    assert levels(mock_factory.pin(BUZZER)) == [False] + [True, False] * 3


def test_timed_signal_ends_dark_and_silent(
    mock_factory: MockFactory, make_indicator: Callable[..., Indicator]
) -> None:
    indicator = make_indicator()
    indicator.show(Signal.BLACK, duration_s=0.05)
    assert indicator.wait(2.0)
    assert lit(mock_factory, RED, YELLOW, GREEN, BUZZER) == (False, False, False, False)
    assert indicator.signal is Signal.OFF


def test_a_new_signal_stops_the_old_pattern(
    mock_factory: MockFactory, make_indicator: Callable[..., Indicator]
) -> None:
    indicator = make_indicator()
    indicator.show(Signal.BLACK)
    indicator.show(Signal.GREEN)
    assert indicator.wait(2.0)
    red = mock_factory.pin(RED)
    changes = len(red.states)
    # Several alarm periods at this speed: the old pattern must not touch the pins.
    threading.Event().wait(0.05)
    assert len(red.states) == changes
    assert lit(mock_factory, RED, YELLOW, GREEN, BUZZER) == (False, False, True, False)


def test_without_buzzer_the_lamp_still_works(
    mock_factory: MockFactory, make_indicator: Callable[..., Indicator]
) -> None:
    indicator = make_indicator(buzzer=None)
    indicator.show(Signal.YELLOW)
    assert lit(mock_factory, RED, YELLOW, GREEN) == (False, True, False)
    assert not indicator.sounding
    assert indicator.self_test(step_s=0) == []


@pytest.mark.parametrize("leds", [THREE, RGB], ids=["three", "rgb"])
def test_self_test_passes_and_ends_dark(
    mock_factory: MockFactory,
    make_indicator: Callable[..., Indicator],
    levels: Levels,
    leds: ThreeLedsConfig | RgbLedConfig,
) -> None:
    indicator = make_indicator(leds=leds)
    assert indicator.self_test(step_s=0) == []
    assert indicator.lit is None
    assert not indicator.sounding
    assert levels(mock_factory.pin(BUZZER)) == [False, True, False]


def test_self_test_names_a_pin_that_does_not_move(
    mock_factory: MockFactory, make_indicator: Callable[..., Indicator]
) -> None:
    mock_factory.pin(GREEN, pin_class=StuckPin)
    indicator = make_indicator()
    problems = indicator.self_test(step_s=0)
    assert problems
    assert all(f"GPIO{GREEN}" in p for p in problems)
    assert any("green LED" in p for p in problems)


def test_self_test_names_a_stuck_buzzer(
    mock_factory: MockFactory, make_indicator: Callable[..., Indicator]
) -> None:
    mock_factory.pin(BUZZER, pin_class=StuckPin)
    problems = make_indicator().self_test(step_s=0)
    assert problems == [f"buzzer GPIO{BUZZER} did not turn on"]


def test_close_goes_dark_and_releases_the_pins(
    mock_factory: MockFactory, make_indicator: Callable[..., Indicator]
) -> None:
    indicator = make_indicator()
    indicator.show(Signal.BLACK)
    indicator.close()
    assert lit(mock_factory, RED, YELLOW, GREEN, BUZZER) == (False, False, False, False)
    assert mock_factory.pin(RED).function == "input"
    indicator.close()
    with pytest.raises(RuntimeError, match="closed"):
        indicator.show(Signal.GREEN)


def test_patterns_are_validated() -> None:
    from firmware.signals import LightPattern, TonePattern

    with pytest.raises(ValueError, match="positive"):
        LightPattern(((Lamp.RED, 0.0),))
    with pytest.raises(ValueError, match="repeat"):
        TonePattern(((True, 0.1),), repeat=0)
    with pytest.raises(ValueError, match="positive"):
        PATTERNS[Signal.RED].scaled(0)


def test_show_rejects_a_bad_duration(make_indicator: Callable[..., Indicator]) -> None:
    with pytest.raises(ValueError, match="duration"):
        make_indicator().show(Signal.GREEN, duration_s=0)
