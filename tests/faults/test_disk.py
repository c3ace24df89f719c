"""A node's disk fills up, then space comes back.

The state directory of each door is a small tmpfs of its own, filled to the last byte by a
ballast file (so this needs root; elsewhere it is skipped with the reason). A door that
cannot record must not let people in uncounted: the entry door refuses entries while its
journal refuses writes, the exit door still lets people out, both report themselves
degraded to the hub and raise an alarm, and everything they decided meanwhile reaches the
hub, with the time it happened, once the ballast is gone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from bench.fleet import FACILITY, Fleet, Tally, count_pulses, doors, wait_until


def node_row(f: Fleet, node_id: str) -> tuple[str, list[str]]:
    with contextlib.closing(sqlite3.connect(f.hub_db, timeout=10)) as conn:
        row = conn.execute(
            "SELECT state, problems FROM nodes WHERE facility_id = ? AND node_id = ?",
            (FACILITY, node_id),
        ).fetchone()
    return ("unknown", []) if row is None else (str(row[0]), list(json.loads(row[1])))


def degraded_by_journal(f: Fleet, node_id: str) -> bool:
    state, problems = node_row(f, node_id)
    return state == "degraded" and any(p.startswith("journal:") for p in problems)


@contextlib.contextmanager
def small_disk(path: Path, size: str = "16m") -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("a full disk is a tmpfs of its own here, and mounting one needs root")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    """Write a ballast file until the disk has no byte left."""
    ballast = disk / "ballast"
    block = b"\0" * 65536
    with ballast.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(block)
        except OSError as err:
            assert err.errno == errno.ENOSPC
        try:
            while True:
                out.write(b"\0")
        except OSError as err:
            assert err.errno == errno.ENOSPC
    return ballast


def test_a_full_disk_refuses_entries_lets_people_out_and_recovers(
    fleet: Callable[..., Fleet], invariants: Callable[[Fleet], Tally]
) -> None:
    f = fleet(start=False, specs=doors(1, 1), rate_per_s=2.0, fps=10.0)
    entry, exit_ = "n-in-1", "n-out-1"
    with small_disk(f.state_dir(entry)) as in_disk, small_disk(f.state_dir(exit_)) as out_disk:
        f.start()
        for node_id in (entry, exit_):
            wait_until(lambda n=node_id: f.journal_state(n)[0] >= 3, 60, f"{node_id} deciding")
        ballasts = [fill(in_disk), fill(out_disk)]
        for node_id in (entry, exit_):
            wait_until(lambda n=node_id: degraded_by_journal(f, n), 60, f"{node_id} degraded")
        entry_pulses, _ = count_pulses(f.nodes[entry].log)
        exit_pulses, _ = count_pulses(f.nodes[exit_].log)
        # Decisions go on; the entry door refuses each entry, the exit door lets people out.
        wait_until(
            lambda: count_pulses(f.nodes[exit_].log)[0] >= exit_pulses + 5, 60, "exits go on"
        )
        assert count_pulses(f.nodes[entry].log)[0] <= entry_pulses + 1, "entries let in"
        full_until = datetime.now().astimezone()
        for ballast in ballasts:
            ballast.unlink()
        for node_id in (entry, exit_):
            wait_until(lambda n=node_id: node_row(f, n)[0] == "online", 60, f"{node_id} recovered")
        recovered_at = datetime.now().astimezone()
        wait_until(
            lambda: count_pulses(f.nodes[entry].log)[0] >= entry_pulses + 3, 60, "entries again"
        )
        tally = invariants(
            f,
            fault="node's disk full",
            how="state directory on a 16 MB tmpfs filled by a ballast file, then freed; an "
            "entry and an exit door",
            times=2,
            result="entries refused, exits open, degraded and an alarm, kept events written "
            "with their times",
        )
    with contextlib.closing(sqlite3.connect(f.hub_db)) as conn:
        refused = conn.execute(
            "SELECT ts FROM events WHERE node_id = ? AND reason = 'journal_unavailable'", (entry,)
        ).fetchall()
        alarms = conn.execute(
            "SELECT node_id FROM events WHERE kind = 'alarm' AND detail = 'journal_failed'"
        ).fetchall()
    assert refused, "the entries refused while the disk was full reached the hub"
    # Kept in memory with the time they happened, not the time the disk took them: those
    # decided while the disk was full carry those times (written later, they would all be
    # stamped after it was freed); one decided between the freeing and the node noticing
    # is stamped then, before the node was back.
    stamps = [datetime.fromisoformat(ts) for (ts,) in refused]
    late = [ts for ts in stamps if ts >= full_until]
    assert len(late) < len(stamps), "every refusal stamped after the disk was freed"
    assert all(ts < recovered_at for ts in late)
    assert sorted(a for (a,) in alarms) == [entry, exit_]
    assert tally.lost == 0
