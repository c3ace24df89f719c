"""The Hub object: staff corrections and resets, the end-of-day reset, running as a service."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import hub.service
from hub.errors import NotFound, StoreError
from hub.service import Hub, next_reset
from protocol import topics
from protocol.events import FacilityState

FACILITY = "mall-a"
Factory = Callable[..., Any]
JAKARTA = ZoneInfo("Asia/Jakarta")


def state_of(listener: Any) -> FacilityState:
    state: FacilityState = FacilityState.parse(listener.last(topics.facility_state(FACILITY)))
    return state


def test_correction_and_reset_are_recorded_and_published(
    make_config: Factory, run_hub: Factory, clients: Factory
) -> None:
    runner = run_hub(make_config())
    node = clients()
    node.wait_acked(node.send(*(node.event("entry") for _ in range(3))))
    listener = clients(topics=[topics.facility_state(FACILITY)])
    listener.wait_for(lambda: state_of(listener).full, what="full")
    hub_ = runner.hub
    correction = runner.call(hub_.manual_correction(FACILITY, 1, "guard1", "counted at the desk"))
    assert (correction.delta, correction.user) == (-2, "guard1")
    listener.wait_for(lambda: state_of(listener).occupancy == 1, what="corrected state")
    assert state_of(listener).full is False
    node.wait_acked([node.emit("entry")])
    listener.wait_for(lambda: state_of(listener).occupancy == 2, what="counting on from there")
    reset = runner.call(hub_.reset(FACILITY, "admin1", "closing early"))
    assert (reset.kind, reset.delta, reset.user) == ("reset", -2, "admin1")
    listener.wait_for(lambda: state_of(listener).occupancy == 0, what="reset state")
    assert runner.call(hub_.occupancy(FACILITY)).occupancy == 0
    adjustments = hub_.store.adjustments(FACILITY)
    assert [(a.kind, a.user, a.note) for a in adjustments] == [
        ("reset", "admin1", "closing early"),
        ("correction", "guard1", "counted at the desk"),
    ]
    with pytest.raises(NotFound):
        runner.call(hub_.manual_correction("elsewhere", 1, "guard1"))
    with pytest.raises(NotFound):
        runner.call(hub_.open_door(FACILITY, "back", "guard1", "test"))


def test_next_reset_is_the_next_local_time() -> None:
    at = clock_time(23, 30)
    evening = datetime(2026, 3, 1, 16, 0, tzinfo=UTC)  # 23:00 in Jakarta (UTC+7)
    assert next_reset(evening, at, JAKARTA) == datetime(2026, 3, 1, 16, 30, tzinfo=UTC)
    exactly = datetime(2026, 3, 1, 16, 30, tzinfo=UTC)
    assert next_reset(exactly, at, JAKARTA) == datetime(2026, 3, 2, 16, 30, tzinfo=UTC)
    after = datetime(2026, 3, 1, 17, 0, tzinfo=UTC)  # 00:00 the next day in Jakarta
    assert next_reset(after, at, JAKARTA) == datetime(2026, 3, 2, 16, 30, tzinfo=UTC)


def test_the_end_of_day_reset_runs_at_its_time(
    make_config: Factory,
    run_hub: Factory,
    clients: Factory,
    wait_until: Factory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The hub's clock is moved to a second before 03:00 in Jakarta: time enough to count
    # two people in first.
    real = datetime.now(UTC)
    due = next_reset(real, clock_time(3, 0), JAKARTA)
    offset = due - real - timedelta(seconds=1.0)
    monkeypatch.setattr(hub.service, "utcnow", lambda: datetime.now(UTC) + offset)
    config = make_config(facility={"reset_at": "03:00", "timezone": "Asia/Jakarta"})
    runner = run_hub(config)
    node = clients()
    node.wait_acked(node.send(node.event("entry"), node.event("entry")))
    store = runner.hub.store
    wait_until(lambda: bool(store.adjustments(FACILITY)), what="the reset")
    [reset] = store.adjustments(FACILITY)
    assert (reset.kind, reset.user, reset.note, reset.delta) == (
        "reset",
        "system",
        "end of day",
        -2,
    )
    assert store.occupancy(FACILITY).occupancy == 0


def test_an_unreachable_store_stops_the_start(make_config: Factory) -> None:
    # Nothing listens on port 1: the connection is refused at once.
    config = make_config(store={"backend": "postgresql", "dsn": "host=127.0.0.1 port=1"})
    with pytest.raises(StoreError, match="cannot connect"):
        asyncio.run(Hub(config).start())
