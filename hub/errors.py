"""The root of every error the hub raises.

Each error also inherits the built-in it resembles where there is one, so a caller that
only knows Python's own exceptions (``ValueError`` for a bad setting, ``LookupError`` for
an unknown id, ``TimeoutError`` for a node that does not answer) still catches it.
"""

from __future__ import annotations


class HubError(Exception):
    """A facility hub failure."""


class ConfigError(HubError, ValueError):
    """A setting is missing or wrong, or a file it names cannot be read."""


class StoreError(HubError):
    """The store cannot be opened, migrated or written."""


class StoreDataError(StoreError, ValueError):
    """The store refused a value it was given (a number past its range, say): storing the
    same data again fails the same way, unlike a store that is down or full."""


class UnsupportedBackend(StoreError, NotImplementedError):
    """The configured store backend is recognised but not available yet."""


class AlreadyExists(StoreError, ValueError):
    """A user (or another uniquely named thing) with that name already exists."""


class NotFound(HubError, LookupError):
    """No facility, alert, node or user has the given id."""


class IngestError(HubError):
    """The MQTT side of the hub cannot be set up."""


class CommandError(HubError):
    """A command to a door node could not be sent or was not answered."""


class CommandTimeout(CommandError, TimeoutError):
    """A door node did not answer a command in time."""
