"""Provisioning QR format v1: the committed vectors, sealing and opening, what fits a QR."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import segno

from protocol import enrolment
from protocol.enrolment import (
    MAX_TEXT_LENGTH,
    EnrolmentCodeError,
    ProvisioningCode,
    SealedBundle,
    is_provisioning_text,
)

DOC: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "provisioning.json").read_text(encoding="utf-8")
)


@pytest.mark.parametrize("vector", DOC["vectors"], ids=lambda v: v["name"])
def test_every_valid_vector_parses_derives_and_seals_as_committed(vector: dict[str, Any]) -> None:
    code = ProvisioningCode.parse(vector["text"])
    assert (code.node_id, code.token, code.hub_url, code.pin) == (
        vector["node_id"],
        vector["token"],
        vector["hub_url"],
        vector["pin"],
    )
    assert code.text() == vector["text"]
    assert code.lookup_id == vector["lookup_id"] == enrolment.lookup_id(vector["token"])
    sealed = enrolment.seal(
        code.token, code.node_id, vector["bundle"].encode(), nonce=bytes.fromhex(vector["nonce"])
    )
    assert base64.b64encode(sealed).decode() == vector["sealed"]
    opened = enrolment.open_sealed(code.token, code.node_id, base64.b64decode(vector["sealed"]))
    assert SealedBundle.loads(opened).mqtt_password == "test-password-not-real"  # noqa: S105


@pytest.mark.parametrize("vector", DOC["bad"], ids=lambda v: v["name"])
def test_every_bad_vector_is_refused_with_its_reason(vector: dict[str, Any]) -> None:
    with pytest.raises(EnrolmentCodeError, match=vector["error"]):
        ProvisioningCode.parse(vector["text"])


def test_the_longest_text_fits_version_10_at_level_m_and_one_more_is_refused() -> None:
    token = enrolment.new_token()
    room = MAX_TEXT_LENGTH - len(f"{enrolment.HEADER}n|{token}|https://")
    longest = ProvisioningCode("n", token, "https://" + "h" * room)
    assert len(longest.text()) == MAX_TEXT_LENGTH
    assert segno.make_qr(longest.text(), error="m", boost_error=False).version <= 10
    with pytest.raises(EnrolmentCodeError, match="version 10"):
        ProvisioningCode("n", token, "https://" + "h" * (room + 1))


def test_a_sealed_bundle_opens_only_for_its_token_and_node_and_unchanged() -> None:
    token, other = enrolment.new_token(), enrolment.new_token()
    sealed = enrolment.seal(token, "main-1", b"secret bundle")
    assert enrolment.open_sealed(token, "main-1", sealed) == b"secret bundle"
    assert enrolment.seal(token, "main-1", b"secret bundle") != sealed  # a fresh nonce
    flipped = bytearray(sealed)
    flipped[-1] ^= 1
    for tok, node, blob in [
        (other, "main-1", sealed),
        (token, "main-2", sealed),
        (token, "main-1", bytes(flipped)),
        (token, "main-1", sealed[:20]),
    ]:
        with pytest.raises(EnrolmentCodeError):
            enrolment.open_sealed(tok, node, blob)
    # The lookup id is one-way and differs per token.
    assert enrolment.lookup_id(token) != enrolment.lookup_id(other)
    assert token not in enrolment.lookup_id(token)


def test_bundles_and_helpers_refuse_junk() -> None:
    for junk in [b"", b"[]", b'{"v": 2}', b'{"v": 1, "node_toml": ""}', b"\xff"]:
        with pytest.raises(EnrolmentCodeError):
            SealedBundle.loads(junk)
    with pytest.raises(EnrolmentCodeError, match="base64"):
        enrolment.decode_sealed("not base64!")
    assert is_provisioning_text("PINTU-PROV1:x") and not is_provisioning_text("PINTU1:x")
    assert enrolment.is_lookup_id("0" * 32) and not enrolment.is_lookup_id("0" * 31 + "g")
