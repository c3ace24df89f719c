"""The committed pass vectors: every one gets its expected answer, and the format is frozen."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from protocol import passes
from protocol.passes import Reason
from protocol.status import Status
from protocol.trust import TrustList

VECTORS_PATH = Path(__file__).parents[1] / "vectors" / "passes.json"
DOC: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
TRUST = TrustList.from_json(DOC["trust"])
NOW: int = DOC["now"]
VECTORS = DOC["vectors"]

# The issue's list of bad vectors, each of which must be present.
REQUIRED_BAD = {
    "expired",
    "not_yet_valid",
    "bad_signature",
    "unknown_key",
    "truncated",
    "wrong_prefix",
    "wrong_version",
    "oversize",
    "non_ascii",
    "empty",
}


def test_every_required_bad_vector_is_present() -> None:
    assert {v["name"] for v in VECTORS} >= REQUIRED_BAD


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_gets_its_expected_reason(vector: dict[str, Any]) -> None:
    verdict = passes.verify(vector["text"], TRUST, now=NOW)
    assert verdict.reason.value == vector["expect"]
    assert verdict.message  # a reason a guard can read
    if vector["expect"] == "ok":
        assert verdict.pass_ is not None
        expected = vector["pass"]
        assert verdict.pass_.subject_hex == expected["subject"]
        assert verdict.pass_.status.label == expected["status"]
        assert verdict.pass_.doses == expected["doses"]
        assert verdict.pass_.expires_at == expected["expires_at"]


@pytest.mark.parametrize("vector", [v for v in VECTORS if "pass" in v], ids=lambda v: v["name"])
def test_reissuing_gives_the_committed_text(vector: dict[str, Any]) -> None:
    """Ed25519 is deterministic: any change to the encoding changes these texts."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from protocol.trust import SigningKey

    seed = bytes.fromhex(DOC["seeds"][vector["signer"]])
    key = SigningKey(Ed25519PrivateKey.from_private_bytes(seed))
    p = vector["pass"]
    text = passes.issue(
        key,
        bytes.fromhex(p["subject"]),
        Status.parse(p["status"]),
        p["doses"],
        p["issued_at"],
        p["expires_at"],
    )
    assert text == vector["text"]


def test_valid_vectors_use_the_documented_length() -> None:
    for vector in VECTORS:
        if vector["expect"] == "ok":
            assert len(vector["text"]) == passes.TEXT_LENGTH == 153


def test_each_reason_except_ok_is_covered() -> None:
    covered = {v["expect"] for v in VECTORS}
    assert covered == {r.value for r in Reason}
