"""Pass issue and verify beyond the vectors: size limits, QR fit, hostile input."""

from __future__ import annotations

import segno
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import passes
from protocol.passes import Reason
from protocol.status import Status
from protocol.trust import SigningKey, TrustList

KEY = SigningKey.generate()
TRUST = TrustList.of([KEY.trusted()])
NOW = 1_800_000_000


def make(status: Status = Status.GREEN, doses: int = 2) -> str:
    return passes.issue(KEY, bytes(range(12)), status, doses, NOW - 10, NOW + 3600)


def test_roundtrip_every_status() -> None:
    for status in Status:
        verdict = passes.verify(make(status, 1), TRUST, now=NOW)
        assert verdict.ok
        assert verdict.pass_ is not None
        assert verdict.pass_.status is status
        assert verdict.pass_.subject == bytes(range(12))


def test_pass_fits_a_version_10_qr_at_level_m() -> None:
    qr = segno.make(make(), error="m", micro=False, boost_error=False)
    assert qr.error == "M"
    assert qr.mode == "alphanumeric"
    assert isinstance(qr.version, int)
    assert qr.version <= 10


def test_surrounding_whitespace_from_a_scanner_is_tolerated() -> None:
    assert passes.verify(make() + "\n", TRUST, now=NOW).ok


def test_issue_refuses_bad_arguments() -> None:
    import pytest

    with pytest.raises(ValueError, match="subject"):
        passes.issue(KEY, b"short", Status.GREEN, 2, NOW, NOW + 1)
    with pytest.raises(ValueError, match="expire"):
        passes.issue(KEY, bytes(12), Status.GREEN, 2, NOW, NOW)
    with pytest.raises(ValueError, match="doses"):
        passes.issue(KEY, bytes(12), Status.GREEN, 99, NOW, NOW + 1)


def test_verdict_json_names_the_reason() -> None:
    doc = passes.verify("hello", TRUST, now=NOW).to_json()
    assert doc == {"ok": False, "reason": "wrong_prefix", "message": "not a Pintu pass"}


@settings(max_examples=2000, deadline=None)
@given(st.text(max_size=700))
def test_any_text_gets_an_answer_never_an_exception(text: str) -> None:
    verdict = passes.verify(text, TRUST, now=NOW)
    assert isinstance(verdict.reason, Reason)
    assert not verdict.ok


@settings(max_examples=2000, deadline=None)
@given(st.binary(min_size=0, max_size=120))
def test_any_body_after_the_header_is_refused_cleanly(body: bytes) -> None:
    import base64

    text = passes.HEADER + base64.b32encode(body).decode("ascii").rstrip("=")
    verdict = passes.verify(text, TRUST, now=NOW)
    assert not verdict.ok
    assert verdict.reason in {
        Reason.TRUNCATED,
        Reason.MALFORMED,
        Reason.UNKNOWN_KEY,
        Reason.UNSUPPORTED_VERSION,
        Reason.BAD_SIGNATURE,
        Reason.OVERSIZE,
    }


def test_a_pass_has_exactly_one_text() -> None:
    # The last base32 character carries two bits no byte uses; set, they must not give a
    # second text for the same pass.
    text = make()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    last = alphabet.index(text[-1])
    assert last & 3 == 0
    for bits in (1, 2, 3):
        variant = text[:-1] + alphabet[last | bits]
        assert passes.verify(variant, TRUST, now=NOW).reason is Reason.MALFORMED
    assert passes.verify(text, TRUST, now=NOW).ok


def test_the_version_has_exactly_one_spelling() -> None:
    text = make()
    for header in ("PINTU01:", "PINTU001:", "PINTU0001:"):
        variant = text.replace("PINTU1:", header, 1)
        assert passes.verify(variant, TRUST, now=NOW).reason is Reason.MALFORMED
    assert passes.verify(text.replace("PINTU1:", "PINTU2:", 1), TRUST, now=NOW).reason is (
        Reason.UNSUPPORTED_VERSION
    )
