"""The collector settled for a long-running service: what was loaded is frozen out of its
sight and the youngest generation is collected far less often."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from runtime.collector import YOUNG_THRESHOLD, settle_collector

from ..garbage import collect_what_others_left


@pytest.fixture
def restored() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored")
def test_settling_freezes_what_is_loaded_and_collects_the_young_less_often() -> None:
    gc.unfreeze()
    collect_what_others_left()
    loaded = len(gc.get_objects())
    settle_collector()
    assert gc.get_freeze_count() >= loaded * 0.9
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    # Cycles made afterwards are still collected.
    before = gc.get_count()[0]

    class Cycle:
        pass

    for _ in range(100):
        a, b = Cycle(), Cycle()
        a.other, b.other = b, a  # type: ignore[attr-defined]
    del a, b
    assert gc.get_count()[0] > before  # counted, not yet collected
    assert gc.collect() >= 200
