"""An event's signal is one of the door's answers, typed from the door to the hub."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from protocol.events import Event, EventKind, PayloadError, new_event_id
from protocol.signals import ANSWERS, Signal


def _event(**fields: object) -> Event:
    return Event(
        event_id=new_event_id(),
        node_id="main-1",
        facility_id="mall-a",
        door_id="main",
        seq=1,
        ts=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        kind=EventKind.DENIED,
        **fields,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("signal", ANSWERS)
def test_every_answer_goes_over_the_wire_and_back_as_a_signal(signal: Signal) -> None:
    event = _event(signal=signal)
    assert json.loads(event.dumps())["signal"] == signal.value
    back = Event.parse(event.dumps())
    assert back.signal is signal


@pytest.mark.parametrize("word", ["purple", "GREEN", "off", "provisioning", ""])
def test_an_unknown_signal_or_a_door_state_is_refused(word: str) -> None:
    data = json.loads(_event(signal=Signal.RED).dumps())
    data["signal"] = word
    with pytest.raises(PayloadError, match="signal"):
        Event.parse(json.dumps(data))


def test_the_schema_names_the_answers() -> None:
    schema = Event.model_json_schema()["properties"]["signal"]
    [answer] = [s for s in schema["anyOf"] if s.get("type") == "string"]
    assert answer["enum"] == ["green", "yellow", "red", "black", "full", "error"]
