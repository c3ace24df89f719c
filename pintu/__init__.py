"""Pintu: QR check-in for building doors. This package holds the ``pintu`` command."""

__version__ = "0.1.0"
