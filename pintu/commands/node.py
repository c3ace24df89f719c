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
    help="The node's TOML configuration.",
)
def run(config_path: Path) -> None:
    """Run the door node until SIGTERM or Ctrl-C.

    Tells systemd when it is ready (Type=notify) and pets the watchdog from the scan loop.

    \b
    Example:
      GPIOZERO_PIN_FACTORY=mock pintu -v node run --config node.toml
    """
    from controller.errors import ControllerError
    from controller.node import Node
    from firmware.errors import FirmwareError

    config = _load(config_path)
    try:
        Node(config).run()
    except (ControllerError, FirmwareError) as err:
        raise click.ClickException(str(err)) from err
