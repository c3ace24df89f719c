"""The pin map rejects what would miswire a door, naming the bad key."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from firmware.pins import (
    BuzzerConfig,
    InputConfig,
    PinMap,
    RelayConfig,
    RgbLedConfig,
    ThreeLedsConfig,
)


def _raw(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "leds": {"kind": "three", "red": 17, "yellow": 27, "green": 22},
        "buzzer": {"pin": 18},
        "relay": {"pin": 5, "active_high": False, "wiring": "fail_secure"},
    }
    raw.update(changes)
    return raw


def test_default_map_is_valid_and_uses_each_pin_once() -> None:
    for pin_map in (PinMap.default(), PinMap.default(sensors=True)):
        pins = [pin for _, pin in pin_map.pins()]
        assert len(pins) == len(set(pins))
        assert all(0 <= pin <= 27 for pin in pins)
    plain = PinMap.default()
    assert plain.door_contact is None and plain.rotation_sensor is None
    assert plain.relay.wiring == "fail_secure"
    assert plain.pin_factory == "auto"
    full = PinMap.default(sensors=True)
    assert full.door_contact is not None
    assert full.exit_button is not None
    assert full.rotation_sensor is not None


def test_loads_both_led_kinds() -> None:
    three = PinMap.model_validate(_raw())
    assert isinstance(three.leds, ThreeLedsConfig)
    rgb = PinMap.model_validate(
        _raw(leds={"kind": "rgb", "red": 17, "green": 27, "blue": 22, "active_high": False})
    )
    assert isinstance(rgb.leds, RgbLedConfig)
    assert not rgb.leds.active_high


def test_duplicate_pin_names_both_keys() -> None:
    raw = _raw(door_contact={"pin": 27})
    with pytest.raises(ValidationError) as caught:
        PinMap.model_validate(raw)
    message = str(caught.value)
    assert "leds.yellow" in message
    assert "door_contact.pin" in message
    assert "GPIO27" in message


def test_duplicate_pin_between_relay_and_buzzer() -> None:
    with pytest.raises(ValidationError, match=r"buzzer\.pin.*relay\.pin"):
        PinMap.model_validate(_raw(buzzer={"pin": 5}))


def test_unknown_key_is_named() -> None:
    with pytest.raises(ValidationError) as caught:
        PinMap.model_validate(
            _raw(relay={"pin": 5, "active_high": False, "wiring": "fail_safe", "pulse": 3000})
        )
    errors = caught.value.errors()
    assert [e["loc"] for e in errors] == [("relay", "pulse")]
    assert errors[0]["type"] == "extra_forbidden"
    with pytest.raises(ValidationError, match="door_sensor"):
        PinMap.model_validate(_raw(door_sensor={"pin": 23}))


def test_pin_out_of_range_is_rejected() -> None:
    with pytest.raises(ValidationError) as caught:
        PinMap.model_validate(_raw(relay={"pin": 40, "active_high": True, "wiring": "fail_safe"}))
    (error,) = caught.value.errors()
    assert error["loc"] == ("relay", "pin")
    assert "27" in error["msg"]
    with pytest.raises(ValidationError):
        InputConfig(pin=-1)


def test_pin_must_be_a_number() -> None:
    with pytest.raises(ValidationError):
        InputConfig.model_validate({"pin": "17"})
    with pytest.raises(ValidationError):
        InputConfig.model_validate({"pin": True})


def test_relay_needs_wiring_and_polarity() -> None:
    with pytest.raises(ValidationError) as caught:
        RelayConfig.model_validate({"pin": 5})
    missing = {e["loc"][0] for e in caught.value.errors()}
    assert missing == {"active_high", "wiring"}


@pytest.mark.parametrize("pulse_ms", [99, 30_001])
def test_pulse_length_is_bounded(pulse_ms: int) -> None:
    with pytest.raises(ValidationError):
        RelayConfig(pin=5, active_high=True, wiring="fail_secure", pulse_ms=pulse_ms)


def test_led_kind_is_required_to_tell_them_apart() -> None:
    with pytest.raises(ValidationError):
        PinMap.model_validate(_raw(leds={"red": 17, "yellow": 27, "green": 22}))
    with pytest.raises(ValidationError):
        PinMap.model_validate(_raw(leds={"kind": "rgb", "red": 17, "yellow": 27, "green": 22}))


def test_unknown_pin_factory_is_rejected() -> None:
    with pytest.raises(ValidationError, match="pin_factory"):
        PinMap.model_validate(_raw(pin_factory="wiringpi"))


def test_every_field_is_described() -> None:
    for model in (PinMap, ThreeLedsConfig, RgbLedConfig, BuzzerConfig, RelayConfig, InputConfig):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"


def test_fail_safe_and_fail_secure_are_explained() -> None:
    description = RelayConfig.model_fields["wiring"].description or ""
    assert "without power" in description
    assert "magnetic" in description
    assert "strike" in description
