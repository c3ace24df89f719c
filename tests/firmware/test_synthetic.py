"""The synthetic camera scene: codes that decode, presets that hold their rates, the source."""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from firmware.decoder import make_decoder
from firmware.errors import SourceError
from firmware.frames import FrameSource
from firmware.synthetic import (
    PRESETS,
    Jitter,
    SceneParams,
    SyntheticSource,
    VisitorScene,
    render,
)
from protocol.passes import issue
from protocol.status import Status
from protocol.trust import SigningKey


@cache
def pass_text() -> str:
    return issue(
        SigningKey.generate(), bytes(range(12)), Status.GREEN, 2, 1_700_000_000, 1_800_000_000
    )


def test_render_gives_a_gray_frame_of_the_asked_size() -> None:
    params = replace(PRESETS["default"], width=320, height=240)
    frame = render(pass_text(), params, np.random.default_rng(0))
    assert frame.shape == (240, 320)
    assert frame.dtype == np.uint8
    assert frame.flags.c_contiguous and frame.flags.writeable


@pytest.mark.parametrize("backend", ["zxingcpp", "pyzbar"])
def test_a_rendered_pass_decodes_with_both_backends(backend: str) -> None:
    decoder = make_decoder(backend)
    rng = np.random.default_rng(11)
    frames = [render(pass_text(), PRESETS["easy"], rng) for _ in range(5)]
    assert all(decoder.decode(frame) == [pass_text()] for frame in frames)


def test_the_idle_scene_has_no_code() -> None:
    decoder = make_decoder()
    rng = np.random.default_rng(3)
    for preset in PRESETS.values():
        assert decoder.decode(render(None, preset, rng)) == []


def test_frames_of_a_preset_differ_but_a_seed_repeats_them() -> None:
    first = [render(pass_text(), PRESETS["default"], np.random.default_rng(5)) for _ in range(2)]
    np.testing.assert_array_equal(first[0], first[1])
    rng = np.random.default_rng(5)
    a, b = (
        render(pass_text(), PRESETS["default"], rng),
        render(pass_text(), PRESETS["default"], rng),
    )
    assert not np.array_equal(a, b)


@pytest.mark.parametrize(("preset", "floor"), [("easy", 0.99), ("default", 0.95)])
def test_preset_detection_rate(preset: str, floor: float) -> None:
    decoder = make_decoder("zxingcpp")
    rng = np.random.default_rng(2024)
    frames = 100
    hits = sum(
        decoder.decode(render(pass_text(), PRESETS[preset], rng)) == [pass_text()]
        for _ in range(frames)
    )
    assert hits / frames >= floor


def test_hard_is_genuinely_hard() -> None:
    decoder = make_decoder("zxingcpp")
    rng = np.random.default_rng(99)
    frames = 60
    hits = sum(
        decoder.decode(render(pass_text(), PRESETS["hard"], rng)) == [pass_text()]
        for _ in range(frames)
    )
    assert 0.3 <= hits / frames <= 0.95


def test_sampling_applies_the_jitter_within_its_range() -> None:
    params = SceneParams(
        qr_size=0.4, angle=0.0, jitter=Jitter(qr_size=0.1, angle=20.0, position=1.0)
    )
    rng = np.random.default_rng(1)
    samples = [params.sample(rng) for _ in range(200)]
    assert all(0.3 <= s.qr_size <= 0.5 for s in samples)
    assert all(-20 <= s.angle <= 20 for s in samples)
    assert all(s.jitter == Jitter() for s in samples)
    assert len({round(s.x, 6) for s in samples}) > 100
    still = SceneParams()
    assert still.sample(rng) == still


