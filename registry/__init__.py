"""The central registry: statuses, signing keys, facility registration and tracing."""

from runtime.version import __version__

__all__ = ["__version__"]
