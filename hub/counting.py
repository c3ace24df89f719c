"""How events and adjustments change occupancy: the rules every store backend shares.

A store applies them as events arrive and replays them to rebuild its counters, so the
two can never disagree. Occupancy is entries minus exits plus corrections, per facility
and per zone, and it never goes below zero: an exit while nobody is inside is flagged and
counts nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from hub.config import FacilityConfig
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
