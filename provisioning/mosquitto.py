"""Run a Mosquitto broker as a child process: for the demo, the tests and the benchmarks.

The broker listens on 127.0.0.1 on a free port (or the one given), keeps its state in a
directory of its own and can be stopped, killed and started again on the same port, which
is how the tests take the network away from a node and give it back.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

logger = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """The broker cannot be started."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def find_mosquitto() -> str:
    for candidate in (
        shutil.which("mosquitto"),
        "/usr/sbin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise BrokerError(
        "mosquitto is not installed: run `make install` (as root) or "
        "`sudo apt-get install mosquitto mosquitto-clients`"
    )


class Mosquitto:
    """A private Mosquitto on 127.0.0.1.

    ``extra_conf`` is appended to the generated configuration (listeners, ACLs and
    password files written by provisioning go there). ``config_file`` runs the broker on
    that file as it is instead (a facility's configuration written by
    ``pintu provision broker init``); its listener must be ``127.0.0.1`` and ``port``.
    """

    def __init__(
        self,
        workdir: str | Path,
        port: int | None = None,
        *,
        anonymous: bool = True,
        max_queued_messages: int = 1_000_000,
        extra_conf: str = "",
        config_file: str | Path | None = None,
        ca_file: str | Path | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.anonymous = anonymous
        self.max_queued_messages = max_queued_messages
        self.extra_conf = extra_conf
        self.config_file = Path(config_file) if config_file is not None else None
        # The CA a client verifies this broker with, when its configuration speaks TLS.
        self.ca_file = Path(ca_file) if ca_file is not None else None
        self.process: subprocess.Popen[bytes] | None = None
        self.binary = find_mosquitto()

    @property
    def conf_path(self) -> Path:
        return self.config_file or self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def write_conf(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.config_file is not None:
            return  # a configuration written elsewhere, used as it is
        lines = [
            # Started as root, Mosquitto switches to the `mosquitto` user, which could not
            # write the persistence file or read the password file in our directory; as
            # any other user this line has no effect.
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'true' if self.anonymous else 'false'}",
            "persistence true",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            # The hub's persistent session may hold many events while it is away; a node's
            # journal covers anything dropped past this, but the broker should not drop early.
            f"max_queued_messages {self.max_queued_messages}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            self.extra_conf,
        ]
        self.conf_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def start(self, timeout_s: float = 10.0) -> None:
        if self.running:
            return
        self.write_conf()
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - a fixed binary and our own config
            [self.binary, "-c", str(self.conf_path)],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while not port_open(self.host, self.port):
            if self.process.poll() is not None:
                raise BrokerError(
                    f"mosquitto exited with {self.process.returncode}; see {self.log_path}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise BrokerError(f"mosquitto did not listen on port {self.port} in {timeout_s}s")
            time.sleep(0.02)
        logger.info("mosquitto listening on %s:%d", self.host, self.port)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop gracefully: Mosquitto writes its persistence file on SIGTERM."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def reload(self) -> None:
        """Re-read password and ACL files (SIGHUP)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGHUP)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
