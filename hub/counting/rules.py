"""How events and adjustments change occupancy: the rules every store backend shares.

Occupancy is entries minus exits plus corrections, per facility and per zone, and it
never goes below zero: an exit while nobody is inside is flagged and counts nothing. All
of that is decided in the counting order, the events' own times (``CountKey``), not the
order they arrived in: so the same events give the same counts, flags and history
whatever order they arrive in, and a store's rebuild (everything counted again from the
start) always agrees with its live counts.

A store keeps, with each event that counts, the facility's counts right after it. An event
that arrives after later ones were counted is counted from the counts kept with the event
before it, and the events after it are counted again (``recount``); in-order arrival, the
common case, just continues from the last one. The stores load and persist; this module
decides.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from hub.config import FacilityConfig
from hub.errors import NotFound, StoreError
from hub.records import AdjustmentKind, Alert, AlertKind, Flagged, Occupancy
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
        AlertKind.VISITS_REFUSED,
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


# --- the counting order ---------------------------------------------------------------
# Where something takes its place when a facility is counted: (time in milliseconds since
# 1970, 0 for an event or 1 for an adjustment, then a tie-break). Events are ordered by
# their own time, then by seq (a door's own order within one millisecond), then by event
# id (32 hex digits: every collation orders them alike); an adjustment follows every event
# stamped up to the time it was made, and adjustments made at once follow their ids.
CountKey = tuple[int, int, int, str]
EVENT_RANK = 0
ADJUSTMENT_RANK = 1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_MINUTE_MS = 60_000


def epoch_ms(ts: datetime) -> int:
    """``ts`` in whole milliseconds, as the store keeps every time. An integer, not a
    datetime: it is made once per event, and compared and sorted, on the ingest's path."""
    return (ts - EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def minute_of(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(second=0, microsecond=0)


def event_key(ts: datetime, seq: int, event_id: str) -> CountKey:
    return (epoch_ms(ts), EVENT_RANK, seq, event_id)


def adjustment_key(made_at: datetime, adjustment_id: int) -> CountKey:
    return (epoch_ms(made_at), ADJUSTMENT_RANK, adjustment_id, "")


def counts(kind: str, direction: str | None) -> bool:
    """Whether an event of this kind (and direction) changes occupancy at all."""
    return direction_sign(kind, direction) != 0


def zones_text(zones: Mapping[str, int]) -> str | None:
    """The zones' counts as the store keeps them with an event; None for no zones."""
    if not zones:
        return None
    return json.dumps(dict(sorted(zones.items())), separators=(",", ":"))


def zones_from(text: str | None) -> dict[str, int]:
    """The zones' counts kept with an event; ``StoreError`` if they are not that."""
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, int) for k, v in data.items()
    ):
        raise StoreError(f"an event's stored zone counts are damaged: {text[:80]!r}")
    return data


class Counted(NamedTuple):
    """How an event was counted: its change to the facility's count, its flag, and the
    facility's counts right after it (None for an event that counts nothing). A named
    tuple, not a dataclass: one is made per event, on the ingest's path."""

    delta: int
    flag: str | None = None
    after: int | None = None  # the facility's count after the event
    zones: str | None = None  # the zones' counts after it (``zones_text``)
    peak: int | None = None  # the highest count of the event's minute, up to the event


@dataclass(frozen=True)
class Snapshot:
    """A facility's counts right after some point of its counting order."""

    count: int = 0
    zones: Mapping[str, int] = field(default_factory=dict)
    minute: datetime | None = None  # the minute of that point
    peak: int = 0  # the highest count of that minute up to the point


class CountingEvent(NamedTuple):
    """An event that changes occupancy, as counting sees it: stored already (``row_id``
    and how it is counted now) or new."""

    key: CountKey
    node_id: str
    door_id: str
    kind: str
    direction: str | None
    row_id: int | None = None
    stored: Counted | None = None
    alert_id: int | None = None  # the alert its flag was counted in

    @property
    def event_id(self) -> str:
        return self.key[3]

    @property
    def ts(self) -> datetime:
        return from_ms(self.key[0])


@dataclass(frozen=True)
class MadeAdjustment:
    """A headcount staff set, as counting sees it."""

    id: int
    zone_id: str | None
    kind: AdjustmentKind
    value: int
    made_at: datetime

    @property
    def key(self) -> CountKey:
        return adjustment_key(self.made_at, self.id)


