"""The answers a door gives, as every part names them: the door shows them, its events
carry them, the hub and the dashboard read them.

How a signal looks and sounds on the door's lamp and buzzer is the firmware's business
(``firmware/signals.py``); this is only the word.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final

from pydantic import AfterValidator, WithJsonSchema


class Signal(StrEnum):
    """An answer the door gives, or a state it shows while it gives none."""

    GREEN = "green"  # admit
    YELLOW = "yellow"  # admit, with caution
    RED = "red"  # deny
    BLACK = "black"  # deny and raise the alarm (confirmed case)
    FULL = "full"  # deny entry: the building is at capacity
    ERROR = "error"  # the pass could not be read or is invalid
    PROVISIONING = "provisioning"  # the node has no configuration yet
    OFF = "off"


# The signals an event may carry: answers given to a person. PROVISIONING and OFF are
# states of the door itself and never the outcome of a scan.
ANSWERS: Final = (
    Signal.GREEN,
    Signal.YELLOW,
    Signal.RED,
    Signal.BLACK,
    Signal.FULL,
    Signal.ERROR,
)


def _an_answer(signal: Signal) -> Signal:
    if signal not in ANSWERS:
        raise ValueError(f"{signal.value!r} is a state of the door, not an answer")
    return signal


# An event's ``signal``: a Signal, and one of the ANSWERS.
Answer = Annotated[
    Signal,
    AfterValidator(_an_answer),
    WithJsonSchema({"type": "string", "enum": [s.value for s in ANSWERS]}),
]
