"""Write tests/vectors/signedlists.json: signed list test vectors (docs/protocol.md § 5.1).

Run once (``python tests/vectors/make_signedlist_vectors.py``) and commit the result. The
keys come from fixed seeds and Ed25519 is deterministic, so every envelope is the same on
each run: a change to the format shows as a failing test. The seeds are test values only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.signedlist import Kind, ListKeys, seal, statement
from protocol.status import Status
from protocol.statuslist import StatusList
from protocol.trust import SigningKey, TrustList

HERE = Path(__file__).parent
SEEDS = {"list_key_1": 0x11, "list_key_2": 0x22, "attacker": 0x33, "pass_key": 0x44}
UPDATED_AT = 1_795_334_400  # 2026-11-22T08:00:00Z


def key(name: str) -> SigningKey:
    return SigningKey(Ed25519PrivateKey.from_private_bytes(bytes([SEEDS[name]]) * 32))


def main() -> None:
    k1, k2, attacker, pass_key = (key(n) for n in SEEDS)
    pins = {
        "pinned_1": ListKeys.of(1, [k1.public_key], UPDATED_AT - 86_400),
        "pinned_2": ListKeys.of(2, [k2.public_key], UPDATED_AT),
    }
    trust = TrustList.of([pass_key.trusted(not_before=UPDATED_AT - 86_400)], UPDATED_AT)
    trust_bytes = trust.dumps().encode()
    subject = bytes.fromhex("a1" * 12)
    psl = StatusList.from_items([(subject, Status.BLACK, UPDATED_AT - 60)], UPDATED_AT).dumps()
    good_trust = seal(k1, Kind.TRUST, trust_bytes)
    good_status = seal(k1, Kind.STATUS, psl)

    def changed(data: bytes, at: int) -> bytes:
        out = bytearray(data)
        out[at] ^= 0x01
        return bytes(out)

    def vector(name: str, kind: Kind, envelope: bytes, pinned: str, expect: str) -> dict[str, Any]:
        return {
            "name": name,
            "kind": kind.label,
            "pinned": pinned,
            "envelope": envelope.hex(),
            "expect": expect,
        }

    vectors = [
        vector("trust_list", Kind.TRUST, good_trust, "pinned_1", "ok"),
        vector("status_list", Kind.STATUS, good_status, "pinned_1", "ok"),
        vector("after_rotation", Kind.TRUST, seal(k2, Kind.TRUST, trust_bytes), "pinned_2", "ok"),
        vector("old_key_after_rotation", Kind.TRUST, good_trust, "pinned_2", "unknown_key"),
        vector("new_key_before_rotation", Kind.TRUST, seal(k2, Kind.TRUST, trust_bytes),
               "pinned_1", "unknown_key"),
        vector("unsigned", Kind.TRUST, trust_bytes, "pinned_1", "unsigned"),
        vector("attacker_key", Kind.TRUST, seal(attacker, Kind.TRUST, trust_bytes), "pinned_1",
               "unknown_key"),
        vector("pass_key", Kind.TRUST, seal(pass_key, Kind.TRUST, trust_bytes), "pinned_1",
               "unknown_key"),
        vector("flipped_payload", Kind.TRUST, changed(good_trust, 40), "pinned_1",
               "bad_signature"),
        vector("flipped_signature", Kind.TRUST, changed(good_trust, len(good_trust) - 1),
               "pinned_1", "bad_signature"),
        vector("status_as_trust", Kind.TRUST, good_status, "pinned_1", "wrong_kind"),
        vector("truncated", Kind.STATUS, good_status[:-1], "pinned_1", "malformed"),
        vector("trailing_byte", Kind.STATUS, good_status + b"\x00", "pinned_1", "malformed"),
        vector("version_2", Kind.STATUS, good_status[:4] + b"\x02" + good_status[5:],
               "pinned_1", "malformed"),
        vector("nothing_pinned", Kind.TRUST, good_trust, "none", "no_pinned_key"),
    ]  # fmt: skip
    genesis = statement(k1, pins["pinned_1"])
    rotation = statement(k1, pins["pinned_2"])
    forged = statement(attacker, ListKeys.of(2, [attacker.public_key], UPDATED_AT))
    chains = [
        {"name": "rotation", "chain": (genesis + rotation).hex(), "pinned": "pinned_1",
         "expect": "pinned_2"},
        {"name": "nothing_newer", "chain": (genesis + rotation).hex(), "pinned": "pinned_2",
         "expect": "pinned_2"},
        {"name": "rotation_by_an_unpinned_key", "chain": (genesis + forged).hex(),
         "pinned": "pinned_1", "expect": "unknown_key"},
        {"name": "changed_statement", "chain": (genesis + changed(rotation, 60)).hex(),
         "pinned": "pinned_1", "expect": "bad_signature"},
        {"name": "first_key_from_the_hub", "chain": genesis.hex(), "pinned": "none",
         "expect": "no_pinned_key"},
    ]  # fmt: skip
    doc = {
        "format": "PSIG",
        "seeds": {name: bytes([seed]).hex() * 32 for name, seed in SEEDS.items()},
        "pinned": {name: p.to_json() for name, p in pins.items()},
        "trust": trust.to_json(),
        "status_list": psl.hex(),
        "vectors": vectors,
        "chains": chains,
    }
    out = HERE / "signedlists.json"
    out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")  # noqa: T201 - a script run by hand


if __name__ == "__main__":
    main()