@dataclass(frozen=True)
class Sample:
    """A minute of the occupancy history: the count at its end and its highest."""

    minute: datetime
    occupancy: int
    peak: int


class Counter:
    """One facility's counts, moved forward one event or adjustment at a time in the
    counting order; it keeps the minutes it passed through as history samples."""

    def __init__(self, facility: FacilityConfig | None, start: Snapshot) -> None:
        self.facility = facility
        self.count = start.count
        self.zones: dict[str, int] = {z.id: 0 for z in facility.zones} if facility else {}
        self.zones.update(start.zones)
        # The minute counting is in, as milliseconds since 1970 (see ``CountKey``).
        self.minute: int | None = None if start.minute is None else epoch_ms(start.minute)
        self.peak = start.peak
        self._samples: list[Sample] = []
        self._passed = False  # something was counted in ``minute``
        self._door_zones: dict[str, list[str]] = {}

    def snapshot(self) -> Snapshot:
        minute = None if self.minute is None else from_ms(self.minute)
        return Snapshot(self.count, dict(self.zones), minute, self.peak)

    @property
    def samples(self) -> list[Sample]:
        """Each minute passed through: its count at the end and its highest."""
        if self._passed and self.minute is not None:
            return [*self._samples, Sample(from_ms(self.minute), self.count, self.peak)]
        return list(self._samples)

    def _enter(self, ms: int) -> None:
        minute = ms - ms % _MINUTE_MS
        if minute != self.minute:
            if self._passed and self.minute is not None:
                self._samples.append(Sample(from_ms(self.minute), self.count, self.peak))
            # The highest of a minute starts from the count it began with.
            self.minute, self.peak = minute, self.count
        self._passed = True

    def _leave(self) -> None:
        if self.count > self.peak:
            self.peak = self.count

    def zones_of(self, door_id: str) -> list[str]:
        if door_id not in self._door_zones:
            facility = self.facility
            self._door_zones[door_id] = facility.zones_of(door_id) if facility else []
        return self._door_zones[door_id]

    def count_event(self, event: CountingEvent) -> Counted:
        sign = direction_sign(event.kind, event.direction)
        if sign == 0:
            return Counted(0)
        self._enter(event.key[0])
        for zone in self.zones_of(event.door_id):
            # A zone is clamped at zero on its own; only the facility's count is flagged.
            self.zones[zone] = max(0, self.zones.get(zone, 0) + sign)
        flag = None
        if sign < 0 and self.count == 0:
            sign, flag = 0, EXIT_WITHOUT_ENTRY
        self.count += sign
        self._leave()
        return Counted(sign, flag, self.count, zones_text(self.zones), self.peak)

    def adjust(self, adjustment: MadeAdjustment) -> int:
        """Set a count (a reset zeroes the facility and every zone); the change it made."""
        if adjustment.value < 0:
            raise ValueError("a headcount cannot be negative")
        self._enter(adjustment.key[0])
        zone_id = adjustment.zone_id
        if adjustment.kind == "reset":
            delta = -self.count
            self.count = 0
            self.zones = dict.fromkeys(self.zones, 0)
        elif zone_id:
            delta = adjustment.value - self.zones.get(zone_id, 0)
            self.zones[zone_id] = adjustment.value
        else:
            delta = adjustment.value - self.count
            self.count = adjustment.value
        self._leave()
        return delta


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
    holding = gap_holding(open_gaps)
    for seq in late:
        gap = holding(seq)
        if gap is None:
            unmatched.append(seq)
        else:
            missing[gap.id] -= 1
    changed = {gap.id: missing[gap.id] for gap in open_gaps if missing[gap.id] != gap.missing}
    filled = bool(open_gaps) and all(value <= 0 for value in missing.values())
    return GapFill(changed, unmatched, filled)


def gap_holding(open_gaps: Sequence[OpenGap]) -> Callable[[int], OpenGap | None]:
    """Which of ``open_gaps`` a seq falls in (the first in their order): found by bisection
    when they do not overlap, as a node's gaps do unless its numbering went back. Several
    workers leave a node hundreds of one-seq gaps a batch for the next batch to fill."""
    ordered = sorted(open_gaps, key=lambda gap: gap.first_seq)
    if any(a.last_seq >= b.first_seq for a, b in itertools.pairwise(ordered)):
        return lambda seq: next((g for g in open_gaps if g.first_seq <= seq <= g.last_seq), None)
    firsts = [gap.first_seq for gap in ordered]

    def holding(seq: int) -> OpenGap | None:
        at = bisect.bisect_right(firsts, seq) - 1
        return ordered[at] if at >= 0 and seq <= ordered[at].last_seq else None

    return holding


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


