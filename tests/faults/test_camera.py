"""The camera fails and comes back: an alarm, a degraded door, then a working door again.

tests/controller/test_node.py shows the alarm for a source that dies; here a real node
process loses its frames (the folder it replays disappears, as a camera unplugged), keeps
retrying without flooding the journal with alarms, and recovers on its own when the frames
return.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from bench.fleet import FACILITY, Fleet, Tally, count_pulses, doors, wait_until
from controller.door import Alarm
from controller.scanner import Scanner
from firmware.decoder import make_decoder
from firmware.frames import Frame
from runtime.notify import Notifier

NODE = "n-in-1"


def node_row(f: Fleet) -> tuple[str, list[str]]:
    with contextlib.closing(sqlite3.connect(f.hub_db, timeout=10)) as conn:
        row = conn.execute(
            "SELECT state, problems FROM nodes WHERE facility_id = ? AND node_id = ?",
            (FACILITY, NODE),
        ).fetchone()
    return ("unknown", []) if row is None else (str(row[0]), list(json.loads(row[1])))


def camera_alarms(f: Fleet) -> int:
    with contextlib.closing(sqlite3.connect(f.hub_db, timeout=10)) as conn:
        return int(
            conn.execute(
                "SELECT count(*) FROM events WHERE node_id = ? AND detail = 'camera_failed'",
                (NODE,),
            ).fetchone()[0]
        )


def test_camera_failing_raises_one_alarm_degrades_and_recovers(
    fleet: Callable[..., Fleet], invariants: Callable[[Fleet], Tally]
) -> None:
    f = fleet(specs=doors(1, 0), rate_per_s=5.0, fps=10.0, passes_per_door=5)
    frames = f.workdir / "frames"
    wait_until(lambda: count_pulses(f.nodes[NODE].log)[0] >= 3, 60, "the door admitting")
    log = f.nodes[NODE].log
    for failure in (1, 2):
        frames.rename(frames.with_name("frames-unplugged"))
        wait_until(lambda n=failure: camera_alarms(f) == n, 60, "the camera alarm at the hub")
        _, problems = wait_until(
            lambda: (row := node_row(f))[0] == "degraded" and row, 60, "the door degraded"
        )
        assert any(p.startswith("camera:") for p in problems)
        pulses, _ = count_pulses(log)
        # Reopened again and again (once a second here) while it stays unplugged ...
        retries = log.read_text().count("camera failed:")
        wait_until(lambda r=retries: log.read_text().count("camera failed:") >= r + 3, 60, "")
        # ... with one alarm for the whole failure and no door opening without frames.
        assert camera_alarms(f) == failure
        assert count_pulses(log)[0] == pulses
        frames.with_name("frames-unplugged").rename(frames)
        wait_until(lambda: node_row(f)[0] == "online", 60, "the door online again")
        wait_until(lambda p=pulses: count_pulses(log)[0] >= p + 3, 60, "admitting again")
    invariants(
        f,
        fault="camera fails and recovers",
        how="the node's frame folder taken away (reads fail, reopening fails) and put back",
        times=2,
        result="one alarm per failure, degraded at the hub, no pulse without frames, online again",
    )


class BrokenDriver:
    """A frame source that fails as a driver might: an OSError, not a SourceError."""

    name = "broken"

    def __init__(self) -> None:
        self.opened = 0
        self.ended = threading.Event()

    def __iter__(self) -> Iterator[Frame]:
        self.opened += 1
        self.ended.clear()
        if self.opened <= 2:
            raise OSError(22, "Invalid argument")
        yield Frame(np.zeros((48, 64), dtype=np.uint8), time.monotonic(), 0)
        self.ended.wait()

    def close(self) -> None:
        self.ended.set()


class Collect:
    def __init__(self) -> None:
        self.work: list[Any] = []

    def submit(self, work: Any) -> None:
        self.work.append(work)


def test_a_source_failing_with_an_unforeseen_error_is_a_camera_failure_not_a_silent_stop() -> None:
    source = BrokenDriver()
    door = Collect()
    health: list[str | None] = []
    scanner = Scanner(
        open_source=lambda: source,
        decoder=make_decoder("zxingcpp"),
        door=door,  # type: ignore[arg-type]
        cooldown_s=1.0,
        restart_after_s=0.05,
        notifier=Notifier(),
        on_health=health.append,
    )
    scanner.start()
    try:
        wait_until(lambda: source.opened == 3 and health[-1:] == [None], 10, "recovered")
    finally:
        scanner.stop()
    assert scanner.stats.source_failures == 2
    assert [w.detail for w in door.work if isinstance(w, Alarm)] == ["camera_failed"]
    assert [h for h in health if h] == ["camera: [Errno 22] Invalid argument"] * 2
