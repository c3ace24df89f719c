"""Frames, the FrameSource seam, the Y plane of a YUV420 buffer, pacing and replay."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from firmware.frames import Frame, FrameSource, Pacer, ReplaySource, y_plane


def yuv420_buffer(y: np.ndarray, stride: int, pad_value: int = 255) -> np.ndarray:
    """A flat YUV420 buffer as a camera fills it: padded Y rows, then padded U and V rows."""
    height, width = y.shape
    rows = np.full((height * 3 // 2, stride), pad_value, dtype=np.uint8)
    rows[:height, :width] = y
    rows[height:, : width // 2] = 77  # chroma: must never show up in the Y plane
    return rows.reshape(-1)


def test_y_plane_skips_the_row_padding_without_copying() -> None:
    width, height, stride = 6, 4, 8
    y = np.arange(width * height, dtype=np.uint8).reshape(height, width)
    buffer = yuv420_buffer(y, stride)

    plane = y_plane(buffer, width, height, stride)

    assert plane.shape == (height, width)
    assert plane.dtype == np.uint8
    np.testing.assert_array_equal(plane, y)
    assert np.shares_memory(plane, buffer)
    assert plane.strides == (stride, 1)
    assert not plane.flags.c_contiguous  # the padding is stepped over, not removed


def test_y_plane_reads_the_2d_array_picamera2_returns() -> None:
    width, height, stride = 10, 6, 16
    y = np.random.default_rng(1).integers(0, 255, (height, width), dtype=np.uint8)
    rows = yuv420_buffer(y, stride).reshape(height * 3 // 2, stride)

    plane = y_plane(rows, width, height, stride)

    np.testing.assert_array_equal(plane, y)
    assert np.shares_memory(plane, rows)


def test_y_plane_without_padding_is_contiguous() -> None:
    y = np.full((4, 8), 9, dtype=np.uint8)
    plane = y_plane(yuv420_buffer(y, 8), 8, 4, 8)
    assert plane.flags.c_contiguous
    np.testing.assert_array_equal(plane, y)


@pytest.mark.parametrize(
    ("buffer", "width", "height", "stride", "message"),
    [
        (np.zeros(100, np.uint8), 8, 4, 6, "stride 6 is smaller"),
        (np.zeros(10, np.uint8), 8, 4, 8, "too small"),
        (np.zeros(100, np.float32), 8, 4, 8, "uint8"),
        (np.zeros(100, np.uint8), 0, 4, 8, "positive"),
        (np.zeros((3, 8), np.uint8), 8, 4, 8, "too small"),
    ],
)
def test_y_plane_rejects_impossible_layouts(
    buffer: np.ndarray, width: int, height: int, stride: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        y_plane(buffer, width, height, stride)


def test_frame_is_frozen_and_slotted() -> None:
    frame = Frame(np.zeros((2, 2), np.uint8), 1.0, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        frame.index = 3  # type: ignore[misc]
    assert not hasattr(frame, "__dict__")


def test_replay_source_hands_out_the_arrays_in_order() -> None:
    images = [np.full((4, 4), i, dtype=np.uint8) for i in range(3)]
    source = ReplaySource(images)
    assert isinstance(source, FrameSource)

    got = list(source)

    assert [f.index for f in got] == [0, 1, 2]
    assert all(f.pixels is image for f, image in zip(got, images, strict=True))
    assert [f.ts for f in got] == sorted(f.ts for f in got)


def test_replay_source_loops_until_max_frames_or_close() -> None:
    images = [np.full((4, 4), i, dtype=np.uint8) for i in range(3)]
    assert [int(f.pixels[0, 0]) for f in ReplaySource(images, loop=True, max_frames=7)] == [
        0,
        1,
        2,
        0,
        1,
        2,
        0,
    ]
    source = ReplaySource(images, loop=True)
    seen = 0
    for _ in source:
        seen += 1
        if seen == 5:
            source.close()
    assert seen == 5


def test_replay_source_needs_images() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ReplaySource([])


class FakeClock:
    """time.monotonic and time.sleep that move a number instead of waiting."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_pacer_spaces_deliveries_one_period_apart() -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, clock=clock.monotonic, sleep=clock.sleep)

    pacer.wait()  # the first frame is due at once
    clock.now += 0.03  # the consumer took 30 ms
    pacer.wait()
    pacer.wait()

    assert clock.sleeps == pytest.approx([0.07, 0.1])


def test_pacer_restarts_the_schedule_after_a_stall() -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, clock=clock.monotonic, sleep=clock.sleep)
    pacer.wait()
    clock.now += 5.0  # a long stall: no burst of catch-up frames afterwards
    pacer.wait()
    pacer.wait()
    assert clock.sleeps == pytest.approx([0.1])


def test_pacer_without_fps_never_waits() -> None:
    clock = FakeClock()
    pacer = Pacer(None, clock=clock.monotonic, sleep=clock.sleep)
    for _ in range(3):
        pacer.wait()
    assert clock.sleeps == []
    with pytest.raises(ValueError, match="positive"):
        Pacer(0)
