"""The tracing export: one CSV format for the registry's and the hub's contact traces.

A health office gets the same columns whichever part answered it (docs/registry.md,
"Tracing"): one row per overlap of the traced subject's visit with another subject's,
times in RFC 3339 UTC, the overlap in whole seconds.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass

CSV_COLUMNS = (
    "facility_id",
    "facility_name",
    "visit_id",
    "door_id",
    "check_in",
    "check_out",
    "contact_subject",
    "contact_visit_id",
    "contact_check_in",
    "contact_check_out",
    "overlap_start",
    "overlap_end",
    "overlap_seconds",
)


@dataclass(frozen=True)
class CsvRow:
    """One overlap, its times already written as RFC 3339 text (None: an empty field)."""

    facility_id: str
    facility_name: str
    visit_id: str
    door_id: str
    check_in: str | None
    check_out: str | None
    contact_subject: str
    contact_visit_id: str
    contact_check_in: str | None
    contact_check_out: str | None
    overlap_start: str | None
    overlap_end: str | None
    overlap_seconds: int


def csv_text(rows: Iterable[CsvRow]) -> str:
    """The export: the header, then a line per row, in ``CSV_COLUMNS`` order."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(tuple(getattr(row, column) for column in CSV_COLUMNS) for row in rows)
    return out.getvalue()
