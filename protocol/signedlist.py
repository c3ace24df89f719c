"""Signed lists: how a door knows that a trust list or a status list comes from the registry.

The registry signs the exact bytes of each list it hands the doors with a *list key*, an
Ed25519 key of its own that signs nothing else (not a pass key). A door believes a list
only when it is signed by a list key it pinned at enrolment (``ListKeys``); the hub and the
broker only relay the signed bytes, so neither can forge a list, and neither can a rogue
broker or a client with a door's credentials. Layout (``docs/protocol.md`` § 5.1)::

    envelope  = header payload signature
    header    = "PSIG" | version u8 (1) | kind u8 | kid (4 bytes) | length u32
    signature = Ed25519-sign(list key, header || payload)        64 bytes

``kind`` binds the payload to what it claims to be: 1 a trust list (its JSON, § 2), 2 a
status list (its ``.psl`` bytes, § 4), 3 a list-key statement (below). The ``kid`` is the
list key's id, computed as a pass key's (``protocol.trust.kid_of``).

**Rotation.** A list-key statement names the list keys to pin from now on and a sequence
number. The registry signs statement *n + 1* with the key of statement *n*, and keeps the
whole chain (statement 1 names the first key and is signed by it). A door walks the chain
from what it pinned: it takes a statement whose ``seq`` is higher than its own only when a
key it pins now signed it, so it follows any number of rotations it missed and nobody
without a pinned key's private half can move it elsewhere. Pure functions: no I/O here
except ``ListKeys.load`` and ``save``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol.errors import ProtocolError
from protocol.trust import SigningKey, format_time, kid_of, parse_time

MAGIC = b"PSIG"
VERSION = 1
_HEADER = struct.Struct(">4sBB4sI")
HEADER_BYTES = _HEADER.size  # 14
SIGNATURE_BYTES = 64
OVERHEAD = HEADER_BYTES + SIGNATURE_BYTES
# A statement names the keys to pin; more than a handful is a mistake, not a rotation.
MAX_PINNED_KEYS = 8
# A key chain grows by one statement (about 300 bytes) a rotation.
MAX_CHAIN_BYTES = 256 * 1024
KEYS_FORMAT = "pintu-list-keys"
KEYS_VERSION = 1


class Kind(IntEnum):
    """What an envelope holds."""

    TRUST = 1
    STATUS = 2
    KEYS = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class SignedListError(ProtocolError):
    """A signed list that does not follow the format, or that a door must not believe.

    ``reason`` is a short code for logs and tests: ``unsigned`` (not an envelope at all),
    ``malformed``, ``wrong_kind``, ``no_pinned_key``, ``unknown_key``, ``bad_signature``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Envelope:
    """A parsed envelope; ``signed`` is the bytes its signature covers."""

    kind: Kind
    kid: bytes
    payload: bytes
    signature: bytes
    signed: bytes

    @property
    def kid_hex(self) -> str:
        return self.kid.hex()


def seal(key: SigningKey, kind: Kind, payload: bytes) -> bytes:
    """``payload`` in an envelope of ``kind``, signed by the list key ``key``."""
    header = _HEADER.pack(MAGIC, VERSION, int(kind), key.kid, len(payload))
    signed = header + payload
    return signed + key.sign(signed)


def _read_one(data: bytes, start: int, where: str) -> tuple[Envelope, int]:
    """The envelope at ``start`` and the offset after it."""
    if data[start : start + len(MAGIC)] != MAGIC:
        raise SignedListError("unsigned", f"{where}: not signed (no PSIG envelope)")
    if len(data) - start < OVERHEAD:
        raise SignedListError("malformed", f"{where}: too short to be a signed list")
    _, version, kind, kid, length = _HEADER.unpack_from(data, start)
    if version != VERSION:
        raise SignedListError("malformed", f"{where}: unsupported envelope version {version}")
    try:
        what = Kind(kind)
    except ValueError:
        raise SignedListError("malformed", f"{where}: unknown envelope kind {kind}") from None
    end = start + HEADER_BYTES + length
    if end + SIGNATURE_BYTES > len(data):
        raise SignedListError("malformed", f"{where}: truncated (payload of {length} bytes)")
    signed = data[start:end]
    signature = data[end : end + SIGNATURE_BYTES]
    return Envelope(what, kid, data[start + HEADER_BYTES : end], signature, signed), (
        end + SIGNATURE_BYTES
    )


