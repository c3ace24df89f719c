"""``pintu provision``: the technician's tools: the facility broker, door nodes, posters."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from pintu.commands.common import Duration, echo_json
from pintu.commands.facility import facility

if TYPE_CHECKING:
    from provisioning.enroll import Enrolment, FleetChange, Reload
    from provisioning.inventory import NodeRecord

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_BROKER_DIR = "/etc/pintu/broker"


@contextmanager
def _errors() -> Iterator[None]:
    """Turn the tools' errors into one clear line and exit status 1."""
    from protocol.errors import ProtocolError
    from provisioning.errors import ProvisioningError

    try:
        yield
    except (ProvisioningError, ProtocolError) as err:
        raise click.ClickException(str(err)) from err


def _say(message: str) -> None:
    # Progress goes to stderr so that stdout stays clean for --json readers.
    click.echo(f"... {message}", err=True)


_BROKER_DIR = click.option(
    "--broker-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_BROKER_DIR,
    show_default=True,
    envvar="PINTU_BROKER_DIR",
    help="The facility broker's directory: mosquitto.conf, passwd, acl and the fleet "
    "inventory (fleet.json). Also read from $PINTU_BROKER_DIR.",
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")


def _reload_options(func: F) -> F:
    @click.option(
        "--reload",
        "reload_unit",
        is_flag=True,
        help="Reload the broker through systemd (`systemctl reload` of --broker-unit) so "
        "the change takes effect at once.",
    )
    @click.option(
        "--broker-unit",
        default="mosquitto.service",
        show_default=True,
        help="The broker's systemd unit, for --reload.",
    )
    @click.option(
        "--broker-pid",
        type=click.IntRange(min=1),
        default=None,
        help="Reload the broker by sending this process a SIGHUP instead.",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _reload(reload_unit: bool, broker_unit: str, broker_pid: int | None) -> Reload | None:
    from provisioning.enroll import Reload

    if broker_pid is not None:
        return Reload(pid=broker_pid)
    if reload_unit:
        return Reload(unit=broker_unit)
    return None


def _node_doc(record: NodeRecord) -> dict[str, Any]:
    doc: dict[str, Any] = record.model_dump(mode="json", exclude={"password_hash"})
    doc["mqtt_username"] = record.username
    return doc


def _change_doc(change: FleetChange) -> dict[str, Any]:
    return {
        "hub_doors_changes": change.door_changes,
        "hub_doors_snippet": str(change.snippet) if change.snippet else None,
        "broker_reloaded": change.reloaded,
    }


def _report_change(change: FleetChange, broker_unit: str) -> None:
    if change.reloaded:
        click.echo(f"broker: {change.reloaded}")
    else:
        click.echo(
            f"broker: NOT reloaded; run `systemctl reload {broker_unit}` (or pass --reload) "
            "for the change to take effect"
        )
    if change.door_changes:
        click.echo("hub.toml: make this change, then restart the hub:")
        for line in change.door_changes:
            click.echo(f"  {line}")
        if change.snippet:
            click.echo(f"  (the doors as they should be: {change.snippet})")


def _enrolment_doc(enrolment: Enrolment) -> dict[str, Any]:
    return {
        **_node_doc(enrolment.record),
        "bundle": str(enrolment.bundle_dir),
        "archive": str(enrolment.archive),
        **_change_doc(enrolment.change),
    }


def _report_enrolment(enrolment: Enrolment, broker_unit: str) -> None:
    record = enrolment.record
    click.echo(
        f"node {record.node_id} enrolled for {record.facility_id}/{record.door_id} "
        f"({record.direction})"
    )
    click.echo(f"bundle: {enrolment.bundle_dir} and {enrolment.archive} (holds its secrets)")
    click.echo(
        f"on the Pi: tar xzf {enrolment.archive.name} && cd {record.node_id} && sudo ./install.sh"
    )
    _report_change(enrolment.change, broker_unit)


@click.group()
def provision() -> None:
    """The technician's tools: facility registration, the broker, door nodes, posters.

    \b
    Example:
      pintu provision facility register --registry https://registry.example.id ...
      pintu provision broker init --dir /etc/pintu/broker --facility "mall-a=Mall A"
      pintu provision node enroll --facility mall-a --door main-in --direction entry \\
          --broker hub.local:8883 --out bundles/ --reload
      pintu provision poster --facility mall-a --door main-in --out main-in.png \\
          --registry https://registry.example.id
    """


provision.add_command(facility)


# -- broker --------------------------------------------------------------------------


@provision.group()
def broker() -> None:
    """The facility's Mosquitto: configuration, password file and ACL.

    \b
    Example:
      pintu provision broker init --dir /etc/pintu/broker --facility "mall-a=Mall A"
    """


def _facility(text: str) -> tuple[str, str]:
    ident, _, name = text.partition("=")
    return ident.strip(), (name.strip() or ident.strip())


@broker.command("init")
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for mosquitto.conf, passwd, acl and the fleet inventory (created).",
)
@click.option(
    "--facility",
    "facilities",
    multiple=True,
    required=True,
    metavar="ID[=NAME]",
    help="A facility this broker serves, with the name people see; repeat for several.",
)
@click.option("--listen", default=None, help="Address to listen on (default: every interface).")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="TCP port (default 8883)."
)
@click.option(
    "--persistence-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the broker keeps its state (default /var/lib/mosquitto).",
)
@click.option(
    "--max-queued",
    type=click.IntRange(min=1000),
    default=None,
    help="Messages queued for the hub while it is away (default 100000).",
)
@click.option("--run-as", default=None, help="System user the broker drops to when root.")
@click.option(
    "--tls-name",
    "tls_names",
    multiple=True,
    metavar="HOST",
    help="A host name or address nodes and the hub reach the broker at, named in its "
    "certificate from the facility CA; repeat for several (default: the listen address or "
    "localhost, and 127.0.0.1).",
)
@click.option(
    "--tls/--no-tls",
    default=None,
    help="TLS with the facility CA (the default), or plain MQTT for a network nobody "
    "else can join.",
)
@click.option(
    "--certfile",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="TLS server certificate (PEM) from a CA of your own, instead of the facility CA.",
)
@click.option(
    "--keyfile",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="TLS server key (PEM), with --certfile.",
)
@click.option(
    "--discovery-prefix",
    default=None,
    help="Home Assistant's discovery prefix the hub may publish under (default homeassistant).",
)
@_JSON
def broker_init(
    directory: Path,
    facilities: tuple[str, ...],
    listen: str | None,
    port: int | None,
    persistence_dir: Path | None,
    max_queued: int | None,
    run_as: str | None,
    tls_names: tuple[str, ...],
    tls: bool | None,
    certfile: Path | None,
    keyfile: Path | None,
    discovery_prefix: str | None,
    as_json: bool,
) -> None:
    """Create the facility broker's directory, or add facilities and settings to it.

    Writes mosquitto.conf (TLS with a facility CA, no anonymous clients, a password file and
    an ACL, persistence on), the facility CA (ca.pem: the hub's [mqtt] tls_ca_file; every
    node bundle carries it), the hub's MQTT user and its password (hub-mqtt-password, mode
    0600: give it to the hub as its mqtt-password credential), and an empty fleet
    inventory. Run again on the
    same directory to add a facility or change a setting; nodes and the hub's password stay.

    \b
    Example:
      pintu provision broker init --dir /etc/pintu/broker --facility "mall-a=Mall A" \\
          --tls-name hub.local
      mosquitto -c /etc/pintu/broker/mosquitto.conf
    """
    from provisioning.broker import CONF, HUB_PASSWORD
    from provisioning.inventory import Facility, init_fleet

    given: dict[str, object] = {
        "listen": listen,
        "port": port,
        "persistence_dir": persistence_dir,
        "max_queued_messages": max_queued,
        "run_as": run_as,
        "tls": tls,
        "tls_names": tls_names or None,
        "certfile": certfile,
        "keyfile": keyfile,
    }
    settings = {k: v for k, v in given.items() if v is not None}
    pairs = [_facility(text) for text in facilities]
    for ident, _ in pairs:
        _check_ids(facility=ident)
    with _errors():
        wanted = [Facility(id=i, name=n[:200]) for i, n in pairs]
        fleet, hub_password = init_fleet(
            directory, wanted, settings=settings, discovery_prefix=discovery_prefix
        )
    hub_file = fleet.directory / HUB_PASSWORD
    if as_json:
        echo_json(
            {
                "dir": str(fleet.directory),
                "conf": str(fleet.directory / CONF),
                "facilities": [f.id for f in fleet.inventory.facilities],
                "hub_username": fleet.inventory.hub.username,
                "hub_password_file": str(hub_file),
                "new": hub_password is not None,
            }
        )
        return
    click.echo(f"broker directory {fleet.directory}: {fleet.directory / CONF}")
    click.echo("facilities: " + ", ".join(f.id for f in fleet.inventory.facilities))
    if hub_password is not None:
        click.echo(
            f"hub MQTT user {fleet.inventory.hub.username!r}, password in {hub_file}: copy it "
            "to /etc/pintu/hub-mqtt-password on the hub (mode 0600)"
        )


