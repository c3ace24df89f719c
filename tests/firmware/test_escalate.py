"""The escalating decoder: nothing more on an empty frame, more where a code may be, and
never more than the frame's budget."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.decoder import ZxingDecoder, make_decoder
from firmware.escalate import EscalatingDecoder, busy_region
from firmware.synthetic import PRESETS, Jitter, render
from protocol.passes import issue
from protocol.status import Status
from protocol.trust import SigningKey

TEXT = issue(SigningKey.generate(), bytes(range(12)), Status.GREEN, 2, 1_700_000_000, 1_800_000_000)


class StepClock:
    """A clock the test moves: ``now`` seconds, plus ``tick`` at every reading."""

    def __init__(self, tick: float = 0.0) -> None:
        self.now = 100.0
        self.tick = tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def idle_frame() -> np.ndarray:
    return render(None, replace(PRESETS["default"], jitter=Jitter()), np.random.default_rng(1))


def test_an_empty_frame_is_not_escalated() -> None:
    decoder = EscalatingDecoder()
    for _ in range(5):
        assert decoder.decode(idle_frame()) == []
    assert decoder.stats.escalated == 0
    assert busy_region(idle_frame()) is None


def test_a_dark_mode_pass_is_read_where_zxing_cpp_alone_reads_nothing() -> None:
    rng = np.random.default_rng(4)
    frames = [render(TEXT, PRESETS["dark_mode"], rng) for _ in range(5)]
    plain = ZxingDecoder()
    assert all(plain.decode(frame) == [] for frame in frames)
    decoder = EscalatingDecoder()
    reads = sum(decoder.decode(frame) == [TEXT] for frame in frames)
    assert reads >= 4
    assert decoder.stats.read_by.get("invert", 0) >= 4


def test_the_busy_region_holds_the_code() -> None:
    params = replace(PRESETS["default"], jitter=Jitter(), x=0.3, y=0.6)
    frame = render(TEXT, params, np.random.default_rng(2))
    box = busy_region(frame)
    assert box is not None
    x0, y0, x1, y1 = box
    assert x0 <= 0.3 * 640 <= x1 and y0 <= 0.6 * 480 <= y1
    assert (x1 - x0) < 400  # the code, not the whole frame


def test_the_budget_is_a_share_of_the_time_between_frames() -> None:
    clock = StepClock()
    decoder = EscalatingDecoder(budget_ms=40, share=0.6, clock=clock)
    assert decoder.frame_budget_s() == pytest.approx(0.040)  # no frame seen yet: the cap
    for _ in range(20):  # a 15 fps camera
        decoder.decode(idle_frame())
        clock.now += 1 / 15
    assert decoder.frame_budget_s() == pytest.approx(0.040)
    for _ in range(30):  # frames arriving every 5 ms: escalation gets 3 ms
        decoder.decode(idle_frame())
        clock.now += 0.005
    assert decoder.frame_budget_s() == pytest.approx(0.003, rel=0.05)


def test_escalation_stops_at_the_budget_and_the_next_frame_goes_on_from_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every clock reading moves 50 ms on: past the 40 ms budget after the first step.
    clock = StepClock(tick=0.050)
    decoder = EscalatingDecoder(budget_ms=40, clock=clock)
    tried: list[str] = []

    def steps(region: np.ndarray) -> Iterator[tuple[str, Callable[[], list[str]]]]:
        for name in ("a", "b", "c"):
            yield name, lambda name=name: tried.append(name) or []  # type: ignore[func-returns-value]

    monkeypatch.setattr(decoder, "_steps", steps)
    monkeypatch.setattr(decoder, "_second", None)  # no whole-frame zbar step after them
    frame = render(TEXT, PRESETS["dark_mode"], np.random.default_rng(4))
    for _ in range(4):
        assert decoder.decode(frame) == []  # one step a frame, then the frame is dropped
    assert tried == ["a", "b", "c", "a"]
    assert decoder.stats.over_budget == 4


def test_bad_frames_are_counted_not_raised() -> None:
    decoder = make_decoder("escalating")
    assert decoder.decode(np.zeros((4, 4), dtype=np.float32)) == []
    assert decoder.bad_frames == 1
    assert decoder.last_error is not None and "float32" in decoder.last_error


def hard_scene(seed: int) -> tuple[str, np.ndarray]:
    """A pass of fixed text in a scene drawn from the `hard` preset with ``seed``."""
    key = SigningKey(Ed25519PrivateKey.from_private_bytes(bytes(32)))
    text = issue(key, bytes(range(12)), Status.GREEN, 2, 1_700_000_000, 1_800_000_000)
    rng = np.random.default_rng(seed)
    params = replace(PRESETS["hard"].sample(rng), jitter=Jitter())
    return text, render(text, params, rng)


def test_a_blurred_code_is_read_whole_when_zxing_cpp_saw_only_a_corner_of_it() -> None:
    # A blurred, tilted pass: zxing-cpp reports a symbol it cannot decode, with a box
    # around one finder pattern. Enlarging only that box cuts the code off; the busy
    # blocks around it give the whole code.
    text, frame = hard_scene(7)
    assert ZxingDecoder().decode(frame) == []
    decoder = EscalatingDecoder(budget_ms=5000, always=True)
    assert decoder.decode(frame) == [text]


def test_a_pass_blurred_past_what_sharpening_reads_is_read_once_the_blur_is_undone() -> None:
    # Focus blur of almost two pixels on a small code: no enlarging, sharpening or
    # smoothing reads it; the Wiener filter for a Gaussian blur does.
    text, frame = hard_scene(21)
    assert ZxingDecoder().decode(frame) == []
    decoder = EscalatingDecoder(budget_ms=5000, always=True)
    assert decoder.decode(frame) == [text]
    assert decoder.stats.read_by == {"deblur and enlarge": 1}
