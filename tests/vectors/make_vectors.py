"""Write tests/vectors/passes.json: pass format v1 test vectors.

Run once (``python tests/vectors/make_vectors.py``) and commit the result. The keys come
from fixed seeds and Ed25519 signatures are deterministic, so the tests can re-issue every
valid vector and compare it byte for byte: a change to the format shows as a failing test.
The seeds are test keys only and must never sign a real pass.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import passes
from protocol.status import Status
from protocol.trust import SigningKey, TrustList

HERE = Path(__file__).parent
NOW = 1_795_000_000  # 2026-11-18T09:46:40Z, the time every vector is checked at
DAY = 86_400

SEEDS = {
    "current": bytes(range(32)),
    "stranger": bytes(range(32, 64)),
    "revoked": bytes(range(64, 96)),
    "retired": bytes(range(96, 128)),
}


def key(name: str) -> SigningKey:
    return SigningKey(Ed25519PrivateKey.from_private_bytes(SEEDS[name]))


def trust_list() -> TrustList:
    current, revoked, retired = key("current"), key("revoked"), key("retired")
    return TrustList.of(
        [
            current.trusted(not_before=NOW - 100 * DAY),
            replace(revoked.trusted(not_before=NOW - 100 * DAY), revoked=True),
            # Retired 50 days ago: its older passes stay good, anything newer is refused.
            retired.trusted(not_before=NOW - 200 * DAY, not_after=NOW - 50 * DAY),
        ],
        updated_at=NOW - DAY,
    )


def issue(
    signer: str,
    status: Status = Status.GREEN,
    doses: int = 2,
    issued: int = NOW - DAY,
    expires: int = NOW + 29 * DAY,
    subject: bytes = bytes.fromhex("5e1f0a2b3c4d5e6f708192a3"),
) -> dict[str, Any]:
    text = passes.issue(key(signer), subject, status, doses, issued, expires)
    return {
        "text": text,
        "signer": signer,
        "pass": {
            "kid": key(signer).kid_hex,
            "subject": subject.hex(),
            "status": status.label,
            "doses": doses,
            "issued_at": issued,
            "expires_at": expires,
        },
    }


def flip_char(text: str, index: int) -> str:
    """Change one base32 character of the body, keeping the text well-formed."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    old = text[index]
    new = alphabet[(alphabet.index(old) + 1) % len(alphabet)]
    return text[:index] + new + text[index + 1 :]


def set_byte(text: str, offset: int, value: int) -> str:
    """Overwrite one byte of a pass body without signing it again: a forgery."""
    header = len(passes.HEADER)
    body = bytearray(base64.b32decode(text[header:] + "=" * (-len(text[header:]) % 8)))
    body[offset] = value
    return passes.HEADER + base64.b32encode(bytes(body)).decode("ascii").rstrip("=")


def vectors() -> list[dict[str, Any]]:
    valid = issue("current")
    header = len(passes.HEADER)
    # Character offsets into the base32 body: the signature starts at payload byte 27,
    # i.e. base32 character 27*8/5 = 43.2; character 100 lies well inside it.
    signature_char = header + 100
    out: list[dict[str, Any]] = [
        {"name": "valid_green", "expect": "ok", **valid},
        {
            "name": "valid_yellow",
            "expect": "ok",
            **issue("current", Status.YELLOW, 1, subject=bytes(12)),
        },
        {"name": "valid_red", "expect": "ok", **issue("current", Status.RED, 0)},
        {"name": "valid_black", "expect": "ok", **issue("current", Status.BLACK, 2)},
        {
            "name": "valid_retired_key_old_pass",
            "expect": "ok",
            **issue("retired", issued=NOW - 60 * DAY, expires=NOW + DAY),
        },
        {
            "name": "expired",
            "expect": "expired",
            **issue("current", issued=NOW - 31 * DAY, expires=NOW - DAY),
        },
        {
            "name": "expires_exactly_now",
            "expect": "expired",
            **issue("current", issued=NOW - DAY, expires=NOW),
        },
        {
            "name": "not_yet_valid",
            "expect": "not_yet_valid",
            **issue("current", issued=NOW + DAY, expires=NOW + 30 * DAY),
        },
        {
            "name": "within_clock_skew",
            "expect": "ok",
            **issue("current", issued=NOW + 60, expires=NOW + DAY),
        },
        {
            "name": "bad_signature",
            "expect": "bad_signature",
            "text": flip_char(valid["text"], signature_char),
        },
        {
            "name": "black_altered_to_green",
            "expect": "bad_signature",
            "text": set_byte(issue("current", Status.BLACK)["text"], 17, int(Status.GREEN)),
        },
        {"name": "unknown_key", "expect": "unknown_key", **issue("stranger")},
        {"name": "revoked_key", "expect": "key_revoked", **issue("revoked")},
        {
            "name": "retired_key_new_pass",
            "expect": "key_not_valid",
            **issue("retired", issued=NOW - 10 * DAY, expires=NOW + DAY),
        },
        {"name": "truncated", "expect": "truncated", "text": valid["text"][:-10]},
        {"name": "truncated_to_header", "expect": "truncated", "text": passes.HEADER},
        {"name": "extra_bytes", "expect": "malformed", "text": valid["text"] + "AAAAAAAA"},
        {"name": "bad_base32", "expect": "malformed", "text": passes.HEADER + "01890189"},
        {
            "name": "lowercase_body",
            "expect": "malformed",
            "text": valid["text"].lower().replace("pintu", "PINTU"),
        },
        {
            "name": "wrong_prefix",
            "expect": "wrong_prefix",
            "text": "https://example.org/checkin?id=42",
        },
        {
            "name": "other_scheme",
            "expect": "wrong_prefix",
            "text": "QRIS1:" + valid["text"][header:],
        },
        {
            "name": "prefix_without_version",
            "expect": "wrong_prefix",
            "text": "PINTU:" + valid["text"][header:],
        },
        {
            "name": "wrong_version",
            "expect": "unsupported_version",
            "text": "PINTU2:" + valid["text"][header:],
        },
        {"name": "oversize", "expect": "oversize", "text": passes.HEADER + "A" * 600},
        {
            "name": "non_ascii",
            "expect": "not_ascii",
            "text": "PINTU1:ÄÖÜ" + valid["text"][header + 3 :],
        },
        {
            "name": "control_characters",
            "expect": "not_ascii",
            "text": "PINTU1:\x00\x01\x02\x1b[31m",
        },
        {
            "name": "binary_junk",
            "expect": "not_ascii",
            "text": bytes([0xFF, 0xFE, 0x00, 0x89, 0x50, 0x4E, 0x47, 0x0D]).decode("latin-1"),
        },
        {"name": "empty", "expect": "empty", "text": ""},
    ]
    return out


def main() -> None:
    doc = {
        "comment": "Pass format v1 test vectors (docs/protocol.md), from make_vectors.py.",
        "now": NOW,
        "seeds": {name: seed.hex() for name, seed in SEEDS.items()},
        "trust": trust_list().to_json(),
        "vectors": vectors(),
    }
    (HERE / "passes.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
