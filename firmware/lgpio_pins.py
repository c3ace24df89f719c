"""Pins through lgpio that hold a safe level from the moment they are claimed.

gpiozero's own lgpio pins claim every line as a floating input first, then, for an
output with an initial value, claim it as an output at *low* and only then write the
level asked for. On the reference active-low relay that is a short "open" at every
start. And a closed pin goes back to a floating input, not to the pull the wiring
relies on. The pins here differ in exactly those three places, for the lines a device
has registered a safe level for (:meth:`SafeLGPIOFactory.hold_level`):

- the line is claimed straight as an output at its safe level, never as an input;
- ``output_with_state`` claims the output at the level asked for, in one call;
- on close the line becomes an input pulled towards its safe level (up for high).

Every other line behaves as gpiozero's. Runs only on a Raspberry Pi; the tests use a
stand-in ``lgpio`` module that records every call.

lgpio creates a notification pipe (``.lgd-nfy*``) in its working directory, or in
``$LG_WD``, when it is imported. A service started in ``/`` under
``ProtectSystem=strict`` cannot write there and the import fails; :func:`lgpio_workdir`
points lgpio at a writable directory first.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

__all__ = ["lgpio_workdir", "make_safe_lgpio_factory"]

logger = logging.getLogger(__name__)


def lgpio_workdir() -> str:
    """Make sure lgpio can create its pipe before it is imported; the directory it will use.

    ``$LG_WD`` wins if set. Otherwise the working directory, if it can be written; else
    systemd's ``$RUNTIME_DIRECTORY`` or ``$STATE_DIRECTORY`` (the first of each list),
    else the temporary directory. The choice is put into ``$LG_WD`` for lgpio to read.
    """
    chosen = os.environ.get("LG_WD")
    if chosen:
        return chosen
    cwd = os.getcwd()
    if os.access(cwd, os.W_OK):
        return cwd
    for variable in ("RUNTIME_DIRECTORY", "STATE_DIRECTORY"):
        value = os.environ.get(variable, "")
        first = value.split(":")[0]
        if first and os.access(first, os.W_OK):
            chosen = first
            break
    else:
        chosen = tempfile.gettempdir()
    logger.info("lgpio: working directory %s is read-only, using %s", cwd, chosen)
    os.environ["LG_WD"] = chosen
    return chosen


def make_safe_lgpio_factory(chip: int | None = None) -> Any:
    """A gpiozero pin factory on lgpio whose held lines never leave their safe level.

    Raises ImportError when lgpio is missing and whatever gpiozero raises when this is
    not a Raspberry Pi.
    """
    lgpio_workdir()
    import lgpio
    from gpiozero.pins.lgpio import LGPIOFactory, LGPIOPin
    from gpiozero.pins.local import LocalPiPin

    class SafeLGPIOPin(LGPIOPin):  # type: ignore[misc]
        def __init__(self, factory: Any, info: Any) -> None:
            # LGPIOPin.__init__ would claim the line as a floating input: skip it.
            LocalPiPin.__init__(self, factory, info)
            self._pwm = None
            self._bounce = None
            self._callback = None
            self._edges = lgpio.BOTH_EDGES
            level = factory.safe_levels.get(self._number)
            if level is None:
                lgpio.gpio_claim_input(factory._handle, self._number, lgpio.SET_PULL_NONE)
            else:
                lgpio.gpio_claim_output(factory._handle, self._number, int(level))

        def output_with_state(self, state: Any) -> None:
            if self._callback is not None:
                self._callback.cancel()
                self._callback = None
            # One call: the line is an output already at its level, no low in between.
            lgpio.gpio_claim_output(self.factory._handle, self._number, int(bool(state)))

        def close(self) -> None:
            handle = self.factory._handle
            level = self.factory.safe_levels.get(self._number)
            if handle is None or level is None:
                super().close()
                return
            # Let go of the output, but leave the line pulled towards its safe level: a
            # floating input is what the relay board's own input makes of it.
            pull = lgpio.SET_PULL_UP if level else lgpio.SET_PULL_DOWN
            lgpio.gpio_free(handle, self._number)
            lgpio.gpio_claim_input(handle, self._number, pull)

    class SafeLGPIOFactory(LGPIOFactory):  # type: ignore[misc]
        def __init__(self, chip: int | None = None) -> None:
            self.safe_levels: dict[int, bool] = {}
            super().__init__(chip)
            self.pin_class = SafeLGPIOPin

        def hold_level(self, gpio: int, level: bool) -> None:
            """Claim ``gpio`` at ``level`` and keep it pulled there when released."""
            self.safe_levels[gpio] = level

    return SafeLGPIOFactory(chip)
