"""Fixtures for the fault scenarios: a whole facility as real processes, and its invariants.

The harness itself lives in ``bench/fleet.py``, beside the soak that drives it for half an
hour; here it is started per test in the test's own directory, on free ports.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The harness lives beside the packages, not in them: importable from the checkout.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.fleet import Fleet, Tally, check  # noqa: E402

REPORT_ENV = "PINTU_FAULTS_REPORT"


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    """``fleet(**options)``: a started facility (broker, hub, door nodes); stopped at the end.

    ``start=False`` leaves it to the test to call ``start()`` (after mounting a small disk
    for a node's state, say).
    """
    made: list[Fleet] = []

    def make(*, start: bool = True, **options: Any) -> Fleet:
        item = Fleet(tmp_path / f"fleet-{len(made)}", **options)
        made.append(item)
        if start:
            item.start()
        return item

    yield make
    for item in made:
        item.close()


def _assert_invariants(fleet: Fleet, **row: Any) -> Tally:
    fleet.settle()
    tally = check(fleet)
    report = os.environ.get(REPORT_ENV)
    if report and row:
        # A row for docs/reliability.md (``python -m bench.faults --write`` asks for it).
        line = {**row, "test": os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]}
        line["tally"] = asdict(tally)
        with Path(report).open("a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")
    assert tally.ok, "; ".join(tally.problems)
    assert tally.lost == 0 and tally.duplicated == 0
    assert tally.stored == tally.sent > 0
    assert tally.integrity_failures == 0 and tally.unordered_pulses == 0
    return tally


@pytest.fixture
def invariants() -> Callable[..., Tally]:
    """``invariants(fleet, fault=..., how=..., times=..., result=...)``: settle the fleet,
    hold it to its promises, return the figures.

    Every journaled event stored exactly once, occupancy = entries - exits, every journal
    intact, no relay pulse without a decision. The keywords describe the run for the
    Faults table of docs/reliability.md; ``env`` lists the settings (``NAME=value``) its
    command needs to run the same way.
    """
    return _assert_invariants
