"""Enrolling, revoking and replacing door nodes.

Enrolling a node gives it an id, its own Ed25519 key pair and MQTT credentials, lets it onto
the facility's broker (password file and ACL regenerated, broker reloaded) and writes its
bundle (:mod:`provisioning.bundle`). The bundle is staged first and moved into place only
after the inventory took the node, so a failure leaves either nothing or a complete bundle.

Revoking removes a node's broker access at once; replacing moves a door to new hardware: a
new node for the same door, the old one revoked. The door id stays, so the hub's history
of the door goes on.
"""

from __future__ import annotations

import base64
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.errors import ProtocolError
from protocol.signedlist import ListKeys
from provisioning import bundle, hubdoors, passwd, tlsca
from provisioning.broker import reload_broker
from provisioning.errors import BundleError, InventoryError
from provisioning.inventory import Direction, Fleet, NodeRecord, open_fleet, utcnow

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]
DEFAULT_MQTT_PORT = 1883
DEFAULT_MQTTS_PORT = 8883


def _quiet(_: str) -> None:
    """No progress reports."""


@dataclass(frozen=True)
class Reload:
    """How to make the running broker re-read its files: a pid to SIGHUP, or a unit."""

    pid: int | None = None
    unit: str | None = None

    def __call__(self) -> str | None:
        return reload_broker(pid=self.pid, unit=self.unit)


@dataclass(frozen=True)
class EnrolRequest:
    facility_id: str
    door_id: str
    direction: Direction
    broker: str  # HOST[:PORT] as the node reaches it
    hub_url: str | None = None
    door_name: str | None = None
    node_id: str | None = None
    trust: Path | None = None
    list_keys: Path | None = None
    wheel: Path | None = None
    pintu_source: str = ""
    tls_ca_file: str | None = None
    unit: Path | None = None


@dataclass(frozen=True)
class FleetChange:
    """What a change did beyond the inventory: hub.toml edits and the broker reload."""

    door_changes: list[str] = field(default_factory=list)
    snippet: Path | None = None
    reloaded: str | None = None


@dataclass(frozen=True)
class Enrolment:
    record: NodeRecord
    bundle_dir: Path
    archive: Path
    change: FleetChange


@dataclass(frozen=True)
class Revocation:
    record: NodeRecord
    change: FleetChange


@dataclass(frozen=True)
class Replacement:
    old: NodeRecord
    new: Enrolment


