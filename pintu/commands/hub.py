"""``pintu hub``: run the facility hub, check its configuration, add staff accounts."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pintu.commands.common import echo_json

if TYPE_CHECKING:
    from hub.config import HubConfig

_CONFIG = click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The hub's TOML configuration.",
)


def _load(path: Path) -> HubConfig:
    from hub.config import load_config
    from hub.errors import ConfigError

    try:
        return load_config(path)
    except ConfigError as err:
        raise click.ClickException(f"bad configuration:\n{err}") from err


@click.group()
def hub() -> None:
    """The facility hub: live occupancy, dashboard, staff desk and API.

    \b
    Example:
      pintu hub check-config --config /etc/pintu/hub.toml
      pintu hub add-user --config /etc/pintu/hub.toml --username siti --role guard
      pintu hub serve --config /etc/pintu/hub.toml
    """


@hub.command("check-config")
@_CONFIG
@click.option("--json", "as_json", is_flag=True, help="Print the parsed configuration as JSON.")
def check_config(config_path: Path, as_json: bool) -> None:
    """Check a hub configuration; name every bad key and its line.

    Also reads the registry's people file when one is configured. Exit status 0 when the
    configuration is good, 1 otherwise.

    \b
    Example:
      pintu hub check-config --config hub.toml
    """
    from hub.config import HttpRegistryConfig, LocalRegistryConfig
    from hub.errors import ConfigError
    from hub.upstream.client import LocalRegistryClient, RegistryError, read_tokens

    config = _load(config_path)
    registry = config.registry
    if isinstance(registry, LocalRegistryConfig):
        if not registry.path.exists():
            # Like the secret files, it may only exist on the machine the hub runs on.
            click.echo(
                f"warning: {registry.path}: people file not found; the hub needs it to start",
                err=True,
            )
        else:
            try:
                LocalRegistryClient(registry.path)
            except (RegistryError, ConfigError) as err:
                raise click.ClickException(f"bad configuration:\n{err}") from err
    elif isinstance(registry, HttpRegistryConfig):
        try:
            read_tokens(registry, [f.id for f in config.facilities])
        except ConfigError as err:
            # Like the other secret files, a token may only exist on the hub's machine.
            click.echo(f"warning: {err}; the hub needs it to start", err=True)
    if as_json:
        echo_json(config.model_dump(mode="json"))
        return
    facilities = ", ".join(
        f"{f.id} (capacity {f.effective_capacity if f.effective_capacity is not None else 'none'}"
        f", {len(f.doors)} door{'' if len(f.doors) == 1 else 's'})"
        for f in config.facilities
    )
    click.echo(
        f"{config_path}: ok: {facilities}; broker {config.mqtt.host}:{config.mqtt.port}; "
        f"dashboard on {config.web.host}:{config.web.port}"
    )


@hub.command("serve")
@_CONFIG
def serve(config_path: Path) -> None:
    """Run the hub and its dashboard until SIGTERM or Ctrl-C.

    One process: the MQTT ingest, the store and the web server. Tells systemd when it is
    ready (Type=notify) and pets the watchdog while it is healthy.

    \b
    Example:
      pintu -v hub serve --config /etc/pintu/hub.toml
    """
    from hub.errors import HubError
    from hub.web.server import serve as serve_hub

    _load(config_path)  # a bad config is reported like check-config reports it
    try:
        serve_hub(config_path)
    except HubError as err:
        raise click.ClickException(str(err)) from err


@hub.command("add-user")
@_CONFIG
@click.option("--username", required=True, help="The staff member's login name.")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["viewer", "guard", "admin"]),
    help="viewer watches; guard also acknowledges alerts and checks people in; admin also "
    "changes capacity and counts.",
)
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Read the password from this file (first line); without it, it is asked for twice. "
    "Never give a password on the command line.",
)
@click.option(
    "--update",
    is_flag=True,
    help="If the user exists, set their password and role instead of failing.",
)
def add_user(
    config_path: Path, username: str, role: str, password_file: Path | None, update: bool
) -> None:
    """Add a staff account to the hub's store (the hub may be running).

    \b
    Example:
      pintu hub add-user --config hub.toml --username siti --role guard
      pintu hub add-user --config hub.toml --username admin --role admin \\
          --password-file /run/credentials/admin-password
    """
    from hub.auth import check_password, hash_password
    from hub.errors import AlreadyExists, HubError
    from hub.records import Role
    from hub.store import open_store

    config = _load(config_path)
    if not username.strip() or len(username) > 100 or username != username.strip():
        raise click.BadParameter(
            "1 to 100 characters, no spaces at either end", param_hint="--username"
        )
    if password_file is not None:
        try:
            lines = password_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise click.ClickException(f"{password_file}: cannot read: {err}") from err
        password = lines[0] if lines else ""
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        check_password(password)
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    password_hash = hash_password(password)
    role_name: Role = "admin" if role == "admin" else "guard" if role == "guard" else "viewer"
    actor = f"cli:{getpass.getuser()}"
    try:
        store = open_store(config)
    except HubError as err:
        raise click.ClickException(str(err)) from err
    try:
        try:
            store.add_user(username, password_hash, role_name)
            action = "added"
        except AlreadyExists as err:
            if not update:
                raise click.ClickException(f"{err}; use --update to change it") from err
            store.update_user(username, password_hash=password_hash, role=role_name)
            action = "updated"
        store.audit(actor, f"user.{action}", target=username, detail=role_name)
    except HubError as err:
        raise click.ClickException(str(err)) from err
    finally:
        store.close()
    click.echo(f"{action} {username} ({role_name})")
