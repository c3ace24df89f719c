"""The id shapes every part validates against."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from protocol.ids import Ident, SubjectHex, is_id, is_subject


@pytest.mark.parametrize("good", ["mall-a", "A", "door_1.north", "x" * 64, "0"])
def test_ids_that_fit_a_topic_level(good: str) -> None:
    assert is_id(good)
    assert TypeAdapter(Ident).validate_python(good) == good


@pytest.mark.parametrize(
    "bad", ["", "-a", ".a", "a/b", "a+b", "a#", "a b", "x" * 65, "pintu\n", "ü"]
)
def test_ids_that_would_break_a_topic_or_a_path(bad: str) -> None:
    assert not is_id(bad)
    with pytest.raises(ValidationError):
        TypeAdapter(Ident).validate_python(bad)


def test_subject_ids_are_24_lowercase_hex_digits() -> None:
    assert is_subject("00112233445566778899aabb")
    assert TypeAdapter(SubjectHex).validate_python("00112233445566778899aabb")
    for bad in ("00112233445566778899AABB", "0011", "00112233445566778899aabb\n"):
        assert not is_subject(bad)
        with pytest.raises(ValidationError):
            TypeAdapter(SubjectHex).validate_python(bad)
