"""systemd's notify protocol (READY=1, WATCHDOG=1, STOPPING=1, STATUS=): a datagram to the
socket named by ``$NOTIFY_SOCKET``. Without it (not under systemd) every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import time

logger = logging.getLogger(__name__)


class Notifier:
    def __init__(self) -> None:
        self._address = os.environ.get("NOTIFY_SOCKET")
        usec = os.environ.get("WATCHDOG_USEC")
        # Pet twice per watchdog period, as systemd recommends.
        self.watchdog_interval_s = int(usec) / 2e6 if usec and usec.isdigit() else None
        self._last_pet = 0.0

    def send(self, *lines: str) -> None:
        if not self._address:
            return
        address = "\0" + self._address[1:] if self._address.startswith("@") else self._address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(address)
                sock.sendall("\n".join(lines).encode("utf-8"))
        except OSError as err:
            logger.warning("cannot notify systemd at %s: %s", self._address, err)

    def ready(self, status: str = "") -> None:
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def pet(self) -> None:
        """WATCHDOG=1, at most twice per watchdog period."""
        if self.watchdog_interval_s is None:
            return
        now = time.monotonic()
        if now - self._last_pet >= self.watchdog_interval_s:
            self._last_pet = now
            self.send("WATCHDOG=1")
