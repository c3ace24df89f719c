"""Crafted QR images through a door's camera: a version 40 code full of junk, a dense
binary code, a damaged pass, a huge frame, a frame with many codes, degenerate frames.

The door answers each code red with a reason (or ignores what holds no code), never
crashes, and afterwards keeps deciding: a valid pass is admitted as before.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Iterator

import numpy as np
import segno

from firmware.frames import Frame
from firmware.synthetic import SyntheticSource
from protocol import passes
from protocol.events import EventKind

from .conftest import Site, issue, wait

logger = logging.getLogger(__name__)
ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


class CraftedSource:
    """The door's synthetic camera, with crafted frames slipped in between its own."""

    def __init__(self, inner: SyntheticSource) -> None:
        self.inner = inner
        self.name = "crafted"
        self._lock = threading.Lock()
        self._crafted: deque[np.ndarray] = deque()
        self.crafted_shown = 0

    def inject(self, pixels: np.ndarray, frames: int = 3) -> None:
        with self._lock:
            self._crafted.extend([pixels] * frames)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._crafted)

    def __iter__(self) -> Iterator[Frame]:
        for frame in self.inner:
            with self._lock:
                crafted = self._crafted.popleft() if self._crafted else None
            if crafted is None:
                yield frame
            else:
                self.crafted_shown += 1
                yield Frame(crafted, time.monotonic(), frame.index)

    def close(self) -> None:
        self.inner.close()


def picture(qr: segno.QRCode, scale: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """A QR code drawn dark on light, ``scale`` pixels a module, centred on a light frame."""
    cells = np.array(qr.matrix, dtype=bool)
    cells = np.pad(cells, 4, constant_values=False)
    code = np.where(cells, 0, 255).astype(np.uint8)
    code = np.repeat(np.repeat(code, scale, axis=0), scale, axis=1)
    height, width = size or code.shape
    frame = np.full((height, width), 255, dtype=np.uint8)
    top, left = (height - code.shape[0]) // 2, (width - code.shape[1]) // 2
    frame[top : top + code.shape[0], left : left + code.shape[1]] = code
    return frame


def crafted_frames(rng: random.Random) -> dict[str, np.ndarray]:
    junk40 = segno.make_qr("".join(rng.choice(ALNUM) for _ in range(4000)), version=40, error="l")
    assert junk40.version == 40
    oversize_pass = segno.make_qr(passes.HEADER + "A" * 3000, error="l")
    dense = segno.make_qr(bytes(rng.randrange(256) for _ in range(1200)), error="h")
    # A pass with a band of its modules inverted: past what error correction can mend.
    damaged = picture(segno.make_qr(issue(bytes(12)), error="m"), 8)
    band = damaged.shape[0] // 2
    damaged[band - 40 : band + 40, :] = 255 - damaged[band - 40 : band + 40, :]
    many = np.full((1080, 1920), 255, dtype=np.uint8)
    for i in range(24):
        code = picture(segno.make_qr(f"JUNK-{i}-" + "X" * rng.randrange(5, 60)), 4)
        row, col = divmod(i, 6)
        h, w = min(code.shape[0], 260), min(code.shape[1], 310)
        many[row * 270 : row * 270 + h, col * 320 : col * 320 + w] = code[:h, :w]
    noise = np.random.default_rng(7)
    return {
        "version 40 junk": picture(junk40, 3),
        "version 40 with the pass prefix": picture(oversize_pass, 3),
        "dense binary": picture(dense, 3),
        "damaged pass": damaged,
        "many codes": many,
        "huge frame": noise.integers(0, 256, size=(3000, 4000), dtype=np.uint8),
        "one pixel": np.zeros((1, 1), dtype=np.uint8),
        "a thin line": np.full((2, 5000), 255, dtype=np.uint8),
        "all black": np.zeros((480, 640), dtype=np.uint8),
    }


def test_crafted_codes_are_refused_or_ignored_and_the_door_keeps_deciding(site: Site) -> None:
    made: list[CraftedSource] = []

    def wrap(inner: SyntheticSource) -> CraftedSource:
        made.append(CraftedSource(inner))
        return made[0]

    door = site.add_door("main-in-1", "main-in", "entry", wrap=wrap)
    [camera] = made
    scanner = door.node.scanner
    assert scanner is not None and door.node.door is not None

    before = bytes.fromhex("f1" * 12)
    door.show(issue(before))
    started = time.monotonic()
    wait(lambda: site.events(EventKind.ENTRY, before.hex()), what="a pass before the attack")
    usual = time.monotonic() - started

    frames = crafted_frames(random.Random(5))
    for name, pixels in frames.items():
        decided = door.decisions
        camera.inject(pixels)
        wait(lambda: camera.pending == 0, timeout_s=60, what=f"the {name} frames to be read")
        seen = scanner.stats.frames
        wait(lambda seen=seen: scanner.stats.frames > seen + 2, what=f"frames after {name}")
        logger.info("%s: %d decisions so far", name, door.decisions - decided)
    assert scanner.stats.source_failures == 0  # no frame made the camera loop restart

    denied = site.events(EventKind.DENIED)
    assert denied, "the junk codes were read and refused"
    for event in denied:
        assert event.admit is False
        assert event.signal in {"error", "red"}
        assert event.reason and event.message
    reasons = {event.reason for event in denied}
    assert {"wrong_prefix", "oversize"} <= reasons
    entries = site.events(EventKind.ENTRY)
    assert {e.subject for e in entries} <= {before.hex(), bytes(12).hex()}

    after = bytes.fromhex("f2" * 12)
    door.show(issue(after))
    started = time.monotonic()
    wait(lambda: site.events(EventKind.ENTRY, after.hex()), what="a pass after the attack")
    took = time.monotonic() - started
    logger.info("pass to stored entry: %.2f s before, %.2f s after", usual, took)
    assert door.node.uplink is not None and door.node.uplink.connected
    assert camera.crafted_shown == 3 * len(frames)
