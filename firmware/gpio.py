"""The GPIO seam: which pin library runs the pins, and every device of a door built at once.

Door logic gets a :class:`Devices` and never touches a pin library. Off the Pi,
``GPIOZERO_PIN_FACTORY=mock`` (or ``pin_factory = "mock"`` in the pin map) puts every
device on gpiozero's simulated pins.
"""

from __future__ import annotations

import logging
import os
from contextlib import ExitStack
from dataclasses import dataclass

from gpiozero import Device
from gpiozero.exc import GPIOPinInUse, GPIOZeroError, PinInvalidPin
from gpiozero.pins.mock import MockFactory, MockPin

from firmware.errors import FirmwareError, NotArmed, PinConfigError
from firmware.lgpio_pins import make_safe_lgpio_factory
from firmware.pins import PinFactoryName, PinMap
from firmware.relay import Relay
from firmware.sensors import DoorContact, ExitButton, PassageWatcher, RotationSensor
from firmware.signals import Indicator

__all__ = ["Devices", "select_pin_factory"]

logger = logging.getLogger(__name__)

_FACTORY_NAMES: tuple[PinFactoryName, ...] = ("auto", "mock", "lgpio", "rpigpio", "pigpio")


def select_pin_factory(name: str) -> None:
    """Choose the pin library every device built afterwards uses.

    ``auto`` honours ``GPIOZERO_PIN_FACTORY`` when it is set; otherwise it takes the
    lgpio factory of :mod:`firmware.lgpio_pins` where lgpio works (every Raspberry Pi OS
    since Bookworm), and gpiozero's own choice where it does not.
    ``mock`` puts devices on simulated pins; when mock pins are already in use they are
    kept, so devices already built on them and a test holding them keep working. The
    others load that library, which exists only on a Raspberry Pi.
    """
    if name not in _FACTORY_NAMES:
        choices = ", ".join(_FACTORY_NAMES)
        raise PinConfigError(f"unknown pin factory {name!r}: expected one of {choices}")
    if name == "auto":
        if os.environ.get("GPIOZERO_PIN_FACTORY"):
            return
        try:
            Device.pin_factory = make_safe_lgpio_factory()
        except Exception as err:
            # Not a Pi, or no lgpio: gpiozero chooses, as it always did.
            logger.debug("pins: lgpio not usable here (%s), gpiozero chooses", err)
            return
        logger.info("pins: lgpio")
        return
    if name == "mock":
        if not isinstance(Device.pin_factory, MockFactory):
            # Plain pins: no device here uses PWM (the RGB LED is driven on/off), and a
            # released mock PWM pin drops to low, which would show an active-low relay
            # opening as it is closed, something real pins do not do.
            Device.pin_factory = MockFactory(pin_class=MockPin)
            logger.info("pins: simulated (mock)")
        return
    try:
        Device.pin_factory = _real_factory(name)
    except (ImportError, OSError, GPIOZeroError) as err:
        raise FirmwareError(f"pin factory {name!r} cannot start here: {err}") from err
    logger.info("pins: %s", name)


def _real_factory(name: str) -> object:
    # Runs only on a Raspberry Pi.
    if name == "lgpio":
        return make_safe_lgpio_factory()
    if name == "rpigpio":
        from gpiozero.pins.rpigpio import RPiGPIOFactory

        return RPiGPIOFactory()
    from gpiozero.pins.pigpio import PiGPIOFactory

    return PiGPIOFactory()


@dataclass(eq=False)
class Devices:
    """Every GPIO device of one door. Build with :meth:`build`; close with :meth:`close`."""

    indicator: Indicator
    relay: Relay
    door_contact: DoorContact | None = None
    exit_button: ExitButton | None = None
    rotation_sensor: RotationSensor | None = None

    @classmethod
    def build(cls, pin_map: PinMap) -> Devices:
        """Select the pin map's pin factory and claim every pin, the relay first and locked.

        Raises :class:`PinConfigError` when a pin cannot be claimed (in use, or not on
        this board) and :class:`FirmwareError` for any other pin library failure; what
        was already claimed is released.
        """
        select_pin_factory(pin_map.pin_factory)
        try:
            with ExitStack() as stack:
                # The relay first: its pin is claimed at the locked level at once, so a
                # relay line that floats until the node claims it is held as briefly as
                # possible.
                relay = Relay(pin_map.relay)
                stack.callback(relay.close)
                indicator = Indicator(pin_map.leds, pin_map.buzzer)
                stack.callback(indicator.close)
                door = exit_button = rotation = None
                if pin_map.door_contact is not None:
                    door = DoorContact(pin_map.door_contact)
                    stack.callback(door.close)
                if pin_map.exit_button is not None:
                    exit_button = ExitButton(pin_map.exit_button)
                    stack.callback(exit_button.close)
                if pin_map.rotation_sensor is not None:
                    rotation = RotationSensor(pin_map.rotation_sensor)
                    stack.callback(rotation.close)
                stack.pop_all()
        except (GPIOPinInUse, PinInvalidPin) as err:
            raise PinConfigError(f"cannot claim a pin: {err}") from err
        except GPIOZeroError as err:
            raise FirmwareError(f"GPIO failure while claiming pins: {err}") from err
        return cls(indicator, relay, door, exit_button, rotation)

    def passage_watcher(self) -> PassageWatcher:
        """A watcher on this door's rotation sensor and door contact (whichever exist)."""
        return PassageWatcher(rotation=self.rotation_sensor, door=self.door_contact)

    def self_test(self, step_s: float = 0.2) -> list[str]:
        """Test the lamp, buzzer and relay (the relay is not opened); the problems found."""
        return self.indicator.self_test(step_s) + self.relay.self_test()

    def arm(self, step_s: float = 0.2) -> None:
        """Run the self-test and arm the relay if it passes; else raise :class:`NotArmed`."""
        problems = self.self_test(step_s)
        if problems:
            raise NotArmed("self-test failed, relay left disarmed: " + "; ".join(problems))
        self.relay.arm()

    def close(self) -> None:
        """Release every pin, the relay first so the door is locked before anything else."""
        parts = (self.indicator, self.door_contact, self.exit_button, self.rotation_sensor)
        # An ExitStack runs every close even if one fails, last pushed first: the relay
        # is pushed last so it locks before anything else is touched.
        with ExitStack() as stack:
            for part in reversed(parts):
                if part is not None:
                    stack.callback(part.close)
            stack.callback(self.relay.close)
