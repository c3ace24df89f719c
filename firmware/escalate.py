"""A decoder that spends effort only where a code may be.

Nearly every frame a door sees is empty, and those must cost what the bare library call
costs. So every frame gets two cheap looks:

1. zxing-cpp at full size with the decoder's fast options, asked to also report symbols
   it found but could not decode (``return_errors``): a *candidate*, with its position;
2. zxing-cpp on the frame inverted at half size, which reads a pass shown in a phone's
   dark mode (light modules on dark) and reports a dark-mode candidate. It costs about a
   sixth of the first look.

A frame with a candidate, or the few frames after one (the visitor is still holding the
phone up), is escalated: the region around the candidate (the whole frame if none is
known) is tried again enlarged, sharpened, deblurred, contrast-stretched and through the second
library, in that order, until one reads it or the frame's budget is spent.

The budget adapts: it is a share of the time between frames as they arrive, so when the
camera delivers faster than escalation can keep up, escalation gets less time and the
camera's newest frame is taken next; frames are dropped, never queued.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from firmware.decoder import PyzbarDecoder, ZxingDecoder, _why_unusable
from firmware.errors import DecoderUnavailable

__all__ = ["EscalatingDecoder", "EscalationStats", "busy_region"]

logger = logging.getLogger(__name__)

# A candidate keeps later frames escalated for this long: a visitor holds a phone up
# for a second or more, and a frame with no candidate in it may still hold the code.
REMEMBER_S = 0.8
# The region around a candidate: its bounding box grown by this share of its size on
# each side (the quiet zone, and a code that moved a little since).
MARGIN = 0.35
_UPSCALE_LIMIT = 800  # a region larger than this a side is not enlarged


@dataclass
class EscalationStats:
    """What escalation did, for ``pintu decode`` and the benchmarks."""

    frames: int = 0
    candidates: int = 0
    escalated: int = 0
    read_by: dict[str, int] = field(default_factory=dict)
    over_budget: int = 0


@dataclass(frozen=True)
class _Candidate:
    box: tuple[int, int, int, int] | None  # x0, y0, x1, y1 in frame pixels; None: anywhere
    seen: float


# The busy-region look: on the frame sampled every 4th pixel, a block of 8x8 samples
# (32x32 pixels) is "busy" when more than this share of its neighbouring samples differ
# by more than EDGE gray levels. A QR code is busy all over (a module edge every few
# pixels); walls, door frames and posters have edges only along their outlines.
_STEP = 4
_BLOCK = 8
_EDGE = 40
_BUSY_SHARE = 0.3
_BUSY_BLOCKS = 12  # at least this many busy blocks: about a code at two pixels a module
_NEAR = 2  # blocks either side counted as a busy block's neighbours


def busy_region(image: np.ndarray) -> tuple[int, int, int, int] | None:
    """The box around the busy blocks of ``image``, if there are enough to be a code.

    Costs about a tenth of the fast zxing-cpp look on a 640x480 frame, and flags codes
    in either polarity, blurred, cracked or striped, that zxing-cpp saw nothing of.
    """
    sampled = image[::_STEP, ::_STEP].astype(np.int16)
    across = np.abs(sampled[:, 1:] - sampled[:, :-1])[:-1] > _EDGE
    down = np.abs(sampled[1:] - sampled[:-1])[:, :-1] > _EDGE
    edges = across | down
    rows = edges.shape[0] // _BLOCK * _BLOCK
    cols = edges.shape[1] // _BLOCK * _BLOCK
    if rows == 0 or cols == 0:
        return None
    blocks = edges[:rows, :cols].reshape(rows // _BLOCK, _BLOCK, cols // _BLOCK, _BLOCK)
    busy = blocks.mean(axis=(1, 3)) > _BUSY_SHARE
    if int(busy.sum()) < _BUSY_BLOCKS:
        return None
    # The code is where busy blocks crowd together; noise or a poster elsewhere adds a
    # few stray ones. Start at the block with the most busy neighbours and keep the busy
    # blocks connected to it (gaps of one block bridged), however large the code.
    counts = busy.astype(np.int32)
    padded = np.pad(counts, _NEAR)
    crowd = np.zeros_like(counts)
    for dy in range(2 * _NEAR + 1):
        for dx in range(2 * _NEAR + 1):
            crowd += padded[dy : dy + counts.shape[0], dx : dx + counts.shape[1]]
    crowd *= counts
    start = np.unravel_index(int(np.argmax(crowd)), crowd.shape)
    component = _connected(busy, (int(start[0]), int(start[1])))
    ys = np.array([y for y, _ in component])
    xs = np.array([x for _, x in component])
    side = _STEP * _BLOCK
    return (
        int(xs.min()) * side,
        int(ys.min()) * side,
        (int(xs.max()) + 1) * side,
        (int(ys.max()) + 1) * side,
    )


def _connected(busy: np.ndarray, start: tuple[int, int]) -> list[tuple[int, int]]:
    """The busy blocks reachable from ``start`` in steps of at most two blocks."""
    rows, cols = busy.shape
    seen = {start}
    todo = [start]
    while todo:
        y, x = todo.pop()
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                ny, nx = y + dy, x + dx
                if 0 <= ny < rows and 0 <= nx < cols and busy[ny, nx] and (ny, nx) not in seen:
                    seen.add((ny, nx))
                    todo.append((ny, nx))
    return sorted(seen)


class EscalatingDecoder:
    """zxing-cpp on every frame, and more on the frames that may hold a code.

    ``budget_ms`` caps the time escalation may spend on one frame; ``share`` is the
    part of the measured time between frames it may take at most (the rest is the fast
    path's and the door's). ``always`` escalates every frame with no code read (for a
    technician's photo, which is known to hold one). ``clock`` is for tests.
    """

    name = "escalating"

    def __init__(
        self,
        *,
        budget_ms: float = 50.0,
        share: float = 0.75,
        second: bool = True,
        always: bool = False,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if budget_ms <= 0 or not 0 < share <= 1:
            raise ValueError("budget_ms must be positive and share between 0 and 1")
        self._zxing = ZxingDecoder()
        import zxingcpp

        self._read = zxingcpp.read_barcodes
        self._formats = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
        self._second: PyzbarDecoder | None = None
        if second:
            try:
                self._second = PyzbarDecoder()
            except DecoderUnavailable as err:
                logger.info("escalation without the second library: %s", err)
        self.budget_ms = budget_ms
        self.share = share
        self.always = always
        self._clock = clock
        self._last_call: float | None = None
        self._interval: float | None = None  # smoothed time between frames, seconds
        self._candidate: _Candidate | None = None
        self._resume = 0  # the step the next escalation of this candidate starts at
        self.stats = EscalationStats()
        self.last_error: str | None = None

    @property
    def bad_frames(self) -> int:
        return self._zxing.bad_frames

    @bad_frames.setter
    def bad_frames(self, value: int) -> None:
        self._zxing.bad_frames = value

    def frame_budget_s(self) -> float:
        """The time escalation may spend on the current frame."""
        cap = self.budget_ms / 1000
        if self._interval is None or self.always:
            # Photos (``always``) are not a camera stream: each gets the whole budget.
            return cap
        return max(0.002, min(cap, self.share * self._interval))

    def decode(self, image: np.ndarray) -> list[str]:
        start = self._clock()
        if self._last_call is not None:
            gap = start - self._last_call
            self._interval = gap if self._interval is None else 0.8 * self._interval + 0.2 * gap
        self._last_call = start
        self.stats.frames += 1
        why = _why_unusable(image)
        if why is not None:
            self._zxing.bad_frames += 1
            self.last_error = why
            logger.debug("escalating: skipped a bad frame: %s", why)
            return []
        try:
            texts = self._looks(image, start)
        except (TypeError, ValueError, RuntimeError) as err:
            self._zxing.bad_frames += 1
            self.last_error = f"refused by zxing-cpp: {err}"
            logger.debug("escalating: %s", self.last_error)
            return []
        self.last_error = None
        return texts

    # -- the cheap looks ---------------------------------------------------------------

    def _looks(self, image: np.ndarray, start: float) -> list[str]:
        found = self._read(
            image,
            formats=self._formats,
            try_rotate=False,
            try_downscale=True,
            try_invert=False,
            return_errors=True,
        )
        texts = [_text(b) for b in found if b.valid]
        if texts:
            self._candidate = None
            return texts
        candidate = self._candidate_of(found, now=start)
        busy = busy_region(image) if found or candidate is None else None
        if candidate is None:
            if busy is not None:
                candidate = _Candidate(busy, start)
        elif busy is not None and candidate.box is not None:
            # zxing-cpp's box is often one finder pattern of a blurred code, and cuts the
            # rest off: the busy blocks around it show the whole code.
            candidate = _Candidate(_union(candidate.box, busy), start)
        if candidate is not None:
            self.stats.candidates += 1
            self._candidate = candidate
        elif self._candidate is not None and start - self._candidate.seen <= REMEMBER_S:
            candidate = self._candidate
        elif self.always:
            candidate = _Candidate(None, start)
        else:
            self._candidate = None
            self._resume = 0
            return []
        return self._escalate(image, candidate, start)

    def _candidate_of(self, found: list[Any], *, now: float) -> _Candidate | None:
        for barcode in found:
            position = barcode.position
            points = [
                position.top_left,
                position.top_right,
                position.bottom_right,
                position.bottom_left,
            ]
            xs = [p.x for p in points]
            ys = [p.y for p in points]
            return _Candidate((min(xs), min(ys), max(xs), max(ys)), now)
        return None

    # -- escalation --------------------------------------------------------------------

    def _escalate(self, image: np.ndarray, candidate: _Candidate, start: float) -> list[str]:
        """Try the steps on the candidate's region until one reads it or time is up.

        A frame whose budget runs out before the last step leaves the rest to the next
        frames of the same visitor: they start where this one stopped (the code is
        still in view), so a slow board works through every step within a few frames
        instead of retrying the first ones for ever.
        """
        self.stats.escalated += 1
        deadline = start + self.frame_budget_s()
        region = _region(image, candidate.box)
        steps = list(self._steps(region))
        if region.shape != image.shape and self._second is not None:
            # The candidate's box may have cut the code: zbar on the whole frame, last.
            second = self._second
            steps.append(("zbar, whole frame", lambda: second.decode(image)))
        first = self._resume % len(steps)
        for offset in range(len(steps)):
            index = (first + offset) % len(steps)
            if offset and self._clock() >= deadline:
                self.stats.over_budget += 1
                self._resume = index
                return []
            step, attempt = steps[index]
            texts = attempt()
            if texts:
                self.stats.read_by[step] = self.stats.read_by.get(step, 0) + 1
                self._candidate = None
                self._resume = 0
                return texts
        self._resume = 0
        return []

    def _steps(self, region: np.ndarray) -> Iterator[tuple[str, Callable[[], list[str]]]]:
        """Each way to try the region again, cheapest and likeliest first."""
        read = self._zxing_texts
        # A phone in dark mode shows light modules on dark: cheap to try on the region,
        # and the region is read as it is if it is not one.
        inverted = 255 - region
        yield "invert", lambda: read(inverted)
        second = self._second
        small = max(region.shape) <= _UPSCALE_LIMIT
        if second is not None and small:
            # zbar on a region is cheap, and reads cracked and smudged screens that
            # zxing-cpp does not.
            yield "zbar", lambda: second.decode(np.ascontiguousarray(region))
        if small:
            # Small modules, blurred: enlarging gives the binarizer room, sharpening
            # undoes some focus blur, smoothing first keeps noise from being sharpened.
            yield "enlarge", lambda: read(_enlarge(region))
            yield "sharpen and enlarge", lambda: read(_enlarge(_sharpen(region, 2, 150)))
            # Focus blur undone: a phone held too close for the lens, or a blurred
            # screen. Costs a few milliseconds, so it comes after the cheap steps.
            yield "deblur and enlarge", lambda: read(_enlarge(_deblur(region)))
            yield (
                "smooth, enlarge and sharpen",
                lambda: read(_sharpen(_enlarge(_smooth(region, 0.8)), 2, 300)),
            )
            if second is not None:
                yield "zbar smoothed", lambda: second.decode(_smooth(region))
            yield "invert and enlarge", lambda: read(_enlarge(inverted))
            yield "stretch and enlarge", lambda: read(_enlarge(_stretch(region)))
            yield "smooth and enlarge", lambda: read(_enlarge(_smooth(region)))
            yield "enlarge 3x", lambda: read(_enlarge(region, 3))
        yield "sharpen", lambda: read(_sharpen(region))
        if second is not None and not small:
            yield "zbar smoothed", lambda: second.decode(_smooth(region))
        yield "stretch", lambda: read(_stretch(region))
        if small:
            yield "enlarge and sharpen", lambda: read(_sharpen(_enlarge(region), radius=4))
        if second is not None and not small:
            yield "zbar", lambda: second.decode(np.ascontiguousarray(region))

    def _zxing_texts(self, image: np.ndarray) -> list[str]:
        found = self._read(
            image,
            formats=self._formats,
            try_rotate=False,
            try_downscale=True,
            try_invert=False,
        )
        return [_text(b) for b in found]


def _text(barcode: Any) -> str:
    try:
        text: str = barcode.text
    except UnicodeDecodeError:
        return bytes(barcode.bytes).decode("utf-8", errors="replace")
    return text


def _union(
    box: tuple[int, int, int, int], busy: tuple[int, int, int, int]
) -> tuple[int, int, int, int]:
    """``box`` grown to take in ``busy`` where the two overlap (else ``box`` alone)."""
    x0, y0, x1, y1 = box
    bx0, by0, bx1, by1 = busy
    if bx0 > x1 or bx1 < x0 or by0 > y1 or by1 < y0:
        return box
    return min(x0, bx0), min(y0, by0), max(x1, bx1), max(y1, by1)


def _region(image: np.ndarray, box: tuple[int, int, int, int] | None) -> np.ndarray:
    if box is None:
        return image
    height, width = image.shape
    x0, y0, x1, y1 = box
    grow_x = (x1 - x0) * MARGIN + 8
    grow_y = (y1 - y0) * MARGIN + 8
    left, top = max(0, int(x0 - grow_x)), max(0, int(y0 - grow_y))
    right, bottom = min(width, int(x1 + grow_x) + 1), min(height, int(y1 + grow_y) + 1)
    if right - left < 16 or bottom - top < 16:
        return image
    return image[top:bottom, left:right]


def _enlarge(region: np.ndarray, factor: int = 2) -> np.ndarray:
    height, width = region.shape
    image = Image.fromarray(np.ascontiguousarray(region))
    size = (width * factor, height * factor)
    return np.asarray(image.resize(size, Image.Resampling.BICUBIC))


def _sharpen(region: np.ndarray, radius: float = 3, percent: int = 200) -> np.ndarray:
    image = Image.fromarray(np.ascontiguousarray(region))
    sharpened = image.filter(ImageFilter.UnsharpMask(radius=radius, percent=percent, threshold=0))
    return np.asarray(sharpened)


def _smooth(region: np.ndarray, radius: float = 1.0) -> np.ndarray:
    image = Image.fromarray(np.ascontiguousarray(region))
    return np.asarray(image.filter(ImageFilter.GaussianBlur(radius)))


def _deblur(region: np.ndarray, sigma: float = 1.5, noise: float = 0.03) -> np.ndarray:
    """``region`` with a Gaussian focus blur of ``sigma`` pixels undone (Wiener filter).

    ``noise`` is the share of the signal taken to be sensor noise: the filter divides by
    the blur's frequency response only where that is well above it, so noise is not
    amplified without bound. The region is padded (its edge pixels repeated) to sizes
    whose only prime factors are 2, 3 and 5, which the FFT does several times faster than
    an awkward size, and which keeps the far edge from ringing into the near one.
    """
    height, width = region.shape
    rows, cols = _fft_size(height), _fft_size(width)
    pixels = np.pad(region, ((0, rows - height), (0, cols - width)), mode="edge")
    pixels = pixels.astype(np.float32)
    mean = float(pixels.mean())
    fy = np.fft.fftfreq(rows).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(cols).astype(np.float32)[None, :]
    response = np.exp(np.float32(-2 * np.pi**2 * sigma**2) * (fx * fx + fy * fy))
    spectrum = np.fft.rfft2(pixels - mean)
    restored = np.fft.irfft2(spectrum * (response / (response * response + noise)), s=(rows, cols))
    out: np.ndarray = np.clip(restored[:height, :width] + mean, 0, 255).astype(np.uint8)
    return out


def _fft_size(n: int) -> int:
    """The least size at or above ``n`` with no prime factor but 2, 3 and 5."""
    size = n
    while True:
        left = size
        for prime in (2, 3, 5):
            while left % prime == 0:
                left //= prime
        if left == 1:
            return size
        size += 1


def _stretch(region: np.ndarray) -> np.ndarray:
    low, high = np.percentile(region[::2, ::2], (2, 98))
    if high - low < 8:
        return region
    scaled = (region.astype(np.float32) - np.float32(low)) * np.float32(255 / (high - low))
    stretched: np.ndarray = np.clip(scaled, 0, 255).astype(np.uint8)
    return stretched
