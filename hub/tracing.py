"""Tracing at the hub: where a subject was in a facility, and who was there at the same time.

The same question the registry answers over every facility (docs/registry.md, ``GET
/tracing``), asked of the hub's own visits of one facility, so a facility can answer a
health office even while the registry is away. Two visits overlap when each began before
the other ended::

    other.check_in < mine.check_out  and  other.check_out > mine.check_in

and the overlap is ``[max(check_ins), min(check_outs))``. Contacts are ordered by their
total overlap, longest first. The CSV has one row per overlap, in the export format the
registry writes too (``protocol.tracing``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hub.upstream.records import Visit, rfc3339
from protocol.tracing import CsvRow, csv_text

if TYPE_CHECKING:
    from hub.store import Store


@dataclass(frozen=True)
class Overlap:
    mine: Visit
    other: Visit

    @property
    def start(self) -> datetime:
        return max(self.mine.check_in, self.other.check_in)

    @property
    def end(self) -> datetime:
        return min(self.mine.check_out, self.other.check_out)

    @property
    def seconds(self) -> int:
        return int((self.end - self.start).total_seconds())


@dataclass(frozen=True)
class Trace:
    subject: str
    facility_id: str
    name: str
    start: datetime
    end: datetime
    visits: list[Visit]
    overlaps: list[Overlap]

    @property
    def contacts(self) -> set[str]:
        return {o.other.subject for o in self.overlaps}

    def to_json(self) -> dict[str, Any]:
        by_subject: dict[str, list[Overlap]] = defaultdict(list)
        for overlap in self.overlaps:
            by_subject[overlap.other.subject].append(overlap)
        totals = {subject: sum(o.seconds for o in found) for subject, found in by_subject.items()}
        contacts = [
            {
                "subject": subject,
                "overlap_seconds": totals[subject],
                "overlaps": [_overlap_json(o) for o in by_subject[subject]],
            }
            for subject in sorted(totals, key=lambda s: (-totals[s], s))
        ]
        return {
            "subject": self.subject,
            "facility_id": self.facility_id,
            "name": self.name,
            "from": rfc3339(self.start),
            "to": rfc3339(self.end),
            "contact_count": len(by_subject),
            "visits": [_visit_json(v) for v in self.visits],
            "contacts": contacts,
        }

    def to_csv(self) -> str:
        return csv_text(
            CsvRow(
                self.facility_id,
                self.name,
                o.mine.visit_id,
                o.mine.door_id,
                rfc3339(o.mine.check_in),
                rfc3339(o.mine.check_out),
                o.other.subject,
                o.other.visit_id,
                rfc3339(o.other.check_in),
                rfc3339(o.other.check_out),
                rfc3339(o.start),
                rfc3339(o.end),
                o.seconds,
            )
            for o in self.overlaps
        )


def _visit_json(v: Visit) -> dict[str, Any]:
    return {
        "visit_id": v.visit_id,
        "door_id": v.door_id,
        "check_in": rfc3339(v.check_in),
        "check_out": rfc3339(v.check_out),
    }


def _overlap_json(o: Overlap) -> dict[str, Any]:
    return {
        "visit_id": o.mine.visit_id,
        "contact_visit_id": o.other.visit_id,
        "contact_door_id": o.other.door_id,
        "contact_check_in": rfc3339(o.other.check_in),
        "contact_check_out": rfc3339(o.other.check_out),
        "start": rfc3339(o.start),
        "end": rfc3339(o.end),
        "seconds": o.seconds,
    }


def trace(
    store: Store, facility_id: str, name: str, subject: str, start: datetime, end: datetime
) -> Trace:
    """The subject's visits at the facility overlapping ``[start, end)``, and every overlap
    of another subject's visit with one of them."""
    mine = store.visits_of(facility_id, subject, start, end)
    overlaps = [
        Overlap(visit, other)
        for visit in mine
        for other in store.overlapping(facility_id, visit.check_in, visit.check_out, subject)
    ]
    return Trace(subject, facility_id, name, start, end, mine, overlaps)
