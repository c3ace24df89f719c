"""The node's wall clock steps back an hour mid-stream (NTP correcting a clock that ran ahead).

The node runs in the test's process so that its view of wall time can be stepped: the
door's clock and the time events are stamped with move back an hour together, while the
monotonic clock goes on, as a real step leaves it. (libfaketime would do this to a node
process, but its sleep breaks when the monotonic clock is left alone.) seq keeps rising,
nothing is lost, passes are judged by the new time, the step is an alarm between the last
event on the old time and the first on the new, and the uplink's resend timers carry on.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

import controller.door
from bench.fleet import RELAY_PIN, Fleet, Tally, count_openings, doors, wait_until
from controller.config import load_config
from controller.node import Node

NODE = "n-in-1"
STEP_S = 3600.0


@contextlib.contextmanager
def node_log(f: Fleet) -> Iterator[None]:
    """The in-process node's log lines go to its log file, as a node process's would."""
    handler = logging.FileHandler(f.nodes[NODE].log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    loggers = [logging.getLogger(n) for n in ("controller", "firmware")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
        handler.close()


def test_clock_stepping_back_an_hour_keeps_seq_order_and_loses_nothing(
    fleet: Callable[..., Fleet],
    invariants: Callable[[Fleet], Tally],
    mock_pins: MockFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    f = fleet(specs=doors(1, 0), rate_per_s=5.0, fps=10.0, in_process=frozenset({NODE}))
    offset = [0.0]
    monkeypatch.setattr(
        controller.door, "utcnow", lambda: datetime.now(UTC) + timedelta(seconds=offset[0])
    )
    config = load_config(f.workdir / f"{NODE}.toml")
    with node_log(f):
        node = Node(config, clock=lambda: time.time() + offset[0])
        node.start()
        try:
            wait_until(lambda: f.journal_state(NODE)[0] >= 10, 60, "events on the right time")
            offset[0] = -STEP_S
            stepped_at, _, _ = f.journal_state(NODE)
            wait_until(lambda: f.journal_state(NODE)[0] >= stepped_at + 10, 60, "after the step")
        finally:
            node.stop()
    pin = Device.pin_factory.pin(RELAY_PIN)
    rises = sum(1 for s in pin.states if s.state)
    assert rises == count_openings(f.nodes[NODE].log), "the log shows every pulse the pin saw"
    tally = invariants(
        f,
        fault="clock steps back an hour",
        how="the node's wall clock (door and event stamps) stepped back 3600 s mid-stream, "
        "monotonic clock left alone",
        times=1,
        result="seq rises by one throughout, an alarm marks the step, passes still judged",
    )
    with contextlib.closing(sqlite3.connect(f.hub_db)) as conn:
        rows = conn.execute(
            "SELECT seq, ts, kind, detail FROM events WHERE node_id = ? ORDER BY seq", (NODE,)
        ).fetchall()
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1)), "seq rises by one"
    (alarm,) = [r for r in rows if r[3] == "clock_stepped_back"]
    before = [datetime.fromisoformat(r[1]) for r in rows if r[0] < alarm[0]]
    after = [datetime.fromisoformat(r[1]) for r in rows if r[0] > alarm[0]]
    assert before == sorted(before) and after == sorted(after), "each side is in time order"
    assert (before[-1] - after[0]).total_seconds() > STEP_S - 60, "the times jump back an hour"
    # The passes (issued an hour before the run) are still judged valid on the new time.
    assert any(r[2] == "entry" and r[0] > alarm[0] for r in rows)
    assert tally.lost == 0
