"""A decoder that refuses every frame is a problem the door reports, not a silent door."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from controller.scanner import REFUSED_RUN, Scanner
from firmware.decoder import ZxingDecoder
from firmware.frames import ReplaySource
from runtime.notify import Notifier


class Collect:
    def __init__(self) -> None:
        self.work: list[Any] = []

    def submit(self, work: Any) -> None:
        self.work.append(work)


def old_zxing_read(image: Any, formats: Any = None, try_rotate: bool = True, **options: Any) -> Any:
    """zxing-cpp 2.2's read_barcodes: no try_invert, so every call here raises."""
    if "try_invert" in options or "return_errors" in options:
        raise TypeError("read_barcodes(): incompatible function arguments")
    return []


def test_zxing_cpp_too_old_is_refused_when_the_decoder_is_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import zxingcpp

    monkeypatch.setattr(zxingcpp, "read_barcodes", old_zxing_read)
    with pytest.raises(ImportError, match=r"too old: Pintu needs zxing-cpp >= 3\.0"):
        ZxingDecoder()


def test_the_version_floor_is_what_the_code_needs() -> None:
    import tomllib
    from importlib.metadata import version
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert "zxing-cpp>=3.0" in project["project"]["optional-dependencies"]["node"]
    assert int(version("zxing-cpp").split(".")[0]) >= 3


def test_a_decoder_refusing_every_frame_is_reported_and_cleared(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    decoder = ZxingDecoder()
    # The library later starts refusing the call (as 2.2 refuses try_invert).
    read = decoder._read
    decoder._read = old_zxing_read
    frames = [np.full((48, 64), 200, dtype=np.uint8)] * (REFUSED_RUN + 5)
    problems: list[str | None] = []
    scanner = Scanner(
        open_source=lambda: ReplaySource(frames),
        decoder=decoder,
        door=Collect(),  # type: ignore[arg-type]
        cooldown_s=1.0,
        restart_after_s=0.05,
        notifier=Notifier(),
        on_health=lambda _problem: None,
        on_decoder=problems.append,
    )
    with caplog.at_level(logging.ERROR, logger="controller.scanner"):
        assert scanner._scan(ReplaySource(frames)) is True
    assert len(problems) == 1 and problems[0] is not None
    assert "refuses every frame: refused by zxing-cpp" in problems[0]
    assert f"refused the last {REFUSED_RUN} frames" in caplog.text
    # Fixed (the library upgraded): the next frame read clears the problem.
    decoder._read = read
    scanner._scan(ReplaySource(frames[:1]))
    assert problems[-1] is None
