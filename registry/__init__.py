"""The central registry: statuses, signing keys, facility registration and tracing."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pintu")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0"
