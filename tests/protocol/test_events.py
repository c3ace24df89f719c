"""An event's signal is one of the door's answers, typed from the door to the hub."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from protocol.events import (
    Event,
    EventKind,
    Passage,
    Passages,
    PayloadError,
    encode_passages,
    new_event_id,
    wire_time,
)
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


def test_passages_encoded_for_the_doors_read_as_the_model_writes_them() -> None:
    ts = datetime(2026, 12, 3, 14, 5, 6, 789_123, tzinfo=UTC)
    items = [
        {
            "node_id": f"main-{i}",
            "door_id": "main",
            "subject": f"{i:024x}",
            "direction": "entry" if i % 2 else "exit",
            "ts": wire_time(ts),
            "event_id": new_event_id(),
        }
        for i in range(3)
    ]
    encoded = encode_passages("mall-a", items)
    model = Passages(
        facility_id="mall-a", passages=[Passage.model_validate({**p, "ts": ts}) for p in items]
    )
    assert Passages.parse(encoded) == Passages.parse(model.dumps())
    assert json.loads(encoded) == json.loads(model.dumps())
    assert items[0]["ts"] == "2026-12-03T14:05:06.789Z"
    with pytest.raises(ValueError):
        encode_passages("mall-a", [])
