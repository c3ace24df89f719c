"""Every key of the node's and the hub's ingest configuration is documented, under its
section's heading: a key added to a model and not to docs/node.md or docs/hub.md fails
here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from controller.config import GateConfig, NodeConfig, ScanConfig
from controller.uplink import MqttConfig
from firmware.camera import (
    FolderSourceConfig,
    PiCameraSourceConfig,
    SyntheticSourceConfig,
    VideoSourceConfig,
)
from firmware.decoder import DecoderConfig
from firmware.pins import (
    BuzzerConfig,
    InputConfig,
    PinMap,
    RelayConfig,
    RgbLedConfig,
    ThreeLedsConfig,
)
from hub.config import IngestConfig
from protocol.policy import PolicyConfig

DOCS = Path(__file__).resolve().parents[1] / "docs"
# Nested sections have their own heading; their keys are not the parent's to list.
TABLES = {"source", "decoder", "pins", "policy", "scan", "gate", "mqtt"}
PIN_TABLES = {"leds", "buzzer", "relay", "door_contact", "exit_button", "rotation_sensor"}

NODE_SECTIONS: list[tuple[str, type[BaseModel], set[str]]] = [
    ("## Top level", NodeConfig, TABLES),
    ('### `kind = "picamera2"`', PiCameraSourceConfig, {"kind"}),
    ('### `kind = "folder"`', FolderSourceConfig, {"kind"}),
    ('### `kind = "video"`', VideoSourceConfig, {"kind"}),
    ('### `kind = "synthetic"`', SyntheticSourceConfig, {"kind"}),
    ("## `[decoder]`", DecoderConfig, set()),
    ("## `[pins]`", PinMap, PIN_TABLES),
    ("### `[pins.leds]`", ThreeLedsConfig, set()),
    ("### `[pins.leds]`", RgbLedConfig, set()),
    ("### `[pins.buzzer]`", BuzzerConfig, set()),
    ("### `[pins.relay]`", RelayConfig, set()),
    ("### `[pins.door_contact]`", InputConfig, set()),
    ("## `[policy]`", PolicyConfig, set()),
    ("## `[scan]`", ScanConfig, set()),
    ("## `[gate]`", GateConfig, set()),
    ("## `[mqtt]`", MqttConfig, set()),
]


def section(text: str, heading: str) -> str:
    """The text under the heading that starts with ``heading``, to the next heading."""
    start = text.index(f"\n{heading}") + 1
    line_end = text.index("\n", start)
    following = re.search(r"^#{2,3} ", text[line_end:], re.M)
    return text[start : line_end + following.start()] if following else text[start:]


def undocumented(text: str, model: type[BaseModel], skip: set[str]) -> list[str]:
    keys = [k for k in model.model_fields if k not in skip]
    return [k for k in keys if not re.search(rf"^\|[^\n]*`{k}`[^\n]*\|", text, re.M)]


@pytest.mark.parametrize(("heading", "model", "skip"), NODE_SECTIONS, ids=lambda v: str(v))
def test_every_node_key_is_in_docs_node_md(
    heading: str, model: type[BaseModel], skip: set[str]
) -> None:
    text = section((DOCS / "node.md").read_text(encoding="utf-8"), heading)
    assert undocumented(text, model, skip) == []


def test_every_ingest_key_is_in_docs_hub_md() -> None:
    text = section((DOCS / "hub.md").read_text(encoding="utf-8"), "### `[ingest]`")
    assert undocumented(text, IngestConfig, set()) == []


def test_the_node_example_points_at_a_guide_that_exists() -> None:
    example = (DOCS / "examples" / "node.toml").read_text(encoding="utf-8")
    for name in re.findall(r"docs/(\w+\.md)", example):
        assert (DOCS / name).is_file(), name
