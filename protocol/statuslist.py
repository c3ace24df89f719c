"""The status list: the registry's newest word on a subject, which overrides a pass.

A node may hold every subject of a country, so the list is one sorted, fixed-width byte
string searched in place: 17 bytes a subject, no per-entry Python objects.

File format (``.psl``), all integers big-endian::

    magic  "PSL1"        4 bytes
    count  u32           number of records
    updated_at u64       Unix seconds of the list
    records              count x (subject 12 | status u8 | changed_at u32), sorted by subject

A record applies to a pass issued at or before its ``changed_at``: a pass issued later
already carries the newer status.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from protocol.errors import ProtocolError
from protocol.passes import SUBJECT_BYTES
from protocol.status import Status

MAGIC = b"PSL1"
_HEADER = struct.Struct(">4sIQ")
_RECORD = struct.Struct(f">{SUBJECT_BYTES}sBI")
RECORD_BYTES = _RECORD.size
# The largest status list a hub sends its doors: under the facility broker's 8 MiB packet
# limit with room for the MQTT header. About 490,000 subjects, far more than the subjects
# a door is told of (those turned yellow, red or black within a pass's lifetime).
MAX_LIST_BYTES = 8 * 1024 * 1024 - 64 * 1024


DAY_S = 86_400
# Registry and door clocks may differ; a change this much older than the pass lifetime is
# still sent, never one a little younger.
LIFETIME_MARGIN_S = DAY_S


def door_items(
    items: Iterable[tuple[bytes, Status, int]], now: float, pass_valid_s: float
) -> Iterator[tuple[bytes, Status, int]]:
    """The status records a door needs: those a still-valid pass could contradict.

    A pass carries the status of the day it was issued, and lasts ``pass_valid_s``. A
    subject whose status last changed longer ago than that holds only passes issued after
    the change, which already say it: the door needs no record. A subject now green needs
    none either: an older pass says worse and is refused, and a new pass says green. What is
    left is the subjects turned yellow, red or black within a pass's lifetime, usually a
    small share of the population; a stolen door yields only those subject ids.
    """
    since = now - pass_valid_s - LIFETIME_MARGIN_S
    for subject, status, changed_at in items:
        if status is not Status.GREEN and changed_at >= since:
            yield subject, status, changed_at


class StatusListError(ProtocolError):
    """A status list file is damaged or not a status list."""


@dataclass(frozen=True)
class StatusEntry:
    status: Status
    changed_at: int


class StatusList:
    """Sorted records in one ``bytes``; ``lookup`` is a binary search over it."""

    __slots__ = ("_count", "_records", "updated_at")

    def __init__(self, records: bytes = b"", updated_at: int | None = None) -> None:
        if len(records) % RECORD_BYTES:
            raise StatusListError("status list records are not a whole number of entries")
        self._records = records
        self._count = len(records) // RECORD_BYTES
        self.updated_at = updated_at

    def __len__(self) -> int:
        return self._count

    @classmethod
    def from_items(
        cls, items: Iterable[tuple[bytes, Status, int]], updated_at: int | None = None
    ) -> StatusList:
        """Build from ``(subject, status, changed_at)``; the last entry of a subject wins."""
        latest: dict[bytes, tuple[Status, int]] = {}
        for subject, status, changed_at in items:
            if len(subject) != SUBJECT_BYTES:
                raise StatusListError(f"subject id must be {SUBJECT_BYTES} bytes")
            latest[subject] = (status, changed_at)
        records = b"".join(
            _RECORD.pack(subject, int(status), changed_at)
            for subject, (status, changed_at) in sorted(latest.items())
        )
        return cls(records, updated_at)

    def lookup(self, subject: bytes) -> StatusEntry | None:
        records, lo, hi = self._records, 0, self._count
        while lo < hi:
            mid = (lo + hi) // 2
            start = mid * RECORD_BYTES
            key = records[start : start + SUBJECT_BYTES]
            if key < subject:
                lo = mid + 1
            elif key > subject:
                hi = mid
            else:
                _, status, changed_at = _RECORD.unpack_from(records, start)
                return StatusEntry(Status(status), changed_at)
        return None

    def effective(self, subject: bytes, pass_status: Status, issued_at: int) -> Status:
        """The status a door acts on: the list's, unless the pass is newer than it. Both
        say times in whole seconds: a pass issued in the very second its subject's status
        changed could be of either side of the change, so the worse of the two holds."""
        entry = self.lookup(subject)
        if entry is None or issued_at > entry.changed_at:
            return pass_status
        if issued_at == entry.changed_at:
            return max(entry.status, pass_status, key=lambda s: s.value)
        return entry.status

    def dumps(self) -> bytes:
        return _HEADER.pack(MAGIC, self._count, self.updated_at or 0) + self._records

    @classmethod
    def loads(cls, data: bytes, where: str = "status list") -> StatusList:
        if len(data) < _HEADER.size:
            raise StatusListError(f"{where}: too short to be a status list")
        magic, count, updated_at = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise StatusListError(f"{where}: not a status list (bad magic)")
        records = data[_HEADER.size :]
        if len(records) != count * RECORD_BYTES:
            raise StatusListError(
                f"{where}: expected {count} records, found {len(records) / RECORD_BYTES:g}"
            )
        # Every status byte at once: a C-speed slice instead of a Python loop.
        if max(records[SUBJECT_BYTES::RECORD_BYTES], default=0) > max(Status):
            raise StatusListError(f"{where}: a record has an unknown status")
        return cls(records, updated_at or None)

    @classmethod
    def load(cls, path: str | Path) -> StatusList:
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as err:
            raise StatusListError(f"{path}: cannot read status list: {err.strerror}") from err
        return cls.loads(data, str(path))

    def save(self, path: str | Path) -> None:
        """Write atomically, so a node never reads half a list."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(self.dumps())
        os.replace(tmp, path)
