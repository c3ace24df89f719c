"""How events and adjustments change occupancy: the rules every store backend shares.

A store applies them as events arrive and replays them to rebuild its counters, so the
two can never disagree. Occupancy is entries minus exits plus corrections, per facility
and per zone, and it never goes below zero: an exit while nobody is inside is flagged and
counts nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from hub.config import FacilityConfig
from hub.errors import NotFound
from hub.records import AdjustmentKind, AlertKind, Occupancy
from protocol.events import Event, EventKind

WHOLE = ""  # the zone key of a whole facility
EXIT_WITHOUT_ENTRY = "exit_without_entry"

# Alerts that repeat while they are open add to one alert instead of flooding the desk.
COALESCED = frozenset(
    {
        AlertKind.CAMERA_FAILED,
        AlertKind.NODE_OFFLINE,
        AlertKind.STALE_LISTS,
        AlertKind.SEQ_GAP,
        AlertKind.SEQ_RESET,
        AlertKind.EXIT_WITHOUT_ENTRY,
    }
)


def direction_sign(kind: str, direction: str | None) -> int:
    """+1 for someone coming in, -1 for someone going out, 0 for anything else."""
    if kind == EventKind.ENTRY:
        return 1
    if kind == EventKind.EXIT:
        return -1
    if kind == EventKind.MANUAL:
        # A staff check-in counts by the way the person went; without one it counts nothing.
        return {"entry": 1, "exit": -1}.get(direction or "", 0)
    return 0


@dataclass(frozen=True)
class Counted:
    delta: int  # what the event changed the facility's count by
    flag: str | None = None


class Tally:
    """The occupancy counters of some facilities and their zones, changed in memory.

    A store loads the counters it needs, applies a batch and writes back ``changed``.
    """

    def __init__(
        self,
        facilities: Mapping[str, FacilityConfig],
        counts: Mapping[tuple[str, str], int] | None = None,
    ) -> None:
        self.facilities = facilities
        self.counts: dict[tuple[str, str], int] = dict(counts or {})
        self.changed: set[tuple[str, str]] = set()
        self._zones: dict[tuple[str, str], list[str]] = {}

    def get(self, facility_id: str, zone_id: str = WHOLE) -> int:
        return self.counts.get((facility_id, zone_id), 0)

    def _set(self, key: tuple[str, str], value: int) -> None:
        if self.counts.get(key, 0) != value or key not in self.counts:
            self.changed.add(key)
        self.counts[key] = value

    def zones_of(self, facility_id: str, door_id: str) -> list[str]:
        key = (facility_id, door_id)
        if key not in self._zones:
            facility = self.facilities.get(facility_id)
            self._zones[key] = facility.zones_of(door_id) if facility else []
        return self._zones[key]

    def apply(self, facility_id: str, door_id: str, kind: str, direction: str | None) -> Counted:
        sign = direction_sign(kind, direction)
        if sign == 0:
            return Counted(0)
        for zone in self.zones_of(facility_id, door_id):
            # A zone is clamped at zero on its own; only the facility's count is flagged.
            self._set((facility_id, zone), max(0, self.get(facility_id, zone) + sign))
        current = self.get(facility_id)
        if sign < 0 and current == 0:
            return Counted(0, EXIT_WITHOUT_ENTRY)
        self._set((facility_id, WHOLE), current + sign)
        return Counted(sign)

    def apply_event(self, event: Event) -> Counted:
        return self.apply(event.facility_id, event.door_id, event.kind, event.direction)

    def adjust(
        self, facility_id: str, zone_id: str | None, kind: AdjustmentKind, value: int
    ) -> int:
        """Set a count to ``value`` (a reset zeroes the facility and every zone); the change."""
        if value < 0:
            raise ValueError("a headcount cannot be negative")
        before = self.get(facility_id, zone_id or WHOLE)
        if kind == "reset":
            for key in [k for k in self.counts if k[0] == facility_id]:
                self._set(key, 0)
            facility = self.facilities.get(facility_id)
            for zone in facility.zones if facility else []:
                self._set((facility_id, zone.id), 0)
            self._set((facility_id, WHOLE), 0)
            return -before
        self._set((facility_id, zone_id or WHOLE), value)
        return value - before

    def changed_facilities(self) -> set[str]:
        return {facility_id for facility_id, _ in self.changed}

    def occupancy(self, facility_id: str, updated_at: datetime | None) -> Occupancy:
        zones = {
            zone: value
            for (fid, zone), value in self.counts.items()
            if fid == facility_id and zone != WHOLE
        }
        return make_occupancy(
            self.facilities.get(facility_id), facility_id, self.get(facility_id), zones, updated_at
        )


def make_occupancy(
    facility: FacilityConfig | None,
    facility_id: str,
    value: int,
    zones: Mapping[str, int],
    updated_at: datetime | None,
) -> Occupancy:
    """The occupancy record, with capacity, ``full`` and ``soft`` from the facility's config."""
    capacity = facility.effective_capacity if facility else None
    all_zones = {zone.id: 0 for zone in facility.zones} if facility else {}
    all_zones.update(zones)
    full = capacity is not None and value >= capacity
    soft = (
        facility is not None
        and capacity is not None
        and value * 100 >= capacity * facility.soft_threshold_percent
    )
    return Occupancy(
        facility_id=facility_id,
        occupancy=value,
        capacity=capacity,
        zones=all_zones,
        full=full,
        soft=soft,
        updated_at=updated_at,
    )


