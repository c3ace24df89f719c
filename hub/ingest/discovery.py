"""Home Assistant MQTT discovery: an occupancy sensor per facility, a connectivity sensor
per door node. The configs are retained, so Home Assistant finds them whenever it starts.

See https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from hub.config import FacilityConfig, HubConfig
from protocol import topics

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def object_id(*parts: str) -> str:
    """A discovery object id: Home Assistant takes only ``[A-Za-z0-9_-]`` there."""
    return _UNSAFE.sub("_", "_".join(("pintu", *parts)))


def _device(facility: FacilityConfig) -> dict[str, Any]:
    return {
        "identifiers": [object_id(facility.id)],
        "name": f"Pintu {facility.name}",
        "manufacturer": "Pintu",
        "model": "Facility hub",
    }


def _hub_availability(facility_id: str) -> list[dict[str, str]]:
    return [
        {
            "topic": topics.hub_status(facility_id),
            "value_template": "{{ value_json.state }}",
            "payload_available": "online",
            "payload_not_available": "offline",
        }
    ]


def occupancy_sensor(prefix: str, facility: FacilityConfig) -> tuple[str, dict[str, Any]]:
    oid = object_id(facility.id, "occupancy")
    config: dict[str, Any] = {
        "name": "Occupancy",
        "unique_id": oid,
        "object_id": oid,
        "state_topic": topics.facility_state(facility.id),
        "value_template": "{{ value_json.occupancy }}",
        "unit_of_measurement": "people",
        "state_class": "measurement",
        "icon": "mdi:account-group",
        "json_attributes_topic": topics.facility_state(facility.id),
        "availability": _hub_availability(facility.id),
        "device": _device(facility),
    }
    return f"{prefix}/sensor/{oid}/config", config


def node_sensor(
    prefix: str, facility: FacilityConfig, node_id: str, door_id: str | None
) -> tuple[str, dict[str, Any]]:
    oid = object_id(facility.id, node_id)
    where = f"door {door_id}" if door_id else "door"
    config: dict[str, Any] = {
        "name": f"Node {node_id} ({where})",
        "unique_id": oid,
        "object_id": oid,
        "device_class": "connectivity",
        "state_topic": topics.node_status(facility.id, node_id),
        # A degraded node is still connected: it shows as on, its problems as attributes.
        "value_template": "{{ 'offline' if value_json.state == 'offline' else 'online' }}",
        "payload_on": "online",
        "payload_off": "offline",
        "json_attributes_topic": topics.node_status(facility.id, node_id),
        "device": _device(facility),
    }
    return f"{prefix}/binary_sensor/{oid}/config", config


def configured_nodes(facility: FacilityConfig) -> list[tuple[str, str]]:
    """(node id, door id) of every node the facility's doors list."""
    return [(node, door.id) for door in facility.doors for node in door.nodes]


def discovery_messages(
    config: HubConfig, extra_nodes: Iterable[tuple[str, str, str | None]] = ()
) -> list[tuple[str, bytes]]:
    """(topic, payload) of every discovery config: each facility and its configured nodes,
    plus ``extra_nodes`` given as (facility id, node id, door id)."""
    prefix = config.homeassistant.discovery_prefix
    messages: list[tuple[str, dict[str, Any]]] = []
    for facility in config.facilities:
        messages.append(occupancy_sensor(prefix, facility))
        for node_id, door_id in configured_nodes(facility):
            messages.append(node_sensor(prefix, facility, node_id, door_id))
    for facility_id, node_id, node_door in extra_nodes:
        known = config.facility(facility_id)
        if known is not None:
            messages.append(node_sensor(prefix, known, node_id, node_door))
    return [(topic, json.dumps(payload).encode("utf-8")) for topic, payload in messages]
