"""The hub killed with SIGKILL mid-batch and restarted while the doors keep streaming.

tests/hub/test_ingest.py stops an in-process hub cleanly; here the real ``pintu hub serve``
process dies without a word, between receiving a batch and acking it, twice (the soak does it more).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from bench.fleet import Fleet, Tally, doors, wait_until

KILLS = 2


def test_hub_killed_mid_batch_and_restarted(
    fleet: Callable[..., Fleet], invariants: Callable[[Fleet], Tally]
) -> None:
    f = fleet(specs=doors(2, 1), rate_per_s=10.0, fps=20.0)
    rng = random.Random(11)
    for _ in range(KILLS):
        before = len(f.stored())
        wait_until(lambda b=before: len(f.stored()) >= b + 30, 60, "a stream between kills")
        f.kill_hub()
        # Down for a moment: the doors keep deciding and the broker keeps the hub's session.
        f.run_for(rng.uniform(0.5, 3.0))
        f.start_hub()
        f.check_alive()
    after = len(f.stored())
    wait_until(lambda: len(f.stored()) >= after + 30, 60, "the stream after the last restart")
    invariants(
        f,
        fault="hub killed mid-batch",
        how="`pintu hub serve` SIGKILL, down 0.5-3 s, restarted; 3 doors at 10 decisions/s",
        times=KILLS,
        result="the broker keeps the hub's session; doors resend what was not acked",
    )
    assert f.hub.kills == KILLS and f.hub.starts == KILLS + 1