def parse_broker(text: str, default_port: int = DEFAULT_MQTT_PORT) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port`` as (host, port)."""
    text = text.strip()
    host, port = text, default_port
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise InventoryError(f"not HOST:PORT: {text!r}")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise InventoryError(f"not HOST:PORT: {text!r}")
            port = _port(rest[1:], text)
    elif text.count(":") == 1:
        host, _, number = text.partition(":")
        port = _port(number, text)
    if not host or any(c.isspace() for c in host):
        raise InventoryError(f"not HOST:PORT: {text!r}")
    return host, port


def _port(number: str, text: str) -> int:
    if not number.isdigit() or not 1 <= int(number) <= 65535:
        raise InventoryError(f"bad port in {text!r}")
    return int(number)


def new_key() -> tuple[bytes, bytes, str]:
    """A fresh Ed25519 key: (private PEM, public PEM, base64 of the raw public key)."""
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key()
    public_pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return private_pem, public_pem, base64.b64encode(raw).decode("ascii")


def enroll(
    broker_dir: Path,
    request: EnrolRequest,
    out: Path,
    *,
    reload: Reload | None = None,
    progress: Progress = _quiet,
    before_commit: Callable[[NodeRecord, Path], None] | None = None,
) -> Enrolment:
    """Enrol a node for ``request``'s door; its bundle goes to ``out/<node id>``.

    ``before_commit(record, staging)`` runs once the bundle is staged and before the fleet
    takes the node (the provisioning QR files the sealed bundle at the hub there); if it
    raises, nothing is enrolled.
    """
    with open_fleet(broker_dir) as fleet:
        before = fleet.doors(request.facility_id)
        pending = _stage(fleet, request, out, progress=progress, replaces=None)
        if before_commit is not None:
            try:
                before_commit(pending.record, pending.staging)
            except BaseException:
                shutil.rmtree(pending.staging, ignore_errors=True)
                raise
        _commit(fleet, pending)
        after = fleet.doors(request.facility_id)
    bundle_dir, archive_path = _place(pending, progress)
    change = FleetChange(door_changes=hubdoors.changes(request.facility_id, before, after))
    change = _finish(fleet, request.facility_id, change, reload, progress)
    return Enrolment(pending.record, bundle_dir, archive_path, change)


@dataclass(frozen=True)
class _Pending:
    """A node added to the fleet in memory, its bundle staged beside its final place."""

    record: NodeRecord
    staging: Path
    final: Path
    archive: Path


def _stage(
    fleet: Fleet,
    request: EnrolRequest,
    out: Path,
    *,
    progress: Progress,
    replaces: str | None,
) -> _Pending:
    facility = fleet.facility(request.facility_id)
    broker = fleet.inventory.broker
    facility_ca = broker.tls and broker.certfile is None and request.tls_ca_file is None
    host, port = parse_broker(
        request.broker, DEFAULT_MQTTS_PORT if broker.tls or broker.certfile else DEFAULT_MQTT_PORT
    )
    ca_cert: Path | None = None
    if facility_ca:
        tls = tlsca.BrokerTls(fleet.directory)
        if not tls.ca_cert.is_file() or not tls.server_cert.is_file():
            raise BundleError(
                f"{fleet.directory} has no facility CA: run `pintu provision broker init` again"
            )
        names = tlsca.names_in(tls.server_cert)
        if host not in names:
            # The node would refuse the broker's certificate and never connect.
            raise BundleError(
                f"the broker's certificate names {', '.join(sorted(names))}, not {host!r}: "
                f"add it with `pintu provision broker init --tls-name {host}` (and restart "
                "the broker), or give the broker address it names"
            )
        ca_cert = tls.ca_cert
    node_id = request.node_id or fleet.next_node_id(request.door_id)
    fleet.check_new_id(node_id)
    for extra in (request.trust, request.list_keys, request.wheel, request.unit):
        if extra is not None and not extra.is_file():
            raise BundleError(f"no such file: {extra}")
    if request.list_keys is not None:
        try:
            ListKeys.load(request.list_keys)
        except ProtocolError as err:
            raise BundleError(f"not the registry's list keys: {err}") from err
    if request.unit is None and not bundle.SOURCE_UNIT.is_file():
        raise BundleError(
            f"the unit file {bundle.SOURCE_UNIT} is missing: run from a Pintu source tree "
            "or give the unit file"
        )
    final = out / node_id
    archive_path = out / f"{node_id}.tar.gz"
    if final.exists() or archive_path.exists():
        raise BundleError(f"{final} or {archive_path} already exists; choose another --out")
    progress(f"creating node {node_id}: key pair and MQTT credentials")
    private_pem, public_pem, public_raw = new_key()
    password = passwd.new_password()
    record = NodeRecord(
        node_id=node_id,
        facility_id=facility.id,
        door_id=request.door_id,
        door_name=request.door_name or _door_name(fleet, facility.id, request.door_id),
        direction=request.direction,
        password_hash=passwd.hash_password(password),
        public_key=public_raw,
        broker=f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        hub_url=request.hub_url,
        enrolled_at=utcnow(),
        replaces=replaces,
    )
    settings = bundle.NodeSettings(
        node_id=node_id,
        facility_id=facility.id,
        door_id=request.door_id,
        direction=request.direction,
        broker_host=host,
        broker_port=port,
        hub_url=request.hub_url,
        tls_ca_file=bundle.INSTALLED_CA if ca_cert is not None else request.tls_ca_file,
    )
    staging = out / f".{node_id}.staging"
    try:
        out.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
    except OSError as err:
        raise BundleError(f"cannot create {out}: {err}") from err
    progress(f"writing the bundle for {node_id}")
    try:
        bundle.write_bundle(
            staging,
            settings,
            bundle.BundleFiles(
                node_toml=bundle.render_node_toml(settings),
                mqtt_password=password,
                private_key_pem=private_pem,
                public_key_pem=public_pem,
                trust=request.trust,
                list_keys=request.list_keys,
                broker_ca=ca_cert,
                wheel=request.wheel,
                pintu_source=request.pintu_source,
                unit=request.unit,
            ),
        )
        fleet.add(record)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return _Pending(record, staging, final, archive_path)


def _commit(fleet: Fleet, pending: _Pending) -> None:
    try:
        fleet.commit()
    except BaseException:
        shutil.rmtree(pending.staging, ignore_errors=True)
        raise


def _place(pending: _Pending, progress: Progress) -> tuple[Path, Path]:
    """Move the staged bundle into place and pack it."""
    try:
        pending.staging.rename(pending.final)
    except OSError as err:
        raise BundleError(
            f"node {pending.record.node_id} is enrolled but its bundle could not be moved "
            f"from {pending.staging} to {pending.final}: {err}"
        ) from err
    progress(f"packing {pending.archive}")
    bundle.archive(pending.final, pending.archive)
    return pending.final, pending.archive


def _door_name(fleet: Fleet, facility_id: str, door_id: str) -> str:
    known = fleet.nodes(facility_id=facility_id, door_id=door_id)
    return known[-1].door_name if known else door_id


def _finish(
    fleet: Fleet,
    facility_id: str,
    change: FleetChange,
    reload: Reload | None,
    progress: Progress,
) -> FleetChange:
    reloaded = None
    if reload is not None:
        progress("reloading the broker")
        reloaded = reload()
    return FleetChange(
        door_changes=change.door_changes,
        snippet=hubdoors.snippet_path(fleet.directory, facility_id),
        reloaded=reloaded,
    )


def revoke(
    broker_dir: Path,
    node_id: str,
    reason: str,
    *,
    reload: Reload | None = None,
    progress: Progress = _quiet,
) -> Revocation:
    """Take a node's broker access away now and record it revoked."""
    with open_fleet(broker_dir) as fleet:
        record = fleet.node(node_id)
        before = fleet.doors(record.facility_id)
        progress(f"revoking {node_id}")
        revoked = fleet.revoke(node_id, reason)
        fleet.commit()
        after = fleet.doors(record.facility_id)
    change = FleetChange(door_changes=hubdoors.changes(record.facility_id, before, after))
    return Revocation(revoked, _finish(fleet, record.facility_id, change, reload, progress))


