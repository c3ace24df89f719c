"""Door posters for the technician: drawn by ``protocol.poster``, written to a file."""

from __future__ import annotations

import logging
from pathlib import Path

from protocol.poster import DoorSign, door_address, poster_bytes
from provisioning.files import write_atomic

logger = logging.getLogger(__name__)

__all__ = ["DoorSign", "door_address", "save"]


def save(sign: DoorSign, path: Path) -> Path:
    """Write the poster to ``path``: PDF when it ends in .pdf, PNG otherwise."""
    data = poster_bytes(sign, "pdf" if path.suffix.lower() == ".pdf" else "png")
    write_atomic(path, data, 0o644)
    logger.info("poster for %s written to %s", sign.address, path)
    return path
