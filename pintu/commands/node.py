"""``pintu node``: run a door node, or check its configuration."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from pintu.commands.common import echo_json

if TYPE_CHECKING:
    from controller.config import NodeConfig


def _load(path: Path) -> NodeConfig:
    from controller.config import load_config
    from controller.errors import ConfigError

    try:
        return load_config(path)
    except ConfigError as err:
        raise click.ClickException(f"bad configuration:\n{err}") from err


@click.group()
def node() -> None:
    """The door node.

    \b
    Example:
      pintu node check-config --config /etc/pintu/node.toml
      pintu node run --config /etc/pintu/node.toml
    """


@node.command("check-config")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The node's TOML configuration.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the parsed configuration as JSON.")
def check_config(config_path: Path, as_json: bool) -> None:
    """Check a node configuration; name every bad key and its line.

    Exit status 0 when the configuration is good, 1 otherwise.

    \b
    Example:
      pintu node check-config --config node.toml
    """
    config = _load(config_path)
    if as_json:
        echo_json(config.model_dump(mode="json"))
    else:
        click.echo(
            f"{config_path}: ok: node {config.node_id} at {config.facility_id}/{config.door_id} "
            f"({config.direction}), source {config.source.kind}, decoder {config.decoder.backend}"
        )


@node.command("run")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The node's TOML configuration. When the file does not exist the node waits for "
    "a provisioning QR and writes it.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where a node provisioned by QR keeps its journal and lists (default: "
    "$STATE_DIRECTORY under systemd, else the configuration's directory).",
)
@click.option(
    "--facility-ca",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A node waiting for its provisioning QR: the facility CA's certificate (the "
    "broker directory's ca.pem). Only a code for that facility is taken.",
)
def run(config_path: Path, state_dir: Path | None, facility_ca: Path | None) -> None:
    """Run the door node until SIGTERM or Ctrl-C.

    Tells systemd when it is ready (Type=notify) and pets the watchdog from the scan loop.

    With no configuration file yet, the node blinks yellow slowly and waits for a
    provisioning QR (`pintu provision node enroll --qr`): shown one, it fetches its
    bundle from the hub once, writes the configuration and its credentials (0600) and
    starts as a normal node. Until then the relay stays locked and passes are ignored.

    \b
    Example:
      GPIOZERO_PIN_FACTORY=mock pintu -v node run --config node.toml
      pintu node run --config /var/lib/pintu-node/node.toml   # blank: waits for its QR
    """
    from controller.errors import ControllerError
    from controller.node import Node
    from firmware.errors import FirmwareError

    try:
        if config_path.exists():
            config = _load(config_path)
        else:
            provisioned = _provision(config_path, state_dir, facility_ca)
            if provisioned is None:
                return
            config = provisioned
        Node(config).run()
    except (ControllerError, FirmwareError) as err:
        raise click.ClickException(str(err)) from err


def _provision(
    config_path: Path, state_dir: Path | None, facility_ca: Path | None
) -> NodeConfig | None:
    """Wait for a provisioning QR until provisioned (the configuration) or stopped (None)."""
    import os
    import signal
    import threading
    from types import FrameType

    from controller.enrolment import Enrolment

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if state_dir is None:
        env = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
        state_dir = Path(env) if env else config_path.resolve().parent
    return Enrolment(config_path, state_dir, facility_ca=facility_ca).wait(stop)
