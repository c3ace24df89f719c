"""The door journal's write path: plain sqlite3 (what the node uses) against sqlite-utils.

    python -m bench.journal                  # print the table
    python -m bench.journal --write          # ... and put it into docs/benchmarks.md
    python -m bench.journal --dir /mnt/sd    # on the card the node writes to

Every admission costs the door one journal write before its relay pulses, so a slower
write is felt by every visitor. Three arms, interleaved in small blocks in the same run,
each on its own database file in ``--dir`` with the journal's settings (WAL,
``synchronous=FULL``, one durable transaction a write):

1. the baseline: the journal's own ``INSERT`` through ``sqlite3``, the event already built;
2. the same row through sqlite-utils (``Table.insert``) on a connection set up alike;
3. ``Journal.append`` as the door calls it (event built, validated, serialised, written).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from bench.provenance import filesystem
from bench.registry import ROOT, write_section
from controller.journal import MIGRATIONS, Journal
from protocol.events import EventKind, new_event_id
from protocol.signals import Signal

START = "<!-- bench:journal:start -->"
END = "<!-- bench:journal:end -->"
HEADING = "## Door journal: sqlite3 or sqlite-utils"
# sqlite-utils is taken for the journal only if a write costs at most this much more.
BUDGET = 1.10


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    for script in MIGRATIONS:
        conn.executescript(script)
    return conn


def _row(seq: int) -> dict[str, Any]:
    payload = {"v": 1, "event_id": new_event_id(), "seq": seq, "kind": "entry", "signal": "green"}
    return {
        "seq": seq,
        "event_id": payload["event_id"],
        "kind": "entry",
        "payload": json.dumps(payload),
        "created_at": time.time(),
    }


class Sqlite3Arm:
    name = "sqlite3: the journal's INSERT (baseline)"

    def __init__(self, path: Path) -> None:
        self.conn = _connect(path)
        self.seq = 0

    def write(self) -> None:
        self.seq += 1
        row = _row(self.seq)
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute(
            "INSERT INTO events (seq, event_id, kind, payload, created_at) VALUES (?, ?, ?, ?, ?)",
            (row["seq"], row["event_id"], row["kind"], row["payload"], row["created_at"]),
        )
        self.conn.execute("COMMIT")


class SqliteUtilsArm:
    name = "sqlite-utils: Table.insert of the same row"

    def __init__(self, path: Path) -> None:
        self.db = sqlite_utils.Database(_connect(path))
        self.table = self.db.table("events")
        self.seq = 0

    def write(self) -> None:
        self.seq += 1
        # insert() runs in a transaction of its own (``with conn:``), committed durably.
        self.table.insert(_row(self.seq))


class JournalArm:
    name = "Journal.append, as the door calls it"

    def __init__(self, path: Path) -> None:
        self.journal = Journal(path, node_id="n1", facility_id="f1", door_id="d1")

    def write(self) -> None:
        self.journal.append(
            EventKind.ENTRY, direction="entry", signal=Signal.GREEN, admit=True, reason="ok"
        )


@dataclass(frozen=True)
class Arm:
    name: str
    ms: list[float]

    def median(self) -> float:
        return statistics.median(self.ms)

    def p95(self) -> float:
        return statistics.quantiles(self.ms, n=20)[-1]


def measure(writes: int, directory: Path, block: int = 25, warmup: int = 20) -> list[Arm]:
    """``writes`` timed writes per arm, the arms taking turns ``block`` writes at a time."""
    arms: list[Sqlite3Arm | SqliteUtilsArm | JournalArm] = [
        Sqlite3Arm(directory / "a.db"),
        SqliteUtilsArm(directory / "b.db"),
        JournalArm(directory / "c.db"),
    ]
    times: list[list[float]] = [[] for _ in arms]
    for arm in arms:
        for _ in range(warmup):
            arm.write()
    clock: Callable[[], float] = time.perf_counter
    while len(times[0]) < writes:
        for arm, got in zip(arms, times, strict=True):
            for _ in range(min(block, writes - len(got))):
                start = clock()
                arm.write()
                got.append((clock() - start) * 1000)
    return [Arm(arm.name, got) for arm, got in zip(arms, times, strict=True)]


def report(arms: list[Arm], command: str, directory: Path) -> str:
    base, utils, journal = arms
    ratio = utils.median() / base.median()

    lines = [
        f"Run on {platform.platform()} ({platform.machine()}, {os.cpu_count()} CPUs), Python "
        f"{platform.python_version()}; SQLite {sqlite3.sqlite_version}, sqlite-utils "
        f"{md.version('sqlite-utils')}; database files on {filesystem(directory)}.",
        "",
        f"Command: `{command}`",
        "",
        "Every admission is one journal write (WAL, `synchronous=FULL`, one transaction) "
        "before the relay pulses. The arms take turns in blocks of 25 writes on files of "
        "their own in the same directory.",
        "",
        "| arm | writes | median | p95 | / sqlite3 |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for arm in arms:
        lines.append(
            f"| {arm.name} | {len(arm.ms):,} | {arm.median():.3f} ms | {arm.p95():.3f} ms "
            f"| {arm.median() / base.median():.2f}x |"
        )
    verdict = (
        "within the budget: the journal could take it"
        if ratio <= BUDGET
        else "over the budget: the journal keeps sqlite3"
    )
    lines += [
        "",
        f"sqlite-utils costs {ratio:.2f}x plain sqlite3 per write "
        f"({(utils.median() - base.median()) * 1000:+.0f} µs), against a budget of "
        f"{BUDGET:.2f}x: {verdict}. A whole `Journal.append` takes "
        f"{journal.median():.3f} ms.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.journal", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--writes", type=int, default=2000, help="timed writes per arm")
    parser.add_argument("--dir", type=Path, default=None, help="where the files go (a temp dir)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs" / "benchmarks.md", help="file for --write"
    )
    parser.add_argument("--write", action="store_true", help="update the journal section")
    args = parser.parse_args(argv)
    command = "python -m bench.journal" + (
        f" --writes {args.writes}" if args.writes != 2000 else ""
    )
    with tempfile.TemporaryDirectory(prefix="pintu-bench-journal-", dir=args.dir) as work:
        arms = measure(args.writes, Path(work))
        section = report(arms, command, Path(work))
    print(section)
    if args.write:
        write_section(args.out, section, START, END, HEADING)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
