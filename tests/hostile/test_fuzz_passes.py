"""The pass decoder, verifier and door policy under generated hostile input.

Every generated text goes through ``passes.parse``, ``passes.verify`` and the node's
``Policy.decide``: nothing may raise, nothing may be admitted, and every answer carries a
reason code and a message a guard can read.

The number of examples per test is ``PINTU_FUZZ_EXAMPLES`` (a few hundred by default, so
the suite stays quick); ``make fuzz`` runs them with enough examples for 100,000 inputs in
all, next to the coverage-guided harness in ``fuzz_passes.py``.
"""

from __future__ import annotations

import base64
import os
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import passes
from protocol.passes import Reason
from protocol.policy import Policy, PolicyConfig
from protocol.signals import Signal
from protocol.status import Status
from protocol.trust import SigningKey, TrustList

EXAMPLES = int(os.environ.get("PINTU_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

KEY = SigningKey.generate()
FOREIGN = SigningKey.generate()  # another registry's key: never in this door's trust list
TRUST = TrustList.of([KEY.trusted()])
NOW = 1_800_000_000
SUBJECT = bytes(range(12))
VALID = passes.issue(KEY, SUBJECT, Status.GREEN, 2, NOW - 60, NOW + 86_400)
B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def answered_red(text: str) -> Reason:
    """Run ``text`` through every stage; fail unless each one refuses it with a reason."""
    parsed = passes.parse(text)
    assert isinstance(parsed, passes.Pass | Reason)
    verdict = passes.verify(text, TRUST, now=NOW)
    assert not verdict.ok, f"accepted a generated text: {text!r}"
    assert verdict.reason is not Reason.OK
    assert verdict.message
    policy = Policy(PolicyConfig(), TRUST)
    for direction in ("entry", "exit"):
        decision = policy.decide(text, direction, NOW)
        assert not decision.admit, f"{direction} admitted: {text!r}"
        assert decision.signal in {Signal.RED, Signal.ERROR}
        assert decision.reason == verdict.reason.value
        assert decision.message
    return verdict.reason


def b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=")


@FUZZ
@given(st.text(max_size=800))
def test_any_unicode_text(text: str) -> None:
    answered_red(text)


@FUZZ
@given(st.text(alphabet=B32 + "=:PINTU0123456789 \n\t", max_size=400))
def test_text_in_the_pass_alphabet(body: str) -> None:
    answered_red(passes.HEADER + body)


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=len(VALID)),
            st.sampled_from(["flip", "drop", "insert", "swap"]),
            st.sampled_from(B32 + "=:a1\x00\u00e9"),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_mutations_of_a_valid_pass(edits: list[tuple[int, str, str]]) -> None:
    text = list(VALID)
    for at, how, char in edits:
        at = min(at, len(text) - 1) if text else 0
        if how == "flip" and text:
            text[at] = char
        elif how == "drop" and text:
            del text[at]
        elif how == "insert":
            text.insert(at, char)
        elif how == "swap" and len(text) > 1:
            other = (at + 1) % len(text)
            text[at], text[other] = text[other], text[at]
    mutated = "".join(text)
    if mutated.strip() == VALID:
        return  # the edits cancelled out (or only added white space a scanner adds)
    answered_red(mutated)


@FUZZ
@given(
    version=st.integers(0, 255),
    kid=st.one_of(st.just(KEY.kid), st.binary(min_size=4, max_size=4)),
    subject=st.binary(min_size=12, max_size=12),
    status=st.integers(0, 255),
    doses=st.integers(0, 255),
    issued=st.integers(0, 2**32 - 1),
    expires=st.integers(0, 2**32 - 1),
    signature=st.binary(min_size=64, max_size=64),
)
def test_well_formed_bodies_with_forged_signatures(
    version: int,
    kid: bytes,
    subject: bytes,
    status: int,
    doses: int,
    issued: int,
    expires: int,
    signature: bytes,
) -> None:
    payload = struct.pack(">B4s12sBBII", version, kid, subject, status, doses, issued, expires)
    reason = answered_red(passes.HEADER + b32(payload + signature))
    if kid != KEY.kid and version == passes.VERSION and reason not in _FORMAT_REASONS:
        assert reason is Reason.UNKNOWN_KEY


_FORMAT_REASONS = {Reason.MALFORMED, Reason.UNSUPPORTED_VERSION}


@FUZZ
@given(
    status=st.sampled_from(list(Status)),
    doses=st.integers(0, passes.MAX_DOSES),
    issued=st.integers(0, 2**32 - 2),
    length=st.integers(1, 2**31),
)
def test_passes_signed_by_another_registry(
    status: Status, doses: int, issued: int, length: int
) -> None:
    expires = min(issued + length, 2**32 - 1)
    text = passes.issue(FOREIGN, SUBJECT, status, doses, issued, expires)
    assert answered_red(text) is Reason.UNKNOWN_KEY


@FUZZ
@given(st.binary(max_size=600))
def test_raw_bytes_as_a_scanner_may_deliver_them(data: bytes) -> None:
    # A decoder hands over text; bytes that are not UTF-8 arrive with replacement marks.
    answered_red(data.decode("utf-8", errors="replace"))
    answered_red(data.decode("latin-1"))
