"""The door's inputs: door contact, exit button, turnstile rotation sensor.

Each wraps a gpiozero input with the debounce time from its :class:`InputConfig`.
Callbacks run on gpiozero's event thread (on mock pins: on the thread that drives the
pin); they must be quick. A :class:`PassageWatcher` turns the inputs into the answer the
counting needs after a relay pulse: did the visitor actually pass?
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from gpiozero import Button, DigitalInputDevice

from firmware.pins import InputConfig

__all__ = ["Callback", "DoorContact", "ExitButton", "PassageWatcher", "RotationSensor"]

logger = logging.getLogger(__name__)

Callback = Callable[[], None]

_T = TypeVar("_T")


def _bounce_s(config: InputConfig) -> float | None:
    return config.bounce_ms / 1000 if config.bounce_ms else None


class _Listeners(Generic[_T]):
    """Callables to tell of an event; one that raises is logged and the rest still run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Callable[[_T], None]] = []

    def add(self, fn: Callable[[_T], None]) -> Callable[[], None]:
        with self._lock:
            self._items.append(fn)

        def remove() -> None:
            with self._lock:
                if fn in self._items:
                    self._items.remove(fn)

        return remove

    def call(self, value: _T) -> None:
        with self._lock:
            items = list(self._items)
        for fn in items:
            try:
                fn(value)
            except Exception:
                # One faulty listener must not silence the counting or the others.
                logger.exception("input listener %r failed", fn)


def _call(fn: Callback | None, what: str) -> None:
    if fn is None:
        return
    try:
        fn()
    except Exception:
        logger.exception("%s callback failed", what)


class DoorContact:
    """A reed contact on the door: contact closed (input active) means the door is closed."""

    def __init__(self, config: InputConfig) -> None:
        self.config = config
        self.when_opened: Callback | None = None
        self.when_closed: Callback | None = None
        self._changes: _Listeners[bool] = _Listeners()
        self._device = DigitalInputDevice(
            config.pin, pull_up=config.pull_up, bounce_time=_bounce_s(config)
        )
        self._device.when_activated = self._on_closed
        self._device.when_deactivated = self._on_opened

    @property
    def is_closed(self) -> bool:
        return bool(self._device.is_active)

    @property
    def is_open(self) -> bool:
        return not self.is_closed

    def add_listener(self, fn: Callable[[bool], None]) -> Callable[[], None]:
        """Call ``fn(closed)`` on every change; returns a function that removes it."""
        return self._changes.add(fn)

    def close(self) -> None:
        self._device.close()

    def _on_closed(self) -> None:
        self._changes.call(True)
        _call(self.when_closed, "door closed")

    def _on_opened(self) -> None:
        self._changes.call(False)
        _call(self.when_opened, "door opened")


class ExitButton:
    """The request-to-exit button inside the door."""

    def __init__(self, config: InputConfig) -> None:
        self.config = config
        self.when_pressed: Callback | None = None
        self._device = Button(config.pin, pull_up=config.pull_up, bounce_time=_bounce_s(config))
        self._device.when_pressed = self._on_pressed

    @property
    def is_pressed(self) -> bool:
        return bool(self._device.is_pressed)

    def close(self) -> None:
        self._device.close()

    def _on_pressed(self) -> None:
        _call(self.when_pressed, "exit button")


class RotationSensor:
    """A turnstile's rotation sensor: each activation is one person through."""

    def __init__(self, config: InputConfig) -> None:
        self.config = config
        self.when_rotated: Callback | None = None
        self._lock = threading.Lock()
        self._count = 0
        self._rotations: _Listeners[int] = _Listeners()
        self._device = DigitalInputDevice(
            config.pin, pull_up=config.pull_up, bounce_time=_bounce_s(config)
        )
        self._device.when_activated = self._on_rotated

    @property
    def count(self) -> int:
        """Rotations since the sensor was built."""
        with self._lock:
            return self._count

    def add_listener(self, fn: Callable[[int], None]) -> Callable[[], None]:
        """Call ``fn(count)`` on every rotation; returns a function that removes it."""
        return self._rotations.add(fn)

    def close(self) -> None:
        self._device.close()

    def _on_rotated(self) -> None:
        with self._lock:
            self._count += 1
            count = self._count
        self._rotations.call(count)
        _call(self.when_rotated, "rotation")


class PassageWatcher:
    """Tells whether someone passed after the door was released.

    A passage is a turnstile rotation, or the door opening and then closing, after
    :meth:`expect`. Call :meth:`expect` *before* pulsing the relay, so a quick visitor
    is not missed, then :meth:`wait`::

        watcher.expect()
        relay.pulse()
        passed = watcher.wait(timeout_s=8)  # False: admitted, did not pass
    """

    def __init__(
        self, rotation: RotationSensor | None = None, door: DoorContact | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._passed = threading.Event()
        self._expecting = False
        self._door_opened = False
        self._removers: list[Callable[[], None]] = []
        if rotation is not None:
            self._removers.append(rotation.add_listener(self._on_rotation))
        if door is not None:
            self._removers.append(door.add_listener(self._on_door))

    @property
    def can_confirm(self) -> bool:
        """Whether any sensor is watched; without one, :meth:`wait` cannot confirm a passage."""
        return bool(self._removers)

    def expect(self) -> None:
        """Start watching for one passage, forgetting anything seen before."""
        with self._lock:
            self._passed.clear()
            self._door_opened = False
            self._expecting = True

    def wait(self, timeout_s: float) -> bool:
        """True once a passage is seen after :meth:`expect`; False after ``timeout_s``.

        May be called again to keep waiting; a passage stays seen until the next
        :meth:`expect`. Returns False at once when no sensor is watched (see
        :attr:`can_confirm`).
        """
        if not self.can_confirm:
            return False
        return self._passed.wait(timeout_s)

    def close(self) -> None:
        """Stop listening to the sensors."""
        for remove in self._removers:
            remove()
        self._removers.clear()

    def _on_rotation(self, _count: int) -> None:
        with self._lock:
            if self._expecting:
                self._passed.set()

    def _on_door(self, closed: bool) -> None:
        with self._lock:
            if not self._expecting:
                return
            if not closed:
                self._door_opened = True
            elif self._door_opened:
                self._passed.set()