# -- nodes ---------------------------------------------------------------------------


@provision.group("node")
def node_group() -> None:
    """Door nodes: enrol, list, show, revoke and replace.

    \b
    Example:
      pintu provision node enroll --facility mall-a --door main-in --direction entry \\
          --broker hub.local:8883 --out bundles/ --reload
      pintu provision node list
    """


@node_group.command("enroll")
@_BROKER_DIR
@click.option("--facility", required=True, help="The facility id, as the broker knows it.")
@click.option("--door", required=True, help="The door id this node guards.")
@click.option(
    "--direction",
    required=True,
    type=click.Choice(["entry", "exit", "both"]),
    help="What a passage through the door means.",
)
@click.option(
    "--broker",
    "broker_address",
    required=True,
    metavar="HOST[:PORT]",
    help="The broker as the node reaches it, e.g. hub.local:1883.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory the node's bundle and its .tar.gz go into.",
)
@click.option("--hub-url", default=None, help="The facility hub's URL, noted in node.toml.")
@click.option("--door-name", default=None, help="The door's name for staff (default: its id).")
@click.option("--node-id", default=None, help="The node's id (default: <door>-<n>).")
@click.option(
    "--trust",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Trust list (trust.json) to start the node with.",
)
@click.option(
    "--list-keys",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The registry's list keys (list-keys.json, from `pintu registry list-keys`) the "
    "node pins: it believes a list from the hub only when one of them signed it.",
)
@click.option(
    "--wheel",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A Pintu wheel to put in the bundle; install.sh installs it.",
)
@click.option(
    "--pintu-source",
    default="",
    help="What install.sh installs Pintu from on the Pi (a wheel, a directory or a URL).",
)
@click.option(
    "--tls-ca-file",
    default=None,
    help="CA certificate path on the Pi to verify a TLS broker with.",
)
@click.option(
    "--qr",
    "qr_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also leave the bundle sealed at the hub (--hub-url) and write the provisioning "
    "QR code that unlocks it to this PNG (mode 0600). A blank node shown it enrols itself.",
)
@click.option(
    "--token-ttl",
    type=Duration(),
    default="30m",
    show_default=True,
    metavar="DURATION",
    help="How long the provisioning QR works (90s, 30m, 2h, 1d; at most 7d). It works once.",
)
@click.option(
    "--hub-user",
    default=None,
    envvar="PINTU_HUB_USER",
    help="A hub admin's user name, to file the sealed bundle with --qr ($PINTU_HUB_USER).",
)
@click.option(
    "--hub-password-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    envvar="PINTU_HUB_PASSWORD_FILE",
    help="File holding that admin's password; asked for when not given.",
)
@_reload_options
@_JSON
def node_enroll(
    broker_dir: Path,
    facility: str,
    door: str,
    direction: str,
    broker_address: str,
    out: Path,
    hub_url: str | None,
    door_name: str | None,
    node_id: str | None,
    trust: Path | None,
    list_keys: Path | None,
    wheel: Path | None,
    pintu_source: str,
    tls_ca_file: str | None,
    qr_path: Path | None,
    token_ttl: int,
    hub_user: str | None,
    hub_password_file: Path | None,
    reload_unit: bool,
    broker_unit: str,
    broker_pid: int | None,
    as_json: bool,
) -> None:
    """Enrol a new door node: identity, MQTT credentials, ACL and its install bundle.

    The node gets an id, its own Ed25519 key pair and MQTT password, and an ACL that lets it
    write only its own topics. Its bundle (node.toml, mqtt-password, node key, trust list,
    list keys, the systemd unit and install.sh) is written to OUT/<node id> and
    OUT/<node id>.tar.gz.

    With --qr the bundle is also sealed with a one-time token and left at the hub; the
    token is only in the QR code written to the PNG. A node started with no configuration
    (`pintu node run --config FILE` where FILE does not exist) shown that QR fetches the
    bundle once, writes FILE and starts. If the hub refuses, nothing is enrolled.

    \b
    Example:
      pintu provision node enroll --facility mall-a --door main-in --direction entry \\
          --broker hub.local:8883 --hub-url http://hub.local:8080 \\
          --trust keys/trust.json --list-keys keys/list-keys.json --out bundles/ --reload
      pintu provision node enroll --facility mall-a --door main-in --direction entry \\
          --broker hub.local:8883 --hub-url http://hub.local:8080 --out bundles/ \\
          --qr main-in.png --token-ttl 30m --hub-user admin --reload
    """
    from provisioning.enroll import EnrolRequest, enroll
    from provisioning.qr import MAX_TTL_S, ProvisioningQr, QrRequest, publish

    request = EnrolRequest(
        facility_id=facility,
        door_id=door,
        direction=direction,  # type: ignore[arg-type]  # click.Choice checked it
        broker=broker_address,
        hub_url=hub_url,
        door_name=door_name,
        node_id=node_id,
        trust=trust,
        list_keys=list_keys,
        wheel=wheel,
        pintu_source=pintu_source,
        tls_ca_file=tls_ca_file,
    )
    published: list[ProvisioningQr] = []
    hook: Callable[[NodeRecord, Path], None] | None = None
    if qr_path is not None:
        if hub_url is None:
            raise click.UsageError("--qr needs --hub-url: the node fetches its bundle there")
        if hub_user is None:
            raise click.UsageError("--qr needs --hub-user: a hub admin files the sealed bundle")
        if token_ttl > MAX_TTL_S:
            raise click.BadParameter("at most 7d", param_hint="--token-ttl")
        qr_request = QrRequest(
            out=qr_path,
            hub_url=hub_url,
            hub_user=hub_user,
            hub_password=_hub_password(hub_password_file, hub_user),
            ttl_s=token_ttl,
        )

        def file_at_hub(record: NodeRecord, staging: Path) -> None:
            _say(f"sealing the bundle and filing it at {qr_request.hub_url}")
            published.append(publish(record, staging, qr_request))

        hook = file_at_hub

    with _errors():
        _check_ids(facility=facility, door=door, node=node_id)
        enrolment = enroll(
            broker_dir,
            request,
            out,
            reload=_reload(reload_unit, broker_unit, broker_pid),
            progress=_say,
            before_commit=hook,
        )
    if as_json:
        doc = _enrolment_doc(enrolment)
        if published:
            doc["qr"] = {
                "path": str(published[0].path),
                "expires_at": published[0].expires_at,
                "version": published[0].version,
                "facility_pin": published[0].pin,
            }
        echo_json(doc)
    else:
        _report_enrolment(enrolment, broker_unit)
        if published:
            qr = published[0]
            click.echo(
                f"provisioning QR: {qr.path} (works once, until {qr.expires_at}); show it to "
                "the node's camera, then delete it"
            )
            if qr.pin is not None:
                click.echo(
                    f"facility pin: {qr.pin} (the node logs the pin it belongs to; they "
                    "must be the same)"
                )


