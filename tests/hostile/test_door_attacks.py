"""Attacks at a door, on a real Mosquitto, the hub and an in-process node."""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from protocol import topics
from protocol.events import EventKind
from protocol.signedlist import Kind, ListKeys, seal, statement
from protocol.status import Status
from protocol.statuslist import StatusList
from protocol.trust import SigningKey, TrustList

from ..signing import flipped
from .conftest import FACILITY, KEY, LIST_KEY, PINNED, Site, issue, wait


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


def rogue_client(site: Site) -> mqtt.Client:
    """A client on the facility's broker that is not the hub (a rogue broker, or a door's
    stolen login, can say the same on the lists topics)."""
    rogue = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    rogue.connect(site.broker.host, site.broker.port)
    rogue.loop_start()
    return rogue


def test_a_list_the_registry_did_not_sign_is_refused_and_the_attackers_pass_stays_out(
    site: Site,
) -> None:
    """Finding 1: a rogue on the broker published a retained trust list holding the
    attacker's key, well formed and dated now: the door applied it and admitted a pass the
    attacker signed. Now a door believes a list only when the registry's list key, pinned
    at enrolment, signed it."""
    door = site.add_door("main-in-1", "main-in", "entry")
    receiver = door.node.lists
    assert receiver is not None
    attacker = SigningKey.generate()
    now = int(time.time())
    forged = TrustList.of([KEY.trusted(), attacker.trusted()], updated_at=now).dumps().encode()
    victim = bytes.fromhex("c4" * 12)
    # A status list that would clear nobody and mark the victim black, locking them out.
    locked_out = StatusList.from_items([(victim, Status.BLACK, now)], updated_at=now).dumps()
    rogue = rogue_client(site)
    trust_topic, status_topic = topics.lists_trust(FACILITY), topics.lists_status(FACILITY)
    try:
        for topic, payload, reason in (
            (trust_topic, forged, "unsigned"),  # the attack as it was
            (trust_topic, seal(attacker, Kind.TRUST, forged), "unknown_key"),
            (trust_topic, seal(KEY, Kind.TRUST, forged), "unknown_key"),  # a pass key
            (trust_topic, flipped(seal(LIST_KEY, Kind.TRUST, forged)), "bad_signature"),
            (status_topic, locked_out, "unsigned"),
            (status_topic, seal(attacker, Kind.STATUS, locked_out), "unknown_key"),
        ):
            ignored = receiver.stats.ignored
            rogue.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
            wait(lambda ignored=ignored: receiver.stats.ignored > ignored, what="a refusal")
            assert receiver.stats.last_reason == reason
        # A rotation to the attacker's own list key, which no pinned key signed.
        rotation = statement(LIST_KEY, PINNED) + statement(
            attacker, ListKeys.of(2, [attacker.public_key], now)
        )
        ignored = receiver.stats.ignored
        rogue.publish(topics.lists_keys(FACILITY), rotation, qos=1, retain=True).wait_for_publish(5)
        wait(lambda: receiver.stats.ignored > ignored, what="the forged rotation refused")
        assert receiver.pins == PINNED
        node = door.node
        assert node.policy.trust.get(attacker.kid) is None
        assert node.policy.statuses.lookup(victim) is None
        # The attacker's pass is refused, the victim's admitted.
        door.show(issue(bytes.fromhex("e7" * 12), key=attacker))
        denied = wait(lambda: site.events(EventKind.DENIED), what="the forged pass refused")
        assert denied[0].reason == "unknown_key"
        door.show(issue(victim))
        wait(lambda: site.events(EventKind.ENTRY, victim.hex()), what="the victim admitted")
        assert [e for e in site.events(EventKind.ENTRY) if e.subject != victim.hex()] == []

        # The hub sees the door report the refused lists.
        def reported() -> bool:
            seen = [n for n in site.hub.hub.store.nodes(FACILITY) if n.node_id == "main-in-1"]
            return bool(seen) and any("refused a trust list" in p for p in seen[0].problems)

        wait(reported, what="the refusal in the door's status at the hub")
        # A list the registry signed is applied as usual, and the report clears.
        genuine = TrustList.of([KEY.trusted()], updated_at=now + 1).dumps().encode()
        applied = receiver.stats.applied
        rogue.publish(
            trust_topic, seal(LIST_KEY, Kind.TRUST, genuine), qos=1, retain=True
        ).wait_for_publish(5)
        wait(lambda: receiver.stats.applied > applied, what="the registry's list applied")
        assert not any("trust list" in p for p in node.problems.values())
    finally:
        rogue.disconnect()
        rogue.loop_stop()


def test_a_trust_list_from_the_future_is_refused_and_the_real_one_still_lands(
    site: Site,
) -> None:
    """Finding 1 (in part): a rogue broker's retained trust list, holding the attacker's key
    and dated 2099, was applied; every genuine list after it looked older and was ignored,
    so forged passes kept opening the door until its state was wiped. A signature no
    longer lets a rogue make such a list; the date is checked all the same, for a list key
    that leaked."""
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
        payload = seal(LIST_KEY, Kind.TRUST, forged.dumps().encode())
        rogue.publish(trust_topic, payload, qos=1, retain=True).wait_for_publish(5)
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
        payload = seal(LIST_KEY, Kind.TRUST, genuine.dumps().encode())
        rogue.publish(trust_topic, payload, qos=1, retain=True).wait_for_publish(5)
        wait(lambda: receiver.stats.applied > applied, what="the genuine list applied")
    finally:
        rogue.disconnect()
        rogue.loop_stop()
