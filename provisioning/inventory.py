"""The fleet inventory: every node a broker has ever let in, active or revoked.

One JSON file, ``fleet.json``, in the broker directory. It keeps what the broker's files are
generated from (user names and password *hashes*, never passwords), the nodes' public keys,
and each node's story: enrolled when, for which door, revoked when and why, replaced by
which node. Node ids are never reused, so a door's history in the hub stays unambiguous.

Changes happen under a lock (:func:`open_fleet`) and are written through a rename, and the
password file, the ACL and the hub's door snippets are regenerated in the same step, so the
inventory and what the broker enforces never drift apart.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from protocol.ids import Ident
from protocol.model import StrictModel
from provisioning import acl, hubdoors, passwd, tlsca
from provisioning.broker import (
    ACL,
    ACL_LOCAL,
    CONF,
    HUB_PASSWORD,
    PASSWD,
    PASSWD_LOCAL,
    BrokerSettings,
    render_conf,
)
from provisioning.errors import InventoryError, NodeNotFoundError
from provisioning.files import locked, write_atomic, write_broker_secret

logger = logging.getLogger(__name__)

INVENTORY = "fleet.json"
LOCK = ".fleet.lock"
FORMAT: Literal["pintu-fleet"] = "pintu-fleet"
# User names the tools keep for themselves: a node called "hub" would share the hub's rules.
RESERVED_IDS = frozenset({"hub", "admin", "root", "pintu"})

Direction = Literal["entry", "exit", "both"]


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class Model(StrictModel):
    """A section of the inventory: unknown keys are rejected."""


class Facility(Model):
    id: Ident = Field(description="Facility id, as in the MQTT topics.")
    name: str = Field(min_length=1, max_length=200, description="Name shown to people.")


class HubAccount(Model):
    username: str = Field(min_length=1, description="The hub's MQTT user name.")
    password_hash: str = Field(description="Its $7$ password hash.")


class NodeRecord(Model):
    node_id: Ident = Field(description="The node's id; also its MQTT user name.")
    facility_id: Ident = Field(description="The facility it serves.")
    door_id: Ident = Field(description="The door it guards.")
    door_name: str = Field(min_length=1, max_length=200, description="The door's name.")
    direction: Direction = Field(description="What a passage through the door means.")
    password_hash: str = Field(description="$7$ hash of its MQTT password.")
    public_key: str = Field(description="Base64 of its raw 32-byte Ed25519 public key.")
    broker: str = Field(description="HOST:PORT the node connects to.")
    hub_url: str | None = Field(None, description="The facility hub's URL, if given.")
    state: Literal["active", "revoked"] = Field("active", description="Whether it may connect.")
    enrolled_at: datetime = Field(description="When it was enrolled (UTC).")
    revoked_at: datetime | None = Field(None, description="When it was revoked (UTC).")
    revoke_reason: str | None = Field(None, description="Why it was revoked.")
    replaces: Ident | None = Field(None, description="The node it took over from.")
    replaced_by: Ident | None = Field(None, description="The node that took over from it.")

    @property
    def username(self) -> str:
        return self.node_id

    @property
    def active(self) -> bool:
        return self.state == "active"


class Inventory(Model):
    format: Literal["pintu-fleet"] = FORMAT
    v: Literal[1] = 1
    facilities: list[Facility] = Field(default_factory=list)
    hub: HubAccount
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    discovery_prefix: str = Field("homeassistant", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
    nodes: list[NodeRecord] = Field(default_factory=list)


class Fleet:
    """An inventory loaded from a broker directory; change it, then :meth:`commit`."""

    def __init__(self, directory: Path, inventory: Inventory) -> None:
        self.directory = directory
        self.inventory = inventory

    # -- reading -----------------------------------------------------------------

    @classmethod
    def load(cls, directory: Path) -> Fleet:
        path = directory / INVENTORY
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as err:
            raise InventoryError(
                f"{directory} holds no fleet inventory: create it with "
                f"`pintu provision broker init --dir {directory} --facility ID`"
            ) from err
        except (OSError, UnicodeDecodeError) as err:
            raise InventoryError(f"cannot read {path}: {err}") from err
        try:
            return cls(directory, Inventory.model_validate_json(text))
        except ValidationError as err:
            raise InventoryError(f"{path} is not a valid fleet inventory: {err}") from err

    def facility(self, facility_id: str) -> Facility:
        for facility in self.inventory.facilities:
            if facility.id == facility_id:
                return facility
        known = ", ".join(f.id for f in self.inventory.facilities) or "none"
        raise InventoryError(
            f"facility {facility_id!r} is not served by this broker (known: {known}); add it "
            f"with `pintu provision broker init --dir {self.directory} --facility {facility_id}`"
        )

    def node(self, node_id: str) -> NodeRecord:
        for record in self.inventory.nodes:
            if record.node_id == node_id:
                return record
        raise NodeNotFoundError(f"no node {node_id!r} in the fleet inventory")

    def nodes(
        self,
        *,
        facility_id: str | None = None,
        door_id: str | None = None,
        active_only: bool = False,
    ) -> list[NodeRecord]:
        return [
            r
            for r in self.inventory.nodes
            if (facility_id is None or r.facility_id == facility_id)
            and (door_id is None or r.door_id == door_id)
            and (not active_only or r.active)
        ]

    def next_node_id(self, door_id: str) -> str:
        """``<door>-<n>`` with the lowest n never used in this fleet."""
        used = {r.node_id for r in self.inventory.nodes}
        stem = door_id[:58]  # leaves room for "-" and a number within 64 characters
        number = 1
        while f"{stem}-{number}" in used:
            number += 1
        return f"{stem}-{number}"

    # -- changing ----------------------------------------------------------------

    def check_new_id(self, node_id: str) -> None:
        hub = self.inventory.hub.username
        if node_id.lower() in RESERVED_IDS or node_id == hub or node_id.startswith(hub + "."):
            raise InventoryError(f"{node_id!r} is reserved; choose another node id")
        if any(r.node_id == node_id for r in self.inventory.nodes):
            raise InventoryError(
                f"node id {node_id!r} is already in the inventory; ids are never reused"
            )

    def add(self, record: NodeRecord) -> None:
        self.facility(record.facility_id)
        self.check_new_id(record.node_id)
        self._replace_nodes([*self.inventory.nodes, record])

    def update(self, record: NodeRecord) -> None:
        self.node(record.node_id)
        self._replace_nodes(
            [record if r.node_id == record.node_id else r for r in self.inventory.nodes]
        )

    def revoke(self, node_id: str, reason: str, *, replaced_by: str | None = None) -> NodeRecord:
        record = self.node(node_id)
        if not record.active:
            raise InventoryError(f"node {node_id!r} was already revoked at {record.revoked_at}")
        revoked = record.model_copy(
            update={
                "state": "revoked",
                "revoked_at": utcnow(),
                "revoke_reason": reason,
                "replaced_by": replaced_by,
            }
        )
        self.update(revoked)
        return revoked

    def _replace_nodes(self, nodes: list[NodeRecord]) -> None:
        self.inventory = self.inventory.model_copy(update={"nodes": nodes})

    # -- writing -----------------------------------------------------------------

    def commit(self) -> None:
        """Write the inventory, then the password file and the ACL generated from it."""
        # Generated first: a bad entry fails before anything on disk has changed.
        password_file = self.render_passwd()
        acl_file = self.render_acl()
        doc = json.loads(self.inventory.model_dump_json())
        write_atomic(
            self.directory / INVENTORY, json.dumps(doc, indent=2, sort_keys=False) + "\n", 0o600
        )
        write_broker_secret(self.directory / PASSWD, password_file)
        write_broker_secret(self.directory / ACL, acl_file)
        for facility in self.inventory.facilities:
            hubdoors.write_snippet(self.directory, facility, self.nodes(facility_id=facility.id))

    def doors(self, facility_id: str) -> list[hubdoors.DoorNodes]:
        """The facility's doors and the nodes the hub should accept as each."""
        return hubdoors.doors_of(self.nodes(facility_id=facility_id))

    def render_passwd(self) -> str:
        hub = self.inventory.hub
        entries = [(hub.username, hub.password_hash)]
        entries += [
            (acl.presence_username(hub.username, f.id), hub.password_hash)
            for f in self.inventory.facilities
        ]
        entries += [(r.username, r.password_hash) for r in self.inventory.nodes if r.active]
        generated = passwd.render(entries)
        local = _read_optional(self.directory / PASSWD_LOCAL)
        if local.strip():
            clash = set(passwd.parse(local)) & {user for user, _ in entries}
            if clash:
                raise InventoryError(
                    f"{PASSWD_LOCAL} names users the fleet owns: {', '.join(sorted(clash))}"
                )
            generated += local if local.endswith("\n") else local + "\n"
        return generated

    def render_acl(self) -> str:
        grants = [
            acl.NodeGrant(r.username, r.facility_id, r.node_id)
            for r in self.inventory.nodes
            if r.active
        ]
        return acl.render(
            self.inventory.hub.username,
            grants,
            discovery_prefix=self.inventory.discovery_prefix,
            local=_read_optional(self.directory / ACL_LOCAL),
            facilities=[f.id for f in self.inventory.facilities],
        )


