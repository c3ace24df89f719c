"""The phone check-in benchmark still runs: a handful of check-ins over HTTP and in
Chromium through a real registry, broker and hub, every one answered; no timing asserted.

The figures themselves depend on the machine; ``python -m bench.phone`` measures them.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_phone_benchmark_has_every_check_in_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    bench = importlib.import_module("bench.phone")
    doc = tmp_path / "benchmarks.md"
    code = bench.main(["--smoke", "--write", "--out", str(doc)])
    out = capsys.readouterr().out
    assert code == 0, out
    # Over HTTP: 6 timed beside 6 baselines, each visitor in and then out.
    assert "| `GET /api/v1/health` (baseline) | 6 |" in out
    assert "| `POST /api/v1/wallet/checkins`, to the hub's answer | 6 |" in out
    assert "Answered by the hub: 3 green entry, 3 green exit; none failed." in out
    assert "of 6 took more than the median plus" in out
    # In Chromium: 2 posters beside 2 page loads.
    assert "| `page.goto(<registry>/api/v1/health)` (baseline) | 2 |" in out
    assert "| poster address opened to the result drawn | 2 |" in out
    assert "Answered by the hub: 1 green entry, 1 green exit; none failed." in out
    assert "| activation link to the wallet, offline-ready |" in out
    assert "The wallet's first load under 150 kB:" in out
    text = doc.read_text(encoding="utf-8")
    assert text.count("## Phone check-ins") == 1
    assert f"{bench.START}\n" in text and f"\n{bench.END}" in text
