"""Door nodes killed with SIGKILL mid-publish and mid-journal-write, and started again.

tests/controller/test_node.py kills one node once; here nodes deciding ten times a
second are killed at random moments (three times here, many more in the soak), so kills
land while an event is being committed to the journal, while a batch is being published
and while acks are being applied. After each restart the journal must open, pass SQLite's
integrity check, keep its seq rising, and lose nothing.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from bench.fleet import Fleet, Tally, doors, wait_until

KILLS = 3


def test_nodes_killed_mid_write_lose_nothing_and_keep_their_journals_intact(
    fleet: Callable[..., Fleet], invariants: Callable[[Fleet], Tally]
) -> None:
    f = fleet(specs=doors(2, 1), rate_per_s=10.0, fps=20.0)
    rng = random.Random(5)
    node_ids = sorted(f.nodes)
    left_unacked = 0
    for _ in range(KILLS):
        node_id = rng.choice(node_ids)
        last, _, _ = f.journal_state(node_id)
        wait_until(
            lambda n=node_id, s=last: f.journal_state(n)[0] >= s + 3, 60, f"{node_id} deciding"
        )
        f.kill_node(node_id)
        last, pending, ok = f.journal_state(node_id)
        left_unacked += len(pending)
        assert ok, f"{node_id}'s journal fails the integrity check after SIGKILL"
        f.run_for(rng.uniform(0.0, 1.0))
        f.start_node(node_id)
        wait_until(lambda n=node_id, s=last: f.journal_state(n)[0] > s, 60, f"{node_id} back")
    tally = invariants(
        f,
        fault="node killed mid-publish and mid-journal-write",
        how="`pintu node run` SIGKILL at random moments at 10 decisions/s, restarted",
        times=KILLS,
        result="journal intact after every kill, seq goes on, unacked events resent",
    )
    assert sum(p.kills for p in f.nodes.values()) == KILLS
    # The kills left events the hub had not acked: the journals sent them again.
    assert left_unacked > 0
    assert tally.stored == tally.sent