def _hub_password(path: Path | None, user: str) -> str:
    if path is not None:
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as err:
            raise click.ClickException(f"cannot read {path}: {err}") from err
    return str(click.prompt(f"hub password of {user}", hide_input=True, err=True))


def _check_ids(**ids: str | None) -> None:
    from protocol.ids import is_id

    for what, value in ids.items():
        if value is not None and not is_id(value):
            raise click.BadParameter(
                "letters, digits, '.', '_' and '-', at most 64, starting with a letter or digit",
                param_hint=f"--{what}" if what != "node" else "--node-id",
            )


@node_group.command("list")
@_BROKER_DIR
@click.option("--facility", default=None, help="Only this facility's nodes.")
@click.option("--all", "show_all", is_flag=True, help="Revoked nodes too.")
@_JSON
def node_list(broker_dir: Path, facility: str | None, show_all: bool, as_json: bool) -> None:
    """List the fleet's nodes (active ones, unless --all).

    \b
    Example:
      pintu provision node list --all
    """
    from provisioning.inventory import Fleet

    with _errors():
        fleet = Fleet.load(broker_dir)
    records = fleet.nodes(facility_id=facility, active_only=not show_all)
    if as_json:
        echo_json({"nodes": [_node_doc(r) for r in records]})
        return
    if not records:
        click.echo("no nodes")
    for r in records:
        state = r.state if r.active else f"revoked {r.revoked_at:%Y-%m-%d}"
        click.echo(
            f"{r.node_id:<24} {r.facility_id}/{r.door_id:<20} {r.direction:<6} {state}"
            f"  enrolled {r.enrolled_at:%Y-%m-%d}"
        )