def replace(
    broker_dir: Path,
    node_id: str,
    out: Path,
    *,
    reason: str = "replaced",
    new_node_id: str | None = None,
    trust: Path | None = None,
    list_keys: Path | None = None,
    wheel: Path | None = None,
    pintu_source: str = "",
    reload: Reload | None = None,
    progress: Progress = _quiet,
) -> Replacement:
    """New hardware for ``node_id``'s door: a new node enrolled, the old one revoked.

    Both happen in one change of the inventory, so the door is never without a node in the
    broker's files and never has both.
    """
    with open_fleet(broker_dir) as fleet:
        old = fleet.node(node_id)
        if not old.active:
            raise InventoryError(f"node {node_id!r} is revoked; enrol a new node for its door")
        before = fleet.doors(old.facility_id)
        request = EnrolRequest(
            facility_id=old.facility_id,
            door_id=old.door_id,
            direction=old.direction,
            broker=old.broker,
            hub_url=old.hub_url,
            door_name=old.door_name,
            node_id=new_node_id,
            trust=trust,
            list_keys=list_keys,
            wheel=wheel,
            pintu_source=pintu_source,
        )
        pending = _stage(fleet, request, out, progress=progress, replaces=node_id)
        progress(f"revoking {node_id}")
        revoked = fleet.revoke(node_id, reason, replaced_by=pending.record.node_id)
        _commit(fleet, pending)
        after = fleet.doors(old.facility_id)
    bundle_dir, archive_path = _place(pending, progress)
    change = FleetChange(door_changes=hubdoors.changes(old.facility_id, before, after))
    change = _finish(fleet, old.facility_id, change, reload, progress)
    return Replacement(revoked, Enrolment(pending.record, bundle_dir, archive_path, change))
