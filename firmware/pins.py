"""The typed pin map of a door node: which BCM GPIO drives or reads what.

Pins are BCM numbers (the ``GPIOn`` names), 0..27 on every 40-pin Raspberry Pi header.
A pin used twice is an error that names both keys, so a wiring typo cannot make a
relay and an LED share a line.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import Field, model_validator

from firmware.errors import PinConfigError
from protocol.model import StrictModel

__all__ = [
    "BcmPin",
    "BuzzerConfig",
    "InputConfig",
    "LedsConfig",
    "PinFactoryName",
    "PinMap",
    "RelayConfig",
    "RgbLedConfig",
    "ThreeLedsConfig",
]

# strict: a pin written as `true` or `"17"` is a typo, not a pin number.
BcmPin = Annotated[
    int,
    Field(ge=0, le=27, strict=True, description="BCM GPIO number (0..27), not the header pin"),
]

PinFactoryName = Literal["auto", "mock", "lgpio", "rpigpio", "pigpio"]


class ThreeLedsConfig(StrictModel):
    """Three single-colour LEDs, one per colour, like a traffic light."""

    kind: Literal["three"] = Field(
        default="three", description='"three": a red, a yellow and a green LED'
    )
    red: BcmPin = Field(description="GPIO of the red LED")
    yellow: BcmPin = Field(description="GPIO of the yellow (amber) LED")
    green: BcmPin = Field(description="GPIO of the green LED")
    active_high: bool = Field(
        default=True,
        description="true when a high pin lights the LED (anode to the pin); "
        "false when the pin sinks current (cathode to the pin)",
    )


class RgbLedConfig(StrictModel):
    """One RGB LED (or LED strip driver) with a pin per channel; yellow is red + green."""

    kind: Literal["rgb"] = Field(default="rgb", description='"rgb": one red-green-blue LED')
    red: BcmPin = Field(description="GPIO of the red channel")
    green: BcmPin = Field(description="GPIO of the green channel")
    blue: BcmPin = Field(description="GPIO of the blue channel")
    active_high: bool = Field(
        default=True,
        description="true for a common-cathode LED (high lights a channel); "
        "false for a common-anode LED (low lights a channel)",
    )


LedsConfig = Annotated[ThreeLedsConfig | RgbLedConfig, Field(discriminator="kind")]


class BuzzerConfig(StrictModel):
    """An active buzzer: it sounds its own tone while the pin is on."""

    pin: BcmPin = Field(description="GPIO of the buzzer")
    active_high: bool = Field(default=True, description="true when a high pin sounds the buzzer")


class RelayConfig(StrictModel):
    """The relay that releases the lock or turnstile.

    Neither ``active_high`` nor ``wiring`` has a default: getting either wrong opens the
    door when it should be locked, so the installer states both.
    """

    pin: BcmPin = Field(description="GPIO of the relay input")
    active_high: bool = Field(
        description="true when a high pin energises the relay; false for the many relay "
        'boards that energise on a low pin ("low level trigger")',
    )
    pulse_ms: int = Field(
        default=3000,
        ge=100,
        le=30_000,
        description="how long one admission opens the door or turnstile, in milliseconds",
    )
    wiring: Literal["fail_secure", "fail_safe"] = Field(
        description='"fail_secure": the lock stays locked without power and opens while the '
        "relay is energised (electric strike, turnstile release input); "
        '"fail_safe": the lock opens without power, so the relay is energised to hold it '
        "locked and released to open it (magnetic lock; the door opens on a power cut or "
        "when the node stops, as fire egress requires)",
    )


class InputConfig(StrictModel):
    """A switch or sensor input: door contact, exit button or turnstile rotation sensor."""

    pin: BcmPin = Field(description="GPIO the switch or sensor output is wired to")
    pull_up: bool = Field(
        default=True,
        description="true: internal pull-up, the switch connects the pin to ground "
        "(active when low); false: internal pull-down, the switch connects it to 3.3 V",
    )
    bounce_ms: int = Field(
        default=50,
        ge=0,
        le=1000,
        description="debounce, in milliseconds (0: none). With lgpio (the pin library on "
        "Raspberry Pi OS) it is a stability filter: a change counts only once the line has "
        "held its new level this long, so shorter pulses never pass and every change is "
        "seen this much later; a sensor's pulse must last longer than this to be counted. "
        "With rpigpio the first edge counts at once and further edges are ignored this long",
    )


class PinMap(StrictModel):
    """Every GPIO a door node uses, and how the pins are reached."""

    leds: LedsConfig = Field(description="the signal lamp: three LEDs or one RGB LED")
    buzzer: BuzzerConfig | None = Field(default=None, description="the buzzer, if fitted")
    relay: RelayConfig = Field(description="the lock or turnstile relay")
    door_contact: InputConfig | None = Field(
        default=None,
        description="reed contact on the door, if fitted; active (contact closed) = door closed",
    )
    exit_button: InputConfig | None = Field(
        default=None, description="request-to-exit push button, if fitted"
    )
    rotation_sensor: InputConfig | None = Field(
        default=None,
        description="turnstile rotation sensor, if fitted: one activation per passage",
    )
    pin_factory: PinFactoryName = Field(
        default="auto",
        description='how pins are reached: "auto" lets gpiozero choose (it honours '
        'GPIOZERO_PIN_FACTORY), "mock" runs on simulated pins, the others force that '
        "library (lgpio is the only one that works on a Pi 5)",
    )

    def pins(self) -> Iterator[tuple[str, int]]:
        """Every ``(key, pin)`` in use, the key as a dotted path such as ``leds.red``."""
        leds = self.leds
        if isinstance(leds, ThreeLedsConfig):
            yield from (("leds.red", leds.red), ("leds.yellow", leds.yellow))
            yield "leds.green", leds.green
        else:
            yield from (("leds.red", leds.red), ("leds.green", leds.green))
            yield "leds.blue", leds.blue
        if self.buzzer is not None:
            yield "buzzer.pin", self.buzzer.pin
        yield "relay.pin", self.relay.pin
        for name in ("door_contact", "exit_button", "rotation_sensor"):
            section: InputConfig | None = getattr(self, name)
            if section is not None:
                yield f"{name}.pin", section.pin

    @model_validator(mode="after")
    def _each_pin_once(self) -> PinMap:
        seen: dict[int, str] = {}
        for key, pin in self.pins():
            if pin in seen:
                raise PinConfigError(f"GPIO{pin} is used twice: by {seen[pin]} and by {key}")
            seen[pin] = key
        return self

    @classmethod
    def default(cls, *, sensors: bool = False) -> PinMap:
        """The reference wiring of a door node on a 40-pin Raspberry Pi.

        ======================  ======  ===========  ==========================================
        part                    GPIO    header pin   notes
        ======================  ======  ===========  ==========================================
        red LED                 17      11           active high, pulled down at boot (dark)
        yellow LED              27      13           active high, pulled down at boot (dark)
        green LED               22      15           active high, pulled down at boot (dark)
        buzzer                  18      12           active high, pulled down at boot (silent)
        relay                   5       29           active low, fail-secure, 3 s pulse
        door contact            23      16           only with ``sensors=True``; to ground
        exit button             24      18           only with ``sensors=True``; to ground
        rotation sensor         25      22           only with ``sensors=True``; to ground
        ======================  ======  ===========  ==========================================

        The relay sits on GPIO5 because GPIO0-8 are pulled *up* from power-on until the node
        claims them: a low-triggered relay board, the common kind, stays released (door
        locked) while the Pi boots. An active-high relay belongs on GPIO9-27 for the same
        reason. The pins avoid I2C (GPIO2/3), SPI (GPIO7-11), the UART (GPIO14/15) and the
        HAT EEPROM (GPIO0/1).

        Inputs are left out unless ``sensors`` is true: a sensor that is configured but
        not wired reads as "nobody passed", which would undercount the building.
        """
        door_contact = exit_button = rotation_sensor = None
        if sensors:
            door_contact = InputConfig(pin=23)
            exit_button = InputConfig(pin=24)
            rotation_sensor = InputConfig(pin=25, bounce_ms=20)
        return cls(
            leds=ThreeLedsConfig(red=17, yellow=27, green=22),
            buzzer=BuzzerConfig(pin=18),
            relay=RelayConfig(pin=5, active_high=False, wiring="fail_secure"),
            door_contact=door_contact,
            exit_button=exit_button,
            rotation_sensor=rotation_sensor,
        )
