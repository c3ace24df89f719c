"""MQTT topic names: one tree per facility.

::

    pintu/<facility>/node/<node>/events     node -> hub   QoS 1   Event
    pintu/<facility>/node/<node>/status     node -> all   retained, Last Will  NodeStatus
    pintu/<facility>/node/<node>/ack        hub -> node   QoS 1   Ack
    pintu/<facility>/node/<node>/cmd        hub -> node   QoS 1   Command
    pintu/<facility>/node/<node>/cmd_resp   node -> hub   QoS 1   CommandReply
    pintu/<facility>/state                  hub -> nodes  retained  FacilityState
    pintu/<facility>/passages               hub -> nodes  QoS 1   Passage (anti-passback)
    pintu/<facility>/hub/status             hub -> all    retained, Last Will
    pintu/<facility>/lists/keys             hub -> nodes  retained  list-key chain (signed)
    pintu/<facility>/lists/trust            hub -> nodes  retained  trust list (signed JSON)
    pintu/<facility>/lists/status           hub -> nodes  retained  status list (signed .psl)

The hub reads every node's events through the MQTT v5 shared subscription
``$share/pintu-hub/pintu/+/node/+/events``, so several hub workers split the load.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

ROOT = "pintu"
HUB_SHARE_GROUP = "pintu-hub"


def node_base(facility_id: str, node_id: str) -> str:
    return f"{ROOT}/{facility_id}/node/{node_id}"


def node_events(facility_id: str, node_id: str) -> str:
    return f"{node_base(facility_id, node_id)}/events"


def node_status(facility_id: str, node_id: str) -> str:
    return f"{node_base(facility_id, node_id)}/status"


def node_ack(facility_id: str, node_id: str) -> str:
    return f"{node_base(facility_id, node_id)}/ack"


def node_cmd(facility_id: str, node_id: str) -> str:
    return f"{node_base(facility_id, node_id)}/cmd"


def node_cmd_resp(facility_id: str, node_id: str) -> str:
    return f"{node_base(facility_id, node_id)}/cmd_resp"


def facility_state(facility_id: str) -> str:
    return f"{ROOT}/{facility_id}/state"


def facility_passages(facility_id: str) -> str:
    """Every stored entry and exit with a subject, for facility-wide anti-passback."""
    return f"{ROOT}/{facility_id}/passages"


def hub_status(facility_id: str) -> str:
    return f"{ROOT}/{facility_id}/hub/status"


def lists_trust(facility_id: str) -> str:
    return f"{ROOT}/{facility_id}/lists/trust"


def lists_status(facility_id: str) -> str:
    return f"{ROOT}/{facility_id}/lists/status"


def lists_keys(facility_id: str) -> str:
    """The registry's list-key chain: the list keys a door follows through rotations."""
    return f"{ROOT}/{facility_id}/lists/keys"


def lists_filter(facility_id: str) -> str:
    """A facility's lists and list keys, for a node's subscription and the broker's ACL."""
    return f"{ROOT}/{facility_id}/lists/#"


ALL_NODE_EVENTS = f"{ROOT}/+/node/+/events"
ALL_NODE_STATUS = f"{ROOT}/+/node/+/status"
ALL_CMD_RESP = f"{ROOT}/+/node/+/cmd_resp"
HUB_EVENTS_SHARED = f"$share/{HUB_SHARE_GROUP}/{ALL_NODE_EVENTS}"


@dataclass(frozen=True)
class NodeTopic:
    facility_id: str
    node_id: str
    leaf: str


@functools.lru_cache(maxsize=4096)  # a facility's topics are few; the hub reads each often
def parse_node_topic(topic: str) -> NodeTopic | None:
    """``pintu/<facility>/node/<node>/<leaf>`` split into its parts, or None."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != ROOT or parts[2] != "node":
        return None
    if not parts[1] or not parts[3] or not parts[4]:
        return None
    return NodeTopic(parts[1], parts[3], parts[4])
