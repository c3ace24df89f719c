"""Decisions as a guard would read them: colour, admit or deny, and the reason."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from protocol import passes
from protocol.events import FacilityState, Passage, new_event_id
from protocol.policy import FACILITY_MEMORY, Policy, PolicyConfig
from protocol.signals import Signal
from protocol.status import Status
from protocol.statuslist import StatusList
from protocol.trust import SigningKey, TrustList

KEY = SigningKey.generate()
OTHER = SigningKey.generate()
TRUST = TrustList.of([KEY.trusted()])
NOW = 1_800_000_000.0
ALICE = bytes.fromhex("a11ce0000000000000000001")


def make(status: Status, subject: bytes = ALICE, key: SigningKey = KEY, **kw: int) -> str:
    issued = kw.get("issued", int(NOW) - 60)
    expires = kw.get("expires", int(NOW) + 3600)
    return passes.issue(key, subject, status, 2, issued, expires)


def policy(**config: object) -> Policy:
    return Policy(PolicyConfig.model_validate(config), TRUST)


@pytest.mark.parametrize(
    ("status", "signal", "admit", "reason"),
    [
        (Status.GREEN, Signal.GREEN, True, "ok"),
        (Status.YELLOW, Signal.YELLOW, True, "ok"),
        (Status.RED, Signal.RED, False, "status_red"),
        (Status.BLACK, Signal.BLACK, False, "status_black"),
    ],
)
def test_default_policy_by_colour(status: Status, signal: Signal, admit: bool, reason: str) -> None:
    decision = policy().decide(make(status), "entry", NOW)
    assert (decision.signal, decision.admit, decision.reason) == (signal, admit, reason)
    assert decision.alarm is (status is Status.BLACK)
    assert decision.message
    assert decision.subject == ALICE.hex()


def test_yellow_can_be_denied_and_red_admitted() -> None:
    p = policy(yellow="deny", red="admit")
    yellow = p.decide(make(Status.YELLOW), "entry", NOW)
    assert (yellow.admit, yellow.reason) == (False, "status_yellow")
    red = p.decide(make(Status.RED), "entry", NOW)
    assert red.admit and red.signal is Signal.YELLOW


@pytest.mark.parametrize(
    ("text", "reason", "signal"),
    [
        (make(Status.GREEN, key=OTHER), "unknown_key", Signal.RED),
        (make(Status.GREEN, issued=int(NOW) - 7200, expires=int(NOW) - 1), "expired", Signal.RED),
        ("https://example.org", "wrong_prefix", Signal.ERROR),
        ("", "empty", Signal.ERROR),
    ],
)
def test_bad_passes_are_denied_with_their_reason(text: str, reason: str, signal: Signal) -> None:
    decision = policy().decide(text, "entry", NOW)
    assert not decision.admit
    assert decision.reason == reason
    assert decision.signal is signal


def test_status_list_turns_a_green_pass_black() -> None:
    p = policy()
    p.replace_lists(statuses=StatusList.from_items([(ALICE, Status.BLACK, int(NOW) - 10)]))
    decision = p.decide(make(Status.GREEN), "entry", NOW)
    assert (decision.signal, decision.admit, decision.alarm) == (Signal.BLACK, False, True)
    # A pass issued after the status change already carries the newer status.
    newer = make(Status.GREEN, issued=int(NOW) - 5)
    assert p.decide(newer, "entry", NOW).admit


def test_anti_passback_until_exit_or_window() -> None:
    p = policy(anti_passback_s=600)
    text = make(Status.GREEN)
    assert p.decide(text, "entry", NOW).admit
    p.entered(ALICE.hex(), NOW)
    second = p.decide(text, "entry", NOW + 10)
    assert (second.admit, second.reason) == (False, "anti_passback")
    assert p.decide(text, "entry", NOW + 601).admit
    assert p.decide(text, "exit", NOW + 20).admit
    assert p.decide(text, "entry", NOW + 21).admit


def test_full_facility_denies_entry_but_not_exit_or_black_alarm() -> None:
    p = policy()
    p.set_facility_state(FacilityState(facility_id="f", occupancy=10, capacity=10, full=True))
    entry = p.decide(make(Status.GREEN), "entry", NOW)
    assert (entry.signal, entry.admit, entry.reason) == (Signal.FULL, False, "facility_full")
    assert p.decide(make(Status.GREEN), "exit", NOW).admit
    black = p.decide(make(Status.BLACK), "entry", NOW)
    assert black.reason == "status_black" and black.alarm
    p.set_facility_state(FacilityState(facility_id="f", occupancy=9, capacity=10, full=False))
    assert p.decide(make(Status.GREEN), "entry", NOW).admit


def test_black_pass_may_leave_but_raises_an_alarm() -> None:
    decision = policy().decide(make(Status.BLACK), "exit", NOW)
    assert decision.admit and decision.alarm and decision.signal is Signal.BLACK


def test_lockdown_denies_entry() -> None:
    p = policy()
    p.lockdown = True
    decision = p.decide(make(Status.GREEN), "entry", NOW)
    assert (decision.admit, decision.reason) == (False, "lockdown")


# -- facility-wide anti-passback ---------------------------------------------------------


def passage(direction: str, at: float, node: str = "side-in-1", subject: bytes = ALICE) -> Passage:
    return Passage(
        node_id=node,
        door_id=node.rsplit("-", 1)[0],
        subject=subject.hex(),
        direction=direction,  # type: ignore[arg-type]
        ts=datetime.fromtimestamp(at, UTC),
        event_id=new_event_id(),
    )


def test_an_entry_at_another_door_refuses_entry_here_and_says_where() -> None:
    p = Policy(PolicyConfig(anti_passback_s=600), TRUST, node_id="main-in-1")
    p.note_passage(passage("entry", NOW - 30))
    d = p.decide(make(Status.GREEN), "entry", NOW)
    assert (d.admit, d.signal, d.reason) == (False, Signal.RED, "anti_passback_facility")
    assert "door side-in" in d.message
    assert p.inside(ALICE.hex(), NOW)
    # Past the window, or after an exit anywhere, the pass is admitted again.
    assert p.decide(make(Status.GREEN), "entry", NOW + 600).admit
    p.note_passage(passage("exit", NOW - 10, node="main-out-1"))
    assert p.decide(make(Status.GREEN), "entry", NOW).admit


def test_an_exit_elsewhere_clears_an_entry_here_but_not_a_newer_one() -> None:
    p = Policy(PolicyConfig(anti_passback_s=600), TRUST, node_id="main-in-1")
    p.entered(ALICE.hex(), NOW - 100)
    p.note_passage(passage("exit", NOW - 200, node="main-out-1"))  # before the entry
    assert p.decide(make(Status.GREEN), "entry", NOW).reason == "anti_passback"
    p.note_passage(passage("exit", NOW - 50, node="main-out-1"))
    assert p.decide(make(Status.GREEN), "entry", NOW).admit


def test_own_passages_echoed_by_the_hub_and_late_copies_change_nothing() -> None:
    p = Policy(PolicyConfig(anti_passback_s=600), TRUST, node_id="main-in-1")
    p.note_passage(passage("entry", NOW - 30, node="main-in-1"))
    assert p.decide(make(Status.GREEN), "entry", NOW).admit
    p.note_passage(passage("entry", NOW - 10))
    p.note_passage(passage("entry", NOW - 700))  # an older copy arriving late
    assert p.decide(make(Status.GREEN), "entry", NOW).reason == "anti_passback_facility"


def test_a_flood_of_passages_keeps_memory_bounded() -> None:
    p = Policy(PolicyConfig(anti_passback_s=600), TRUST, node_id="main-in-1")
    p.note_passage(passage("entry", NOW - 1))
    for i in range(FACILITY_MEMORY + 10):
        p.note_passage(passage("entry", NOW, subject=i.to_bytes(12, "big")))
    assert p.remembered_elsewhere == FACILITY_MEMORY
    # The oldest went first: a real entry is forgotten only under a flood this size.
    assert not p.inside(ALICE.hex(), NOW)