@node_group.command("show")
@_BROKER_DIR
@click.argument("node_id")
@_JSON
def node_show(broker_dir: Path, node_id: str, as_json: bool) -> None:
    """Show one node's record: door, state, key, history.

    \b
    Example:
      pintu provision node show main-in-1
    """
    from provisioning.inventory import Fleet

    with _errors():
        record = Fleet.load(broker_dir).node(node_id)
    doc = _node_doc(record)
    if as_json:
        echo_json(doc)
        return
    for key, value in doc.items():
        if value is not None:
            click.echo(f"{key}: {value}")


@node_group.command("revoke")
@_BROKER_DIR
@click.argument("node_id")
@click.option(
    "--reason", required=True, help="Why, for the record (lost, stolen, decommissioned...)."
)
@_reload_options
@_JSON
def node_revoke(
    broker_dir: Path,
    node_id: str,
    reason: str,
    reload_unit: bool,
    broker_unit: str,
    broker_pid: int | None,
    as_json: bool,
) -> None:
    """Revoke a node: its broker access goes at once, its record stays.

    The password file and ACL are regenerated without it and the broker reloaded (with
    --reload or --broker-pid), which also drops its current connection. The hub.toml change
    that makes the hub refuse the node is printed.

    \b
    Example:
      pintu provision node revoke main-in-1 --reason "stolen" --reload
    """
    from provisioning.enroll import revoke

    with _errors():
        revocation = revoke(
            broker_dir,
            node_id,
            reason,
            reload=_reload(reload_unit, broker_unit, broker_pid),
            progress=_say,
        )
    if as_json:
        echo_json({**_node_doc(revocation.record), **_change_doc(revocation.change)})
        return
    click.echo(f"node {node_id} revoked")
    _report_change(revocation.change, broker_unit)


