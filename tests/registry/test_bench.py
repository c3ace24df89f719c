"""The registry benchmark still runs: tiny sizes, no timing asserted."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # The benchmarks live beside the packages, not in them: importable from the checkout.
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module("bench.registry")


def test_registry_benchmark_gives_sane_figures(bench: ModuleType, tmp_path: Path) -> None:
    sync = bench.measure_sync(2_500, 1_000, seed=1)
    assert (sync.changes, sync.pages) == (2_500, 3)
    assert sync.http_s > 0 and sync.sql_s > 0 and sync.http_bytes > 0
    tracing = bench.measure_tracing(3_000, 20, 300, traced=3, intake=200, seed=1)
    assert tracing.visits == 3_200 and tracing.traced == 3
    assert len(tracing.service_ms) == len(tracing.http_ms) == 3
    assert tracing.visits_per_trace >= 5
    lists = bench.measure_lists(5_000, 2_000, seed=1)
    assert lists.file_bytes == 16 + 17 * 5_000
    assert len(lists.list_ns) == len(lists.dict_ns) == 2_000
    section = bench.report(sync, tracing, lists, "python -m bench.registry --changes 2500")
    assert "| HTTP feed, paged | 2,500 | 3 |" in section
    assert "| `StatusList` (.psl) | 17.00 |" in section
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n<!-- other:start -->\nkept\n<!-- other:end -->\n")
    bench.write_section(doc, "placeholder-one")
    bench.write_section(doc, section)
    text = doc.read_text()
    assert "<!-- other:start -->\nkept\n<!-- other:end -->" in text
    assert f"{bench.START}\n{section}\n{bench.END}" in text
    assert "placeholder-one" not in text and text.count(bench.HEADING) == 1


def test_the_tracing_benchmark_runs_on_postgresql(bench: ModuleType, pg_server: str) -> None:
    pg = bench.measure_tracing_pg(pg_server, 3_000, 20, 300, traced=3, seed=1)
    assert (pg.visits, pg.traced) == (3_000, 3)
    assert len(pg.service_ms) == len(pg.http_ms) == 3 and pg.load_s > 0
    assert pg.server.startswith("PostgreSQL ")
    # Beside SQLite figures (here: the same ones again, so the ratio is known).
    sqlite = bench.Tracing(3_000, 20, 300, 1.0, 0, 1.0, 3, 5.0, 1.0, pg.service_ms, pg.http_ms)
    lines = bench.pg_lines(sqlite, pg)
    assert lines[0].startswith(f"| `Registry.trace` on {pg.server} (in the registry) |")
    assert "takes 1.0x its SQLite median" in lines[-1]
    with psycopg.connect(pg_server) as conn:  # its schema is gone again
        left = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pintu_bench_%'"
        ).fetchone()
    assert left == (0,)
