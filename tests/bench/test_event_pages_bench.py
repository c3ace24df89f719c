"""The events' pages benchmark still runs on PostgreSQL: a few batches, no timing asserted."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_event_pages_benchmark_compares_full_pages_with_the_stores(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    bench = importlib.import_module("bench.event_pages")
    arms = bench.measure(pg_dsn, 400, 100)
    assert [arm.fillfactor for arm in arms] == [100, 50]
    assert all(len(arm.insert_ms) == len(arm.update_ms) == 4 for arm in arms)
    assert all(arm.bytes_recounted > 0 and arm.bytes_in_order > 0 for arm in arms)
    section = bench.report(arms, "python -m bench.event_pages --events 400", pg_dsn, 400, 100)
    assert "| pages filled full (fillfactor 100, the baseline) |" in section
    assert "Counting a batch again costs" in section
