"""The provisioning QR: a node's bundle left sealed at the hub, its key only in a QR code.

``pintu provision node enroll --qr FILE.png`` stages the node's bundle as usual, then
seals it (``protocol.enrolment``) with a key derived from a fresh one-time token, files the
ciphertext at the hub (an admin's ``POST /api/v1/enrolments``) and draws the QR code that
carries the hub's URL, the node's id and the token. Only then is the node committed to the
fleet: a hub that refuses or cannot be reached leaves nothing enrolled.

The PNG holds the token: whoever shows it to a blank node first gets the node's
credentials, until it expires. It is written 0600; print it or show it on a phone, then
delete it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import segno

from protocol.enrolment import (
    EnrolmentCodeError,
    ProvisioningCode,
    SealedBundle,
    encode_sealed,
    facility_pin,
    new_token,
    seal,
)
from provisioning.bundle import LIST_KEYS
from provisioning.errors import BundleError, ProvisioningError
from provisioning.inventory import NodeRecord
from provisioning.remote import HubAdmin

logger = logging.getLogger(__name__)

MAX_QR_VERSION = 10
DEFAULT_TTL_S = 30 * 60
MAX_TTL_S = 7 * 86_400


@dataclass(frozen=True)
class QrRequest:
    """Where the sealed bundle goes and who files it."""

    out: Path  # the PNG
    hub_url: str  # as the node reaches the hub
    hub_user: str
    hub_password: str
    ttl_s: int = DEFAULT_TTL_S
    api_url: str | None = None  # as this machine reaches the hub, when it differs


@dataclass(frozen=True)
class ProvisioningQr:
    path: Path
    lookup_id: str
    expires_at: str
    version: int
    pin: str | None = None  # the facility pin the code carries


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as err:
        raise BundleError(f"cannot read {path}: {err}") from err


def sealed_bundle(staging: Path) -> SealedBundle:
    """The staged bundle's node.toml, password, key, trust list and list keys, as the node
    gets them."""
    trust = staging / "trust.json"
    ca = staging / "broker-ca.pem"
    list_keys = staging / LIST_KEYS
    return SealedBundle(
        node_toml=_read(staging / "node.toml"),
        mqtt_password=_read(staging / "mqtt-password").strip(),
        node_key_pem=_read(staging / "node-key.pem"),
        trust_json=_read(trust) if trust.is_file() else None,
        broker_ca_pem=_read(ca) if ca.is_file() else None,
        list_keys_json=_read(list_keys) if list_keys.is_file() else None,
    )


def make_code(
    node_id: str, hub_url: str, pin: str | None = None
) -> tuple[ProvisioningCode, segno.QRCode]:
    """A fresh code and its QR symbol, checked to fit version 10 at level M."""
    try:
        code = ProvisioningCode(
            node_id=node_id, token=new_token(), hub_url=hub_url.rstrip("/"), pin=pin
        )
    except EnrolmentCodeError as err:
        raise ProvisioningError(str(err)) from err
    symbol = segno.make_qr(code.text(), error="m", boost_error=False)
    if int(symbol.version) > MAX_QR_VERSION:  # pragma: no cover - the text length rules it out
        raise ProvisioningError(f"the provisioning QR needs version {symbol.version}")
    return code, symbol


def publish(record: NodeRecord, staging: Path, request: QrRequest) -> ProvisioningQr:
    """Seal the staged bundle, file it at the hub and write the QR code's PNG."""
    contents = sealed_bundle(staging)
    # The facility CA's pin binds the code to this facility (protocol.enrolment).
    pin = facility_pin(contents.broker_ca_pem) if contents.broker_ca_pem is not None else None
    code, symbol = make_code(record.node_id, request.hub_url, pin)
    sealed = seal(code.token, record.node_id, contents.dumps())
    partial = request.out.with_name(f".{request.out.name}.partial")
    try:
        request.out.parent.mkdir(parents=True, exist_ok=True)
        if request.out.exists():
            raise BundleError(f"{request.out} already exists; choose another --qr file")
        # Created 0600 before anything is written: the picture is the node's credentials.
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            symbol.save(out, kind="png", scale=8, border=4)
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise BundleError(f"cannot write {request.out}: {err}") from err
    try:
        with HubAdmin(request.api_url or request.hub_url) as hub:
            hub.login(request.hub_user, request.hub_password)
            expires_at = hub.add_enrolment(
                code.lookup_id, encode_sealed(sealed), request.ttl_s, record.node_id
            )
        partial.rename(request.out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    logger.info("sealed bundle of %s filed at %s", record.node_id, request.hub_url)
    return ProvisioningQr(request.out, code.lookup_id, expires_at, int(symbol.version), pin)
