"""Attacks at a door, on a real Mosquitto, the hub and an in-process node."""

from __future__ import annotations

from protocol.events import EventKind

from .conftest import Site, issue, wait


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
