"""The status list: compact, exact lookups, newer passes win, damaged files refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from protocol.status import Status
from protocol.statuslist import RECORD_BYTES, StatusList, StatusListError


def subject(i: int) -> bytes:
    return i.to_bytes(12, "big")


def test_lookup_finds_every_subject_and_nothing_else() -> None:
    items = [(subject(i * 3), Status(i % 4), 1000 + i) for i in range(2000)]
    statuses = StatusList.from_items(items, updated_at=5000)
    assert len(statuses) == 2000
    for i in range(2000):
        entry = statuses.lookup(subject(i * 3))
        assert entry is not None
        assert entry.status is Status(i % 4)
        assert entry.changed_at == 1000 + i
        assert statuses.lookup(subject(i * 3 + 1)) is None
    # Subjects that end in zero bytes are not confused with shorter ones.
    assert statuses.lookup(subject(0)) is not None
    assert statuses.lookup(b"\x00" * 11 + b"\x01") is None


def test_last_entry_of_a_subject_wins() -> None:
    statuses = StatusList.from_items(
        [(subject(1), Status.GREEN, 10), (subject(1), Status.BLACK, 20)]
    )
    assert len(statuses) == 1
    entry = statuses.lookup(subject(1))
    assert entry is not None and entry.status is Status.BLACK


def test_effective_status_list_overrides_older_pass_only() -> None:
    statuses = StatusList.from_items([(subject(7), Status.BLACK, 1000)])
    assert statuses.effective(subject(7), Status.GREEN, issued_at=900) is Status.BLACK
    assert statuses.effective(subject(7), Status.GREEN, issued_at=1000) is Status.BLACK
    # Issued in the second the status changed: the worse of the two, either way round.
    green = StatusList.from_items([(subject(9), Status.GREEN, 1000)])
    assert green.effective(subject(9), Status.BLACK, issued_at=1000) is Status.BLACK
    assert green.effective(subject(9), Status.BLACK, issued_at=999) is Status.GREEN
    assert statuses.effective(subject(7), Status.GREEN, issued_at=1001) is Status.GREEN
    assert statuses.effective(subject(8), Status.RED, issued_at=1) is Status.RED


def test_file_roundtrip_and_size(tmp_path: Path) -> None:
    statuses = StatusList.from_items(
        [(subject(i), Status.GREEN, i) for i in range(1000)], updated_at=123
    )
    path = tmp_path / "status.psl"
    statuses.save(path)
    assert os.path.getsize(path) == 16 + 1000 * RECORD_BYTES
    loaded = StatusList.load(path)
    assert loaded.updated_at == 123
    assert loaded.lookup(subject(999)) == statuses.lookup(subject(999))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (b"XXXX" + bytes(12), "bad magic"),
        (b"PSL1" + (2).to_bytes(4, "big") + bytes(8) + bytes(17), "expected 2 records"),
        (
            b"PSL1" + (1).to_bytes(4, "big") + bytes(8) + bytes(12) + b"\x09" + bytes(4),
            "unknown status",
        ),
    ],
)
def test_damaged_files_are_refused(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "bad.psl"
    path.write_bytes(data)
    with pytest.raises(StatusListError, match=message):
        StatusList.load(path)
