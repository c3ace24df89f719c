"""A rogue MQTT client on the doors' passages topic: junk, oversize, wrong-schema and
another facility's passages are ignored by the node, which keeps deciding as before.

(That a node's own credentials cannot write the topic at all is checked against the
provisioned ACL in ``tests/provisioning/test_broker.py``.)
"""

from __future__ import annotations

from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from protocol import topics
from protocol.events import EventKind, Passage, Passages, new_event_id

from .conftest import FACILITY, Site, issue, wait


def passage(subject: str, facility: str = FACILITY) -> bytes:
    item = Passage(
        node_id="rogue-1",
        door_id="rogue",
        subject=subject,
        direction="entry",
        ts=datetime.now(UTC),
        event_id=new_event_id(),
    )
    return Passages(facility_id=facility, passages=[item]).dumps()


def test_junk_on_the_passages_topic_changes_nothing_at_the_door(site: Site) -> None:
    door = site.add_door("main-in-1", "main-in", "entry")
    policy = door.node.policy
    victim = "d4" * 12
    rogue = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    rogue.connect(site.broker.host, site.broker.port)
    rogue.loop_start()
    try:
        topic = topics.facility_passages(FACILITY)
        junk = [
            b"",
            b"\xff\xfe not json",
            b"[]",
            b'{"v": 1}',
            b'{"v": 2, "facility_id": "' + FACILITY.encode() + b'"}',
            passage(victim)[:-1] + b', "admin": true}',
            passage(victim).replace(b'"entry"', b'"teleport"'),
            passage(victim).replace(victim.encode(), b"../../etc/passwd"),
            passage(victim, facility="another-mall"),
            b'{"v": 1, "pad": "' + b"x" * 1_000_000 + b'"}',
        ]
        for payload in junk:
            rogue.publish(topic, payload, qos=1).wait_for_publish(5)
        # One client's messages arrive in order: once the marker is in, all junk was seen.
        marker = "e5" * 12
        rogue.publish(topic, passage(marker), qos=1).wait_for_publish(5)
        wait(lambda: policy.inside(marker, door.node.clock()), what="the marker passage")
        assert policy.remembered_elsewhere == 1
        assert not policy.inside(victim, door.node.clock())
        # The door keeps deciding: the victim's pass still opens it.
        door.show(issue(bytes.fromhex(victim)))
        wait(lambda: site.events(EventKind.ENTRY, victim), what="the victim admitted")
        assert door.node.uplink is not None and door.node.uplink.connected
    finally:
        rogue.disconnect()
        rogue.loop_stop()