@node_group.command("replace")
@_BROKER_DIR
@click.argument("node_id")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory the new node's bundle goes into.",
)
@click.option("--reason", default="replaced", show_default=True, help="Why, for the record.")
@click.option("--new-node-id", default=None, help="The new node's id (default: <door>-<n>).")
@click.option(
    "--trust",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Trust list (trust.json) to start the new node with.",
)
@click.option(
    "--list-keys",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The registry's list keys (list-keys.json) the new node pins.",
)
@click.option(
    "--wheel",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A Pintu wheel to put in the bundle.",
)
@click.option("--pintu-source", default="", help="What install.sh installs Pintu from on the Pi.")
@_reload_options
@_JSON
def node_replace(
    broker_dir: Path,
    node_id: str,
    out: Path,
    reason: str,
    new_node_id: str | None,
    trust: Path | None,
    list_keys: Path | None,
    wheel: Path | None,
    pintu_source: str,
    reload_unit: bool,
    broker_unit: str,
    broker_pid: int | None,
    as_json: bool,
) -> None:
    """Move a door to new hardware: a new node for the same door, the old one revoked.

    The door id stays, so the hub's history of the door goes on; the new node has its own
    id, key and credentials.

    \b
    Example:
      pintu provision node replace main-in-1 --reason "camera broken" --out bundles/ --reload
    """
    from provisioning.enroll import replace

    with _errors():
        _check_ids(node=new_node_id)
        replacement = replace(
            broker_dir,
            node_id,
            out,
            reason=reason,
            new_node_id=new_node_id,
            trust=trust,
            list_keys=list_keys,
            wheel=wheel,
            pintu_source=pintu_source,
            reload=_reload(reload_unit, broker_unit, broker_pid),
            progress=_say,
        )
    if as_json:
        echo_json({"revoked": _node_doc(replacement.old), **_enrolment_doc(replacement.new)})
        return
    click.echo(f"node {node_id} revoked, replaced by {replacement.new.record.node_id}")
    _report_enrolment(replacement.new, broker_unit)


# -- hub doors -----------------------------------------------------------------------


