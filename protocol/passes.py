"""Pass format v1: a signed, compact text that fits a QR code of version 9 at level M.

Layout (``docs/protocol.md`` has the byte-by-byte table)::

    text    = "PINTU1:" + base32(body)           # RFC 4648 alphabet, no padding
    body    = payload (27 bytes) + signature (64 bytes)
    payload = version u8 | kid 4 | subject 12 | status u8 | doses u8
              | issued_at u32 | expires_at u32    # big-endian Unix seconds, UTC
    signature = Ed25519(key, b"PINTU1:" + payload)

Upper-case base32 uses only characters of the QR alphanumeric mode, so the 153-character
text takes the denser alphanumeric encoding.

``verify`` never raises on bad input: every text gets a ``Verdict`` with a ``Reason``.
"""

from __future__ import annotations

import base64
import binascii
import struct
import time
from dataclasses import dataclass
from enum import StrEnum

from protocol.status import Status
from protocol.trust import KID_BYTES, SigningKey, TrustList

PREFIX = "PINTU"
VERSION = 1
HEADER = f"{PREFIX}{VERSION}:"
SUBJECT_BYTES = 12
SIGNATURE_BYTES = 64
_PAYLOAD = struct.Struct(f">B{KID_BYTES}s{SUBJECT_BYTES}sBBII")
PAYLOAD_BYTES = _PAYLOAD.size
BODY_BYTES = PAYLOAD_BYTES + SIGNATURE_BYTES
TEXT_LENGTH = len(HEADER) + (BODY_BYTES * 8 + 4) // 5
# Anything longer than this is refused before it is decoded at all.
MAX_TEXT_LENGTH = 512
MAX_DOSES = 20
# A pass issued a little "in the future" is accepted: door clocks drift.
DEFAULT_CLOCK_SKEW_S = 300


class Reason(StrEnum):
    """Why a pass text was accepted or refused. The value is the wire and log code."""

    OK = "ok"
    EMPTY = "empty"
    OVERSIZE = "oversize"
    NOT_ASCII = "not_ascii"
    WRONG_PREFIX = "wrong_prefix"
    UNSUPPORTED_VERSION = "unsupported_version"
    MALFORMED = "malformed"
    TRUNCATED = "truncated"
    UNKNOWN_KEY = "unknown_key"
    KEY_REVOKED = "key_revoked"
    KEY_NOT_VALID = "key_not_valid"
    BAD_SIGNATURE = "bad_signature"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"

    @property
    def message(self) -> str:
        """What a guard reads on a screen or in a log."""
        return _MESSAGES[self]


_MESSAGES = {
    Reason.OK: "valid pass",
    Reason.EMPTY: "no text in the code",
    Reason.OVERSIZE: "code is far too long to be a pass",
    Reason.NOT_ASCII: "code contains characters a pass never has",
    Reason.WRONG_PREFIX: "not a Pintu pass",
    Reason.UNSUPPORTED_VERSION: "pass format version not supported by this door",
    Reason.MALFORMED: "pass is damaged or not correctly encoded",
    Reason.TRUNCATED: "pass is incomplete (cut short)",
    Reason.UNKNOWN_KEY: "pass signed by a key this door does not trust",
    Reason.KEY_REVOKED: "pass signed by a revoked key",
    Reason.KEY_NOT_VALID: "pass issued outside its key's validity window",
    Reason.BAD_SIGNATURE: "signature does not match: forged or altered pass",
    Reason.NOT_YET_VALID: "pass is not valid yet",
    Reason.EXPIRED: "pass has expired",
}


@dataclass(frozen=True)
class Pass:
    """The content of a pass. ``subject`` is pseudonymous: no name, no NIK."""

    kid: bytes
    subject: bytes
    status: Status
    doses: int
    issued_at: int
    expires_at: int
    version: int = VERSION

    @property
    def subject_hex(self) -> str:
        return self.subject.hex()

    def payload(self) -> bytes:
        return _PAYLOAD.pack(
            self.version,
            self.kid,
            self.subject,
            int(self.status),
            self.doses,
            self.issued_at,
            self.expires_at,
        )


@dataclass(frozen=True)
class Verdict:
    """The answer to "is this text a valid pass?". ``pass_`` is set when it could be parsed."""

    reason: Reason
    pass_: Pass | None = None

    @property
    def ok(self) -> bool:
        return self.reason is Reason.OK

    @property
    def message(self) -> str:
        return self.reason.message

    def to_json(self) -> dict[str, object]:
        doc: dict[str, object] = {"ok": self.ok, "reason": self.reason.value}
        doc["message"] = self.message
        if self.pass_ is not None:
            p = self.pass_
            doc.update(
                kid=p.kid.hex(),
                subject=p.subject_hex,
                status=p.status.label,
                doses=p.doses,
                issued_at=p.issued_at,
                expires_at=p.expires_at,
            )
        return doc


