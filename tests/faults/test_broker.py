"""The broker killed with SIGKILL and started again, over and over, while doors stream."""

from __future__ import annotations

import random
from collections.abc import Callable

from bench.fleet import Fleet, Tally, doors, wait_until

KILLS = 3


def test_broker_killed_and_restarted_during_a_stream_from_several_nodes(
    fleet: Callable[..., Fleet], invariants: Callable[[Fleet], Tally]
) -> None:
    # Three doors at ten decisions a second each: always something in flight.
    f = fleet(specs=doors(2, 1), rate_per_s=10.0, fps=20.0)
    rng = random.Random(7)
    for _ in range(KILLS):
        before = len(f.stored())
        wait_until(lambda b=before: len(f.stored()) >= b + 20, 60, "a stream between kills")
        f.restart_broker(down_s=rng.uniform(0.2, 2.0))
        f.check_alive()
    after = len(f.stored())
    wait_until(lambda: len(f.stored()) >= after + 30, 60, "the stream after the last restart")
    tally = invariants(
        f,
        fault="broker killed and restarted during a stream from several nodes",
        how="Mosquitto SIGKILL, down 0.2-2 s, restarted on the same port; 3 doors at 10 "
        "decisions/s",
        times=KILLS,
        result="doors reconnect, journals resend what the broker lost",
    )
    assert f.broker.workdir.exists()
    assert tally.late > 0, "some events were resent from the journals"
