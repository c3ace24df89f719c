"""Replayed passes and passes used twice, end to end: real Mosquitto, the hub, door nodes.

* the same pass shown again at the same entrance is refused (the door's own memory);
* a screenshot of a pass just used at entrance A, shown at entrance B, is refused there
  with a reason naming entrance A (the hub broadcasts each stored passage to the doors);
* after an exit at the exit door, both entrances admit the pass again;
* a door cut off from the hub still refuses a replay it saw itself;
* a pass signed by another registry's key is refused as an unknown key.
"""

from __future__ import annotations

from protocol.events import EventKind
from protocol.trust import SigningKey

from .conftest import FACILITY, Site, issue, wait


def test_a_pass_used_at_one_entrance_is_refused_at_another_until_its_exit(site: Site) -> None:
    a = site.add_door("main-in-1", "main-in", "entry")
    b = site.add_door("side-in-1", "side-in", "entry")
    out = site.add_door("main-out-1", "main-out", "exit")
    subject = bytes.fromhex("a1" * 12)
    text = issue(subject)

    a.show(text)
    wait(lambda: site.events(EventKind.ENTRY, subject.hex()), what="the entry at A")
    wait(
        lambda: b.node.policy.inside(subject.hex(), b.node.clock()),
        what="entrance B to hear of the entry at A",
    )

    b.show(text)  # the screenshot, at the other entrance
    [denied] = wait(lambda: site.events(EventKind.DENIED, subject.hex()), what="refusal at B")
    assert (denied.door_id, denied.admit, denied.signal) == ("side-in", False, "red")
    assert denied.reason == "anti_passback_facility"
    assert denied.message is not None and "door main-in" in denied.message
    assert len(site.events(EventKind.ENTRY, subject.hex())) == 1

    out.show(text)
    wait(lambda: site.events(EventKind.EXIT, subject.hex()), what="the exit")
    for door in (a, b):
        wait(
            lambda door=door: not door.node.policy.inside(subject.hex(), door.node.clock()),
            what="the entrances to hear of the exit",
        )
    b.show(text)
    wait(
        lambda: [e for e in site.events(EventKind.ENTRY, subject.hex()) if e.door_id == "side-in"],
        what="the entry at B after the exit",
    )
    assert len(site.events(EventKind.DENIED, subject.hex())) == 1
    # One passage for each stored entry and exit, none for the refusal.
    moves = site.events(EventKind.ENTRY) + site.events(EventKind.EXIT)
    assert len(moves) == 3
    passages = site.hub.hub.metrics.passages
    wait(lambda: passages.value(facility=FACILITY) == 3, what="three passages broadcast")


def test_a_replay_at_the_same_door_is_refused_even_cut_off_from_the_hub(site: Site) -> None:
    a = site.add_door("main-in-1", "main-in", "entry")
    subject = bytes.fromhex("b2" * 12)
    text = issue(subject)
    a.show(text)
    wait(lambda: site.events(EventKind.ENTRY, subject.hex()), what="the first entry")
    site.hub.stop()  # the hub is gone: the door keeps deciding on its own
    decided = a.decisions
    a.show(text)
    wait(lambda: a.decisions > decided, what="the replay to be decided")
    decision = a.node.door.last_decision if a.node.door is not None else None
    assert decision is not None
    assert (decision.admit, decision.reason) == (False, "anti_passback")
    assert decision.message == "already entered: exit first"


def test_a_pass_from_another_registry_is_refused_as_unknown_key(site: Site) -> None:
    a = site.add_door("main-in-1", "main-in", "entry")
    subject = bytes.fromhex("c3" * 12)
    a.show(issue(subject, key=SigningKey.generate()))
    [denied] = wait(lambda: site.events(EventKind.DENIED, subject.hex()), what="the refusal")
    assert (denied.reason, denied.admit) == ("unknown_key", False)
    assert denied.message == "pass signed by a key this door does not trust"
    assert not site.events(EventKind.ENTRY, subject.hex())