def read(data: bytes, kind: Kind, where: str = "signed list") -> Envelope:
    """One envelope of ``kind``, exactly (nothing after it); its signature is not checked."""
    envelope, end = _read_one(data, 0, where)
    if end != len(data):
        raise SignedListError("malformed", f"{where}: {len(data) - end} bytes after the signature")
    if envelope.kind is not kind:
        raise SignedListError(
            "wrong_kind", f"{where}: holds a {envelope.kind.label} list, not a {kind.label} list"
        )
    return envelope


def read_chain(data: bytes, where: str = "list-key chain") -> list[Envelope]:
    """The statements of a key chain, in order; signatures are not checked here."""
    if not data:
        raise SignedListError("malformed", f"{where}: empty")
    if len(data) > MAX_CHAIN_BYTES:
        raise SignedListError("malformed", f"{where}: over {MAX_CHAIN_BYTES} bytes")
    envelopes: list[Envelope] = []
    start = 0
    while start < len(data):
        envelope, start = _read_one(data, start, f"{where}[{len(envelopes)}]")
        if envelope.kind is not Kind.KEYS:
            raise SignedListError(
                "wrong_kind", f"{where}[{len(envelopes)}]: a {envelope.kind.label} list"
            )
        envelopes.append(envelope)
    return envelopes


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_json(public_key: Ed25519PublicKey) -> dict[str, str]:
    return {
        "kid": kid_of(public_key).hex(),
        "alg": "Ed25519",
        "public_key": base64.b64encode(_raw(public_key)).decode("ascii"),
    }


def _public_key_from_json(item: Any, where: str) -> Ed25519PublicKey:
    if not isinstance(item, Mapping):
        raise SignedListError("malformed", f"{where}: expected an object")
    unknown = sorted(set(item) - {"kid", "alg", "public_key"})
    if unknown:
        raise SignedListError("malformed", f"{where}: unknown field {unknown[0]!r}")
    if item.get("alg") != "Ed25519":
        raise SignedListError("malformed", f"{where}.alg: only 'Ed25519' is supported")
    try:
        raw = base64.b64decode(str(item.get("public_key", "")), validate=True)
        public_key = Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as err:
        raise SignedListError(
            "malformed", f"{where}.public_key: not a base64 32-byte Ed25519 key"
        ) from err
    kid = kid_of(public_key).hex()
    if item.get("kid") != kid:
        raise SignedListError(
            "malformed", f"{where}.kid: {item.get('kid')!r} does not match its public key ({kid})"
        )
    return public_key


