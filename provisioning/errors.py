"""The provisioning tools' exceptions: one root, subclasses that also say what they resemble.

The CLI turns each into one clear line; nothing here is meant to reach a technician as a
traceback.
"""

from __future__ import annotations


class ProvisioningError(Exception):
    """Root of every error the provisioning tools raise on purpose."""


class InventoryError(ProvisioningError, ValueError):
    """The fleet inventory cannot be read, or a change to it makes no sense."""


class NodeNotFoundError(InventoryError, LookupError):
    """No node of that id in the inventory."""


class BrokerSetupError(ProvisioningError, OSError):
    """The broker's files cannot be written, or the broker cannot be told to reload."""


class BundleError(ProvisioningError, OSError):
    """A node's bundle cannot be written."""


class RemoteError(ProvisioningError, ConnectionError):
    """The hub or the registry cannot be reached, or refused a request (its reason given)."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
