"""Signing keys and the trust list that tells a node which registry keys to believe.

A key id (``kid``) is the first four bytes of the SHA-256 of the raw 32-byte Ed25519
public key, written as eight lowercase hex digits. A pass names its key by those four bytes.

The trust list is a JSON document (see ``docs/protocol.md``)::

    {"format": "pintu-trust", "v": 1, "updated_at": "2026-11-22T04:00:00Z",
     "keys": [{"kid": "1a2b3c4d", "alg": "Ed25519", "public_key": "<base64, 32 bytes>",
               "not_before": "2026-01-01T00:00:00Z", "not_after": null, "revoked": false}]}

``not_before``/``not_after`` bound when the key may *sign*: a pass is believed only if its
issued-at time falls inside the window of its key, so a retired key keeps vouching for the
passes it signed while it was current, until they expire.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.errors import KeyFileError, TrustListError

TRUST_FORMAT = "pintu-trust"
TRUST_VERSION = 1
KID_BYTES = 4


def kid_of(public_key: Ed25519PublicKey) -> bytes:
    """The four-byte key id of ``public_key``."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:KID_BYTES]


_YEAR_10000 = 253_402_300_800  # Unix seconds: datetime's range ends just before it


def format_time(ts: int | None) -> str | None:
    """Unix seconds as an RFC 3339 UTC string (``...Z``), or None."""
    if ts is None:
        return None
    if 0 <= ts < _YEAR_10000:
        # time.gmtime, not datetime: the same text at half the cost, and the registry's
        # status feed formats one for every change it serves.
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # or its error


