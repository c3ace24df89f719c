"""Tracing: where a subject was in a window, and who was there at the same time.

Two visits at one facility overlap when each began before the other ended::

    other.check_in < mine.check_out  and  other.check_out > mine.check_in

The overlap is ``[max(check_ins), min(check_outs))``. The store answers each of the
subject's visits with one index range scan on ``(facility_id, check_in)``, bounded below by
the facility's longest stored visit, so a query costs the same with a million visits as
with a thousand.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, cast

from protocol.tracing import CsvRow, csv_text
from protocol.trust import format_time
from registry.records import Visit
from registry.store import RegistryStore


@dataclass(frozen=True)
class Overlap:
    mine: Visit
    other: Visit

    @property
    def start(self) -> int:
        return max(self.mine.check_in, self.other.check_in)

    @property
    def end(self) -> int:
        return min(self.mine.check_out, self.other.check_out)

    @property
    def seconds(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class FacilityTrace:
    facility_id: str
    name: str
    visits: list[Visit]
    overlaps: list[Overlap]


@dataclass(frozen=True)
class Trace:
    subject: str
    start: int
    end: int
    facilities: list[FacilityTrace]

    @property
    def contacts(self) -> set[str]:
        return {o.other.subject for f in self.facilities for o in f.overlaps}

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "from": format_time(self.start),
            "to": format_time(self.end),
            "contact_count": len(self.contacts),
            "facilities": [_facility_json(f) for f in self.facilities],
        }

    def to_csv(self) -> str:
        return csv_text(
            CsvRow(
                f.facility_id,
                f.name,
                o.mine.visit_id,
                o.mine.door_id,
                format_time(o.mine.check_in),
                format_time(o.mine.check_out),
                o.other.subject,
                o.other.visit_id,
                format_time(o.other.check_in),
                format_time(o.other.check_out),
                format_time(o.start),
                format_time(o.end),
                o.seconds,
            )
            for f in self.facilities
            for o in f.overlaps
        )


def _visit_json(v: Visit) -> dict[str, Any]:
    return {
        "visit_id": v.visit_id,
        "door_id": v.door_id,
        "check_in": format_time(v.check_in),
        "check_out": format_time(v.check_out),
    }


def _facility_json(f: FacilityTrace) -> dict[str, Any]:
    by_subject: dict[str, list[Overlap]] = defaultdict(list)
    for o in f.overlaps:
        by_subject[o.other.subject].append(o)
    contacts = [
        {
            "subject": subject,
            "overlap_seconds": sum(o.seconds for o in overlaps),
            "overlaps": [
                {
                    "visit_id": o.mine.visit_id,
                    "contact_visit_id": o.other.visit_id,
                    "contact_door_id": o.other.door_id,
                    "contact_check_in": format_time(o.other.check_in),
                    "contact_check_out": format_time(o.other.check_out),
                    "start": format_time(o.start),
                    "end": format_time(o.end),
                    "seconds": o.seconds,
                }
                for o in overlaps
            ],
        }
        for subject, overlaps in by_subject.items()
    ]
    contacts.sort(key=lambda c: (-cast(int, c["overlap_seconds"]), cast(str, c["subject"])))
    return {
        "facility_id": f.facility_id,
        "name": f.name,
        "visits": [_visit_json(v) for v in f.visits],
        "contacts": contacts,
    }


def trace(store: RegistryStore, subject: str, start: int, end: int) -> Trace:
    """The subject's visits overlapping ``[start, end)`` and every overlap with others."""
    mine = store.visits_of(subject, start, end)
    grouped: dict[str, list[Visit]] = defaultdict(list)
    for visit in mine:
        grouped[visit.facility_id].append(visit)
    facilities = []
    for facility_id, visits in sorted(grouped.items(), key=lambda kv: kv[1][0].check_in):
        facility = store.get_facility(facility_id)
        overlaps = [
            Overlap(v, other)
            for v in visits
            for other in store.overlapping(facility_id, v.check_in, v.check_out, subject)
        ]
        name = facility.name if facility is not None else facility_id
        facilities.append(FacilityTrace(facility_id, name, visits, overlaps))
    return Trace(subject, start, end, facilities)
