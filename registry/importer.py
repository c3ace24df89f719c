"""Bulk import of persons and statuses from CSV (``nik,name,status,doses``).

Each row is checked on its own: a bad row is reported with its line number and reason and
skipped, good rows are applied (in batches, each one transaction), and the report counts
what happened. A header that lacks a column or names an unknown one refuses the whole file,
since every row would be read wrongly.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from protocol.passes import MAX_DOSES
from protocol.status import Status
from registry.errors import InvalidInput
from registry.records import Outcome, PersonRow
from registry.subjects import normalise_name, validate_nik

COLUMNS = ("nik", "name", "status", "doses")
BATCH_ROWS = 5_000
# A report lists at most this many bad rows; the count covers them all.
MAX_LISTED_ERRORS = 10_000


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    renamed: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def applied(self) -> int:
        return self.created + self.updated + self.renamed

    def count(self, outcomes: Iterable[Outcome]) -> None:
        for outcome in outcomes:
            if outcome is Outcome.CREATED:
                self.created += 1
            elif outcome is Outcome.UPDATED:
                self.updated += 1
            elif outcome is Outcome.RENAMED:
                self.renamed += 1
            else:
                self.unchanged += 1

    def reject(self, line: int, reason: str) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append(RowError(line, reason))

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "applied": self.applied,
            "created": self.created,
            "updated": self.updated,
            "renamed": self.renamed,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "errors": [{"line": e.line, "reason": e.reason} for e in self.errors],
            "errors_listed": len(self.errors),
        }


def parse_row(row: dict[str | Any, Any], subject_of: Callable[[str], str]) -> PersonRow:
    """One CSV record as a ``PersonRow``; ``InvalidInput`` naming the bad field."""
    if None in row:
        raise InvalidInput(f"more than {len(COLUMNS)} fields")
    missing = [name for name in COLUMNS if row.get(name) is None]
    if missing:
        raise InvalidInput(f"too few fields: no {missing[0]}")
    try:
        nik = validate_nik(row["nik"])
    except InvalidInput as err:
        raise InvalidInput(f"nik: {err}") from err
    try:
        name = normalise_name(row["name"])
    except InvalidInput as err:
        raise InvalidInput(f"name: {err}") from err
    try:
        status = Status.parse(row["status"])
    except ValueError as err:
        raise InvalidInput(f"status: {err}") from err
    text = row["doses"].strip()
    if not text.isascii() or not text.isdigit() or int(text) > MAX_DOSES:
        raise InvalidInput(f"doses: {text!r} is not a whole number from 0 to {MAX_DOSES}")
    return PersonRow(subject_of(nik), name, status, int(text))


def import_csv(
    lines: Iterable[str],
    subject_of: Callable[[str], str],
    apply: Callable[[Sequence[PersonRow]], list[Outcome]],
    progress: Callable[[ImportReport], None] | None = None,
    batch_rows: int = BATCH_ROWS,
) -> ImportReport:
    """Read CSV text line by line, apply good rows in batches, report bad ones."""
    reader = csv.DictReader(lines, restkey=None, strict=True)
    try:
        header = reader.fieldnames
    except csv.Error as err:
        raise InvalidInput(f"line 1: not a CSV header: {err}") from err
    if not header:
        raise InvalidInput("line 1: the file is empty; expected the header nik,name,status,doses")
    names = [h.strip().lower() for h in header]
    unknown = [h for h in names if h not in COLUMNS]
    missing = [c for c in COLUMNS if c not in names]
    if unknown or missing or len(set(names)) != len(names):
        problem = f"unknown column {unknown[0]!r}" if unknown else None
        problem = problem or (f"no column {missing[0]!r}" if missing else "a repeated column")
        raise InvalidInput(f"line 1: {problem}; the header must be nik,name,status,doses")
    reader.fieldnames = names
    report = ImportReport()
    batch: list[PersonRow] = []
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            report.rows += 1
            report.reject(reader.line_num, f"not valid CSV: {err}")
            # The csv module cannot resynchronise inside a broken quoted field.
            break
        report.rows += 1
        try:
            batch.append(parse_row(record, subject_of))
        except InvalidInput as err:
            report.reject(reader.line_num, str(err))
        if len(batch) >= batch_rows:
            report.count(apply(batch))
            batch = []
            if progress is not None:
                progress(report)
    if batch:
        report.count(apply(batch))
    if progress is not None:
        progress(report)
    return report
