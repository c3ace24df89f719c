"""A facility's Mosquitto: its configuration, password file and ACL, and reloading it.

A *broker directory* holds everything the broker reads and everything the tools keep:

==================  =============================================================
``mosquitto.conf``  the broker's configuration (``mosquitto -c`` this file)
``passwd``          password file: the hub and every active node (``$7$`` hashes)
``acl``             ACL file: each node its own topics, the hub all of them
``fleet.json``      the fleet inventory these two are generated from
``hub-mqtt-password``  the hub's MQTT password, for the hub's ``LoadCredential=``
``hub-doors-<facility>.toml``  the doors and their allowed nodes, for ``hub.toml``
``passwd.local``, ``acl.local``  optional: other users, copied into the generated files
==================  =============================================================

The password file and the ACL are always regenerated whole from the inventory, so a revoked
node cannot linger in them; Mosquitto re-reads both on SIGHUP.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
from pathlib import Path

from pydantic import Field

from protocol.model import StrictModel
from provisioning.errors import BrokerSetupError
from provisioning.tlsca import SERVER_CERT, SERVER_KEY

logger = logging.getLogger(__name__)

CONF = "mosquitto.conf"
PASSWD = "passwd"  # noqa: S105 - a file name
ACL = "acl"
PASSWD_LOCAL = "passwd.local"  # noqa: S105 - a file name
ACL_LOCAL = "acl.local"
HUB_PASSWORD = "hub-mqtt-password"  # noqa: S105 - a file name
DEFAULT_MAX_QUEUED = 100_000
# The largest message of the protocol is the retained status list a hub sends its doors,
# 17 bytes a subject (docs/protocol.md, section 4): 8 MiB holds about 490,000 subjects, far
# more than the subjects a door is told about. Every other message is under 64 kB.
DEFAULT_MAX_PACKET = 8 * 1024 * 1024
# What the broker may queue for one absent client (the hub): a day of a busy facility's
# events at about 1 kB each is well under this; past it the nodes' journals resend.
DEFAULT_MAX_QUEUED_BYTES = 256 * 1024 * 1024


class BrokerSettings(StrictModel):
    """How the facility's broker listens and keeps its state."""

    listen: str | None = Field(
        None, description="Address to listen on; none listens on every interface."
    )
    port: int = Field(8883, ge=1, le=65535, description="TCP port (8883 is usual with TLS).")
    persistence_dir: Path = Field(
        Path("/var/lib/mosquitto"),
        description="Where the broker keeps queued messages and retained state across restarts.",
    )
    max_queued_messages: int = Field(
        DEFAULT_MAX_QUEUED,
        ge=1000,
        description="Messages the broker queues per persistent session (the hub's) while the "
        "client is away.",
    )
    max_packet_bytes: int = Field(
        DEFAULT_MAX_PACKET,
        ge=64 * 1024,
        le=256 * 1024 * 1024,
        description="Largest MQTT packet the broker takes; a client sending a larger one is "
        "disconnected and its message dropped.",
    )
    max_queued_bytes: int = Field(
        DEFAULT_MAX_QUEUED_BYTES,
        ge=1024 * 1024,
        description="Bytes the broker queues per persistent session while the client is away.",
    )
    run_as: str | None = Field(
        None,
        description="System user the broker drops to when started as root; none keeps "
        "Mosquitto's default (mosquitto).",
    )
    tls: bool = Field(
        True,
        description="Speak TLS only, with a certificate from the facility CA the tools make "
        "(ca.pem, given to every node and the hub). Off only for a broker reached over a "
        "network nobody else can join.",
    )
    tls_names: tuple[str, ...] = Field(
        (),
        description="Host names and addresses the nodes and the hub reach the broker at, "
        "named in its certificate; none: the listen address (or localhost) and 127.0.0.1.",
    )
    certfile: Path | None = Field(
        None, description="A TLS server certificate (PEM) of your own CA instead of the facility's."
    )
    keyfile: Path | None = Field(None, description="TLS server key (PEM), with certfile.")

    def names(self) -> tuple[str, ...]:
        """The names the facility CA's broker certificate carries."""
        if self.tls_names:
            return self.tls_names
        first = self.listen if self.listen and self.listen not in ("0.0.0.0", "::") else "localhost"  # noqa: S104 - compared, not bound
        return tuple(dict.fromkeys([first, "127.0.0.1"]))


