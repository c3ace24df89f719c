"""Pintu's version, for every part to name: the installed distribution's, read once."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pintu")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0"
