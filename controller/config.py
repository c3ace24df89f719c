"""The door node's typed configuration (``node.toml``).

Unknown keys and bad values are errors that name the key and, where it can be found, the
line; the node refuses to start on any of them. Secrets never live here: the MQTT password
comes from a file or from systemd's credentials directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from controller.errors import ConfigError
from controller.uplink import MqttConfig
from firmware.camera import SourceConfig
from firmware.decoder import DecoderConfig
from firmware.pins import PinMap
from protocol.configtext import ConfigTextError, parse_model, read_text
from protocol.ids import Ident
from protocol.model import StrictModel
from protocol.policy import PolicyConfig


class ScanConfig(StrictModel):
    cooldown_s: float = Field(
        3.0,
        gt=0,
        le=600,
        description="The same code seen again within this many seconds of its last sighting "
        "is the same visitor still holding it up: one decision, not many.",
    )
    restart_source_after_s: float = Field(
        5.0, gt=0, description="After the camera fails, wait this long before reopening it."
    )


class GateConfig(StrictModel):
    passage: Literal["auto", "sensor", "assume"] = Field(
        "auto",
        description="How a passage is confirmed: 'sensor' waits for the rotation sensor or "
        "door contact; 'assume' counts a passage at the relay pulse; 'auto' uses a sensor "
        "when one is wired.",
    )
    passage_timeout_s: float = Field(
        8.0,
        gt=0,
        le=120,
        description="Admitted but nobody passed within this time: recorded as not_passed.",
    )
    signal_s: float = Field(2.0, gt=0, le=30, description="How long a decision's signal shows.")


class NodeConfig(StrictModel):
    node_id: Ident = Field(description="This node's id, unique in the facility.")
    facility_id: Ident = Field(description="The facility this door belongs to.")
    door_id: Ident = Field(description="The door this node guards.")
    direction: Literal["entry", "exit", "both"] = Field(
        description="What a passage through this door means; 'both' decides per visitor: "
        "someone inside leaves, anyone else enters."
    )
    state_dir: Path = Field(
        description="Where the journal and the synced lists live (StateDirectory= under systemd)."
    )
    trust_list: Path = Field(
        Path("trust.json"), description="Trust list file, relative to state_dir."
    )
    status_list: Path = Field(
        Path("status.psl"), description="Status list file, relative to state_dir."
    )
    list_keys: Path = Field(
        Path("list-keys.json"),
        description="The registry's list keys this door pinned at enrolment, relative to "
        "state_dir: a list from the hub is believed only when one of them signed it. "
        "Rotations signed by a pinned key update it.",
    )
    stale_lists_after_s: float = Field(
        86_400.0, gt=0, description="Report the node degraded when its lists are older than this."
    )
    journal_max_age_days: float = Field(
        21.0,
        gt=0,
        le=366,
        description="An event the hub has not acknowledged within this many days (the "
        "tracing window) is dropped from the journal, with an alarm saying how many: it "
        "holds a subject id, and a visit that old is past tracing.",
    )
    source: SourceConfig = Field(description="Where frames come from.")
    decoder: DecoderConfig = Field(default_factory=DecoderConfig, description="QR decoder.")
    pins: PinMap = Field(default_factory=PinMap.default, description="GPIO wiring.")
    policy: PolicyConfig = Field(default_factory=PolicyConfig, description="What is admitted.")
    scan: ScanConfig = Field(default_factory=ScanConfig, description="Scan loop.")
    gate: GateConfig = Field(default_factory=GateConfig, description="Relay and passage.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="Link to the hub.")

    def path(self, relative: Path) -> Path:
        return relative if relative.is_absolute() else self.state_dir / relative


# Discriminated unions put the tag's value in the error location; it is not a key.
_UNION_TAGS = {"folder", "video", "synthetic", "picamera2", "three", "rgb"}


def parse_config(text: str, where: str = "node.toml") -> NodeConfig:
    try:
        return parse_model(text, NodeConfig, where, _UNION_TAGS)
    except ConfigTextError as err:
        raise ConfigError(str(err)) from err


def load_config(path: str | Path) -> NodeConfig:
    try:
        text = read_text(path)
    except ConfigTextError as err:
        raise ConfigError(str(err)) from err
    return parse_config(text, str(path))
