"""Counting as a service: what a batch of events and a staff adjustment do to a facility,
in the domain's words. Duplicates are left out, each facility's new events are counted in
their place in the counting order (``rules.recount``), exits with nobody inside are
flagged and their alerts raised or taken back, the counters and the history follow, each
node's sequence is tracked (gaps found and filled, a reset noticed), and the visits the
events close are derived.

The store serves it: ``CountingStore`` is what counting asks of storage, in one
transaction, and ``hub.store.batch`` answers it for SQLite and PostgreSQL alike. Nothing
here knows SQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from hub.config import FacilityConfig
from hub.counting.rules import (
    EVENT_RANK,
    Counted,
    CountingEvent,
    CountKey,
    FacilityCount,
    MadeAdjustment,
    OpenGap,
    Persisted,
    Sample,
    Snapshot,
    adjustment_key,
    alert_for,
    counts,
    epoch_ms,
    exit_message,
    fill_gaps,
    followed_seq,
    gap_ranges,
    make_occupancy,
    recount,
    seq_gap_message,
    seq_reset_message,
)
from hub.records import Adjustment, AdjustmentKind, Alert, AlertKind, BatchResult, Flagged, Gap
from protocol.events import Event

_NOT_COUNTED = Counted(0)
NodeKey = tuple[str, str]  # facility id, node id


@dataclass(frozen=True)
class Start:
    """Where counting a facility from some point on begins: the counts kept with the last
    event before the point, and what is stored after it, in the counting order."""

    snapshot: Snapshot
    stored: list[CountingEvent]  # counted events after the point, in the counting order
    adjustments: list[MadeAdjustment]  # adjustments made since that event


@dataclass(frozen=True)
class NodeSeen:
    """A node as a batch leaves it: its door, its newest event's time, its last seq."""

    facility_id: str
    node_id: str
    door_id: str
    last_event_ts: datetime
    last_seq: int


class CountingStore(Protocol):
    """What counting asks of the store, all in the transaction of one write, at one time
    (``now``) the store stamps on what it writes."""

    def lock(self, facility_ids: Sequence[str]) -> Mapping[str, FacilityConfig]:
        """The facilities' settings in effect, and no other writer counts them meanwhile."""
        ...

    def known(self, event_ids: Sequence[str]) -> set[str]:
        """The ids of these events that are stored already."""
        ...

    def start(self, facility_id: str, point: CountKey) -> Start:
        """What counting the facility from ``point`` on starts from."""
        ...

    def counters(self, facility_id: str) -> dict[str, int]:
        """The facility's stored counters (zone -> value, ``WHOLE``: the facility)."""
        ...

    def add_events(
        self, events: Sequence[Event], counted: Mapping[str, tuple[Counted, int | None]]
    ) -> int:
        """Store new events, each with how it counts and its alert (by event id; an event
        not in ``counted`` counts nothing); how many were stored."""
        ...

    def recounted(self, changed: Sequence[tuple[CountingEvent, Counted, int | None]]) -> None:
        """Stored events counted differently now, with their alerts."""
        ...

    def set_counters(self, facility_id: str, counters: Mapping[str, int]) -> None: ...

    def add_samples(self, facility_id: str, samples: Sequence[Sample]) -> None:
        """Minutes of the history counted (again): each replaces what was kept of it."""
        ...

    def raise_alert(
        self,
        facility_id: str,
        kind: str,
        message: str,
        *,
        node_id: str | None = None,
        door_id: str | None = None,
        event_id: str | None = None,
        times: int = 1,
    ) -> Alert:
        """A new alert, or the open one of its kind counted again."""
        ...

    def take_back(self, alert_id: int) -> None:
        """An open alert counts one exit less, and ends when none is left."""
        ...

    def name_latest_exit(self, alert_id: int) -> None:
        """The open alert names its latest exit in the counting order."""
        ...

    def alert(self, alert_id: int) -> Alert | None: ...

    def clear_alerts(self, alert_ids: Sequence[int]) -> list[Alert]:
        """Close these alerts where still open."""
        ...

    def record_visits(self, events: Sequence[Event]) -> None:
        """Close the check-ins these new events complete."""
        ...

    def nodes(self, keys: Sequence[NodeKey]) -> dict[NodeKey, tuple[int, datetime | None]]:
        """The last seq and newest event's time kept of each of these nodes it knows."""
        ...

    def open_gaps(self, keys: Sequence[NodeKey]) -> dict[NodeKey, list[OpenGap]]:
        """The open gaps of these nodes, oldest first."""
        ...

    def add_gaps(self, found: Sequence[tuple[str, str, int, int, int]]) -> list[Gap]:
        """Record gaps (facility, node, first seq, last seq, alert id), in one go; the
        gaps as recorded, in the same order."""
        ...

    def fill_gaps(self, missing: Mapping[int, int]) -> None:
        """Gap id -> how many are still missing (a gap with none missing is filled)."""
        ...

    def track_nodes(self, seen: Sequence[NodeSeen]) -> None: ...

    def add_adjustment(
        self, facility_id: str, zone_id: str | None, kind: str, value: int, user: str, note: str
    ) -> int:
        """A staff adjustment made now; its id."""
        ...

    def adjusted(self, adjustment_id: int, delta: int) -> None:
        """What the adjustment changed, once counted."""
        ...

    def audit(self, user: str, action: str, facility_id: str, target: str, detail: str) -> None: ...


