"""The interpreter's garbage collector, set for a long-running service.

A service loads a great deal once (modules, routes, tables, its configuration) and then
makes and drops small objects all day. With CPython's defaults the cycle collector runs
after every 700 new container objects and, every hundredth time, walks everything the
process holds: on the hub's ingest that was about a fifth of the CPU time of an event
(docs/benchmarks.md, "Hub ingest"). The objects made per event are freed by reference
counting as soon as their batch is done; cycles among them are rare.
"""

from __future__ import annotations

import gc

# Container objects made between two collections of the youngest generation.
YOUNG_THRESHOLD = 20_000


def settle_collector() -> None:
    """Call once the service has started: what it loaded is collected once and then moved
    out of the collector's sight for good (``gc.freeze``), and the youngest generation is
    collected every ``YOUNG_THRESHOLD`` allocations instead of every 700."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, oldest)
