"""What the console reads from the store, on SQLite and PostgreSQL: the audit trail
filtered in the database, and what was seen of each facility's hub."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from registry.auth import Principal
from registry.errors import InvalidInput
from registry.models import VisitIn

if TYPE_CHECKING:
    from conftest import Clock, World

    from registry.service import Registry


def test_the_audit_trail_filtered_in_the_store(registry: Registry, clock: Clock) -> None:
    store = registry.store
    store.audit(1, "operator:dewi", "person.lookup", "aa" * 12, "found; why: desk 50% off")
    store.audit(2, "operator:budi", "person.lookup", "bb" * 12, "not found; why: desk")
    store.audit(3, "pic:x@y.example", "door.added", "mall/main_in", "entrance camera")
    store.audit(4, "operator:Dewi", "key.rotated", "0a1b2c3d", "")

    def actions(**filters: str) -> list[str]:
        return [f"{row[0]}:{row[2]}" for row in store.audit_search(**filters)]

    assert actions() == ["4:key.rotated", "3:door.added", "2:person.lookup", "1:person.lookup"]
    assert actions(actor="DEWI") == ["4:key.rotated", "1:person.lookup"]
    assert actions(action="person.lookup", text="desk") == ["2:person.lookup", "1:person.lookup"]
    # The filter's own % and _ are taken as themselves, not as patterns.
    assert actions(text="50%") == ["1:person.lookup"]
    assert actions(text="main_in") == ["3:door.added"]
    assert actions(text="main%in") == []
    assert [row[0] for row in store.audit_search(limit=2)] == [4, 3]
    assert store.audit_actions() == ["door.added", "key.rotated", "person.lookup"]


def test_what_the_registry_saw_of_a_hub(world: World) -> None:
    registry, clock = world.registry, world.clock
    hub = Principal("hub", world.facility_id, world.facility_id)
    registry.note_hub(hub, "statuses")
    first = registry.hub_state(hub, world.facility_id).activity
    assert (first.statuses_at, first.trust_at, first.refused) == (int(clock()), None, 0)
    # A sync's many pages cost one write a minute.
    clock.advance(30)
    registry.note_hub(hub, "statuses")
    assert registry.hub_state(hub, world.facility_id).activity.statuses_at == first.statuses_at
    clock.advance(31)
    registry.note_hub(hub, "statuses")
    assert registry.hub_state(hub, world.facility_id).activity.statuses_at == int(clock())

    bad = VisitIn.model_validate(
        {
            "visit_id": "v-1",
            "facility_id": world.facility_id,
            "subject": "0" * 24,
            "door_id": "no-such-door",
            "check_in": "2026-11-22T07:00:00Z",
            "check_out": "2026-11-22T07:30:00Z",
        }
    )
    for _ in range(2):
        with pytest.raises(InvalidInput):
            registry.receive_visits(hub, [bad])
    seen = registry.hub_state(hub, world.facility_id).activity
    assert seen.refused == 2 and "no-such-door" in (seen.refused_reason or "")
    assert seen.visits_at is None
    (state,) = [h for h in registry.hubs() if h.facility.id == world.facility_id]
    assert state.activity == seen and state.token_issued_at is not None
