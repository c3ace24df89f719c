"""Which nodes the hub accepts as each door: the ``[[facilities.doors]]`` tables of hub.toml.

The broker keeps a revoked node off MQTT; the hub refuses, by its config, events that a node
sends as a door whose ``nodes`` list does not name it. Every change to the fleet rewrites
``hub-doors-<facility>.toml`` in the broker directory with the doors as they should be, and
the tools print the exact change to make in hub.toml; :func:`check_hub_config` compares a
hub.toml with the inventory.

A door whose every node is revoked keeps its revoked nodes listed. An empty ``nodes`` list
would let *any* node report as the door, and a revoked node can no longer reach the broker.
"""

from __future__ import annotations

import json
import logging
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provisioning.errors import InventoryError
from provisioning.files import write_atomic

if TYPE_CHECKING:
    from provisioning.inventory import Facility, NodeRecord

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DoorNodes:
    door_id: str
    name: str
    direction: str
    nodes: tuple[str, ...]  # what hub.toml should list
    active: bool  # whether any of them is active


def doors_of(records: Sequence[NodeRecord]) -> list[DoorNodes]:
    """The doors of one facility's records, in the order they were first enrolled."""
    by_door: dict[str, list[NodeRecord]] = {}
    for record in sorted(records, key=lambda r: r.enrolled_at):
        by_door.setdefault(record.door_id, []).append(record)
    doors = []
    for door_id, door_records in by_door.items():
        active = [r for r in door_records if r.active]
        chosen = active or door_records
        directions = {r.direction for r in chosen}
        doors.append(
            DoorNodes(
                door_id=door_id,
                name=door_records[-1].door_name,
                # Nodes of one door facing different ways make a two-way door.
                direction=directions.pop() if len(directions) == 1 else "both",
                nodes=tuple(r.node_id for r in chosen),
                active=bool(active),
            )
        )
    return doors


def snippet_path(directory: Path, facility_id: str) -> Path:
    return directory / f"hub-doors-{facility_id}.toml"


def render(facility: Facility, doors: Sequence[DoorNodes]) -> str:
    lines = [
        f"# The doors of facility {facility.id} ({facility.name}) and the nodes the hub",
        "# accepts as each, from the fleet inventory (`pintu provision`). In hub.toml, under",
        f'# the [[facilities]] table with id = "{facility.id}", replace its [[facilities.doors]]',
        "# tables with these (keep any door not listed here), then restart the hub.",
    ]
    for door in doors:
        lines.append("")
        if not door.active:
            lines += [
                "# Every node of this door is revoked: they stay listed because an empty list",
                "# would let any node report as this door, and none of them can reach the",
                "# broker any more.",
            ]
        lines += [
            "[[facilities.doors]]",
            f"id = {json.dumps(door.door_id)}",
            f"name = {json.dumps(door.name)}",
            f"direction = {json.dumps(door.direction)}",
            f"nodes = {json.dumps(list(door.nodes))}",
        ]
    return "\n".join(lines) + "\n"


def write_snippet(directory: Path, facility: Facility, records: Sequence[NodeRecord]) -> Path:
    path = snippet_path(directory, facility.id)
    write_atomic(path, render(facility, doors_of(records)), 0o644)
    return path


def changes(facility_id: str, before: Sequence[DoorNodes], after: Sequence[DoorNodes]) -> list[str]:
    """What changed in hub.toml's door tables, one line a door, as a person edits it."""
    old = {d.door_id: d for d in before}
    lines = []
    for door in after:
        was = old.get(door.door_id)
        if was is None:
            lines.append(
                f"facility {facility_id}: add door {door.door_id!r} "
                f"(direction {door.direction!r}) with nodes = {json.dumps(list(door.nodes))}"
            )
        elif was.nodes != door.nodes:
            lines.append(
                f"facility {facility_id}, door {door.door_id!r}: nodes = "
                f"{json.dumps(list(door.nodes))} (was {json.dumps(list(was.nodes))})"
            )
    return lines


def check_hub_config(path: Path, facility_id: str, records: Sequence[NodeRecord]) -> list[str]:
    """Where ``path`` (a hub.toml) disagrees with the inventory; empty when it agrees."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise InventoryError(f"cannot read {path}: {err}") from err
    except tomllib.TOMLDecodeError as err:
        raise InventoryError(f"{path} is not valid TOML: {err}") from err
    facility = _table_with_id(doc.get("facilities"), facility_id)
    if facility is None:
        return [f"facility {facility_id!r} is not in {path}"]
    hub_doors = facility.get("doors") or []
    by_id = {r.node_id: r for r in records}
    problems = []
    for door in doors_of(records):
        table = _table_with_id(hub_doors, door.door_id)
        want = json.dumps(list(door.nodes))
        if table is None:
            if door.active:
                problems.append(
                    f"door {door.door_id!r} is missing: the hub refuses its events "
                    f"(add it with nodes = {want})"
                )
            continue
        listed = table.get("nodes") or []
        if not isinstance(listed, list) or not listed:
            problems.append(
                f"door {door.door_id!r} lists no nodes, so any node may report as it "
                f"(set nodes = {want})"
            )
            continue
        for node in listed:
            record = by_id.get(node)
            if record is None:
                problems.append(f"door {door.door_id!r} allows node {node!r}, unknown to the fleet")
            elif record.door_id != door.door_id:
                problems.append(
                    f"door {door.door_id!r} allows node {node!r}, which guards {record.door_id!r}"
                )
            elif not record.active and door.active:
                problems.append(f"door {door.door_id!r} still allows revoked node {node!r}")
        problems += [
            f"door {door.door_id!r} does not list node {node!r}: the hub refuses its events"
            for node in door.nodes
            if door.active and node not in listed
        ]
    return problems


def _table_with_id(tables: Any, wanted: str) -> dict[str, Any] | None:
    if not isinstance(tables, list):
        return None
    for table in tables:
        if isinstance(table, dict) and table.get("id") == wanted:
            return table
    return None
