"""The benchmarks still run: a handful of admissions through a whole node, no timing asserted.

The figures themselves depend on the machine; ``python -m bench.latency`` measures them.
"""

from __future__ import annotations

import importlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import pytest

from ..garbage import collect_what_others_left

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


def test_latency_benchmark_over_tls_and_the_signed_lists(latency: ModuleType) -> None:
    """`bench.latency --tls` in small: the node on a plain broker and on a TLS one (the
    node, the stand-in hub and the load verifying it against a facility CA), and the signed
    lists' check beside the unsigned parse."""
    plain, tls = latency.measure_links(2, 2, block=1, warmup=0, load_rate=300.0)
    assert plain.tls is None and tls.tls is not None and tls.tls.startswith("TLS")
    for result in (plain, tls):
        assert len(result.idle.node_ms) == len(result.loaded.node_ms) == 2
        # node_start of each of the two nodes and one entry per admission, acked.
        assert result.hub.node_events >= 2 + 4
        assert result.hub.acks_sent == result.hub.node_events
    costs, where = latency.list_costs(2, trust_sizes=(3,), status_sizes=(500,))
    assert [c.records for c in costs] == [3, 500]
    for cost in costs:
        for times in (cost.parse_ms, cost.verify_ms, cost.signed_ms, cost.arrival_ms):
            assert len(times) == 2 and all(ms > 0 for ms in times)
    command = "python -m bench.latency --tls --admissions 2 --rounds 2"
    section = latency.report_tls(plain, tls, costs, where, 2, command, (1.0, 1.0), "abc1234")
    assert "| TLS | idle | 2 |" in section and "| plain | idle | 2 |" in section
    assert "| status list, 500 subjects |" in section


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
    collect_what_others_left()  # the benchmark collects once, as the hub service does
    code = ingest.main(["--smoke"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "CPU per event" in out


def test_the_ingest_benchmark_runs_over_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    """`bench.ingest --tls` in small: the broker alone, the hub and the hub with a viewer
    on a plain broker and on a TLS one, every client verifying the TLS broker."""
    monkeypatch.syspath_prepend(str(ROOT))
    ingest = importlib.import_module("bench.ingest")
    run = ingest.run_tls(300, 4, 1)
    assert run.session.startswith("TLS")
    for link in (run.plain, run.tls):
        for results in (link.raws, link.hubs, link.viewed):
            assert len(results) == 1 and results[0].events == 300
            assert results[0].broker_cpu_s >= 0 and results[0].publisher_cpu_s > 0
    assert run.tls.broker.ca_file is not None and run.plain.broker.ca_file is None
    section = ingest.render_tls(run, "python -m bench.ingest --tls", (1.0, 1.0), "abc1234")
    assert "The cost of TLS in this run" in section
    assert "| hub with a viewer | the hub |" in section


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
