"""Frames and the frame-source seam every camera, file and synthetic scene plugs into.

A :class:`FrameSource` is an iterable of :class:`Frame` objects. Door logic only ever sees
this protocol, so the same scan loop runs on a Raspberry Pi camera, on a folder of photos,
on a replayed video or on a synthetic scene.

A source that cannot deliver any more frames (a file turned unreadable, a camera that
died) raises :class:`~firmware.errors.SourceError` from iteration; a finite source (a
folder or a video without ``loop``) simply stops.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image, UnidentifiedImageError

from firmware.errors import SourceError

logger = logging.getLogger(__name__)

__all__ = [
    "Frame",
    "FrameSource",
    "Pacer",
    "ReplaySource",
    "load_image",
    "y_plane",
]


@dataclass(frozen=True, slots=True)
class Frame:
    """One grayscale picture from a source."""

    pixels: np.ndarray  # 2-D uint8 (H, W) grayscale; rows may be padded (see y_plane)
    ts: float  # time.monotonic() at capture
    index: int  # 0, 1, 2 ... in the order the source delivered them


@runtime_checkable
class FrameSource(Protocol):
    """Anything that yields frames: a camera, a folder, a video, a synthetic scene."""

    name: str

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


def y_plane(buffer: np.ndarray, width: int, height: int, stride: int) -> np.ndarray:
    """The luminance (Y) plane of a YUV420 buffer as a ``(height, width)`` uint8 view.

    ``buffer`` is either the flat buffer a camera hands over or the ``(height * 3 // 2,
    stride)`` array picamera2's ``capture_array`` returns for a YUV420 stream. Each row
    is ``stride`` bytes, of which the first ``width`` are pixels and the rest padding the
    ISP adds for alignment. Nothing is copied: the view keeps the stride as its row step,
    which the decoders read directly, so the padding is skipped for free.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    if stride < width:
        raise ValueError(f"stride {stride} is smaller than the width {width}")
    if buffer.dtype != np.uint8:
        raise ValueError(f"a YUV420 buffer holds bytes (uint8), got {buffer.dtype}")
    if buffer.ndim == 2 and buffer.shape[1] == stride:
        if buffer.shape[0] < height:
            raise ValueError(
                f"buffer of {buffer.shape[0]} rows is too small for a Y plane of {height} rows"
            )
        rows = buffer[:height]
    else:
        flat = buffer.reshape(-1)  # a view for any contiguous buffer
        needed = stride * height
        if flat.size < needed:
            raise ValueError(
                f"buffer of {flat.size} bytes is too small for a {width}x{height} "
                f"Y plane with stride {stride} ({needed} bytes)"
            )
        rows = flat[:needed].reshape(height, stride)
    return rows[:, :width]


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file into a contiguous grayscale uint8 array.

    Raises :class:`SourceError` with a one-line reason when the file is missing, is not
    a file, or is not an image Pillow can read.
    """
    p = Path(path)
    try:
        with Image.open(p) as image:
            gray = image.convert("L")
    except FileNotFoundError:
        raise SourceError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise SourceError(f"{p}: is a folder, not an image file") from None
    except UnidentifiedImageError:
        raise SourceError(f"{p}: not an image file (or a format Pillow cannot read)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        # Pillow reports truncated or corrupt data as OSError, and a few broken headers
        # as ValueError or SyntaxError.
        reason = (err.strerror if isinstance(err, OSError) else None) or str(err)
        raise SourceError(f"{p}: cannot read image: {reason or type(err).__name__}") from err
    return np.array(gray, dtype=np.uint8)


class Pacer:
    """Spaces frame deliveries ``1 / fps`` apart; ``fps=None`` means as fast as possible.

    The schedule is absolute (the n-th frame is due at ``start + n / fps``), so a slow
    consumer does not make the source drift; if the consumer falls more than a frame
    behind, the schedule restarts from now instead of bursting to catch up.
    """

    def __init__(
        self,
        fps: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if fps is not None and not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.period = None if fps is None else 1.0 / fps
        self._clock = clock
        self._sleep = sleep
        self._due: float | None = None

    def wait(self) -> None:
        """Return when the next frame is due."""
        if self.period is None:
            return
        now = self._clock()
        if self._due is None or now - self._due > self.period:
            self._due = now
        elif self._due > now:
            self._sleep(self._due - now)
        self._due += self.period


class ReplaySource:
    """Replays frames held in memory: for benchmarks, tests and captured sessions.

    The arrays are handed out as they are (no copy), so the cost of the source is the
    cost of building a :class:`Frame`.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        *,
        loop: bool = False,
        fps: float | None = None,
        max_frames: int | None = None,
        name: str = "replay",
    ) -> None:
        if not images:
            raise ValueError("a replay source needs at least one image")
        self.name = name
        self._images = list(images)
        self._loop = loop
        self._pacer = Pacer(fps)
        self._max_frames = max_frames
        self._closed = False

    def __iter__(self) -> Iterator[Frame]:
        images = self._images
        count = len(images)
        limit = self._max_frames
        index = 0
        while not self._closed and (limit is None or index < limit):
            if index >= count and not self._loop:
                return
            self._pacer.wait()
            yield Frame(images[index % count], time.monotonic(), index)
            index += 1

    def close(self) -> None:
        self._closed = True