class Counting:
    """A batch of events, or an adjustment, counted against ``store`` at ``now``."""

    def __init__(self, store: CountingStore, now: datetime) -> None:
        self.store = store
        self.now = now

    # --- a batch of events ------------------------------------------------------------
    def store_batch(self, batch: Sequence[Event]) -> BatchResult:
        store = self.store
        facilities = store.lock(sorted({e.facility_id for e in batch}))
        known = store.known(list(dict.fromkeys(e.event_id for e in batch)))
        new: list[Event] = []
        duplicates: list[str] = []
        for event in batch:
            if event.event_id in known:
                duplicates.append(event.event_id)
            else:
                known.add(event.event_id)
                new.append(event)
        if not new:
            return BatchResult(duplicates=duplicates)

        by_facility: dict[str, list[CountingEvent]] = {}
        for event in new:
            if counts(event.kind, event.direction):
                by_facility.setdefault(event.facility_id, []).append(
                    CountingEvent(
                        (epoch_ms(event.ts), EVENT_RANK, event.seq, event.event_id),
                        event.node_id,
                        event.door_id,
                        event.kind,  # a str: its .value costs, once per event
                        event.direction,
                    )
                )
        work = [
            self._count(facilities.get(facility_id), facility_id, by_facility[facility_id])
            for facility_id in sorted(by_facility)
        ]
        counted: dict[str, tuple[Counted, int | None]] = {}
        for part in work:
            counted.update(part.counted())
        alerts: dict[int, Alert] = {}
        for event in new:
            raised = alert_for(event)
            if raised:
                alert = store.raise_alert(
                    event.facility_id,
                    raised[0],
                    raised[1],
                    node_id=event.node_id,
                    door_id=event.door_id,
                    event_id=event.event_id,
                )
                alerts[alert.id] = alert
        store.add_events(new, counted)
        flagged: list[Flagged] = []
        cleared: list[Alert] = []
        occupancy = {}
        corrected: dict[str, datetime] = {}
        for part in work:
            facility_id = part.recount.facility_id
            done = self._persist(facilities.get(facility_id), part)
            flagged += done.flagged
            alerts.update((a.id, a) for a in done.alerts)
            cleared += done.cleared
            if done.occupancy is not None:
                occupancy[facility_id] = done.occupancy
            if part.replayed and part.recount.samples:
                corrected[facility_id] = part.recount.samples[0].minute
        # In this same transaction: an exit and the visit it closes are stored together.
        store.record_visits(new)
        gaps, gap_alerts, gap_cleared = self._track_nodes(new)
        alerts.update((a.id, a) for a in gap_alerts)
        return BatchResult(
            stored=new,
            duplicates=duplicates,
            gaps=gaps,
            flagged=flagged,
            alerts=list(alerts.values()),
            cleared=cleared + gap_cleared,
            occupancy=occupancy,
            corrected=corrected,
        )

    # --- counting in place ------------------------------------------------------------
    def _count(
        self,
        facility: FacilityConfig | None,
        facility_id: str,
        new: Sequence[CountingEvent],
        point: CountKey | None = None,
    ) -> FacilityCount:
        """Count a facility's ``new`` events (or, from ``point``, an adjustment just made)
        in their place: from the counts kept with the last event before them, with the
        events and adjustments after it counted again; flag and unflag exits."""
        start = self.store.start(facility_id, point or min(e.key for e in new))
        result = recount(
            facility_id, facility, start.snapshot, start.stored, new, start.adjustments
        )
        part = FacilityCount(result, self.store.counters(facility_id), replayed=bool(start.stored))
        self._flag(part)
        return part

    def _flag(self, part: FacilityCount) -> None:
        """Raise the alert of each exit counting flagged now; take back those no longer
        flagged (their entry came in late: the exit counts after all)."""
        facility_id = part.recount.facility_id
        for event, _ in part.recount.flagged:
            alert = self.store.raise_alert(
                facility_id,
                AlertKind.EXIT_WITHOUT_ENTRY,
                exit_message(event.door_id),
                node_id=event.node_id,
                door_id=event.door_id,
                event_id=event.event_id,
            )
            part.alert_ids[event.event_id] = alert.id
            part.touched.add(alert.id)
        for event in part.recount.unflagged:
            part.alert_ids[event.event_id] = None
            if event.alert_id is not None:
                self.store.take_back(event.alert_id)
                part.touched.add(event.alert_id)

    def _persist(self, facility: FacilityConfig | None, part: FacilityCount) -> Persisted:
        """What counting changed besides the new events: the stored events counted
        differently, the alerts' latest exits, the counters and the history."""
        store = self.store
        result = part.recount
        facility_id = result.facility_id
        store.recounted(
            [
                (e, c, part.alert_ids.get(e.event_id, e.alert_id))
                for e, c in result.changed
                if e.row_id is not None
            ]
        )
        changed = part.counters
        store.set_counters(facility_id, changed)
        store.add_samples(facility_id, result.samples)
        alerts: list[Alert] = []
        cleared: list[Alert] = []
        for alert_id in sorted(part.touched):
            if part.replayed:
                store.name_latest_exit(alert_id)
            alert = store.alert(alert_id)
            if alert is not None:
                (alerts if alert.open else cleared).append(alert)
        occupancy = None
        if changed:
            final = result.final
            occupancy = make_occupancy(facility, facility_id, final.count, final.zones, self.now)
        flagged = [
            Flagged(e.event_id, facility_id, e.door_id, c.flag or "") for e, c in result.flagged
        ]
        return Persisted(flagged, alerts, cleared, occupancy)

    # --- each node's sequence ---------------------------------------------------------
    def _track_nodes(self, new: Sequence[Event]) -> tuple[list[Gap], list[Alert], list[Alert]]:
        """Update each node's last seq and time; find seq gaps, fill old ones."""
        store = self.store
        by_node: dict[NodeKey, list[Event]] = {}
        for event in new:
            by_node.setdefault((event.facility_id, event.node_id), []).append(event)
        keys = sorted(by_node)
        known = store.nodes(keys)
        late_nodes = [
            key for key in keys if any(e.seq <= known.get(key, (0, None))[0] for e in by_node[key])
        ]
        open_gaps = store.open_gaps(late_nodes) if late_nodes else {}
        alerts: list[Alert] = []
        new_gaps: list[tuple[str, str, int, int, int]] = []
        filled: dict[int, int] = {}  # gap id -> still missing
        to_clear: set[int] = set()
        seen: list[NodeSeen] = []
        for key in keys:
            facility_id, node_id = key
            node_events = by_node[key]
            last_seq, last_ts = known.get(key, (0, None))
            seqs = [e.seq for e in node_events]
            ranges = gap_ranges(last_seq, seqs)
            if ranges:
                # One open alert per node, counted once per gap.
                alert = store.raise_alert(
                    facility_id,
                    AlertKind.SEQ_GAP,
                    seq_gap_message(node_id, *ranges[-1]),
                    node_id=node_id,
                    times=len(ranges),
                )
                alerts.append(alert)
                new_gaps += [
                    (facility_id, node_id, first, last, alert.id) for first, last in ranges
                ]
            reset: list[int] = []
            late = sorted({s for s in seqs if s <= last_seq})
            if late:
                node_gaps = open_gaps.get(key, [])
                fill = fill_gaps(node_gaps, late)
                filled.update(fill.missing)
                # A gap found by this batch is open (and shares the node's alert): the
                # alert ends only when nothing of the node is missing any more.
                if fill.all_filled and not ranges:
                    to_clear.update(g.alert_id for g in node_gaps if g.alert_id is not None)
                reset = fill.unmatched
                if reset:
                    alerts.append(
                        store.raise_alert(
                            facility_id,
                            AlertKind.SEQ_RESET,
                            seq_reset_message(node_id, reset[0], last_seq),
                            node_id=node_id,
                        )
                    )
            newest = max(node_events, key=lambda e: e.seq)
            event_ts = max(e.ts for e in node_events)
            if last_ts is not None and last_ts > event_ts:
                event_ts = last_ts
            seen.append(
                NodeSeen(
                    facility_id,
                    node_id,
                    newest.door_id,
                    event_ts,
                    followed_seq(last_seq, seqs, reset),
                )
            )
        found = store.add_gaps(new_gaps) if new_gaps else []
        store.fill_gaps(filled)
        cleared = store.clear_alerts(sorted(to_clear)) if to_clear else []
        store.track_nodes(seen)
        return found, alerts, cleared

    # --- a staff adjustment -----------------------------------------------------------
    def adjust(
        self,
        facility_id: str,
        kind: AdjustmentKind,
        value: int,
        user: str,
        note: str,
        zone_id: str | None,
    ) -> Adjustment:
        """An adjustment (``check_adjustment`` checked it) counted in its place: it follows
        every event stamped up to the time it was made, and events stamped later (a door
        whose clock runs ahead) are counted after it."""
        store = self.store
        facility = store.lock([facility_id]).get(facility_id)
        adjustment_id = store.add_adjustment(facility_id, zone_id, kind, value, user, note)
        part = self._count(facility, facility_id, [], point=adjustment_key(self.now, adjustment_id))
        self._persist(facility, part)
        delta = part.recount.adjusted[adjustment_id]
        store.adjusted(adjustment_id, delta)
        target = f"{facility_id}/{zone_id}" if zone_id else facility_id
        store.audit(user, f"occupancy.{kind}", facility_id, target, f"{value} ({delta:+d}) {note}")
        final = part.recount.final
        return Adjustment(
            id=adjustment_id,
            facility_id=facility_id,
            zone_id=zone_id,
            kind=kind,
            value=value,
            delta=delta,
            user=user,
            note=note,
            created_at=self.now,
            occupancy=make_occupancy(facility, facility_id, final.count, final.zones, self.now),
        )
