"""A door cut off from the broker: the link dropped, then left half-open, then restored.

Each node reaches the broker through a TCP forwarder of its own (``bench.fleet.LinkProxy``)
that the test can cut (both ends closed, reconnects refused) or stall (sockets left open,
nothing forwarded: a half-open link that only the MQTT keep-alive finds out). It needs no
privileges, unlike a network namespace, and the half-open case is one a namespace cannot
easily make. Meanwhile the door keeps deciding from its lists; when the link is back it
catches up with everything it decided.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing

from bench.fleet import FACILITY, Fleet, Tally, doors, wait_until

CUT_NODE = "n-in-1"


def node_state(f: Fleet, node_id: str) -> str | None:
    with closing(sqlite3.connect(f.hub_db, timeout=10)) as conn:
        row = conn.execute(
            "SELECT state FROM nodes WHERE facility_id = ? AND node_id = ?", (FACILITY, node_id)
        ).fetchone()
    return None if row is None else str(row[0])


def stored_of(f: Fleet, node_id: str) -> int:
    return sum(1 for row in f.stored() if row[1] == node_id)


def test_a_node_cut_off_keeps_deciding_and_catches_up(
    fleet: Callable[..., Fleet], invariants: Callable[[Fleet], Tally]
) -> None:
    f = fleet(specs=doors(1, 1), rate_per_s=5.0, fps=10.0)
    link = f.links[CUT_NODE]
    wait_until(lambda: stored_of(f, CUT_NODE) >= 10, 60, "the door's first events at the hub")
    for how in ("cut", "stall"):
        if how == "cut":
            link.cut()
        else:
            link.stall()
        last, _, _ = f.journal_state(CUT_NODE)
        # The hub notices the door is gone (its Last Will, once the broker gives up on it) ...
        wait_until(lambda: node_state(f, CUT_NODE) == "offline", 60, f"offline after {how}")
        at_hub = stored_of(f, CUT_NODE)
        # ... while the door goes on deciding alone and journals what it decides.
        wait_until(lambda s=last: f.journal_state(CUT_NODE)[0] >= s + 20, 60, "decisions alone")
        assert stored_of(f, CUT_NODE) == at_hub, "nothing can reach the hub over a dead link"
        link.restore()
        behind, _, _ = f.journal_state(CUT_NODE)
        wait_until(
            lambda s=behind: set(range(1, s + 1)) <= set(f.stored_seqs()[CUT_NODE]),
            60,
            f"the door catching up after the link {how}",
        )
        wait_until(lambda: node_state(f, CUT_NODE) == "online", 60, f"online after {how}")
    invariants(
        f,
        fault="node cut off from the broker",
        how="the node's TCP link cut (closed, reconnects refused), then left half-open "
        "(nothing forwarded, sockets open)",
        times=2,
        result="offline at the hub, keeps deciding alone, catches up on reconnect",
    )
