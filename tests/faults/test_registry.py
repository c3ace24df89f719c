"""The central registry killed with SIGKILL, left down for a while, started again.

tests/test_status_sync.py stops a registry for seconds beside an in-process hub; here the
real ``pintu registry serve`` process of a whole fleet dies without a word while the doors
admit and let out visitors with passes it issued, stays down ``PINTU_REGISTRY_OUTAGE_S``
seconds (20 by default; ``PINTU_REGISTRY_OUTAGE_S=180`` for the minutes-long run), and
comes back on the same port with the same data. Meanwhile the doors must keep deciding
on the lists they have, the hub must keep serving and keep the closed visits in its
outbox, and the stale-lists alert must stay quiet (lists confirmed minutes ago are not
stale); afterwards every visit must reach the registry exactly once.
"""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bench.fleet import Fleet, Tally, doors, wait_until
from hub.records import iso

OUTAGE_ENV = "PINTU_REGISTRY_OUTAGE_S"
OUTAGE_S = float(os.environ.get(OUTAGE_ENV, "20"))
PENDING = 'pintu_hub_visits{state="pending"}'
LAST_SYNC = "pintu_hub_registry_sync_last_success_timestamp_seconds"
SYNC_ERRORS = "pintu_hub_registry_sync_errors_total"


@dataclass
class Outage:
    """What the hub showed while the registry was down."""

    looks: int = 0
    unhealthy: int = 0
    miscounted: list[tuple[int, int]] = field(default_factory=list)
    most_pending: float = 0.0
    stale_alerts: set[str] = field(default_factory=set)
    last_sync: set[float] = field(default_factory=set)


def _healthy(f: Fleet) -> bool:
    url = f"http://127.0.0.1:{f.web_port}/healthz"
    with urllib.request.urlopen(url, timeout=5) as response:
        return bool(response.status == 200)


def _sync_errors(metrics: dict[str, float]) -> float:
    return sum(v for k, v in metrics.items() if k.startswith(SYNC_ERRORS))


def test_registry_down_for_a_while_and_back(
    fleet: Callable[..., Fleet], invariants: Callable[..., Tally]
) -> None:
    f = fleet(specs=doors(2, 1), registry=True, rate_per_s=2.0, fps=8.0, passes_per_door=10)
    # Up and in sync: visits reach the registry, the doors have its lists, nothing stale.
    wait_until(lambda: len(f.registry_visits()) >= 1, 120, "visits at the registry")
    wait_until(lambda: f.hub_metrics().get(LAST_SYNC, 0) > 0, 30, "a sync with the registry")
    assert f.open_alerts("stale_lists") == []

    f.kill_registry()
    killed = time.time()
    before = f.hub_metrics()
    stored_before = len(f.stored())
    seen = Outage()

    def look() -> None:
        # The hub's API answers throughout (hub_metrics raises when it does not).
        metrics = f.hub_metrics()
        seen.looks += 1
        seen.unhealthy += not _healthy(f)
        seen.most_pending = max(seen.most_pending, metrics.get(PENDING, 0.0))
        seen.last_sync.add(metrics.get(LAST_SYNC, 0.0))
        seen.stale_alerts.update(f.open_alerts("stale_lists"))
        occupancy, net = f.counted()
        if occupancy != net:
            seen.miscounted.append((occupancy, net))

    f.run_for(OUTAGE_S, look)
    during = f.hub_metrics()
    stored_during = len(f.stored()) - stored_before
    visits = f.hub_visits()
    pending = sum(1 for state in visits.values() if state == "pending")

    # The doors kept deciding and the hub kept storing: about 2 decisions/s at each door.
    assert stored_during >= OUTAGE_S * 3 * 2 * 0.5, stored_during
    assert seen.looks >= OUTAGE_S and seen.unhealthy == 0
    # ... and counting: at every look, occupancy was the stored entries minus exits.
    assert seen.miscounted == [], seen.miscounted[:5]
    # The outbox grew: visits closed meanwhile wait for the registry, in the store and
    # in the metric.
    assert pending > 0 and seen.most_pending > before.get(PENDING, 0.0)
    # The hub counted its failed syncs, and its last good sync stayed where it was.
    assert _sync_errors(during) > _sync_errors(before)
    assert max(seen.last_sync) <= killed
    # Lists the registry confirmed seconds or minutes ago are not stale (a day is).
    assert seen.stale_alerts == set()

    f.start_registry()
    back = time.time()
    assert f.registry_proc is not None and f.registry_proc.kills == 1

    def caught_up() -> bool:
        states = f.hub_visits().values()
        return "pending" not in states and f.hub_metrics().get(LAST_SYNC, 0) >= back

    wait_until(caught_up, 60, "the outbox to empty and a sync after the restart")

    def confirmed_again() -> bool:
        # Each node reports the lists the hub published after the registry confirmed them.
        ages = f.list_ages()
        return len(ages) == len(f.specs) and all(
            when is not None
            and when > iso(datetime.fromtimestamp(back, UTC))
            and trust is not None
            and trust < 30
            for trust, _, when in ages.values()
        )

    wait_until(confirmed_again, 60, "the doors' lists confirmed again")

    f.settle()
    wait_until(lambda: "pending" not in f.hub_visits().values(), 60, "the last visits pushed")
    closed = f.hub_visits()
    at_registry = f.registry_visits()
    assert set(closed.values()) == {"sent"}
    assert set(at_registry) == set(closed), "visits missing at or unknown to the registry"
    assert max(at_registry.values()) == 1
    assert f.open_alerts("stale_lists") == []
    tally = invariants(
        f,
        fault="registry down",
        how=f"`pintu registry serve` SIGKILL, down {OUTAGE_S:.0f} s, restarted on the same "
        "port and data; 3 doors at 2 decisions/s with registry-issued passes",
        times=1,
        env=[f"{OUTAGE_ENV}={OUTAGE_S:g}"],
        result=f"doors and hub carried on, {pending} visits waited in the outbox; all "
        f"{len(closed)} visits at the registry once; no stale-lists alert",
    )
    assert tally.stored >= stored_during