def _read_optional(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as err:
        raise InventoryError(f"cannot read {path}: {err}") from err


@contextlib.contextmanager
def open_fleet(directory: Path) -> Iterator[Fleet]:
    """The fleet of ``directory``, locked against other changes for the block.

    Nothing is written unless the block calls :meth:`Fleet.commit`.
    """
    with locked(directory / LOCK):
        yield Fleet.load(directory)


def init_fleet(
    directory: Path,
    facilities: Sequence[Facility],
    *,
    settings: dict[str, object] | None = None,
    hub_username: str = "hub",
    discovery_prefix: str | None = None,
) -> tuple[Fleet, str | None]:
    """Create a broker directory, or add facilities and settings to an existing one.

    Returns the fleet and, when the directory is new, the hub's new MQTT password (also
    written to ``hub-mqtt-password``, mode 0600). ``settings`` overrides fields of
    :class:`BrokerSettings`; the ones not named keep their values.
    """
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    hub_password: str | None = None
    with locked(directory / LOCK):
        if (directory / INVENTORY).exists():
            fleet = Fleet.load(directory)
            if hub_username != fleet.inventory.hub.username:
                raise InventoryError(
                    f"the hub's user is {fleet.inventory.hub.username!r} and stays so"
                )
        else:
            hub_password = passwd.new_password()
            passwd.check_username(hub_username)
            fleet = Fleet(
                directory,
                Inventory(
                    hub=HubAccount(
                        username=hub_username, password_hash=passwd.hash_password(hub_password)
                    )
                ),
            )
        merged = {f.id: f for f in fleet.inventory.facilities}
        merged.update({f.id: f for f in facilities})
        update: dict[str, object] = {"facilities": list(merged.values())}
        if settings:
            try:
                update["broker"] = BrokerSettings.model_validate(
                    {**fleet.inventory.broker.model_dump(), **settings}
                )
            except ValidationError as err:
                raise InventoryError(f"bad broker settings: {err}") from err
        if discovery_prefix is not None:
            update["discovery_prefix"] = discovery_prefix
        try:
            inventory = Inventory.model_validate({**fleet.inventory.model_dump(), **update})
        except ValidationError as err:
            raise InventoryError(f"bad inventory: {err}") from err
        fleet.inventory = inventory
        if not fleet.inventory.facilities:
            raise InventoryError("name at least one facility the broker serves")
        broker = fleet.inventory.broker
        if broker.tls and broker.certfile is None:
            first = fleet.inventory.facilities[0].id
            tlsca.ensure(directory, broker.names(), first)
        write_atomic(directory / CONF, render_conf(directory, broker), 0o644)
        if hub_password is not None:
            write_atomic(directory / HUB_PASSWORD, hub_password + "\n", 0o600)
        fleet.commit()
    return fleet, hub_password