def _b32encode(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=")


def _b32decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 8)
    return base64.b32decode(padded, casefold=False)


def issue(
    key: SigningKey,
    subject: bytes,
    status: Status,
    doses: int,
    issued_at: int,
    expires_at: int,
) -> str:
    """Sign a pass and return its text."""
    if len(subject) != SUBJECT_BYTES:
        raise ValueError(f"subject id must be {SUBJECT_BYTES} bytes, got {len(subject)}")
    if not 0 <= doses <= MAX_DOSES:
        raise ValueError(f"doses must be between 0 and {MAX_DOSES}, got {doses}")
    if expires_at <= issued_at:
        raise ValueError("a pass must expire after it is issued")
    for name, value in (("issued_at", issued_at), ("expires_at", expires_at)):
        if not 0 <= value < 2**32:
            raise ValueError(f"{name} out of range: {value}")
    p = Pass(key.kid, subject, Status(status), doses, issued_at, expires_at)
    payload = p.payload()
    signature = key.sign(HEADER.encode("ascii") + payload)
    return HEADER + _b32encode(payload + signature)


@dataclass(frozen=True)
class _Parsed:
    pass_: Pass
    signed: bytes
    signature: bytes


def _parse(text: str) -> _Parsed | Reason:
    if not text:
        return Reason.EMPTY
    if len(text) > MAX_TEXT_LENGTH:
        return Reason.OVERSIZE
    if not text.isascii():
        return Reason.NOT_ASCII
    # Scanners in keyboard mode add a newline; surrounding white space is not content.
    text = text.strip()
    if not text:
        return Reason.EMPTY
    if not text.isprintable():
        return Reason.NOT_ASCII
    if not text.startswith(PREFIX):
        return Reason.WRONG_PREFIX
    version_text, sep, body_text = text[len(PREFIX) :].partition(":")
    if not sep or not version_text.isdigit():
        return Reason.WRONG_PREFIX
    if int(version_text) != VERSION:
        return Reason.UNSUPPORTED_VERSION
    if version_text != str(VERSION):
        # "PINTU01:" or "PINTU001:" would be the same pass under another text: one pass,
        # one text, so a door's de-duplication and any list of seen texts cannot be dodged.
        return Reason.MALFORMED
    try:
        body = _b32decode(body_text)
    except (binascii.Error, ValueError):
        return Reason.MALFORMED
    if len(body) < BODY_BYTES:
        return Reason.TRUNCATED
    if len(body) > BODY_BYTES:
        return Reason.MALFORMED
    if _b32encode(body) != body_text:
        # The last character carries two bits no byte uses; a decoder ignores them, so
        # without this check four different texts would be one pass. One pass, one text.
        return Reason.MALFORMED
    payload, signature = body[:PAYLOAD_BYTES], body[PAYLOAD_BYTES:]
    version, kid, subject, status, doses, issued_at, expires_at = _PAYLOAD.unpack(payload)
    if version != VERSION:
        return Reason.UNSUPPORTED_VERSION
    if status > max(Status) or doses > MAX_DOSES or expires_at <= issued_at:
        return Reason.MALFORMED
    p = Pass(kid, subject, Status(status), doses, issued_at, expires_at, version)
    return _Parsed(p, HEADER.encode("ascii") + payload, signature)


def parse(text: str) -> Pass | Reason:
    """The pass a text carries, unverified, or the reason it is not one."""
    parsed = _parse(text)
    return parsed if isinstance(parsed, Reason) else parsed.pass_


def verify(
    text: str,
    trust: TrustList,
    now: float | None = None,
    clock_skew_s: int = DEFAULT_CLOCK_SKEW_S,
) -> Verdict:
    """Check a pass text's format, key, signature and validity period at time ``now``."""
    parsed = _parse(text)
    if isinstance(parsed, Reason):
        return Verdict(parsed)
    p = parsed.pass_
    key = trust.get(p.kid)
    if key is None:
        return Verdict(Reason.UNKNOWN_KEY, p)
    if not key.verify(parsed.signature, parsed.signed):
        return Verdict(Reason.BAD_SIGNATURE, p)
    # Revocation and the key's window are checked after the signature, so a forgery
    # naming a revoked key is reported as what it is.
    if key.revoked:
        return Verdict(Reason.KEY_REVOKED, p)
    if not key.covers(p.issued_at):
        return Verdict(Reason.KEY_NOT_VALID, p)
    now = time.time() if now is None else now
    if p.issued_at > now + clock_skew_s:
        return Verdict(Reason.NOT_YET_VALID, p)
    if now >= p.expires_at:
        return Verdict(Reason.EXPIRED, p)
    return Verdict(Reason.OK, p)
