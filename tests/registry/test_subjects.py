"""NIK validation and the keyed subject id derived from it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from registry.errors import ConfigError, InvalidInput
from registry.subjects import SubjectKey, normalise_name, same_name, validate_nik

WOMAN = "3174054512900001"  # Jakarta; day 45 = a woman born on the 5th
MAN = "3174050101900002"


@pytest.mark.parametrize(
    ("text", "nik"),
    [
        (WOMAN, WOMAN),
        (MAN, MAN),
        ("1101013112990001", "1101013112990001"),  # province 11, day 31, month 12
        ("9401017101000001", "9401017101000001"),  # province 94, day 71 (a woman's 31st)
        ("3174 0545 1290 0001", WOMAN),  # grouped as printed on the card
        ("3174-0545-1290-0001", WOMAN),
    ],
)
def test_good_niks(text: str, nik: str) -> None:
    assert validate_nik(text) == nik


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("31740545129000O1", "digits only"),  # a letter O for a zero
        ("317405451290000", "has 16 digits, this one has 15"),
        ("31740545129000011", "has 16 digits, this one has 17"),
        ("", "empty"),
        ("٣١٧٤٠٥٤٥١٢٩٠٠٠٠١", "digits only"),  # Arabic-Indic digits are digits, not ASCII
        ("1074054512900001", "province code 10"),
        ("9574054512900001", "province code 95"),
        ("0074054512900001", "province code 00"),
        ("3174050012900001", "day of birth 00"),
        ("3174053212900001", "day of birth 32"),
        ("3174054012900001", "day of birth 40"),
        ("3174057212900001", "day of birth 72"),
        ("3174050100900001", "month of birth 00"),
        ("3174050113900001", "month of birth 13"),
    ],
)
def test_each_kind_of_bad_nik_is_named(text: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        validate_nik(text)


def test_subject_id_is_stable_and_keyed() -> None:
    key = SubjectKey(b"k" * 32)
    subject = key.subject_hex(WOMAN)
    assert len(subject) == 24
    assert int(subject, 16) >= 0
    assert subject == SubjectKey(b"k" * 32).subject_hex(WOMAN)  # stable
    assert subject != key.subject_hex(MAN)
    assert subject != SubjectKey(b"j" * 32).subject_hex(WOMAN)  # keyed: another key, another id
    # A known value pins the derivation: HMAC-SHA256(key, NIK) cut to 12 bytes.
    import hashlib
    import hmac

    expected = hmac.new(b"k" * 32, WOMAN.encode(), hashlib.sha256).hexdigest()[:24]
    assert subject == expected
    assert "kkkk" not in repr(key)


def test_key_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "subject.key"
    first = SubjectKey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first.secret) == 32
    again = SubjectKey.load_or_create(path)
    assert again.subject_hex(WOMAN) == first.subject_hex(WOMAN)


def test_damaged_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "subject.key"
    path.write_text("not hex\n")
    with pytest.raises(ConfigError, match="not a subject key"):
        SubjectKey.load(path)


def test_names() -> None:
    assert normalise_name("  Siti   Rahayu ") == "Siti Rahayu"
    assert same_name("siti  RAHAYU", "Siti Rahayu")
    assert not same_name("Siti", "Siti Rahayu")
    with pytest.raises(InvalidInput, match="empty"):
        normalise_name("   ")
    with pytest.raises(InvalidInput, match="control"):
        normalise_name("Siti\x00")