_ALARMS: dict[str, tuple[AlertKind, str]] = {
    "black_pass": (AlertKind.BLACK_PASS, "A black pass was shown at door {door}"),
    "black_pass_exit": (AlertKind.BLACK_PASS, "A black pass was shown leaving by door {door}"),
    "forced_door": (AlertKind.FORCED_DOOR, "Door {door} was forced open"),
    "forced_passage": (AlertKind.FORCED_DOOR, "Someone passed door {door} without a decision"),
    "camera_failed": (AlertKind.CAMERA_FAILED, "The camera of node {node} at door {door} failed"),
}


def alert_for(event: Event) -> tuple[AlertKind, str] | None:
    """The alert an event raises, with its message, or None."""
    if event.kind != EventKind.ALARM:
        return None
    kind, text = _ALARMS.get(event.detail or "", (AlertKind.ALARM, "Alarm at door {door}"))
    message = text.format(door=event.door_id, node=event.node_id)
    if kind == AlertKind.ALARM and event.detail:
        message = f"{message}: {event.detail}"
    if event.message:
        message = f"{message}: {event.message}"
    return kind, message


def gap_ranges(last_seq: int, seqs: Iterable[int]) -> list[tuple[int, int]]:
    """The runs of seq numbers missing between ``last_seq`` and the higher ``seqs``."""
    ranges = []
    previous = last_seq
    for seq in sorted({s for s in seqs if s > last_seq}):
        if seq > previous + 1:
            ranges.append((previous + 1, seq - 1))
        previous = seq
    return ranges


# --- sequence numbers --------------------------------------------------------------------
def seq_gap_message(node_id: str, first: int, last: int) -> str:
    if first == last:
        return f"Node {node_id}: event {first} is missing"
    return f"Node {node_id}: events {first} to {last} are missing"


def seq_reset_message(node_id: str, seq: int, last_seq: int) -> str:
    return f"Node {node_id} sent seq {seq} after {last_seq}: its journal may have been reset"


@dataclass(frozen=True)
class OpenGap:
    """A node's gap not filled yet, as a store keeps it."""

    id: int
    first_seq: int
    last_seq: int
    missing: int
    alert_id: int | None = None


@dataclass(frozen=True)
class GapFill:
    """What late seq numbers did to a node's open gaps."""

    missing: dict[int, int]  # gap id -> still missing, for the gaps that changed
    unmatched: list[int]  # late seqs in no open gap: the node's numbering went back
    all_filled: bool  # every open gap of the node is filled now: its gap alerts end


def fill_gaps(open_gaps: Sequence[OpenGap], late: Iterable[int]) -> GapFill:
    """Count late (new, below the node's last) seqs against the node's open gaps."""
    missing = {gap.id: gap.missing for gap in open_gaps}
    unmatched: list[int] = []
    for seq in late:
        gap = next((g for g in open_gaps if g.first_seq <= seq <= g.last_seq), None)
        if gap is None:
            unmatched.append(seq)
        else:
            missing[gap.id] -= 1
    changed = {gap.id: missing[gap.id] for gap in open_gaps if missing[gap.id] != gap.missing}
    filled = bool(open_gaps) and all(value <= 0 for value in missing.values())
    return GapFill(changed, unmatched, filled)


def followed_seq(last_seq: int, seqs: Sequence[int], reset: Sequence[int]) -> int:
    """The node's last seq after these new ``seqs``; after a reset, its new numbering's."""
    if not reset:
        return max([last_seq, *seqs])
    # Follow the node's new numbering, so its next events are not all "late".
    higher = [s for s in seqs if s > last_seq]
    return max(higher) if higher else max(reset)


# --- what staff change ---------------------------------------------------------------------
def with_capacity(
    facility: FacilityConfig,
    capacity: int | None,
    percent: float | None,
    nominal_max: int | None,
    soft: float,
) -> FacilityConfig:
    """The facility with the capacity settings staff made (kept by the store)."""
    return facility.model_copy(
        update={
            "capacity": capacity,
            "capacity_percent": percent,
            "nominal_max": nominal_max,
            "soft_threshold_percent": soft,
        }
    )


