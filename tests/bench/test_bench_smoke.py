"""The benchmarks still run: a handful of admissions through a whole node, no timing asserted.

The figures themselves depend on the machine; ``python -m bench.latency`` measures them.
"""

from __future__ import annotations

import importlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def latency(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # The benchmarks live beside the packages, not in them: importable from the checkout.
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module("bench.latency")


def test_latency_benchmark_gives_sane_figures(latency: ModuleType) -> None:
    result = latency.measure(10, block=5, warmup=1, load_rate=500.0)
    for arm in (result.idle, result.loaded):
        assert len(arm.node_ms) == len(arm.parts_ms) == 10
        assert all(ms > 0 for ms in arm.node_ms + arm.parts_ms)
        assert 0 < arm.node(50) <= arm.node(95) <= arm.node(99)
        assert 0 < arm.parts(50) <= arm.parts(99)
    hub = result.hub
    assert hub.load_acked > 0 and hub.load_seconds > 0 and hub.load_rate > 0
    # node_start and one entry per admission (warm-up included) reached the hub, acked.
    assert hub.node_events >= 1 + 21
    assert hub.acks_sent == hub.node_events
    section = latency.report(result, "python -m bench.latency --admissions 10")
    assert "| idle | 10 |" in section
    assert "Worst p99 in this run" in section


def test_write_section_keeps_the_rest_of_the_file(latency: ModuleType, tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n<!-- other:start -->\nkept\n<!-- other:end -->\n")
    latency.write_section(doc, "first", latency.START, latency.END, latency.HEADING)
    latency.write_section(doc, "second", latency.START, latency.END, latency.HEADING)
    text = doc.read_text()
    assert "<!-- other:start -->\nkept\n<!-- other:end -->" in text
    assert f"{latency.START}\nsecond\n{latency.END}" in text
    assert "first" not in text
    assert text.count(latency.HEADING) == 1


def test_service_memory_benchmark_gives_sane_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    bench = importlib.import_module("bench.service_memory")
    # The two services side by side, to halve the wait; each has its own broker, ports
    # and files.
    with ThreadPoolExecutor(2) as pool:
        hub_run = pool.submit(bench.measure_hub, 2, 40.0, 4)
        registry_run = pool.submit(bench.measure_registry, 2, 3000, 1000, 50)
        result = bench.Result(*hub_run.result(), *registry_run.result())
    for run in (result.hub, result.registry):
        assert len(run.service.rss) == len(run.baseline.rss) == 3
        assert 0 < run.service.uss <= min(run.service.rss)
        # The service imports at least what its baseline does, and then works.
        assert run.service.max_mb > run.baseline.max_mb > 10
    hub = result.hub_load
    assert hub.events == 80 and hub.stored == 80
    assert hub.stream.get("event", 0) > 0, "the dashboard's stream showed no events"
    registry = result.registry_load
    assert registry.full_reads >= 1 and registry.changes_read >= 3000
    assert registry.visits >= 50 and registry.stored_visits == registry.visits
    section = bench.report(result, "python -m bench.service_memory --seconds 2")
    assert "### Hub under a steady ingest" in section and "| registry |" in section


def test_the_hub_ingest_is_not_grossly_slower_than_the_broker(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A short `bench.ingest --smoke`: the hub with a viewer's live stream open, against
    the broker alone in the same run. It compares CPU time spent on an event, which a busy
    machine sways far less than a rate, and fails only on a regression of the size that
    once doubled it (the passages sent one message an event); ``make bench`` measures the
    real rate."""
    monkeypatch.syspath_prepend(str(ROOT))
    ingest = importlib.import_module("bench.ingest")
    code = ingest.main(["--smoke"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "CPU per event" in out


def test_decode_benchmark_has_a_row_for_every_preset_and_a_photo_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    decode = importlib.import_module("bench.decode")
    from PIL import Image, ImageOps

    from firmware.synthetic import PRESETS
    from protocol.passes import issue
    from protocol.status import Status
    from protocol.trust import SigningKey

    # A "photo" the escalation reads and zxing-cpp alone does not: a dark-mode screen.
    text = issue(SigningKey.generate(), bytes(12), Status.GREEN, 2, 1_700_000_000, 1_800_000_000)
    import segno

    segno.make_qr(text, error="m").save(tmp_path / "dark.png", scale=4)
    with Image.open(tmp_path / "dark.png") as image:
        ImageOps.invert(image.convert("L")).save(tmp_path / "dark.png")
    (tmp_path / "dark.txt").write_text(text)

    section, worst = decode.run(3, 25, 1, "python -m bench.decode --frames 3", tmp_path)
    for name in PRESETS:
        assert f"\n| {name} | " in section
    assert "| zxing-cpp | 0 / 1 | 0 |" in section
    assert "| escalating | 1 / 1 | 1 |" in section
    assert "Pi Zero 2 W" in section
    assert worst > 0