@dataclass(frozen=True)
class ListKeys:
    """The list keys a door pins, and the statement they come from (``seq``).

    The same document is a statement's payload, the registry's ``list-keys.json`` that a
    technician gives ``pintu provision node enroll --list-keys``, and a door's pin file.
    ``seq`` 0 with no keys is a door that pinned nothing: it believes no list.
    """

    seq: int = 0
    keys: Mapping[bytes, Ed25519PublicKey] = field(default_factory=dict)
    issued_at: int | None = None

    @classmethod
    def of(cls, seq: int, keys: Iterable[Ed25519PublicKey], issued_at: int | None) -> ListKeys:
        return cls(seq, {kid_of(k): k for k in keys}, issued_at)

    @property
    def kids(self) -> list[str]:
        return sorted(kid.hex() for kid in self.keys)

    def verify(self, envelope: Envelope, where: str = "signed list") -> None:
        """``SignedListError`` unless a pinned key signed ``envelope``."""
        if not self.keys:
            raise SignedListError(
                "no_pinned_key", f"{where}: this door pinned no list key, so it believes no list"
            )
        public_key = self.keys.get(envelope.kid)
        if public_key is None:
            raise SignedListError(
                "unknown_key",
                f"{where}: signed by list key {envelope.kid_hex}, which this door has not "
                f"pinned (it pins {', '.join(self.kids)})",
            )
        try:
            public_key.verify(envelope.signature, envelope.signed)
        except InvalidSignature:
            raise SignedListError(
                "bad_signature", f"{where}: the signature of list key {envelope.kid_hex} is bad"
            ) from None

    def open(self, data: bytes, kind: Kind, where: str = "signed list") -> bytes:
        """The payload of a ``kind`` envelope a pinned key signed; ``SignedListError`` if not."""
        envelope = read(data, kind, where)
        self.verify(envelope, where)
        return envelope.payload

    def advance(self, chain: bytes, where: str = "list-key chain") -> ListKeys:
        """What to pin after the statements of ``chain`` that are newer than ``self``.

        A newer statement is taken only when a key pinned at that point signed it; the
        first that is not refuses the rest (``SignedListError``). Older statements are
        passed over: the chain starts at the registry's first key.
        """
        current = self
        for i, envelope in enumerate(read_chain(chain, where)):
            at = f"{where}[{i}]"
            if envelope.kid in current.keys:
                current.verify(envelope, at)  # before its payload is looked at
            statement = ListKeys.loads(envelope.payload, at)
            if statement.seq <= current.seq:
                continue
            current.verify(envelope, f"{at} (statement {statement.seq})")
            current = statement
        return current

    def to_json(self) -> dict[str, Any]:
        return {
            "format": KEYS_FORMAT,
            "v": KEYS_VERSION,
            "seq": self.seq,
            "issued_at": format_time(self.issued_at),
            "keys": [public_key_json(self.keys[kid]) for kid in sorted(self.keys)],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"

    @classmethod
    def from_json(cls, doc: Any, where: str = "list keys") -> ListKeys:
        if not isinstance(doc, Mapping):
            raise SignedListError("malformed", f"{where}: expected a JSON object")
        unknown = sorted(set(doc) - {"format", "v", "seq", "issued_at", "keys"})
        if unknown:
            raise SignedListError("malformed", f"{where}: unknown field {unknown[0]!r}")
        if doc.get("format") != KEYS_FORMAT:
            raise SignedListError("malformed", f"{where}: 'format' must be {KEYS_FORMAT!r}")
        if doc.get("v") != KEYS_VERSION:
            raise SignedListError("malformed", f"{where}: unsupported version {doc.get('v')!r}")
        seq = doc.get("seq")
        if type(seq) is not int or not 1 <= seq < 2**31:
            raise SignedListError("malformed", f"{where}: 'seq' must be a whole number from 1")
        items = doc.get("keys")
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_PINNED_KEYS:
            raise SignedListError(
                "malformed", f"{where}: 'keys' must list 1 to {MAX_PINNED_KEYS} keys"
            )
        keys = [_public_key_from_json(item, f"{where}: keys[{i}]") for i, item in enumerate(items)]
        try:
            issued_at = parse_time(doc.get("issued_at"), f"{where}: issued_at")
        except ProtocolError as err:
            raise SignedListError("malformed", str(err)) from err
        return cls.of(seq, keys, issued_at)

    @classmethod
    def from_chain(cls, chain: bytes, where: str = "list-key chain") -> ListKeys:
        """The keys a whole chain ends with, checked from its first statement (which its
        own key signs). For the registry and the hub; a door walks from what it pinned."""
        first = read_chain(chain, where)[0]
        genesis = cls.loads(first.payload, f"{where}[0]")
        genesis.verify(first, f"{where}[0]")
        return genesis.advance(chain, where)

    @classmethod
    def loads(cls, text: str | bytes, where: str = "list keys") -> ListKeys:
        try:
            doc = json.loads(text)
        except (ValueError, UnicodeDecodeError) as err:
            raise SignedListError("malformed", f"{where}: not valid JSON: {err}") from err
        return cls.from_json(doc, where)

    @classmethod
    def load(cls, path: str | Path) -> ListKeys:
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as err:
            raise SignedListError(
                "malformed", f"{path}: cannot read the list keys: {err.strerror}"
            ) from err
        return cls.loads(data, str(path))

    def save(self, path: str | Path) -> None:
        """Write atomically (a temporary file, then a rename)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(self.dumps(), encoding="utf-8")
        os.replace(tmp, path)


def statement(signer: SigningKey, pinned: ListKeys) -> bytes:
    """A list-key statement: ``pinned`` (its keys and seq), signed by ``signer``."""
    return seal(signer, Kind.KEYS, pinned.dumps().encode("utf-8"))
