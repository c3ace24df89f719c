"""Attacks at a door, on a real Mosquitto, the hub and an in-process node."""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from protocol import topics
from protocol.events import EventKind
from protocol.trust import SigningKey, TrustList

from .conftest import FACILITY, KEY, Site, issue, wait


def test_a_pass_under_another_text_is_refused(site: Site) -> None:
    """One pass has exactly one text: ``PINTU01:`` or ``PINTU001:`` with a valid body was
    admitted as the pass itself, dodging anything that keys on the text."""
    door = site.add_door("main-in-1", "main-in", "entry")
    victim = bytes.fromhex("c3" * 12)
    text = issue(victim)
    assert text.startswith("PINTU1:")
    for variant in ("PINTU01:", "PINTU001:", "PINTU0000000001:"):
        door.show(text.replace("PINTU1:", variant, 1))
    wait(lambda: len(site.events(EventKind.DENIED)) >= 3, what="three refusals at the hub")
    denied = site.events(EventKind.DENIED)
    assert {e.reason for e in denied} == {"malformed"}
    assert all(not e.admit for e in denied)
    assert site.events(EventKind.ENTRY) == []
    # The one true text still opens the door.
    door.show(text)
    wait(lambda: site.events(EventKind.ENTRY, victim.hex()), what="the true pass admitted")


def test_a_trust_list_from_the_future_is_refused_and_the_real_one_still_lands(
    site: Site,
) -> None:
    """Finding 1 (in part): a rogue broker's retained trust list, holding the attacker's key
    and dated 2099, was applied; every genuine list after it looked older and was ignored,
    so forged passes kept opening the door until its state was wiped."""
    door = site.add_door("main-in-1", "main-in", "entry")
    receiver = door.node.lists
    assert receiver is not None
    attacker = SigningKey.generate()
    forged = TrustList.of([KEY.trusted(), attacker.trusted()], updated_at=4_070_908_800)
    rogue = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    rogue.connect(site.broker.host, site.broker.port)
    rogue.loop_start()
    try:
        trust_topic = topics.lists_trust(FACILITY)
        ignored = receiver.stats.ignored
        rogue.publish(trust_topic, forged.dumps().encode(), qos=1, retain=True).wait_for_publish(5)
        wait(lambda: receiver.stats.ignored > ignored, what="the forged list refused")
        assert receiver.stats.last_error is not None
        assert "future" in receiver.stats.last_error
        assert door.node.policy.trust.get(attacker.kid) is None
        forged_subject = bytes.fromhex("e7" * 12)
        door.show(issue(forged_subject, key=attacker))
        wait(lambda: site.events(EventKind.DENIED), what="the forged pass refused")
        assert site.events(EventKind.ENTRY) == []
        # The hub's next genuine list, dated now, is applied as usual.
        genuine = TrustList.of([KEY.trusted()], updated_at=int(time.time()))
        applied = receiver.stats.applied
        rogue.publish(trust_topic, genuine.dumps().encode(), qos=1, retain=True).wait_for_publish(5)
        wait(lambda: receiver.stats.applied > applied, what="the genuine list applied")
    finally:
        rogue.disconnect()
        rogue.loop_stop()
