"""The root of every error the firmware package raises."""


class FirmwareError(Exception):
    """A hardware-layer failure."""


class SourceError(FirmwareError, OSError):
    """A frame source cannot be opened or has stopped delivering frames."""


class DecoderUnavailable(FirmwareError, ImportError):
    """The chosen QR decoder backend (or the library it needs) is not installed."""


class PinConfigError(FirmwareError, ValueError):
    """A pin map names a pin twice, or a pin that does not exist."""


class NotArmed(FirmwareError, RuntimeError):
    """An output was asked to act before the start-up self-test armed it."""