# --- counting in order ----------------------------------------------------------------
@dataclass
class Recount:
    """What counting a facility from some point of its order on found."""

    facility_id: str
    final: Snapshot  # the counts after everything counted
    # New events with how they count, and stored events counted differently now.
    changed: list[tuple[CountingEvent, Counted]] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)  # the minutes passed through
    adjusted: dict[int, int] = field(default_factory=dict)  # adjustment id -> its change

    @property
    def flagged(self) -> list[tuple[CountingEvent, Counted]]:
        """Events flagged now that were not (new events included)."""
        return [
            (event, counted)
            for event, counted in self.changed
            if counted.flag and (event.stored is None or not event.stored.flag)
        ]

    @property
    def unflagged(self) -> list[CountingEvent]:
        """Stored events flagged before, not any more (their entry came in late)."""
        return [
            event
            for event, counted in self.changed
            if event.stored is not None and event.stored.flag and not counted.flag
        ]


def recount(
    facility_id: str,
    facility: FacilityConfig | None,
    start: Snapshot,
    stored: Iterable[CountingEvent],
    new: Iterable[CountingEvent] = (),
    adjustments: Iterable[MadeAdjustment] = (),
    *,
    on_changed: Callable[[CountingEvent, Counted], None] | None = None,
) -> Recount:
    """Count a facility's events and adjustments in the counting order, from ``start``
    (the counts after the last point before all of them; ``Snapshot()`` for the start).

    ``stored`` comes in the counting order already (a store streams it from an index);
    ``new`` and ``adjustments`` in any order. The same events and adjustments give the
    same counts, flags and samples whatever order they arrived in: that is the point.
    ``on_changed`` takes the events counted differently as they come, instead of
    ``changed`` (a rebuild of a large store streams them to the database).
    """
    counter = Counter(facility, start)
    result = Recount(facility_id, start)
    items: Iterable[CountingEvent | MadeAdjustment]
    new_sorted = sorted(new, key=_key)
    adjustments = sorted(adjustments, key=_key)
    if not adjustments and isinstance(stored, Sequence) and not stored:
        items = new_sorted  # in-order arrival: only the new events, after everything else
    else:
        items = heapq.merge(stored, new_sorted, adjustments, key=_key)
    for item in items:
        if isinstance(item, MadeAdjustment):
            result.adjusted[item.id] = counter.adjust(item)
            continue
        counted = counter.count_event(item)
        if counted != item.stored:
            if on_changed is None:
                result.changed.append((item, counted))
            else:
                on_changed(item, counted)
    result.final = counter.snapshot()
    result.samples = counter.samples
    return result


def _key(item: CountingEvent | MadeAdjustment) -> CountKey:
    return item.key


def exit_message(door_id: str) -> str:
    return f"An exit at door {door_id} was counted while nobody was inside"


@dataclass
class FacilityCount:
    """One facility's part of a write to the store: what counting found, and what the
    store did about it, between loading and persisting."""

    recount: Recount
    before: Mapping[str, int]  # the stored counters (zone -> value, WHOLE: the facility)
    replayed: bool  # stored events were counted again, not just new ones after them
    alert_ids: dict[str, int | None] = field(default_factory=dict)  # event id -> alert
    touched: set[int] = field(default_factory=set)  # alerts raised or reduced

    @property
    def counters(self) -> dict[str, int]:
        """The counters that differ from the stored ones now (zone -> value)."""
        final = self.recount.final
        after = {WHOLE: final.count, **final.zones}
        return {z: v for z, v in after.items() if self.before.get(z, 0) != v}

    def counted(self) -> dict[str, tuple[Counted, int | None]]:
        """Event id -> how it counts and its alert, for every event counted differently."""
        return {
            event.event_id: (counted, self.alert_ids.get(event.event_id, event.alert_id))
            for event, counted in self.recount.changed
        }


@dataclass(frozen=True)
class Persisted:
    """What a store wrote for one facility's part, for the batch's result."""

    flagged: list[Flagged]  # events flagged now
    alerts: list[Alert]  # raised, or counting one exit less
    cleared: list[Alert]  # ended: no exit of theirs is flagged any more
    occupancy: Occupancy | None  # the facility's, if its counters changed