@dataclass(frozen=True)
class CapacityChange:
    facility: FacilityConfig  # with the change
    capacity: int | None
    capacity_percent: float | None
    nominal_max: int | None
    soft_threshold_percent: float
    detail: str  # for the audit log


def capacity_change(
    facility: FacilityConfig,
    user: str,
    *,
    capacity: int | None = None,
    capacity_percent: float | None = None,
    nominal_max: int | None = None,
    soft_threshold_percent: float | None = None,
) -> CapacityChange:
    """A capacity change checked; ``ValueError`` for a bad value."""
    if (capacity is None) == (capacity_percent is None):
        raise ValueError("give either capacity or capacity_percent")
    if capacity is not None and capacity < 0:
        raise ValueError("a capacity cannot be negative")
    # An absolute capacity keeps the building's nominal maximum for reference.
    nominal_max = nominal_max if nominal_max is not None else facility.nominal_max
    if capacity_percent is not None:
        if not 0 < capacity_percent <= 100:
            raise ValueError("capacity_percent must be above 0 and at most 100")
        if nominal_max is None or nominal_max < 0:
            raise ValueError("capacity_percent needs nominal_max")
    soft = soft_threshold_percent
    if soft is None:
        soft = facility.soft_threshold_percent
    if not 0 < soft <= 100:
        raise ValueError("soft_threshold_percent must be above 0 and at most 100")
    if not user:
        raise ValueError("a capacity change needs the user who made it")
    updated = with_capacity(facility, capacity, capacity_percent, nominal_max, soft)
    shown = f"{capacity_percent:g} % of {nominal_max}" if capacity is None else capacity
    detail = f"{shown} = {updated.effective_capacity}, soft at {soft:g} %"
    return CapacityChange(updated, capacity, capacity_percent, nominal_max, soft, detail)


def check_adjustment(
    facility_id: str,
    facility: FacilityConfig | None,
    kind: str,
    value: int,
    user: str,
    zone_id: str | None,
) -> tuple[int, str | None]:
    """The headcount and zone an adjustment sets; ``ValueError`` or ``NotFound`` if bad."""
    if kind not in ("reset", "correction"):
        raise ValueError(f"unknown adjustment {kind!r}: expected reset or correction")
    if facility is None:
        raise NotFound(f"unknown facility {facility_id!r}")
    if zone_id is not None and zone_id not in {z.id for z in facility.zones}:
        raise NotFound(f"facility {facility_id!r} has no zone {zone_id!r}")
    if kind == "reset":
        value, zone_id = 0, None
    if value < 0:
        raise ValueError("a headcount cannot be negative")
    if not user:
        raise ValueError("an adjustment needs the user who made it")
    return value, zone_id


# --- recounting ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CountedRow:
    """A stored event as a recount sees it."""

    id: int
    facility_id: str
    door_id: str
    kind: str
    direction: str | None
    delta: int
    flag: str | None


@dataclass(frozen=True)
class MadeAdjustment:
    """A stored adjustment as a recount sees it: it came after event ``after_event``."""

    facility_id: str
    zone_id: str | None
    kind: AdjustmentKind
    value: int
    after_event: int


def recount(
    facilities: Mapping[str, FacilityConfig],
    events: Iterable[CountedRow],
    adjustments: Sequence[MadeAdjustment],
) -> tuple[Tally, list[tuple[int, str | None, int]]]:
    """Replay the events in store order with the adjustments between them.

    Returns the counters and the events counted differently now, as (delta, flag, id). An
    adjustment applies before its facility's first event stored after it; facilities are
    counted apart, so only the order within each facility matters.
    """
    tally = Tally(facilities)
    pending: dict[str, deque[MadeAdjustment]] = {}
    for adjustment in adjustments:
        pending.setdefault(adjustment.facility_id, deque()).append(adjustment)
    fixes: list[tuple[int, str | None, int]] = []
    for row in events:
        queue = pending.get(row.facility_id)
        while queue and queue[0].after_event < row.id:
            made = queue.popleft()
            tally.adjust(made.facility_id, made.zone_id, made.kind, made.value)
        counted = tally.apply(row.facility_id, row.door_id, row.kind, row.direction)
        if (counted.delta, counted.flag) != (row.delta, row.flag):
            fixes.append((counted.delta, counted.flag, row.id))
    for queue in pending.values():
        for made in queue:
            tally.adjust(made.facility_id, made.zone_id, made.kind, made.value)
    return tally, fixes
