"""Printable door posters, as the registry serves them to a facility's person in charge."""

from __future__ import annotations

from typing import Literal

from protocol import poster
from protocol.poster import door_uri
from registry.records import Door, Facility

__all__ = ["door_uri", "poster_bytes"]

# The registry names a door's direction as the PIC registered it.
_DIRECTIONS = {"entrance": "entry", "exit": "exit"}


def poster_bytes(
    facility: Facility,
    door: Door,
    kind: Literal["png", "pdf"],
    languages: tuple[str, ...] = ("id", "en"),
) -> bytes:
    """The poster for one door of a facility, as a PNG image or a one-page A4 PDF.

    The registry knows no facility's own language, so its posters speak both Bahasa
    Indonesia and English unless ``languages`` says otherwise.
    """
    sign = poster.DoorSign(
        facility_id=facility.id,
        facility_name=facility.name,
        door_id=door.door_id,
        door_name=door.name,
        direction=_DIRECTIONS.get(door.direction, "both"),
        languages=languages,
    )
    return poster.poster_bytes(sign, kind)
