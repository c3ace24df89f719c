"""The relay that releases a door lock or a turnstile.

"Open" and "locked" are what the door does; what the relay and the pin do depends on
the wiring and the relay board:

==============  ============================  ==========================================
wiring          door open                      door locked
==============  ============================  ==========================================
fail_secure     relay energised                relay released (also: no power, node down)
fail_safe       relay released (also: no       relay energised
                power, node down)
==============  ============================  ==========================================

and the relay is energised by a high pin when ``active_high`` is true, by a low pin when
it is false. So the pin level for "locked" is:

==============  ===================  ====================
wiring          active_high = true   active_high = false
==============  ===================  ====================
fail_secure     low                  high
fail_safe       high                 low
==============  ===================  ====================

A :class:`Relay` claims its pin straight at the locked level (gpiozero's
``initial_value``), so building one never passes through "open". It starts disarmed:
:meth:`Relay.pulse` and :meth:`Relay.hold_open` refuse until a self-test has passed and
:meth:`Relay.arm` was called. :meth:`Relay.close` locks before it lets the pin go.

What happens when the node stops is the wiring's choice, not the software's: a released
pin leaves the relay de-energised, which keeps a fail-secure lock locked and lets a
fail-safe (magnetic) lock open, as fire egress requires of such a lock.

Limits worth knowing on a Pi: between power-on and the node claiming the pin, the pin
follows its boot pull (GPIO0-8 up, GPIO9-27 down), so put a low-triggered relay on
GPIO0-8 and a high-triggered one on GPIO9-27. gpiozero's own lgpio pins claim a line as
a floating input, then as an output at low, before they write the level asked for: a
brief "open" on an active-low relay. The node's lgpio factory
(:mod:`firmware.lgpio_pins`) claims the relay line straight at its locked level, and on
release leaves it pulled towards that level rather than floating.

A process that dies (a crash, SIGKILL, the watchdog) releases the line without running
any of this; on Raspberry Pi kernels a released output keeps driving its last level,
so a death mid-pulse would leave the door open. ``dtparam=strict_gpiod`` in
``/boot/firmware/config.txt`` makes the kernel return a released line to an input, and
the pull then decides: a 10 kΩ resistor from the relay input to the level that locks
(3.3 V for a low-triggered relay) makes it decide "locked" whatever the pin's internal
bias was left at. See docs/provisioning.md, "First day on a real door".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from gpiozero import Device, OutputDevice

from firmware.errors import NotArmed
from firmware.pins import RelayConfig

__all__ = ["ChangeCallback", "Relay"]

logger = logging.getLogger(__name__)

ChangeCallback = Callable[[bool, float], None]
"""Called as ``callback(open, t)`` on every change, ``t`` from :func:`time.monotonic`."""


class Relay:
    """The lock or turnstile relay, armed only after a self-test."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        # The relay is energised while the door is open (fail-secure) or while it is
        # locked (fail-safe): gpiozero's value is "energised".
        self._open_energised = config.wiring == "fail_secure"
        # The pin level that keeps the door locked (see the table above).
        self.locked_level = (not self._open_energised) == config.active_high
        hold_level = getattr(Device.pin_factory, "hold_level", None)
        if hold_level is not None:
            # A factory that can claim the line straight at a level (firmware.lgpio_pins)
            # never lets it pass through "open" or float on release.
            hold_level(config.pin, self.locked_level)
        self._device = OutputDevice(
            config.pin,
            active_high=config.active_high,
            initial_value=not self._open_energised,
        )
        self._lock = threading.RLock()
        self._armed = False
        self._tested = False
        self._locked_down = False
        self._held = False
        self._closed = False
        self._timer: threading.Timer | None = None
        self._callbacks: list[ChangeCallback] = []
        logger.info(
            "relay on GPIO%d (%s, active %s) claimed locked, disarmed",
            config.pin,
            config.wiring,
            "high" if config.active_high else "low",
        )

    @property
    def is_open(self) -> bool:
        """Whether the pin is at the open level right now (read back from the pin)."""
        with self._lock:
            if self._closed:
                return False
            return bool(self._device.value) == self._open_energised

    @property
    def armed(self) -> bool:
        return self._armed

    @property
    def locked_down(self) -> bool:
        return self._locked_down

    @property
    def closed(self) -> bool:
        return self._closed

    def on_change(self, callback: ChangeCallback) -> Callable[[], None]:
        """Call ``callback(open, t)`` on every change; returns a function that stops it.

        ``t`` is taken right after the pin is written, so a caller can time a decision
        up to the moment the relay is driven. Callbacks run on the thread that made the
        change, with the relay's lock held: they must be quick and must not block.
        """
        with self._lock:
            self._callbacks.append(callback)

        def remove() -> None:
            with self._lock:
                if callback in self._callbacks:
                    self._callbacks.remove(callback)

        return remove

    def self_test(self) -> list[str]:
        """Check the pin is claimed as an output and reads back locked; the problems found.

        The relay is never pulsed here: a self-test must not open the door.
        """
        problems: list[str] = []
        with self._lock:
            if self._closed:
                problems.append(f"relay GPIO{self.config.pin} is closed")
            else:
                if self._device.pin.function != "output":
                    problems.append(f"relay GPIO{self.config.pin} is not an output")
                if self.is_open:
                    problems.append(f"relay GPIO{self.config.pin} reads open, expected locked")
            self._tested = not problems
        for problem in problems:
            logger.warning("relay self-test: %s", problem)
        return problems

    def arm(self) -> None:
        """Allow the relay to open; only after :meth:`self_test` has passed."""
        with self._lock:
            if self._closed:
                raise NotArmed("the relay is closed")
            if not self._tested:
                raise NotArmed("the relay is armed only after a passing self-test")
            self._armed = True
        logger.info("relay on GPIO%d armed", self.config.pin)

    def disarm(self) -> None:
        """Lock and refuse to open until armed again."""
        with self._lock:
            self._armed = False
            self.lock()

    def pulse(self, duration_s: float | None = None) -> bool:
        """Open for ``duration_s`` (default: the configured ``pulse_ms``), then lock.

        Returns at once; the relay locks again from a background timer. A pulse while
        already pulsing extends the opening instead of closing and reopening. Returns
        False, leaving the door locked, during a lockdown. Raises :class:`NotArmed` if
        the relay is not armed.
        """
        seconds = self.config.pulse_ms / 1000 if duration_s is None else duration_s
        if not 0 < seconds <= 30:
            raise ValueError(f"a pulse lasts more than 0 and at most 30 s, not {seconds}")
        with self._lock:
            if not self._allowed_to_open("pulse"):
                return False
            if self._held:
                # Already held open by a guard: a pulse must not shorten that.
                return True
            extending = self.is_open  # a pulse in progress: the door stays open longer
            self._cancel_timer()
            timer = threading.Timer(seconds, self._end_pulse)
            timer.daemon = True
            timer.name = f"relay-gpio{self.config.pin}-pulse"
            self._timer = timer
            self._drive(open_=True)
            timer.start()
        # One line per release: the audit trail a guard (or a test) matches to decisions,
        # and to the times the pin went open (an extension opens nothing new).
        if extending:
            logger.info("relay on GPIO%d kept open %.0f ms more", self.config.pin, seconds * 1000)
        else:
            logger.info("relay on GPIO%d pulsed open for %.0f ms", self.config.pin, seconds * 1000)
        return True

    def hold_open(self) -> bool:
        """Open until :meth:`lock` (a guard's remote open); False during a lockdown."""
        with self._lock:
            if not self._allowed_to_open("hold open"):
                return False
            self._cancel_timer()
            self._held = True
            self._drive(open_=True)
            logger.info("relay on GPIO%d held open", self.config.pin)
            return True

    def lock(self) -> None:
        """Lock now, ending any pulse or hold. Works armed or not: locking is always safe."""
        with self._lock:
            self._cancel_timer()
            self._held = False
            if not self._closed:
                self._drive(open_=False)

    def lockdown(self, on: bool) -> None:
        """Start (lock now, refuse every opening) or end a lockdown."""
        with self._lock:
            self._locked_down = on
            if on:
                self.lock()
        if on:
            logger.warning("relay on GPIO%d: lockdown", self.config.pin)
        else:
            logger.info("relay on GPIO%d: lockdown lifted", self.config.pin)

    def close(self) -> None:
        """Lock, then release the pin. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._armed = False
            try:
                self.lock()
            finally:
                self._closed = True
                self._device.close()
        logger.info("relay on GPIO%d released locked", self.config.pin)

    def _allowed_to_open(self, what: str) -> bool:
        if self._closed:
            raise NotArmed("the relay is closed")
        if not self._armed:
            raise NotArmed(f"relay {what} refused: the relay is not armed")
        if self._locked_down:
            logger.warning("relay %s refused: lockdown", what)
            return False
        return True

    def _end_pulse(self) -> None:
        with self._lock:
            if self._timer is not threading.current_thread():
                # Cancelled or replaced by a later pulse after it fired.
                return
            self._timer = None
            if not self._held and not self._closed:
                self._drive(open_=False)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _drive(self, *, open_: bool) -> None:
        """Set the pin for ``open_`` and tell the listeners; the caller holds the lock."""
        was_open = self.is_open
        self._device.value = self._open_energised if open_ else not self._open_energised
        t = time.monotonic()
        if was_open == open_:
            return
        logger.debug("relay on GPIO%d %s", self.config.pin, "open" if open_ else "locked")
        for callback in list(self._callbacks):
            try:
                callback(open_, t)
            except Exception:
                # A broken listener must not leave the door open or stop the others.
                logger.exception("relay change callback %r failed", callback)
