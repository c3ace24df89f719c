"""What a visitor sees and hears at the door: how each ``protocol.signals.Signal`` looks on
the lamp and sounds on the buzzer.

Colour is never the only cue: about one man in twelve cannot tell red from green. Every
signal has a light rhythm of its own *and* a tone rhythm of its own, so a visitor who
cannot see the colour, or cannot see the lamp at all, still gets the answer.

==============  ====================================================  =============================
signal          light                                                 tone (active buzzer)
==============  ====================================================  =============================
GREEN           solid green at once                                   one short beep (0.1 s)
YELLOW          two quick yellow blinks (0.15 s/0.15 s), then solid   two short beeps (0.15/0.15 s)
RED             three slow red blinks (0.5 s/0.5 s), then solid red   one long beep (1 s)
BLACK           fast red blink (0.1 s/0.1 s) until cleared            alarm: 1 s on, 0.5 s off,
                                                                      until cleared
FULL            red, dark, yellow, dark (0.3/0.1 s each) three        three beeps (0.25/0.15 s)
                times, then solid red
ERROR           three fast red blinks (0.1 s/0.1 s), then dark        five chirps (0.05/0.05 s)
PROVISIONING    slow yellow blink (1 s/1 s) until cleared             silent
OFF             dark                                                  silent
==============  ====================================================  =============================

A buzzer here is an active buzzer with one pitch of its own, so tones differ in rhythm,
not in pitch. A signal lasts until the next one is shown, or for the duration given to
:meth:`Indicator.show`, after which the indicator goes dark and silent.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from gpiozero import LED, RGBLED, Buzzer

from firmware.pins import BuzzerConfig, LedsConfig, ThreeLedsConfig
from protocol.signals import Signal

__all__ = [
    "PATTERNS",
    "Indicator",
    "Lamp",
    "LightPattern",
    "Pattern",
    "TonePattern",
]

logger = logging.getLogger(__name__)


class Lamp(StrEnum):
    """A colour the lamp can show."""

    RED = "red"
    YELLOW = "yellow"
    GREEN = "green"


@dataclass(frozen=True)
class LightPattern:
    """Phases of ``(lamp or None for dark, seconds)``, played ``repeat`` times, then ``then``.

    ``repeat=None`` plays the phases until the signal is cleared.
    """

    phases: tuple[tuple[Lamp | None, float], ...] = ()
    repeat: int | None = 1
    then: Lamp | None = None

    def __post_init__(self) -> None:
        _check_phases(self.phases, self.repeat)

    def events(self) -> Iterator[tuple[float, Lamp | None]]:
        """``(offset in seconds, lamp)`` for every change, endless if the pattern is."""
        t = 0.0
        if self.phases:
            for _ in _rounds(self.repeat):
                for lamp, seconds in self.phases:
                    yield t, lamp
                    t += seconds
        yield t, self.then

    def shape(self) -> tuple[tuple[tuple[bool, float], ...], int | None, bool]:
        """The rhythm with the colours taken out: what a colour-blind visitor sees."""
        return (
            tuple((lamp is not None, s) for lamp, s in self.phases),
            self.repeat,
            self.then is not None,
        )


@dataclass(frozen=True)
class TonePattern:
    """Phases of ``(sounding, seconds)``, played ``repeat`` times (None: until cleared)."""

    phases: tuple[tuple[bool, float], ...] = ()
    repeat: int | None = 1

    def __post_init__(self) -> None:
        _check_phases(self.phases, self.repeat)

    def events(self) -> Iterator[tuple[float, bool]]:
        """``(offset in seconds, sounding)`` for every change; the pattern ends silent."""
        t = 0.0
        if self.phases:
            for _ in _rounds(self.repeat):
                for sounding, seconds in self.phases:
                    yield t, sounding
                    t += seconds
        yield t, False

    @property
    def silent(self) -> bool:
        return not any(sounding for sounding, _ in self.phases)


@dataclass(frozen=True)
class Pattern:
    """How one signal looks and sounds."""

    colour: Lamp | None
    light: LightPattern
    tone: TonePattern

    def scaled(self, factor: float) -> Pattern:
        """The same pattern played ``factor`` times as long (a demo or test runs it fast)."""
        if factor <= 0:
            raise ValueError(f"scale factor must be positive, not {factor}")
        light = LightPattern(
            tuple((lamp, s * factor) for lamp, s in self.light.phases),
            self.light.repeat,
            self.light.then,
        )
        tone = TonePattern(tuple((on, s * factor) for on, s in self.tone.phases), self.tone.repeat)
        return Pattern(self.colour, light, tone)


def _check_phases(phases: tuple[tuple[object, float], ...], repeat: int | None) -> None:
    if any(seconds <= 0 for _, seconds in phases):
        raise ValueError("every phase of a pattern must last a positive time")
    if repeat is not None and repeat < 1:
        raise ValueError(f"repeat must be at least 1 or None (forever), not {repeat}")


def _rounds(repeat: int | None) -> Iterable[int]:
    return itertools.count() if repeat is None else range(repeat)


def _solid(lamp: Lamp) -> LightPattern:
    return LightPattern(then=lamp)


def _blink(
    lamp: Lamp, on_s: float, off_s: float, n: int | None, then: Lamp | None = None
) -> LightPattern:
    return LightPattern(((lamp, on_s), (None, off_s)), n, then)


def _beeps(on_s: float, off_s: float, n: int | None) -> TonePattern:
    return TonePattern(((True, on_s), (False, off_s)), n)


PATTERNS: Mapping[Signal, Pattern] = MappingProxyType(
    {
        Signal.GREEN: Pattern(Lamp.GREEN, _solid(Lamp.GREEN), TonePattern(((True, 0.1),))),
        Signal.YELLOW: Pattern(
            Lamp.YELLOW, _blink(Lamp.YELLOW, 0.15, 0.15, 2, then=Lamp.YELLOW), _beeps(0.15, 0.15, 2)
        ),
        Signal.RED: Pattern(
            Lamp.RED, _blink(Lamp.RED, 0.5, 0.5, 3, then=Lamp.RED), TonePattern(((True, 1.0),))
        ),
        Signal.BLACK: Pattern(Lamp.RED, _blink(Lamp.RED, 0.1, 0.1, None), _beeps(1.0, 0.5, None)),
        Signal.FULL: Pattern(
            Lamp.RED,
            LightPattern(
                ((Lamp.RED, 0.3), (None, 0.1), (Lamp.YELLOW, 0.3), (None, 0.1)), 3, then=Lamp.RED
            ),
            _beeps(0.25, 0.15, 3),
        ),
        Signal.ERROR: Pattern(Lamp.RED, _blink(Lamp.RED, 0.1, 0.1, 3), _beeps(0.05, 0.05, 5)),
        Signal.PROVISIONING: Pattern(
            Lamp.YELLOW, _blink(Lamp.YELLOW, 1.0, 1.0, None), TonePattern()
        ),
        Signal.OFF: Pattern(None, LightPattern(), TonePattern()),
    }
)


class _Lamps:
    """The LED hardware behind one :class:`Lamp` value: three LEDs or one RGB LED."""

    _RGB: Mapping[Lamp | None, tuple[int, int, int]] = MappingProxyType(
        {None: (0, 0, 0), Lamp.RED: (1, 0, 0), Lamp.YELLOW: (1, 1, 0), Lamp.GREEN: (0, 1, 0)}
    )

    def __init__(self, config: LedsConfig) -> None:
        self.config = config
        self._three: dict[Lamp, LED] = {}
        self._rgb: RGBLED | None = None
        with ExitStack() as stack:
            if isinstance(config, ThreeLedsConfig):
                pins = {Lamp.RED: config.red, Lamp.YELLOW: config.yellow, Lamp.GREEN: config.green}
                for lamp, pin in pins.items():
                    led = LED(pin, active_high=config.active_high, initial_value=False)
                    stack.callback(led.close)
                    self._three[lamp] = led
            else:
                # Without PWM each channel is plain on/off: red, yellow (red + green) and green
                # need nothing more, and plain pins work with every pin factory.
                self._rgb = RGBLED(
                    config.red,
                    config.green,
                    config.blue,
                    active_high=config.active_high,
                    initial_value=(0, 0, 0),
                    pwm=False,
                )
                stack.callback(self._rgb.close)
            stack.pop_all()

    def show(self, lamp: Lamp | None) -> None:
        if self._rgb is not None:
            self._rgb.value = self._RGB[lamp]
            return
        for colour, led in self._three.items():
            led.value = colour is lamp

    def read(self) -> tuple[int, ...]:
        """The level each LED pin reads back, in wiring order."""
        if self._rgb is not None:
            return tuple(int(v) for v in self._rgb.value)
        return tuple(int(led.value) for led in self._three.values())

    def expected(self, lamp: Lamp | None) -> tuple[int, ...]:
        if self._rgb is not None:
            return self._RGB[lamp]
        return tuple(int(colour is lamp) for colour in self._three)

    def names(self) -> tuple[str, ...]:
        """A name for each LED pin, in the order of :meth:`read`."""
        c = self.config
        if isinstance(c, ThreeLedsConfig):
            return (
                f"red LED GPIO{c.red}",
                f"yellow LED GPIO{c.yellow}",
                f"green LED GPIO{c.green}",
            )
        return (
            f"RGB red channel GPIO{c.red}",
            f"RGB green channel GPIO{c.green}",
            f"RGB blue channel GPIO{c.blue}",
        )

    def lit(self) -> Lamp | None:
        """The lamp the pins show now (None when dark or in no known colour)."""
        levels = self.read()
        for lamp in Lamp:
            if levels == self.expected(lamp):
                return lamp
        return None

    def close(self) -> None:
        if self._rgb is not None:
            self._rgb.close()
        for led in self._three.values():
            led.close()


_Step = tuple[float, Callable[[], None]]


class Indicator:
    """The lamp and buzzer of a door, playing one :class:`Signal` at a time.

    :meth:`show` returns at once: the first state of the pattern is on the pins when it
    returns, the rest is played by a background thread. ``patterns`` is the table
    played, :data:`PATTERNS` unless a site tunes it (or a demo speeds it up with
    :meth:`Pattern.scaled`).
    """

    def __init__(
        self,
        leds: LedsConfig,
        buzzer: BuzzerConfig | None = None,
        *,
        patterns: Mapping[Signal, Pattern] = PATTERNS,
    ) -> None:
        missing = set(Signal) - set(patterns)
        if missing:
            raise ValueError(f"patterns missing for {sorted(missing)}")
        self._patterns = patterns
        self._buzzer_config = buzzer
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._signal = Signal.OFF
        self._closed = False
        with ExitStack() as stack:
            self._lamps = _Lamps(leds)
            stack.callback(self._lamps.close)
            self._buzzer: Buzzer | None = None
            if buzzer is not None:
                self._buzzer = Buzzer(
                    buzzer.pin, active_high=buzzer.active_high, initial_value=False
                )
            stack.pop_all()

    @property
    def signal(self) -> Signal:
        """The signal shown last (OFF after a timed signal ends)."""
        return self._signal

    @property
    def lit(self) -> Lamp | None:
        """The colour the LED pins show right now, read back from the pins."""
        return self._lamps.lit()

    @property
    def sounding(self) -> bool:
        """Whether the buzzer pin is on right now."""
        return self._buzzer is not None and bool(self._buzzer.value)

    def show(self, signal: Signal, duration_s: float | None = None) -> None:
        """Show ``signal`` (replacing the one shown), for ``duration_s`` or until the next one."""
        if duration_s is not None and duration_s <= 0:
            raise ValueError(f"duration must be positive, not {duration_s}")
        pattern = self._patterns[signal]
        with self._lock:
            self._check_open()
            self._halt()
            self._signal = signal
            steps = self._steps(pattern, duration_s)
            # Put the first state on the pins before returning, so the visitor's answer
            # does not wait for a thread to be scheduled.
            first = next(steps, None)
            while first is not None and first[0] <= 0:
                first[1]()
                first = next(steps, None)
            if first is None:
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._play,
                args=(itertools.chain([first], steps), self._stop),
                name=f"indicator-{signal}",
                daemon=True,
            )
            self._thread.start()

    def off(self) -> None:
        """Go dark and silent."""
        self.show(Signal.OFF)

    def wait(self, timeout_s: float) -> bool:
        """Wait for the signal shown to finish playing; False if it still plays after the timeout.

        A signal that repeats until cleared (BLACK, PROVISIONING) never finishes by itself.
        """
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout_s)
        return not thread.is_alive()

    def self_test(self, step_s: float = 0.2) -> list[str]:
        """Light each colour and sound the buzzer for ``step_s``; the problems found, if any.

        Each pin is read back after it is set. That catches a pin the node could not
        drive (claimed elsewhere, wrong factory, stuck); a burnt-out LED draws no
        attention from a pin, so a technician watching the lamp is the rest of the test.
        """
        problems: list[str] = []
        with self._lock:
            self._check_open()
            self._halt()
            self._signal = Signal.OFF
            pause = threading.Event()
            for lamp in (*Lamp, None):
                self._lamps.show(lamp)
                problems.extend(self._compare(lamp))
                if lamp is not None:
                    pause.wait(step_s)
            if self._buzzer is not None:
                for sounding in (True, False):
                    self._buzzer.value = sounding
                    if bool(self._buzzer.value) != sounding:
                        state = "on" if sounding else "off"
                        problems.append(f"buzzer GPIO{self._buzzer_pin} did not turn {state}")
                    if sounding:
                        pause.wait(min(step_s, 0.1))
        for problem in problems:
            logger.warning("indicator self-test: %s", problem)
        return problems

    def close(self) -> None:
        """Stop the pattern, go dark and silent, and release the pins."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._halt()
            try:
                self._lamps.show(None)
                if self._buzzer is not None:
                    self._buzzer.off()
            finally:
                if self._buzzer is not None:
                    self._buzzer.close()
                self._lamps.close()
        if thread is not None:
            thread.join()

    @property
    def _buzzer_pin(self) -> int:
        return -1 if self._buzzer_config is None else self._buzzer_config.pin

    def _compare(self, lamp: Lamp | None) -> list[str]:
        want = self._lamps.expected(lamp)
        got = self._lamps.read()
        colour = "dark" if lamp is None else lamp.value
        return [
            f"{name} read {g} after setting {w} (showing {colour})"
            for name, w, g in zip(self._lamps.names(), want, got, strict=True)
            if w != g
        ]

    def _steps(self, pattern: Pattern, duration_s: float | None) -> Iterator[_Step]:
        lamps = self._lamps
        light: Iterator[_Step] = (
            (t, _bind(lamps.show, lamp)) for t, lamp in pattern.light.events()
        )
        streams = [light]
        buzzer = self._buzzer
        if buzzer is not None:
            streams.append((t, _bind(_set_buzzer, buzzer, on)) for t, on in pattern.tone.events())
        merged: Iterator[_Step] = heapq.merge(*streams, key=lambda step: step[0])
        if duration_s is None:
            return merged
        end: _Step = (duration_s, self._end_timed)
        return itertools.chain(itertools.takewhile(lambda s: s[0] < duration_s, merged), [end])

    def _end_timed(self) -> None:
        self._lamps.show(None)
        if self._buzzer is not None:
            self._buzzer.off()
        self._signal = Signal.OFF

    def _play(self, steps: Iterator[_Step], stop: threading.Event) -> None:
        start = time.monotonic()
        for offset, apply in steps:
            if stop.wait(max(0.0, start + offset - time.monotonic())):
                return
            with self._lock:
                # show() may have replaced this pattern while we waited for the lock.
                if stop.is_set():
                    return
                apply()

    def _halt(self) -> threading.Thread | None:
        """Stop the pattern playing; the caller holds the lock.

        No join here: the thread checks its stop flag under the same lock before each
        step, so once the flag is set it can no longer touch a pin. It returns the thread
        for a caller that wants to wait for it to end outside the lock.
        """
        self._stop.set()
        thread, self._thread = self._thread, None
        return thread

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the indicator is closed")


def _bind(fn: Callable[..., None], *args: object) -> Callable[[], None]:
    def call() -> None:
        fn(*args)

    return call


def _set_buzzer(buzzer: Buzzer, on: bool) -> None:
    buzzer.value = on