@pytest.mark.parametrize(
    "bad",
    [
        {"width": 8},
        {"qr_size": 0.0},
        {"qr_size": 1.5},
        {"perspective": 2.0},
        {"glare": -0.1},
        {"brightness": 0.0},
        {"noise": -1.0},
    ],
)
def test_scene_params_refuse_impossible_scenes(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SceneParams(**bad)  # type: ignore[arg-type]


def small_scene() -> SceneParams:
    return replace(PRESETS["easy"], width=320, height=240)


def test_source_gives_idle_frames_from_its_cache() -> None:
    source = SyntheticSource(small_scene(), seed=1, max_frames=6, idle_variants=3)
    assert isinstance(source, FrameSource)

    frames = list(source)

    assert [f.index for f in frames] == list(range(6))
    cache_ids = [id(a) for a in source.idle_frame_cache]
    assert [id(f.pixels) for f in frames] == cache_ids * 2
    assert not frames[0].pixels.flags.writeable
    assert source.frames_with_code == 0


def test_source_shows_a_pass_for_the_asked_number_of_frames() -> None:
    decoder = make_decoder()
    source = SyntheticSource(small_scene(), seed=2, max_frames=8)
    source.show(pass_text(), 3)
    source.show("PINTU SECOND", 2)
    assert source.pending == 5

    texts = [decoder.decode(frame.pixels) for frame in source]

    assert texts == [[pass_text()]] * 3 + [["PINTU SECOND"]] * 2 + [[]] * 3
    assert source.pending == 0
    assert source.frames_with_code == 5


def test_a_visitor_thread_can_show_a_pass_while_the_loop_scans() -> None:
    decoder = make_decoder()
    source = SyntheticSource(small_scene(), seed=3, max_frames=10_000)
    scanning = threading.Event()

    def visitor() -> None:
        scanning.wait(timeout=10)
        source.show(pass_text(), 2)

    thread = threading.Thread(target=visitor)
    thread.start()
    seen_at = None
    for frame in source:
        scanning.set()
        if decoder.decode(frame.pixels) == [pass_text()]:
            seen_at = frame.index
            source.close()
    thread.join(timeout=10)

    assert seen_at is not None
    assert not thread.is_alive()


def test_fail_after_makes_the_camera_die() -> None:
    source = SyntheticSource(small_scene(), seed=4, fail_after=3)
    seen = []
    with pytest.raises(SourceError, match="failed after 3 frames"):
        for frame in source:
            seen.append(frame.index)
    assert seen == [0, 1, 2]


def test_show_needs_at_least_one_frame() -> None:
    source = SyntheticSource(small_scene())
    with pytest.raises(ValueError, match="at least one frame"):
        source.show(pass_text(), 0)
    with pytest.raises(ValueError, match="max_frames"):
        SyntheticSource(small_scene(), max_frames=-1)


def test_visitors_follow_their_file_and_nobody_comes_while_it_is_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's exit doors: only the people in the file come, and it changes."""
    monkeypatch.setattr(VisitorScene, "FOLLOW_EVERY_S", 0.0)
    codes = tmp_path / "inside.txt"
    codes.write_text("", encoding="utf-8")
    source = SyntheticSource(small_scene(), seed=3, max_frames=400)
    scene = VisitorScene(source, [], per_minute=600_000, frames=1, seed=3, follow=codes)
    frames = iter(scene)
    for _ in range(40):
        next(frames)
    assert scene.visitors == 0 and source.frames_with_code == 0

    partial = tmp_path / "inside.tmp"
    partial.write_text(pass_text() + "\n", encoding="utf-8")
    os.replace(partial, codes)
    for _ in range(40):
        next(frames)
    assert scene.texts == [pass_text()]
    assert scene.visitors > 0 and source.frames_with_code > 0

    codes.write_text("# nobody inside\n", encoding="utf-8")
    next(frames)
    seen = scene.visitors
    for _ in range(40):
        next(frames)
    assert scene.texts == [] and scene.visitors == seen


def test_every_preset_can_be_configured_and_renders() -> None:
    from typing import get_args

    from firmware.camera import SyntheticSourceConfig

    choices = set(get_args(SyntheticSourceConfig.model_fields["preset"].annotation))
    assert choices == set(PRESETS)
    rng = np.random.default_rng(0)
    for params in PRESETS.values():
        frame = render("PINTU1:TEST", params, rng)
        assert frame.shape == (480, 640) and frame.dtype == np.uint8
