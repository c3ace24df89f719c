"""Signed lists: the envelope, the list keys a door pins, and the chain it follows through
rotations (docs/protocol.md § 5.1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.signedlist import (
    HEADER_BYTES,
    OVERHEAD,
    Kind,
    ListKeys,
    SignedListError,
    read,
    seal,
    statement,
)
from protocol.status import Status
from protocol.statuslist import StatusList
from protocol.trust import SigningKey, TrustList

K1, K2, K3 = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
PASS_KEY = SigningKey.generate()
ATTACKER = SigningKey.generate()


def pins(seq: int, *keys: SigningKey) -> ListKeys:
    return ListKeys.of(seq, [k.public_key for k in keys], 1_800_000_000 + seq)


def chain(*steps: tuple[SigningKey, ListKeys]) -> bytes:
    return b"".join(statement(signer, pinned) for signer, pinned in steps)


def refused(reason: str, call: object, *args: object) -> SignedListError:
    with pytest.raises(SignedListError) as err:
        call(*args)  # type: ignore[operator]
    assert err.value.reason == reason, err.value
    return err.value


def test_a_signed_list_opens_with_a_pinned_key_and_nothing_else() -> None:
    trust = TrustList.of([PASS_KEY.trusted()], updated_at=1_800_000_000).dumps().encode()
    envelope = seal(K1, Kind.TRUST, trust)
    assert len(envelope) == len(trust) + OVERHEAD
    assert envelope[:4] == b"PSIG" and envelope[HEADER_BYTES:-64] == trust
    assert pins(1, K1).open(envelope, Kind.TRUST) == trust
    assert pins(1, K2, K1).open(envelope, Kind.TRUST) == trust
    # The same list, signed by a key the door did not pin: an attacker's, or a pass key.
    for other in (ATTACKER, PASS_KEY):
        err = refused("unknown_key", pins(1, K1).open, seal(other, Kind.TRUST, trust), Kind.TRUST)
        assert other.kid_hex in str(err) and K1.kid_hex in str(err)
    # A door that pinned nothing believes nothing.
    refused("no_pinned_key", ListKeys().open, envelope, Kind.TRUST)


def test_the_plain_list_of_before_is_refused_as_unsigned() -> None:
    trust = TrustList.of([ATTACKER.trusted()], updated_at=1_800_000_000).dumps().encode()
    refused("unsigned", pins(1, K1).open, trust, Kind.TRUST)
    psl = StatusList.from_items([(b"\x01" * 12, Status.GREEN, 1)], updated_at=1).dumps()
    refused("unsigned", pins(1, K1).open, psl, Kind.STATUS)


@pytest.mark.parametrize(
    "damage",
    ["flip a payload bit", "flip a signature bit", "another kid", "truncate", "append"],
)
def test_a_changed_envelope_is_refused(damage: str) -> None:
    psl = StatusList.from_items([(b"\x01" * 12, Status.BLACK, 5)], updated_at=9).dumps()
    envelope = bytearray(seal(K1, Kind.STATUS, psl))
    if damage == "flip a payload bit":
        envelope[HEADER_BYTES + 20] ^= 1
        reason = "bad_signature"
    elif damage == "flip a signature bit":
        envelope[-1] ^= 0x80
        reason = "bad_signature"
    elif damage == "another kid":
        envelope[6:10] = K2.kid  # pinned too, but it did not sign this
        reason = "bad_signature"
    elif damage == "truncate":
        del envelope[-1]
        reason = "malformed"
    else:
        envelope += b"\x00"
        reason = "malformed"
    refused(reason, pins(1, K1, K2).open, bytes(envelope), Kind.STATUS)


def test_the_kind_is_part_of_what_is_signed() -> None:
    psl = StatusList(updated_at=9).dumps()
    envelope = seal(K1, Kind.STATUS, psl)
    refused("wrong_kind", pins(1, K1).open, envelope, Kind.TRUST)
    relabelled = bytearray(envelope)
    relabelled[5] = int(Kind.TRUST)
    refused("bad_signature", pins(1, K1).open, bytes(relabelled), Kind.TRUST)
    assert read(envelope, Kind.STATUS).kid == K1.kid


def test_a_door_follows_rotations_signed_by_a_key_it_pins() -> None:
    s1, s2, s3 = pins(1, K1), pins(2, K2), pins(3, K3)
    whole = chain((K1, s1), (K1, s2), (K2, s3))
    assert ListKeys.from_chain(whole) == s3
    # A door enrolled with statement 1 follows both rotations, one enrolled later the last.
    assert s1.advance(whole) == s3
    assert s2.advance(whole) == s3
    assert s3.advance(whole) == s3  # nothing newer: unchanged
    # A replayed old chain changes nothing.
    assert s3.advance(chain((K1, s1), (K1, s2))) == s3


def test_a_rotation_not_signed_by_a_pinned_key_is_refused() -> None:
    s1 = pins(1, K1)
    forged = pins(2, ATTACKER)
    refused("unknown_key", s1.advance, chain((K1, s1), (ATTACKER, forged)))
    # Self-signed by the attacker, or by the pass key: the same.
    refused("unknown_key", s1.advance, chain((PASS_KEY, forged)))
    # A good statement 2 and then a forged statement 3: refused whole, nothing taken.
    refused("unknown_key", s1.advance, chain((K1, pins(2, K2)), (ATTACKER, pins(3, ATTACKER))))
    # A door that pinned nothing takes no first key from the hub.
    refused("no_pinned_key", ListKeys().advance, chain((K1, s1)))
    # A chain of something else.
    refused("wrong_kind", s1.advance, seal(K1, Kind.TRUST, b"{}"))


def test_a_chain_with_a_changed_statement_is_refused() -> None:
    whole = bytearray(chain((K1, pins(1, K1)), (K1, pins(2, K2))))
    whole[-70] ^= 1  # inside statement 2's payload
    refused("bad_signature", pins(1, K1).advance, bytes(whole))


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("[]", "expected a JSON object"),
        ('{"format": "pintu-list-keys", "v": 1, "seq": 1, "keys": []}', "'keys' must list"),
        ('{"format": "pintu-list-keys", "v": 1, "seq": 0, "keys": []}', "'seq'"),
        ('{"format": "pintu-list-keys", "v": 1, "seq": "1", "keys": []}', "'seq'"),
        ('{"format": "pintu-trust", "v": 1, "seq": 1, "keys": []}', "'format'"),
        ('{"format": "pintu-list-keys", "v": 2, "seq": 1, "keys": []}', "unsupported version"),
        ('{"format": "pintu-list-keys", "v": 1, "seq": 1, "keys": [], "x": 1}', "unknown field"),
    ],
)
def test_bad_list_keys_name_the_problem(doc: str, message: str) -> None:
    with pytest.raises(SignedListError, match=message):
        ListKeys.loads(doc)


def test_list_keys_round_trip_and_refuse_a_kid_that_is_not_their_key(tmp_path: Path) -> None:
    path = tmp_path / "list-keys.json"
    pinned = pins(4, K1, K2)
    pinned.save(path)
    assert ListKeys.load(path) == pinned
    doc = pinned.to_json()
    doc["keys"][0]["kid"] = ATTACKER.kid_hex
    with pytest.raises(SignedListError, match="does not match its public key"):
        ListKeys.from_json(doc)


# --- the committed vectors -----------------------------------------------------------------
VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "signedlists.json").read_text(encoding="utf-8")
)


def vector_pins(name: str) -> ListKeys:
    return ListKeys() if name == "none" else ListKeys.from_json(VECTORS["pinned"][name])


def seeded(name: str) -> SigningKey:
    seed = bytes.fromhex(VECTORS["seeds"][name])
    return SigningKey(Ed25519PrivateKey.from_private_bytes(seed))


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_each_vector_gets_its_answer(vector: dict[str, Any]) -> None:
    envelope, kind = bytes.fromhex(vector["envelope"]), Kind[vector["kind"].upper()]
    pinned = vector_pins(vector["pinned"])
    if vector["expect"] != "ok":
        refused(vector["expect"], pinned.open, envelope, kind)
        return
    payload = pinned.open(envelope, kind)
    if kind is Kind.TRUST:
        assert TrustList.loads(payload).to_json() == VECTORS["trust"]
    else:
        assert payload.hex() == VECTORS["status_list"]


def test_sealing_again_gives_the_committed_envelopes() -> None:
    """Ed25519 is deterministic: any change to the envelope changes these bytes."""
    by_name = {v["name"]: bytes.fromhex(v["envelope"]) for v in VECTORS["vectors"]}
    trust = TrustList.from_json(VECTORS["trust"]).dumps().encode()
    status = bytes.fromhex(VECTORS["status_list"])
    assert seal(seeded("list_key_1"), Kind.TRUST, trust) == by_name["trust_list"]
    assert seal(seeded("list_key_1"), Kind.STATUS, status) == by_name["status_list"]
    assert seal(seeded("list_key_2"), Kind.TRUST, trust) == by_name["after_rotation"]
    first, second = (vector_pins(n) for n in ("pinned_1", "pinned_2"))
    rotation = statement(seeded("list_key_1"), first) + statement(seeded("list_key_1"), second)
    assert rotation.hex() == VECTORS["chains"][0]["chain"]


@pytest.mark.parametrize("vector", VECTORS["chains"], ids=lambda v: v["name"])
def test_each_chain_vector_gets_its_answer(vector: dict[str, Any]) -> None:
    chain_bytes, pinned = bytes.fromhex(vector["chain"]), vector_pins(vector["pinned"])
    if vector["expect"].startswith("pinned_"):
        assert pinned.advance(chain_bytes) == vector_pins(vector["expect"])
    else:
        refused(vector["expect"], pinned.advance, chain_bytes)
