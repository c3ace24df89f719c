"""Printable door posters, as the registry serves them to a facility's person in charge.

A poster's code holds the door's address under the registry's ``public_url``, which a
phone's camera opens. A registry meant for phones runs behind TLS: one whose address is
not https still draws the poster, and says so in its log.
"""

from __future__ import annotations

import logging
from typing import Literal

from protocol import poster
from protocol.poster import door_address
from registry.records import Door, Facility

logger = logging.getLogger(__name__)

__all__ = ["door_address", "poster_bytes"]

# The registry names a door's direction as the PIC registered it.
_DIRECTIONS = {"entrance": "entry", "exit": "exit"}


def poster_bytes(
    facility: Facility,
    door: Door,
    kind: Literal["png", "pdf"],
    base_url: str,
    languages: tuple[str, ...] = ("id", "en"),
) -> bytes:
    """The poster for one door of a facility, as a PNG image or a one-page A4 PDF.

    ``base_url`` is the registry's public address; the door's kind says which steps the
    poster shows. The registry knows no facility's own language, so its posters speak both
    Bahasa Indonesia and English unless ``languages`` says otherwise.
    """
    sign = poster.DoorSign(
        facility_id=facility.id,
        facility_name=facility.name,
        door_id=door.door_id,
        door_name=door.name,
        base_url=base_url,
        direction=_DIRECTIONS.get(door.direction, "both"),
        ways=door.kind,
        languages=languages,
    )
    if not base_url.lower().startswith("https://"):
        logger.warning(
            "the poster of %s/%s points phones at %s, not an https address: set public_url "
            "to the registry's address behind TLS",
            facility.id,
            door.door_id,
            sign.address,
        )
    return poster.poster_bytes(sign, kind)