def render_conf(directory: Path, settings: BrokerSettings) -> str:
    """The ``mosquitto.conf`` for a broker directory (paths made absolute)."""
    directory = directory.resolve()
    if (settings.certfile is None) != (settings.keyfile is None):
        raise BrokerSetupError("give both a TLS certificate and its key, or neither")
    listener = f"listener {settings.port}" + (f" {settings.listen}" if settings.listen else "")
    lines = [
        "# Mosquitto for a Pintu facility, generated by `pintu provision broker init`.",
        "# Start it with: mosquitto -c " + str(directory / CONF),
        "",
    ]
    if settings.run_as:
        lines.append(f"user {settings.run_as}")
    lines += [listener]
    if settings.certfile and settings.keyfile:
        lines += [f"certfile {settings.certfile}", f"keyfile {settings.keyfile}"]
    elif settings.tls:
        # Clients verify this certificate against the facility CA (ca.pem): a rogue broker
        # on the network cannot show one, so no door sends it a password or an event.
        lines += [
            f"certfile {directory / SERVER_CERT}",
            f"keyfile {directory / SERVER_KEY}",
        ]
    lines += [
        "",
        "# Every client logs in, and may touch only the topics the ACL gives it.",
        "allow_anonymous false",
        f"password_file {directory / PASSWD}",
        f"acl_file {directory / ACL}",
        "# A login's client id is its user name, whatever the client asks for: a door's",
        "# password cannot take over the hub's session or another door's.",
        "use_username_as_clientid true",
        "",
        "# Queued messages and retained state (availability, occupancy) survive a restart.",
        "persistence true",
        f"persistence_location {settings.persistence_dir}/",
        "autosave_interval 60",
        "",
        "# The hub keeps a persistent session: while it is away the broker queues the nodes'",
        "# events for it. Past this limit the broker drops them (the nodes' journals resend",
        "# anything not acked), so it is set well above a day of a busy facility's events.",
        f"max_queued_messages {settings.max_queued_messages}",
        f"max_queued_bytes {settings.max_queued_bytes}",
        "",
        "# Nothing larger than the protocol's largest message (the status list) is taken:",
        "# a larger packet closes the sender's connection and is not stored, retained or not.",
        f"max_packet_size {settings.max_packet_bytes}",
        "",
        "# Logs go to stderr, that is to the journal under systemd.",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
    ]
    return "\n".join(lines) + "\n"


def reload_broker(*, pid: int | None = None, unit: str | None = None) -> str | None:
    """Make a running broker re-read its password file and ACL; what was done, or None.

    ``pid`` gets a SIGHUP; ``unit`` is reloaded through systemctl (Debian's
    ``mosquitto.service`` sends the SIGHUP itself).
    """
    if pid is not None:
        try:
            os.kill(pid, signal.SIGHUP)
        except OSError as err:
            raise BrokerSetupError(f"cannot signal the broker (pid {pid}): {err}") from err
        logger.info("sent SIGHUP to the broker, pid %d", pid)
        return f"sent SIGHUP to pid {pid}"
    if unit is not None:
        systemctl = shutil.which("systemctl")
        if systemctl is None:
            raise BrokerSetupError("systemctl is not available to reload the broker")
        result = subprocess.run(  # noqa: S603 - a fixed program; the unit is an argument
            [systemctl, "reload", unit], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise BrokerSetupError(
                f"systemctl reload {unit} failed: {result.stderr.strip() or result.returncode}"
            )
        logger.info("reloaded %s", unit)
        return f"reloaded {unit}"
    return None
