"""Writing the tools' files safely: whole or not at all, private when they hold secrets.

A broker reading its password file while it is rewritten must see the old file or the new
one, never half of either; so every file goes to a temporary name in the same directory and
is renamed over the old one.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from provisioning.errors import BrokerSetupError

logger = logging.getLogger(__name__)

BROKER_GROUP = "mosquitto"


def write_atomic(
    path: Path, data: str | bytes, mode: int = 0o644, *, group: int | None = None
) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # The mode is set before any byte is written, so a secret is never readable by others.
        os.fchmod(fd, mode)
        if group is not None:
            os.fchown(fd, -1, group)
        with os.fdopen(fd, "wb") as out:
            out.write(raw)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise BrokerSetupError(f"cannot write {path}: {err}") from err


def broker_group() -> int | None:
    """The ``mosquitto`` group's id when we are root and it exists, else None.

    Debian's Mosquitto starts as root and drops to the ``mosquitto`` user; files it must
    read are then ``root:mosquitto`` mode 0640. Run as any other user (a test, a laptop),
    the broker runs as that user too and mode 0600 is right.
    """
    if os.geteuid() != 0:
        return None
    try:
        return grp.getgrnam(BROKER_GROUP).gr_gid
    except KeyError:
        return None


def write_broker_secret(path: Path, data: str) -> None:
    """A file only its owner and the broker may read (password file, ACL)."""
    group = broker_group()
    write_atomic(path, data, 0o640 if group is not None else 0o600, group=group)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the block.

    Two technicians enrolling at once must not both read the inventory, add a node each,
    and have the second write lose the first one's node.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        raise BrokerSetupError(f"cannot open the lock file {path}: {err}") from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
