"""``pintu registry``: run the central registry and do an operator's work from a shell."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pintu.commands.common import echo_json

if TYPE_CHECKING:
    from registry.config import RegistryConfig
    from registry.importer import ImportReport
    from registry.service import Registry

_CONFIG = click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The registry's TOML configuration.",
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")


def _load(path: Path) -> RegistryConfig:
    from registry.config import load_config
    from registry.errors import ConfigError

    try:
        return load_config(path)
    except ConfigError as err:
        raise click.ClickException(f"bad configuration:\n{err}") from err


@contextmanager
def _registry(path: Path, *, make_key: bool = False) -> Iterator[Registry]:
    """The registry of a configuration, opened for one command; errors become one line."""
    from registry.errors import RegistryError
    from registry.service import Registry

    config = _load(path)
    try:
        registry = Registry.open(config, make_key=make_key)
    except RegistryError as err:
        raise click.ClickException(str(err)) from err
    try:
        yield registry
    except RegistryError as err:
        raise click.ClickException(str(err)) from err
    finally:
        registry.close()


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


@click.group()
def registry() -> None:
    """The central registry: persons and statuses, passes and keys, facilities, tracing.

    \b
    Example:
      pintu registry check-config --config /etc/pintu/registry.toml
      pintu registry add-operator --config /etc/pintu/registry.toml --username dewi
      pintu registry serve --config /etc/pintu/registry.toml
    """


@registry.command("check-config")
@_CONFIG
@_JSON
def check_config(config_path: Path, as_json: bool) -> None:
    """Check a registry configuration; name every bad key and its line.

    Exit status 0 when the configuration is good, 1 otherwise.

    \b
    Example:
      pintu registry check-config --config registry.toml
    """
    config = _load(config_path)
    if as_json:
        echo_json(config.model_dump(mode="json"))
        return
    click.echo(
        f"{config_path}: ok: API on {config.web.host}:{config.web.port}; store "
        f"{config.store.describe()}; keys in {config.keys_dir}; tracing window "
        f"{config.tracing_window_days} days; passes valid {config.pass_valid_days} days"
    )


@registry.command("serve")
@_CONFIG
def serve(config_path: Path) -> None:
    """Run the registry's API until SIGTERM or Ctrl-C.

    Creates the subject key and a first signing key when they are missing, purges visits
    past the tracing window periodically, and tells systemd when it is ready
    (Type=notify).

    \b
    Example:
      pintu -v registry serve --config /etc/pintu/registry.toml
    """
    from registry.errors import RegistryError
    from registry.server import serve as serve_registry

    config = _load(config_path)
    try:
        serve_registry(config)
    except RegistryError as err:
        raise click.ClickException(str(err)) from err


def _read_password(password_file: Path | None) -> str:
    if password_file is None:
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
    try:
        lines = password_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise click.ClickException(f"{password_file}: cannot read: {err}") from err
    return lines[0] if lines else ""


@registry.command("add-operator")
@_CONFIG
@click.option("--username", required=True, help="The operator's login name.")
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Read the password (10+ characters) from this file's first line; without it, it "
    "is asked for twice. Never give a password on the command line.",
)
@click.option(
    "--update", is_flag=True, help="If the operator exists, set their password instead of failing."
)
def add_operator(
    config_path: Path, username: str, password_file: Path | None, update: bool
) -> None:
    """Add a registry operator account (the registry may be running).

    Operators log in with POST /api/v1/login and use the answer as a bearer token.

    \b
    Example:
      pintu registry add-operator --config registry.toml --username dewi \\
          --password-file /run/credentials/dewi-password
    """
    from registry.errors import AlreadyExists

    password = _read_password(password_file)
    with _registry(config_path) as reg:
        try:
            action = reg.add_operator(username, password, update=update)
        except AlreadyExists as err:
            raise click.ClickException(f"{err}; --update changes its password") from err
    click.echo(f"{action} operator {username}")


def _progress(report: ImportReport) -> None:
    from registry.importer import BATCH_ROWS

    if report.rows < BATCH_ROWS:
        return  # a short file needs no progress report
    click.echo(
        f"... {report.rows:,} rows read: {report.applied:,} applied, "
        f"{report.unchanged:,} unchanged, {report.rejected:,} rejected",
        err=True,
    )


@registry.command("import-csv")
@_CONFIG
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@_JSON
@click.option("--quiet", is_flag=True, help="No progress lines on stderr.")
def import_persons(config_path: Path, file: Path, as_json: bool, quiet: bool) -> None:
    """Import persons and statuses from a CSV file (header nik,name,status,doses).

    Good rows are applied; each bad row is reported with its line number and reason and
    changes nothing. Progress goes to stderr every 5,000 rows. Exit status 1 when any
    row was rejected.

    \b
    Example:
      pintu registry import-csv --config registry.toml people.csv
    """
    from registry.errors import InvalidInput

    with _registry(config_path) as reg:
        try:
            with file.open(encoding="utf-8-sig", newline="") as fh:
                report = reg.import_csv(fh, _actor(), None if quiet else _progress)
        except InvalidInput as err:
            raise click.ClickException(f"{file}: {err}") from err
        except UnicodeDecodeError as err:
            raise click.ClickException(
                f"{file}: not UTF-8 text ({err.reason}); rows before that point were applied"
            ) from err
    if as_json:
        echo_json(report.to_json())
    else:
        for error in report.errors:
            click.echo(f"{file}:{error.line}: {error.reason}")
        click.echo(
            f"{report.rows:,} rows: {report.created:,} created, {report.updated:,} updated, "
            f"{report.renamed:,} renamed, {report.unchanged:,} unchanged, "
            f"{report.rejected:,} rejected"
        )
    if report.rejected:
        raise SystemExit(1)


@registry.command("issue-pass")
@_CONFIG
@click.option("--nik", required=True, help="The person's 16-digit NIK.")
@click.option(
    "--png",
    "png_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write the pass's QR code (level M) to this PNG file.",
)
@click.option(
    "--link",
    is_flag=True,
    help="Print a one-time link that puts the pass in the person's phone wallet instead.",
)
@_JSON
def issue_pass(
    config_path: Path, nik: str, png_path: Path | None, link: bool, as_json: bool
) -> None:
    """Issue a pass for a person with the current signing key and print its text.

    The pass carries the person's subject id, status and doses and lasts
    pass_valid_days. With --link, print a one-time link for the person's phone
    instead: opened once within wallet_link_hours, it puts the pass in the wallet
    (and retires the wallet of any phone activated before).

    \b
    Example:
      pintu registry issue-pass --config registry.toml --nik 3174054512900001 --png pass.png
    \b
    Example, a link for the person's phone:
      pintu registry issue-pass --config registry.toml --nik 3174054512900001 --link
    """
    from protocol.trust import format_time

    if link:
        if png_path is not None:
            raise click.UsageError("--png and --link do not go together")
        _wallet_link(config_path, nik, as_json)
        return
    with _registry(config_path, make_key=True) as reg:
        issued = reg.issue_pass(nik, _actor())
    if png_path is not None:
        try:
            png_path.write_bytes(issued.qr_png())
        except OSError as err:
            raise click.ClickException(f"{png_path}: cannot write: {err.strerror}") from err
    if as_json:
        echo_json(
            {
                "text": issued.text,
                "subject": issued.person.subject,
                "status": issued.person.status.label,
                "doses": issued.person.doses,
                "kid": issued.kid,
                "issued_at": format_time(issued.issued_at),
                "expires_at": format_time(issued.expires_at),
                "png": str(png_path) if png_path else None,
            }
        )
    else:
        click.echo(issued.text)


def _wallet_link(config_path: Path, nik: str, as_json: bool) -> None:
    from protocol.trust import format_time
    from registry import wallet

    with _registry(config_path, make_key=True) as reg:
        issued = wallet.issue_link(reg, nik, _actor())
    if as_json:
        echo_json(
            {
                "link": issued.url,
                "subject": issued.person.subject,
                "expires_at": format_time(issued.expires_at),
            }
        )
    else:
        click.echo(issued.url)


@registry.command("rotate-key")
@_CONFIG
@_JSON
def rotate_key(config_path: Path, as_json: bool) -> None:
    """Make a new signing key current; the others stop signing now.

    Retired keys stay in the trust list with not_after set, so the passes they signed
    stay valid until they expire. Takes effect in a running registry at once.

    \b
    Example:
      pintu registry rotate-key --config registry.toml
    """
    with _registry(config_path) as reg:
        rotation = reg.rotate_key(_actor())
    if as_json:
        echo_json({"kid": rotation.new_kid, "retired": list(rotation.retired)})
    else:
        retired = ", ".join(rotation.retired) or "none"
        click.echo(f"key {rotation.new_kid} is current; retired: {retired}")


@registry.command("revoke-key")
@_CONFIG
@click.argument("kid")
@_JSON
def revoke_key(config_path: Path, kid: str, as_json: bool) -> None:
    """Revoke signing key KID: doors refuse its passes once they have the new trust list.

    Revoking the current key first makes a new one current.

    \b
    Example:
      pintu registry revoke-key --config registry.toml 1a2b3c4d
    """
    with _registry(config_path) as reg:
        rotation = reg.revoke_key(kid, _actor())
    if as_json:
        echo_json({"revoked": kid.lower(), "rotated_to": rotation.new_kid if rotation else None})
    else:
        click.echo(f"key {kid.lower()} revoked")
        if rotation is not None:
            click.echo(f"key {rotation.new_kid} is current")


@registry.command("rotate-list-key")
@_CONFIG
@_JSON
def rotate_list_key(config_path: Path, as_json: bool) -> None:
    """Make a new list key current: it signs the doors' lists from now on.

    The current list key signs a statement naming the new one; hubs relay it, and each
    door that pinned the old key pins the new one and takes lists signed by it. Doors
    enrolled from now on should get the new list-keys.json (see list-keys). Takes effect
    in a running registry at once.

    \b
    Example:
      pintu registry rotate-list-key --config registry.toml
    """
    with _registry(config_path) as reg:
        rotation = reg.rotate_list_key(_actor())
        pin_path = reg.list_keys.pin_path
    if as_json:
        echo_json(
            {
                "kid": rotation.new_kid,
                "previous": list(rotation.old_kids),
                "seq": rotation.seq,
                "list_keys": str(pin_path),
            }
        )
    else:
        previous = ", ".join(rotation.old_kids) or "none"
        click.echo(
            f"list key {rotation.new_kid} is current (statement {rotation.seq}, signed by "
            f"{previous}); doors follow it at their hub's next sync"
        )
        click.echo(f"enrol new doors with --list-keys {pin_path}")


@registry.command("list-keys")
@_CONFIG
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the document here instead of printing it.",
)
def list_keys(config_path: Path, out: Path | None) -> None:
    """Print the list keys a door pins at enrolment (the newest statement's keys).

    Give the file to `pintu provision node enroll --list-keys`. It holds public keys
    only. Makes a first list key if the registry has none yet.

    \b
    Example:
      pintu registry list-keys --config registry.toml --out list-keys.json
    """
    with _registry(config_path) as reg:
        reg.list_keys.ensure_key(reg.now())
        pinned = reg.list_keys.state().pinned
    if out is None:
        click.echo(pinned.dumps(), nl=False)
        return
    pinned.save(out)
    click.echo(f"{out}: list key {', '.join(pinned.kids)} (statement {pinned.seq})")


@registry.command("purge")
@_CONFIG
@_JSON
def purge(config_path: Path, as_json: bool) -> None:
    """Delete visits older than the tracing window, and expired logins.

    The running registry does this every purge_interval_s as well.

    \b
    Example:
      pintu registry purge --config registry.toml
    """
    from protocol.trust import format_time

    with _registry(config_path) as reg:
        done = reg.purge()
    if as_json:
        echo_json(
            {"visits": done.visits, "tokens": done.tokens, "before": format_time(done.before)}
        )
    else:
        click.echo(f"purged {done.visits} visits that ended before {format_time(done.before)}")


@registry.command("hub-token")
@_CONFIG
@click.option("--facility", "facility_id", required=True, help="The active facility's id.")
@_JSON
def hub_token(config_path: Path, facility_id: str, as_json: bool) -> None:
    """Issue a new bearer token for a facility's hub; its older tokens stop working.

    The token is printed once; the registry keeps only its hash.

    \b
    Example:
      pintu registry hub-token --config registry.toml --facility mall-a-3f9c01
    """
    with _registry(config_path) as reg:
        token, replaced = reg.issue_hub_token(_actor(), facility_id)
    if as_json:
        echo_json({"facility_id": facility_id, "hub_token": token, "replaced": replaced})
    else:
        click.echo(token)


@registry.group("requests")
def requests_group() -> None:
    """Facilities' registration requests: list them, verify or reject one.

    \b
    Example:
      pintu registry requests list --config registry.toml
      pintu registry requests verify --config registry.toml pasar-baru-blok-a-1a2b3c \\
          --url https://registry.example.id
      pintu registry requests reject --config registry.toml toko-x-9f8e7d \\
          --reason "The name does not match the business permit."
    """


@requests_group.command("list")
@_CONFIG
@click.option(
    "--state",
    type=click.Choice(["requested", "verified", "active", "rejected", "all"]),
    default="requested",
    show_default=True,
    help="Which requests: those waiting for an operator by default.",
)
@_JSON
def requests_list(config_path: Path, state: str, as_json: bool) -> None:
    """List registration requests (those waiting for verification by default).

    \b
    Example:
      pintu registry requests list --config registry.toml --state all --json
    """
    from protocol.trust import format_time
    from registry.records import FacilityState

    with _registry(config_path) as reg:
        found = reg.store.list_facilities(None if state == "all" else FacilityState(state))
    rows = [
        {
            "id": f.id,
            "name": f.name,
            "type": f.type,
            "address": f.address,
            "capacity": f.capacity,
            "pic_name": f.pic_name,
            "pic_email": f.pic_email,
            "state": f.state.value,
            "reason": f.reason,
            "created_at": format_time(f.created_at),
        }
        for f in found
    ]
    if as_json:
        echo_json({"requests": rows})
        return
    if not rows:
        click.echo(f"no {state} requests" if state != "all" else "no requests")
    for row in rows:
        line = f"{row['id']}: {row['name']} ({row['type']}, {row['capacity']}) {row['state']}"
        click.echo(f"{line}; PIC {row['pic_name']} <{row['pic_email']}>")
        if row["reason"]:
            click.echo(f"  reason: {row['reason']}")


@requests_group.command("verify")
@_CONFIG
@click.argument("facility_id")
@click.option(
    "--url",
    default=None,
    metavar="URL",
    help="The registry's public address: prints the PIC's activation link too.",
)
@_JSON
def requests_verify(config_path: Path, facility_id: str, url: str | None, as_json: bool) -> None:
    """Verify FACILITY_ID's request; prints the PIC's one-time activation token.

    Verifying again issues a new token and the older one stops working. The token is
    printed once; the registry keeps only its hash.

    \b
    Example:
      pintu registry requests verify --config registry.toml pasar-baru-blok-a-1a2b3c \\
          --url https://registry.example.id
    """
    from protocol.trust import format_time

    with _registry(config_path) as reg:
        done = reg.verify_facility(facility_id, _actor())
    link = f"{url.rstrip('/')}/activate/{facility_id}?token={done.token}" if url else None
    if as_json:
        echo_json(
            {
                "facility_id": facility_id,
                "activation_token": done.token,
                "activation_expires_at": format_time(done.expires_at),
                "activation_link": link,
            }
        )
        return
    click.echo(f"facility {facility_id} is verified; send the PIC ({done.facility.pic_email}):")
    click.echo(link or done.token)
    click.echo(f"valid until {format_time(done.expires_at)}")


@requests_group.command("reject")
@_CONFIG
@click.argument("facility_id")
@click.option("--reason", required=True, help="Why; the PIC reads it on the request's page.")
@_JSON
def requests_reject(config_path: Path, facility_id: str, reason: str, as_json: bool) -> None:
    """Reject FACILITY_ID's request with a reason the PIC then reads.

    \b
    Example:
      pintu registry requests reject --config registry.toml toko-x-9f8e7d \\
          --reason "The name does not match the business permit."
    """
    with _registry(config_path) as reg:
        done = reg.reject_facility(facility_id, reason, _actor())
    if as_json:
        echo_json({"facility_id": done.id, "state": done.state.value, "reason": done.reason})
    else:
        click.echo(f"facility {done.id} is rejected: {done.reason}")
