"""The root of every error the door node application raises.

Each error also inherits the built-in it resembles, so a caller that only knows Python's
own exceptions (``OSError`` for a full disk, ``ValueError`` for a bad setting) still
catches it.
"""

from __future__ import annotations


class ControllerError(Exception):
    """A door node failure."""


class JournalError(ControllerError, OSError):
    """The event journal cannot be opened or written (disk full, read-only, corrupt)."""


class UplinkError(ControllerError):
    """The MQTT link to the hub cannot be set up."""


class ConfigError(ControllerError, ValueError):
    """A setting is missing or wrong, or a file it names cannot be read."""