def parse_time(text: str | None, where: str) -> int | None:
    """An RFC 3339 time (``Z`` or an offset required) as Unix seconds, or None."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise TrustListError(f"{where}: expected a time string, got {type(text).__name__}")
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as err:
        raise TrustListError(f"{where}: not an RFC 3339 time: {text!r}") from err
    if value.tzinfo is None:
        raise TrustListError(f"{where}: time {text!r} has no UTC offset")
    return int(value.timestamp())


@dataclass(frozen=True)
class SigningKey:
    """A registry signing key (private); only the registry and test tools hold one."""

    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def kid(self) -> bytes:
        return kid_of(self.public_key)

    @property
    def kid_hex(self) -> str:
        return self.kid.hex()

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)

    def to_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def from_pem(cls, data: bytes, where: str = "key") -> SigningKey:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as err:
            raise KeyFileError(f"{where}: not a PEM private key without a password") from err
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{where}: not an Ed25519 key")
        return cls(key)

    @classmethod
    def load(cls, path: str | Path) -> SigningKey:
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as err:
            raise KeyFileError(f"{path}: cannot read key file: {err.strerror}") from err
        return cls.from_pem(data, str(path))

    def save(self, path: str | Path) -> None:
        """Write the key as PKCS#8 PEM, readable by its owner only."""
        path = Path(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(self.to_pem())

    def trusted(self, not_before: int | None = None, not_after: int | None = None) -> TrustedKey:
        """This key's public half as a trust list entry."""
        return TrustedKey(
            kid=self.kid,
            public_key=self.public_key,
            not_before=not_before,
            not_after=not_after,
        )


@dataclass(frozen=True)
class TrustedKey:
    """One entry of a trust list: a registry public key and when it may sign."""

    kid: bytes
    public_key: Ed25519PublicKey
    not_before: int | None = None
    not_after: int | None = None
    revoked: bool = False

    @property
    def kid_hex(self) -> str:
        return self.kid.hex()

    def covers(self, issued_at: int) -> bool:
        """Whether a pass issued at ``issued_at`` falls inside this key's signing window."""
        if self.not_before is not None and issued_at < self.not_before:
            return False
        return not (self.not_after is not None and issued_at > self.not_after)

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            self.public_key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def to_json(self) -> dict[str, Any]:
        raw = self.public_key.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return {
            "kid": self.kid_hex,
            "alg": "Ed25519",
            "public_key": base64.b64encode(raw).decode("ascii"),
            "not_before": format_time(self.not_before),
            "not_after": format_time(self.not_after),
            "revoked": self.revoked,
        }

    @classmethod
    def from_json(cls, item: Any, where: str) -> TrustedKey:
        if not isinstance(item, Mapping):
            raise TrustListError(f"{where}: expected an object")
        known = {"kid", "alg", "public_key", "not_before", "not_after", "revoked"}
        unknown = sorted(set(item) - known)
        if unknown:
            raise TrustListError(f"{where}: unknown field {unknown[0]!r}")
        if item.get("alg") != "Ed25519":
            raise TrustListError(f"{where}.alg: only 'Ed25519' is supported")
        try:
            raw = base64.b64decode(str(item.get("public_key", "")), validate=True)
            public_key = Ed25519PublicKey.from_public_bytes(raw)
        except (binascii.Error, ValueError) as err:
            raise TrustListError(f"{where}.public_key: not a base64 32-byte Ed25519 key") from err
        kid = kid_of(public_key)
        if item.get("kid") != kid.hex():
            raise TrustListError(
                f"{where}.kid: {item.get('kid')!r} does not match its public key ({kid.hex()})"
            )
        revoked = item.get("revoked", False)
        if not isinstance(revoked, bool):
            raise TrustListError(f"{where}.revoked: expected true or false")
        return cls(
            kid=kid,
            public_key=public_key,
            not_before=parse_time(item.get("not_before"), f"{where}.not_before"),
            not_after=parse_time(item.get("not_after"), f"{where}.not_after"),
            revoked=revoked,
        )


@dataclass(frozen=True)
class TrustList:
    """The registry keys a node believes, by key id."""

    keys: Mapping[bytes, TrustedKey] = field(default_factory=dict)
    updated_at: int | None = None

    @classmethod
    def of(cls, keys: Iterable[TrustedKey], updated_at: int | None = None) -> TrustList:
        return cls({k.kid: k for k in keys}, updated_at)

    def get(self, kid: bytes) -> TrustedKey | None:
        return self.keys.get(kid)

    def revoke(self, kid: bytes) -> TrustList:
        key = self.keys[kid]
        return TrustList({**self.keys, kid: replace(key, revoked=True)}, self.updated_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": TRUST_FORMAT,
            "v": TRUST_VERSION,
            "updated_at": format_time(self.updated_at),
            "keys": [k.to_json() for k in sorted(self.keys.values(), key=lambda k: k.kid)],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"

    @classmethod
    def from_json(cls, doc: Any, where: str = "trust list") -> TrustList:
        if not isinstance(doc, Mapping):
            raise TrustListError(f"{where}: expected a JSON object")
        if doc.get("format") != TRUST_FORMAT:
            raise TrustListError(f"{where}: 'format' must be {TRUST_FORMAT!r}")
        if doc.get("v") != TRUST_VERSION:
            raise TrustListError(f"{where}: unsupported version {doc.get('v')!r}")
        items = doc.get("keys")
        if not isinstance(items, list):
            raise TrustListError(f"{where}: 'keys' must be a list")
        keys = [TrustedKey.from_json(item, f"{where}: keys[{i}]") for i, item in enumerate(items)]
        return cls.of(keys, parse_time(doc.get("updated_at"), f"{where}: updated_at"))

    @classmethod
    def loads(cls, text: str | bytes, where: str = "trust list") -> TrustList:
        try:
            doc = json.loads(text)
        except (ValueError, UnicodeDecodeError) as err:
            raise TrustListError(f"{where}: not valid JSON: {err}") from err
        return cls.from_json(doc, where)

    @classmethod
    def load(cls, path: str | Path) -> TrustList:
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as err:
            raise TrustListError(f"{path}: cannot read trust list: {err.strerror}") from err
        return cls.loads(data, str(path))

    def save(self, path: str | Path) -> None:
        """Write atomically, so a node never reads half a trust list."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.dumps(), encoding="utf-8")
        os.replace(tmp, path)