@provision.command("hub-doors")
@_BROKER_DIR
@click.option("--facility", required=True, help="The facility whose doors to show.")
@click.option(
    "--check",
    "hub_config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A hub.toml to compare with the inventory; exit 1 when they disagree.",
)
@_JSON
def hub_doors(broker_dir: Path, facility: str, hub_config: Path | None, as_json: bool) -> None:
    """Print the [[facilities.doors]] tables hub.toml needs, or check a hub.toml.

    The hub refuses events from a node that its door's `nodes` list does not name; this
    keeps that list in step with enrolments, revocations and replacements.

    \b
    Example:
      pintu provision hub-doors --facility mall-a
      pintu provision hub-doors --facility mall-a --check /etc/pintu/hub.toml
    """
    from provisioning import hubdoors
    from provisioning.inventory import Fleet

    with _errors():
        fleet = Fleet.load(broker_dir)
        known = fleet.facility(facility)
        records = fleet.nodes(facility_id=facility)
        problems = hubdoors.check_hub_config(hub_config, facility, records) if hub_config else None
    if problems is None:
        if as_json:
            echo_json(
                {
                    "facility_id": facility,
                    "doors": [
                        {
                            "id": d.door_id,
                            "name": d.name,
                            "direction": d.direction,
                            "nodes": list(d.nodes),
                        }
                        for d in hubdoors.doors_of(records)
                    ],
                }
            )
        else:
            click.echo(hubdoors.render(known, hubdoors.doors_of(records)), nl=False)
        return
    if as_json:
        echo_json({"facility_id": facility, "ok": not problems, "problems": problems})
    else:
        for problem in problems:
            click.echo(f"{hub_config}: {problem}")
        if not problems:
            click.echo(f"{hub_config}: facility {facility}'s doors agree with the fleet")
    if problems:
        raise SystemExit(1)


# -- poster --------------------------------------------------------------------------


@provision.command("poster")
@click.option("--facility", required=True, help="The facility id.")
@click.option("--door", required=True, help="The door id.")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The poster file: PNG, or a one-page PDF when it ends in .pdf.",
)
@click.option(
    "--registry",
    "registry_url",
    required=True,
    envvar="PINTU_REGISTRY_URL",
    metavar="URL",
    help="The registry's public address, e.g. https://registry.example.id: the poster's "
    "code opens URL/d/<facility>/<door> ($PINTU_REGISTRY_URL).",
)
@click.option(
    "--facility-name", default=None, help="The facility's name (default: from the inventory)."
)
@click.option("--door-name", default=None, help="The door's name (default: from the inventory).")
@click.option(
    "--direction",
    type=click.Choice(["entry", "exit", "both"]),
    default=None,
    help="Entrance, exit or both (default: from the inventory, else both).",
)
@click.option(
    "--kind",
    type=click.Choice(["camera", "both"]),
    default="camera",
    show_default=True,
    help="camera: the poster tells visitors to hold their pass up to the door's camera; "
    "both: also to scan the poster with their phone (a 'both' door at the registry).",
)
@click.option(
    "--language",
    type=click.Choice(["id", "en", "id+en", "en+id"]),
    default="id",
    show_default=True,
    help="The poster's language: Bahasa Indonesia, English, or both (the first leads).",
)
@click.option(
    "--broker-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar="PINTU_BROKER_DIR",
    help="Broker directory whose inventory supplies the names; also $PINTU_BROKER_DIR.",
)
@_JSON
def poster(
    facility: str,
    door: str,
    out: Path,
    registry_url: str,
    facility_name: str | None,
    door_name: str | None,
    direction: str | None,
    kind: str,
    language: str,
    broker_dir: Path | None,
    as_json: bool,
) -> None:
    """Make a printable A4 poster for a door node: names, its QR code and how to check in.

    The QR code holds the door's address at the registry, URL/d/<facility>/<door>, which
    any phone's camera opens.

    \b
    Example:
      pintu provision poster --facility mall-a --door main-in --out main-in.png \\
          --registry https://registry.example.id --facility-name "Mall A" \\
          --door-name "Main entrance" --direction entry --language id+en
    """
    from provisioning.inventory import Fleet
    from provisioning.poster import DoorSign, save

    with _errors():
        if broker_dir is not None and (broker_dir / "fleet.json").exists():
            fleet = Fleet.load(broker_dir)
            known = {f.id: f.name for f in fleet.inventory.facilities}
            facility_name = facility_name or known.get(facility)
            doors = {d.door_id: d for d in fleet.doors(facility)} if facility in known else {}
            if door in doors:
                door_name = door_name or doors[door].name
                direction = direction or doors[door].direction
        sign = DoorSign(
            facility_id=facility,
            facility_name=facility_name or facility,
            door_id=door,
            door_name=door_name or door,
            base_url=registry_url,
            direction=direction or "both",
            ways=kind,
            languages=tuple(language.split("+")),
        )
        save(sign, out)
    if as_json:
        echo_json({"out": str(out), "uri": sign.address})
    else:
        click.echo(f"poster for {sign.address} written to {out}")
