"""Provisioning QR, format v1: how a door node with no configuration enrols itself.

A technician's ``pintu provision node enroll --qr`` seals the node's bundle (its
configuration and secrets) with a key derived from a random one-time token and leaves the
ciphertext at the hub. The token is only in the QR code, which also names the hub and the
node. The node reads the QR, derives the lookup id, asks the hub for the ciphertext once,
and opens it with the key. The hub never sees the token or the key, so a copy of the hub's
database gives nobody a node's credentials.

Layout (``docs/protocol.md`` has the table and test vectors)::

    text      = "PINTU-PROV1:" + node_id + "|" + token + "|" + hub_url [+ "|" + pin]
    pin       = base64url(SHA-256(DER of the facility CA's certificate)[:16]), no padding
    token     = base64url(16 random bytes), no padding (22 characters)
    lookup_id = hex(HKDF-SHA256(token bytes, salt="", info="pintu-prov1 lookup", 16))
    key       = HKDF-SHA256(token bytes, salt="", info="pintu-prov1 key", 32)
    sealed    = nonce (12) + ChaCha20-Poly1305(key, nonce, bundle, aad="pintu-prov1:" + node_id)

The pin binds the code to a facility: a door that already knows its facility's CA (given
it when its card was prepared, or kept from an earlier enrolment) refuses a code whose pin
is not that CA's before it asks any hub for anything, and a bundle whose CA is not the
pinned one.

ChaCha20-Poly1305 rather than AES-GCM: a Raspberry Pi's Cortex-A72 and A53 have no AES
instructions, and ChaCha20 is fast in plain software. The whole text stays within 213
bytes, what a QR code of version 10 holds at error correction level M in byte mode.

Pure functions: no I/O here.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from protocol.errors import ProtocolError
from protocol.ids import LOOKUP_ID_RE, is_id

HEADER = "PINTU-PROV1:"
TOKEN_BYTES = 16
TOKEN_LENGTH = 22  # base64url of 16 bytes, unpadded
PIN_BYTES = 16
LOOKUP_BYTES = 16
NONCE_BYTES = 12
# Byte-mode capacity of a version 10 QR code at level M.
MAX_TEXT_LENGTH = 213
MAX_SEALED_BYTES = 48 * 1024
_INFO_LOOKUP = b"pintu-prov1 lookup"
_INFO_KEY = b"pintu-prov1 key"
_AAD = b"pintu-prov1:"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{22}$")
_HUB_URL = re.compile(r"^https?://[^\s|/?#]+(/[^\s|?#]*)?$")
_PIN = re.compile(r"^[A-Za-z0-9_-]{22}$")


class EnrolmentCodeError(ProtocolError):
    """A provisioning QR text, token or sealed bundle does not follow format v1."""


def is_provisioning_text(text: str) -> bool:
    """Whether ``text`` claims to be a provisioning QR (well-formed or not)."""
    return text.startswith(HEADER)


def new_token() -> str:
    """A fresh random one-time token."""
    return _b64(os.urandom(TOKEN_BYTES))


def _token_bytes(token: str) -> bytes:
    if not _TOKEN.match(token):
        raise EnrolmentCodeError("the token is not 22 base64url characters")
    try:
        return base64.urlsafe_b64decode(token + "==")
    except (binascii.Error, ValueError) as err:  # pragma: no cover - the pattern allows only valid
        raise EnrolmentCodeError(f"the token is not base64url: {err}") from err


def _derive(token: str, info: bytes, length: int) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info)
    return hkdf.derive(_token_bytes(token))


def lookup_id(token: str) -> str:
    """The id the hub files the sealed bundle under; it does not give the token away."""
    return _derive(token, _INFO_LOOKUP, LOOKUP_BYTES).hex()


def is_lookup_id(text: str) -> bool:
    return LOOKUP_ID_RE.match(text) is not None


def facility_pin(ca_pem: str | bytes) -> str:
    """The pin of a facility CA's certificate (PEM): what a provisioning QR carries."""
    data = ca_pem.encode() if isinstance(ca_pem, str) else ca_pem
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError as err:
        raise EnrolmentCodeError(f"not a PEM certificate: {err}") from err
    digest = hashes.Hash(hashes.SHA256())
    digest.update(cert.public_bytes(serialization.Encoding.DER))
    return _b64(digest.finalize()[:PIN_BYTES])


def seal(token: str, node_id: str, bundle: bytes, *, nonce: bytes | None = None) -> bytes:
    """``bundle`` encrypted for ``node_id`` under ``token``'s key (``nonce``: for vectors)."""
    nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
    if len(nonce) != NONCE_BYTES:
        raise EnrolmentCodeError(f"the nonce must be {NONCE_BYTES} bytes")
    key = _derive(token, _INFO_KEY, 32)
    sealed = nonce + ChaCha20Poly1305(key).encrypt(nonce, bundle, _AAD + node_id.encode())
    if len(sealed) > MAX_SEALED_BYTES:
        raise EnrolmentCodeError(
            f"the sealed bundle is {len(sealed)} bytes; at most {MAX_SEALED_BYTES} fit"
        )
    return sealed


