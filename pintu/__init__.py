"""Pintu: QR check-in for building doors. This package holds the ``pintu`` command."""

from runtime.version import __version__

__all__ = ["__version__"]
