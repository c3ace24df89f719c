"""systemd's notify protocol: READY=1, WATCHDOG=1, STOPPING=1 and STATUS= lines.

A datagram to the socket named by ``$NOTIFY_SOCKET``; without it (not under systemd)
every call does nothing.
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

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, *lines: str) -> None:
        if not self._address:
            return
        address = self._address
        if address.startswith("@"):  # abstract namespace socket
            address = "\0" + address[1:]
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

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def pet(self) -> None:
        """WATCHDOG=1, rate-limited; call it from the loop that does the work."""
        if self.watchdog_interval_s is None:
            return
        now = time.monotonic()
        if now - self._last_pet >= self.watchdog_interval_s:
            self._last_pet = now
            self.send("WATCHDOG=1")
