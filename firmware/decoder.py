"""QR decoders: a grayscale frame in, the texts of the QR codes in it out.

Three backends sit behind one :class:`Decoder` protocol: the escalating decoder of
:mod:`firmware.escalate` (the default: zxing-cpp, and more effort on frames that may
hold a code), zxing-cpp alone (it reads more real phone photos than zbar and costs far
less on an empty frame) and pyzbar (the zbar library, kept selectable). The libraries
are imported when a decoder is made, so a node that uses one does not need the other.

``decode`` never raises on a bad frame: anything that is not a non-empty 2-D uint8 array
with adjacent pixels in each row is counted in ``bad_frames`` and gives ``[]``. Padded
rows (a Y plane view straight from the camera buffer) are fine and read without a copy.
A door keeps scanning whatever the camera hands it.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, Protocol, get_args, runtime_checkable

import numpy as np
from pydantic import Field

from firmware.errors import DecoderUnavailable
from firmware.frames import load_image
from protocol.model import StrictModel

logger = logging.getLogger(__name__)

__all__ = [
    "BACKENDS",
    "Backend",
    "Decoder",
    "DecoderConfig",
    "PyzbarDecoder",
    "ZxingDecoder",
    "load_image",
    "make_decoder",
]

Backend = Literal["escalating", "zxingcpp", "pyzbar"]
BACKENDS: tuple[str, ...] = get_args(Backend)


@runtime_checkable
class Decoder(Protocol):
    """Reads the QR codes in a grayscale frame."""

    name: str
    bad_frames: int
    last_error: str | None  # why the last frame was refused; None after a frame it read

    def decode(self, image: np.ndarray) -> list[str]:
        """The texts of the QR codes in ``image``; ``[]`` for none or a bad frame."""
        ...


class DecoderConfig(StrictModel):
    """Which QR decoder a door node uses."""

    backend: Backend = Field(
        default="escalating",
        description=(
            "QR decoder: 'escalating' (default: zxing-cpp on every frame, and on a frame "
            "that may hold a code, inversion for dark mode, enlarging, sharpening, contrast "
            "stretch and zbar within a per-frame budget), 'zxingcpp' (zxing-cpp alone; "
            "reads more real phone photos than zbar and costs about a tenth of it on an "
            "empty frame) or 'pyzbar' (the zbar library; needs the system package libzbar0)."
        ),
    )


_UINT8 = np.dtype(np.uint8)


def _why_unusable(image: object) -> str | None:
    """None if ``image`` is a frame both backends can read as it is, else the reason.

    Cheap on purpose (a handful of attribute reads): this runs for every camera frame.
    Rows may be padded (a positive row step larger than the width, as a Y plane view
    has); pixels within a row must be adjacent.
    """
    if not isinstance(image, np.ndarray):
        return f"not an array ({type(image).__name__})"
    if image.dtype != _UINT8:
        return f"dtype {image.dtype}, not uint8"
    if image.ndim != 2:
        return f"{image.ndim}-D array, not 2-D grayscale"
    height, width = image.shape
    if height == 0 or width == 0:
        return f"empty frame {width}x{height}"
    row_step, pixel_step = image.strides
    if pixel_step != 1 or row_step < width:
        return f"pixel layout with strides {image.strides} (copy it to a contiguous array)"
    return None


def _text(data: bytes) -> str:
    # A QR code may hold any bytes. A pass is ASCII, so anything else will be refused
    # by verification; here it only has to become text without raising.
    return data.decode("utf-8", errors="replace")


class ZxingDecoder:
    """QR codes through zxing-cpp, restricted to the QR format.

    Options, chosen by measurement on a 640x480 idle frame and on the synthetic presets
    (``python -m bench.decode``):

    - ``try_invert=False``: inverted (light on dark) codes are not searched for. Passes
      are dark on light on every phone and print-out, and the inverted search doubles
      the cost of every frame with no code in it, which is nearly all of them.
    - ``try_rotate=False``: it only matters for 1-D barcodes; a QR code is found in any
      orientation regardless. Stated so the call does not depend on library defaults.
    - ``try_downscale=True`` (kept): about 10 % more per idle frame, and it finds codes
      held close to the lens, which visitors often do.
    """

    name = "zxingcpp"

    def __init__(self) -> None:
        try:
            import zxingcpp
        except ImportError as err:
            raise DecoderUnavailable(
                "the zxing-cpp QR decoder is not installed: pip install zxing-cpp "
                "(or choose the 'pyzbar' backend)"
            ) from err
        self._read = zxingcpp.read_barcodes
        self._formats = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
        self.bad_frames = 0
        self.last_error: str | None = None
        _check_zxing(self._read, self._formats)

    def decode(self, image: np.ndarray) -> list[str]:
        why = _why_unusable(image)
        if why is None:
            try:
                found = self._read(
                    image,
                    formats=self._formats,
                    try_rotate=False,
                    try_downscale=True,
                    try_invert=False,
                )
            except (TypeError, ValueError, RuntimeError) as err:
                why = f"refused by zxing-cpp: {err}"
            else:
                self.last_error = None
                return [_zxing_text(barcode) for barcode in found]
        self.bad_frames += 1
        self.last_error = why
        logger.debug("zxingcpp: skipped a bad frame: %s", why)
        return []


ZXING_MIN_VERSION = "3.0"  # the first with try_invert, which every call here passes


def _check_zxing(read: Any, formats: Any) -> None:
    """Refuse a zxing-cpp too old for the options the decoders pass.

    With 2.2, ``try_invert`` does not exist: every frame would raise TypeError, be
    counted as a bad frame, and the door would never read a pass.
    """
    probe = np.zeros((8, 8), dtype=np.uint8)
    try:
        read(
            probe,
            formats=formats,
            try_rotate=False,
            try_downscale=True,
            try_invert=False,
            return_errors=True,
        )
    except TypeError as err:
        try:
            from importlib.metadata import version

            found = version("zxing-cpp")
        except Exception:  # the version is only for the message
            found = "an older version"
        raise DecoderUnavailable(
            f"zxing-cpp {found} is too old: Pintu needs zxing-cpp >= {ZXING_MIN_VERSION} "
            f"(pip install --upgrade 'zxing-cpp>={ZXING_MIN_VERSION}'): {err}"
        ) from err


def _zxing_text(barcode: Any) -> str:
    try:
        text: str = barcode.text
    except UnicodeDecodeError:
        # zxing-cpp transcodes to UTF-8 itself; if a symbol's bytes still fail, fall
        # back to the raw bytes rather than lose the read.
        return _text(barcode.bytes)
    return text


class PyzbarDecoder:
    """QR codes through pyzbar (the zbar library), restricted to QR symbols."""

    name = "pyzbar"

    def __init__(self) -> None:
        try:
            from pyzbar import pyzbar
        except ImportError as err:
            if "zbar shared library" in str(err):
                raise DecoderUnavailable(
                    "pyzbar needs the zbar system library: apt install libzbar0 "
                    "(or choose the 'zxingcpp' backend)"
                ) from err
            raise DecoderUnavailable(
                "the pyzbar QR decoder is not installed: pip install pyzbar "
                "(or choose the 'zxingcpp' backend)"
            ) from err
        except OSError as err:
            # The library was found but could not be loaded (wrong architecture, a
            # broken install).
            raise DecoderUnavailable(
                f"the zbar system library could not be loaded ({err}): "
                "apt install --reinstall libzbar0"
            ) from err
        self._decode = pyzbar.decode
        self._error = pyzbar.PyZbarError
        self._symbols = [pyzbar.ZBarSymbol.QRCODE]
        self.bad_frames = 0
        self.last_error: str | None = None

    def decode(self, image: np.ndarray) -> list[str]:
        why = _why_unusable(image)
        if why is None:
            try:
                found = self._decode(image, symbols=self._symbols)
            except (self._error, TypeError, ValueError) as err:
                why = f"refused by zbar: {err}"
            else:
                self.last_error = None
                return [_text(symbol.data) for symbol in found]
        self.bad_frames += 1
        self.last_error = why
        logger.debug("pyzbar: skipped a bad frame: %s", why)
        return []


def make_decoder(backend: str = "escalating") -> Decoder:
    """The decoder for ``backend`` (one of ``BACKENDS``).

    Raises ``ValueError`` for an unknown name and :class:`DecoderUnavailable` when the
    backend's library is missing (or too old).
    """
    if backend == "escalating":
        from firmware.escalate import EscalatingDecoder

        return EscalatingDecoder()
    if backend == "zxingcpp":
        return ZxingDecoder()
    if backend == "pyzbar":
        return PyzbarDecoder()
    raise ValueError(f"unknown QR decoder {backend!r}: expected one of {', '.join(BACKENDS)}")