def open_sealed(token: str, node_id: str, sealed: bytes) -> bytes:
    """The bundle inside ``sealed``; :class:`EnrolmentCodeError` if it is not for this token
    and node, or was changed on the way."""
    if len(sealed) <= NONCE_BYTES + 16:
        raise EnrolmentCodeError("the sealed bundle is too short")
    key = _derive(token, _INFO_KEY, 32)
    nonce, body = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, body, _AAD + node_id.encode())
    except InvalidTag as err:
        raise EnrolmentCodeError(
            "the sealed bundle does not open with this QR's token (wrong node, or changed)"
        ) from err


@dataclass(frozen=True)
class ProvisioningCode:
    """What a provisioning QR carries."""

    node_id: str
    token: str
    hub_url: str
    pin: str | None = None  # the facility CA's pin (``facility_pin``), where it has one

    def __post_init__(self) -> None:
        if not is_id(self.node_id):
            raise EnrolmentCodeError(f"not a node id: {self.node_id!r}")
        _token_bytes(self.token)
        if self.pin is not None and not _PIN.match(self.pin):
            raise EnrolmentCodeError("the facility pin is not 22 base64url characters")
        if not _HUB_URL.match(self.hub_url):
            raise EnrolmentCodeError(
                f"not a hub URL (http[s]://host[:port][/path], no '|', '?' or '#'): "
                f"{self.hub_url!r}"
            )
        length = len(self.text())
        if length > MAX_TEXT_LENGTH:
            raise EnrolmentCodeError(
                f"the provisioning QR text would be {length} characters; at most "
                f"{MAX_TEXT_LENGTH} fit a version 10 QR code at level M (shorten the hub URL "
                "or the node id)"
            )

    def text(self) -> str:
        pin = "" if self.pin is None else f"|{self.pin}"
        return f"{HEADER}{self.node_id}|{self.token}|{self.hub_url}{pin}"

    @property
    def lookup_id(self) -> str:
        return lookup_id(self.token)

    @classmethod
    def parse(cls, text: str) -> ProvisioningCode:
        if not is_provisioning_text(text):
            raise EnrolmentCodeError("not a provisioning QR (no PINTU-PROV1: prefix)")
        if len(text) > MAX_TEXT_LENGTH:
            raise EnrolmentCodeError("the provisioning QR text is too long")
        parts = text[len(HEADER) :].split("|")
        if len(parts) not in (3, 4):
            raise EnrolmentCodeError(
                "a provisioning QR holds node id, token and hub URL, and a facility pin"
            )
        pin = parts[3] if len(parts) == 4 else None
        return cls(node_id=parts[0], token=parts[1], hub_url=parts[2], pin=pin)


# -- the bundle inside: JSON, so that a node needs no archive reader ----------------------


@dataclass(frozen=True)
class SealedBundle:
    """The files a node receives: its node.toml, MQTT password, key, a trust list, the
    facility CA it verifies the broker with, and the registry's list keys it pins.

    The list keys ride here because the bundle is sealed by the technician's tool with the
    QR's token, which the hub never sees: the hub files the bundle but cannot read or
    change it, so it cannot slip a door a list key of its own."""

    node_toml: str
    mqtt_password: str
    node_key_pem: str
    trust_json: str | None = None
    broker_ca_pem: str | None = None
    list_keys_json: str | None = None

    def dumps(self) -> bytes:
        doc: dict[str, Any] = {
            "v": 1,
            "node_toml": self.node_toml,
            "mqtt_password": self.mqtt_password,
            "node_key_pem": self.node_key_pem,
        }
        if self.trust_json is not None:
            doc["trust_json"] = self.trust_json
        if self.broker_ca_pem is not None:
            doc["broker_ca_pem"] = self.broker_ca_pem
        if self.list_keys_json is not None:
            doc["list_keys_json"] = self.list_keys_json
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def loads(cls, data: bytes) -> SealedBundle:
        try:
            doc = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise EnrolmentCodeError(f"the bundle is not JSON: {err}") from err
        if not isinstance(doc, dict) or doc.get("v") != 1:
            raise EnrolmentCodeError("the bundle is not a version 1 bundle")
        fields = ("node_toml", "mqtt_password", "node_key_pem")
        if not all(isinstance(doc.get(name), str) and doc[name] for name in fields):
            raise EnrolmentCodeError("the bundle lacks node_toml, mqtt_password or node_key_pem")
        trust = doc.get("trust_json")
        if trust is not None and not isinstance(trust, str):
            raise EnrolmentCodeError("the bundle's trust_json is not text")
        ca = doc.get("broker_ca_pem")
        if ca is not None and not (isinstance(ca, str) and "BEGIN CERTIFICATE" in ca):
            raise EnrolmentCodeError("the bundle's broker_ca_pem is not a PEM certificate")
        list_keys = doc.get("list_keys_json")
        if list_keys is not None and not isinstance(list_keys, str):
            raise EnrolmentCodeError("the bundle's list_keys_json is not text")
        return cls(
            doc["node_toml"], doc["mqtt_password"], doc["node_key_pem"], trust, ca, list_keys
        )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def encode_sealed(sealed: bytes) -> str:
    """The sealed bundle as it travels in JSON (standard base64)."""
    return base64.b64encode(sealed).decode("ascii")


def decode_sealed(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise EnrolmentCodeError(f"the sealed bundle is not base64: {err}") from err
