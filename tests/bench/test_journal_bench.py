"""The journal benchmark still runs: a few writes per arm, no timing asserted."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_journal_benchmark_compares_its_arms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    bench = importlib.import_module("bench.journal")
    arms = bench.measure(10, tmp_path, block=5, warmup=1)
    assert [len(arm.ms) for arm in arms] == [10, 10, 10]
    assert all(ms > 0 for arm in arms for ms in arm.ms)
    section = bench.report(arms, "python -m bench.journal --writes 10", tmp_path)
    assert "| sqlite3: the journal's INSERT (baseline) | 10 |" in section
    assert "sqlite-utils costs" in section
