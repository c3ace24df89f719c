"""Health status colours, as a pass and the status list carry them."""

from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    """The colour a person's status shows at a door.

    The integer is the byte a pass carries; the name is what every other format uses.
    """

    GREEN = 0  # fully vaccinated (two doses)
    YELLOW = 1  # one dose
    RED = 2  # not vaccinated
    BLACK = 3  # confirmed positive or close contact

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Status:
        """The status named by ``text`` (``green``, ``yellow``, ``red`` or ``black``)."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown status {text!r}: expected one of {names}") from None
