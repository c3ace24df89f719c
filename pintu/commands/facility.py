"""``pintu provision facility``: a facility's registration at the registry, from a terminal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from pintu.commands.common import echo_json

_REGISTRY = click.option(
    "--registry",
    "registry_url",
    required=True,
    envvar="PINTU_REGISTRY_URL",
    metavar="URL",
    help="The registry's URL, e.g. https://registry.example.id ($PINTU_REGISTRY_URL).",
)
_FACILITY = click.option(
    "--facility", "facility_id", required=True, help="The id the registration request answered."
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")


@contextmanager
def _errors() -> Iterator[None]:
    from provisioning.errors import ProvisioningError

    try:
        yield
    except ProvisioningError as err:
        raise click.ClickException(str(err)) from err


@click.group()
def facility() -> None:
    """Register a facility at the registry: request, activation, status.

    \b
    Example:
      pintu provision facility register --registry https://registry.example.id \\
          --name "Pasar Baru Blok A" --address "Jl. Pasar Baru 1, Jakarta" --type market \\
          --capacity 300 --pic-name "Budi Santoso" --pic-email budi@pasar.example
      pintu provision facility status --registry https://registry.example.id \\
          --facility pasar-baru-blok-a-1a2b3c
    """


@facility.command("register")
@_REGISTRY
@click.option("--name", required=True, help="The facility's name, as on its posters.")
@click.option("--address", required=True, help="Its street address.")
@click.option(
    "--type",
    "kind",
    required=True,
    help="What kind of place it is: office, mall, market, shop, restaurant, clinic, "
    "hospital, school, government, worship, transport, sports, tourism or other.",
)
@click.option(
    "--capacity", required=True, type=click.IntRange(1, 1_000_000), help="Visitors at once."
)
@click.option("--pic-name", required=True, help="The person in charge (PIC).")
@click.option("--pic-email", required=True, help="The PIC's e-mail: their registry login.")
@_JSON
def register(
    registry_url: str,
    name: str,
    address: str,
    kind: str,
    capacity: int,
    pic_name: str,
    pic_email: str,
    as_json: bool,
) -> None:
    """Ask the registry to register a facility; prints the request's id and state.

    Keep the id: activation and status need it. A registry operator verifies the request
    and gives the PIC a one-time activation token.

    \b
    Example:
      pintu provision facility register --registry https://registry.example.id \\
          --name "Pasar Baru Blok A" --address "Jl. Pasar Baru 1, Jakarta" --type market \\
          --capacity 300 --pic-name "Budi Santoso" --pic-email budi@pasar.example
    """
    from provisioning.facility import FacilityRequest, RegistryFacilities, next_step

    request = FacilityRequest(name, address, kind, capacity, pic_name, pic_email)
    with _errors(), RegistryFacilities(registry_url) as registry:
        created = registry.register(request)
    step = next_step(created, registry_url)
    if as_json:
        echo_json({**created, "next_step": step})
        return
    click.echo(f"facility request {created['id']}: {created['state']}")
    click.echo(f"next: {step}")


def _read_secret(path: Path, what: str) -> str:
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise click.ClickException(f"cannot read the {what} from {path}: {err}") from err
    if not secret:
        # Said here, naming the file: the registry could only refuse an empty field.
        raise click.ClickException(f"the {what} file {path} is empty; nothing was sent")
    return secret


@facility.command("activate")
@_REGISTRY
@_FACILITY
@click.option("--token", default=None, help="The one-time activation token from the operator.")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A file holding the activation token instead.",
)
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A file holding the PIC's new password (10+ characters); asked for twice when "
    "not given. Never on the command line.",
)
@click.option(
    "--hub-token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the facility's hub token here (mode 0600) instead of printing it.",
)
@_JSON
def activate(
    registry_url: str,
    facility_id: str,
    token: str | None,
    token_file: Path | None,
    password_file: Path | None,
    hub_token_file: Path | None,
    as_json: bool,
) -> None:
    """Activate a verified facility with its one-time token and set the PIC's password.

    The registry answers the PIC's user name and the facility's hub token, once: the hub
    syncs with the registry with it. An expired or used token is refused with the reason.

    \b
    Example:
      pintu provision facility activate --registry https://registry.example.id \\
          --facility pasar-baru-blok-a-1a2b3c --token-file activation-token \\
          --hub-token-file /etc/pintu/registry-token
    """
    import os

    from provisioning.facility import RegistryFacilities, next_step

    if token_file is not None and token is None:
        secret = _read_secret(token_file, "activation token")
    elif token is not None and token_file is None:
        secret = token.strip()
        if not secret:
            raise click.UsageError("--token is empty: give the activation token the operator sent")
    else:
        raise click.UsageError("give the activation token with --token or --token-file")
    if password_file is not None:
        password = _read_secret(password_file, "password")
    else:
        password = str(
            click.prompt(
                "the PIC's new password", hide_input=True, confirmation_prompt=True, err=True
            )
        )
    with _errors(), RegistryFacilities(registry_url) as registry:
        done = registry.activate(facility_id, secret, password)
    hub_token = str(done.get("hub_token", ""))
    if hub_token_file is not None:
        try:
            fd = os.open(hub_token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(hub_token + "\n")
        except OSError as err:
            raise click.ClickException(
                f"activated, but the hub token could not be written to {hub_token_file}: "
                f"{err}; the PIC can issue a new one"
            ) from err
    state: dict[str, Any] = done.get("facility", {})
    step = next_step(state, registry_url)
    if as_json:
        doc = {**done, "next_step": step}
        if hub_token_file is not None:
            doc["hub_token"] = None
            doc["hub_token_file"] = str(hub_token_file)
        echo_json(doc)
        return
    click.echo(f"facility {facility_id}: {state.get('state')}; PIC logs in as {done['username']}")
    if hub_token_file is not None:
        click.echo(f"hub token written to {hub_token_file}")
    else:
        click.echo(f"hub token (shown once): {hub_token}")
    click.echo(f"next: {step}")


@facility.command("status")
@_REGISTRY
@_FACILITY
@_JSON
def status(registry_url: str, facility_id: str, as_json: bool) -> None:
    """Show where a facility's registration stands and what the next step is.

    \b
    Example:
      pintu provision facility status --registry https://registry.example.id \\
          --facility pasar-baru-blok-a-1a2b3c
    """
    from provisioning.facility import RegistryFacilities, next_step

    with _errors(), RegistryFacilities(registry_url) as registry:
        state = registry.state(facility_id)
    step = next_step(state, registry_url)
    if as_json:
        echo_json({**state, "next_step": step})
        return
    line = f"facility {facility_id}: {state.get('state')}"
    if state.get("state") == "verified":
        line += f" (activation token valid until {state.get('activation_expires_at')})"
    click.echo(line)
    click.echo(f"next: {step}")


@facility.group("doors")
def doors() -> None:
    """A facility's doors at the registry: add, rename, list, and their posters.

    Logs in as the facility's PIC (their e-mail) or an operator; the password comes from
    a file or is asked for, never from the command line.

    \b
    Example:
      pintu provision facility doors add --registry https://registry.example.id \\
          --facility pasar-baru-blok-a-1a2b3c --user budi@pasar.example \\
          --password-file pic-password --door north-in --name "North entrance" \\
          --direction entrance
      pintu provision facility doors list --registry https://registry.example.id \\
          --facility pasar-baru-blok-a-1a2b3c --user budi@pasar.example
    """


_USER = click.option(
    "--user", required=True, help="Who logs in: the PIC's e-mail, or an operator's name."
)
_PASSWORD_FILE = click.option(
    "--password-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A file holding the password; asked for when not given.",
)


F = TypeVar("F", bound=Callable[..., Any])


def _login_options(func: F) -> F:
    """--registry, --facility, --user and --password-file: whom a door command acts as."""
    for option in (_PASSWORD_FILE, _USER, _FACILITY, _REGISTRY):
        func = option(func)
    return func


@contextmanager
def _logged_in(registry_url: str, user: str, password_file: Path | None) -> Iterator[Any]:
    from provisioning.facility import RegistryFacilities

    if password_file is not None:
        password = _read_secret(password_file, "password")
    else:
        password = str(click.prompt(f"password of {user}", hide_input=True, err=True))
    with _errors(), RegistryFacilities(registry_url) as registry:
        registry.login(user, password)
        yield registry


def _door_line(door: dict[str, Any]) -> str:
    return (
        f"{door['door_id']}: {door['name']} ({door['direction']}, {door.get('kind', 'camera')})"
        f" {door['uri']}"
    )


def _say_door(door: dict[str, Any], verb: str, as_json: bool) -> None:
    if as_json:
        echo_json(door)
    else:
        click.echo(f"{verb} {_door_line(door)}")


@doors.command("add")
@_login_options
@click.option("--door", "door_id", required=True, help="The door's id (the hub uses it too).")
@click.option("--name", required=True, help="The door's name, as on its poster.")
@click.option(
    "--direction",
    type=click.Choice(["entrance", "exit", "both"]),
    required=True,
    help="Whether visitors enter here, leave, or both.",
)
@click.option(
    "--kind",
    type=click.Choice(["camera", "poster", "both"]),
    default="camera",
    show_default=True,
    help="camera: a door node scans passes; poster: phones scan the door's poster; "
    "both: either. The poster's steps say which.",
)
@_JSON
def doors_add(
    registry_url: str,
    facility_id: str,
    user: str,
    password_file: Path | None,
    door_id: str,
    name: str,
    direction: str,
    kind: str,
    as_json: bool,
) -> None:
    """Register a door of an active facility; the hub's visits through it are then accepted.

    \b
    Example:
      pintu provision facility doors add --registry https://registry.example.id \\
          --facility pasar-baru-blok-a-1a2b3c --user budi@pasar.example \\
          --password-file pic-password --door north-out --name "North exit" \\
          --direction exit --kind poster
    """
    with _logged_in(registry_url, user, password_file) as registry:
        door = registry.add_door(facility_id, door_id, name, direction, kind)
    _say_door(door, "added", as_json)


@doors.command("rename")
@_login_options
@click.option("--door", "door_id", required=True, help="The door's id.")
@click.option("--name", required=True, help="Its new name, for its next poster.")
@_JSON
def doors_rename(
    registry_url: str,
    facility_id: str,
    user: str,
    password_file: Path | None,
    door_id: str,
    name: str,
    as_json: bool,
) -> None:
    """Rename a door; its id, and so its poster's code, stay.

    \b
    Example:
      pintu provision facility doors rename --registry https://registry.example.id \\
          --facility pasar-baru-blok-a-1a2b3c --user budi@pasar.example \\
          --door north-out --name "Exit to the car park"
    """
    with _logged_in(registry_url, user, password_file) as registry:
        door = registry.rename_door(facility_id, door_id, name)
    _say_door(door, "renamed", as_json)


@doors.command("list")
@_login_options
@_JSON
def doors_list(
    registry_url: str, facility_id: str, user: str, password_file: Path | None, as_json: bool
) -> None:
    """List the facility's doors as the registry has them.

    \b
    Example:
      pintu provision facility doors list --registry https://registry.example.id \\
          --facility pasar-baru-blok-a-1a2b3c --user budi@pasar.example --json
    """
    with _logged_in(registry_url, user, password_file) as registry:
        found = registry.doors(facility_id)
    if as_json:
        echo_json({"doors": found})
        return
    if not found:
        click.echo("no doors yet")
    for door in found:
        click.echo(_door_line(door))


@doors.command("poster")
@_login_options
@click.option("--door", "door_id", required=True, help="The door's id.")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The poster file: PNG, or a one-page PDF when it ends in .pdf.",
)
@_JSON
def doors_poster(
    registry_url: str,
    facility_id: str,
    user: str,
    password_file: Path | None,
    door_id: str,
    out: Path,
    as_json: bool,
) -> None:
    """Download a door's poster as the registry makes it (both languages).

    \b
    Example:
      pintu provision facility doors poster --registry https://registry.example.id \\
          --facility pasar-baru-blok-a-1a2b3c --user budi@pasar.example \\
          --door north-in --out north-in.pdf
    """
    kind = "pdf" if out.suffix.lower() == ".pdf" else "png"
    with _logged_in(registry_url, user, password_file) as registry:
        data = registry.poster(facility_id, door_id, kind)
    try:
        out.write_bytes(data)
    except OSError as err:
        raise click.ClickException(f"cannot write the poster to {out}: {err}") from err
    if as_json:
        echo_json({"out": str(out), "bytes": len(data)})
    else:
        click.echo(f"poster of {door_id} written to {out}")
