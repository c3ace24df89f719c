"""Login throttling: wrong passwords refused for a while, without locking the owner out.

The hub's dashboard and the registry's API both count wrong passwords here. A caller asks
``retry_after`` before checking a password and refuses the login (429 with Retry-After)
while it is above zero, instead of slowing the request down, so an attacker cannot tie up
the server either. Each service raises its own error with its own words.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0
    last: float = 0.0


class LoginThrottle:
    """Slows password guessing without locking the owner out. Thread-safe.

    Wrong passwords are counted per (user name, address), per address and per user name.
    After ``free`` failures for a name from one address, that address is locked for that
    name (twice as long after each further failure, from ``base_s`` up to ``max_s``); after
    ``free_per_address`` failures from one address it is locked for every name. A name that
    fails ``free_per_user`` times from anywhere is locked too, but not for an address that
    logged in as it lately: the owner at their usual desk gets in while a botnet guesses.
    Failures are forgotten ``forget_s`` after the last one. A login with no address known
    (``None``) is counted against the name only, and a right password clears that count.

    The tables are bounded: when one is full, entries that lock nothing are dropped first,
    oldest first, so a flood of failures from other addresses cannot push out a lock.
    """

    def __init__(
        self,
        *,
        free: int = 5,
        free_per_address: int = 30,
        free_per_user: int = 50,
        base_s: float = 30.0,
        max_s: float = 900.0,
        forget_s: float = 3600.0,
        max_keys: int = 10_000,
        known_per_user: int = 8,
    ) -> None:
        self.free, self.free_per_address, self.free_per_user = free, free_per_address, free_per_user
        self.base_s, self.max_s, self.forget_s = base_s, max_s, forget_s
        self.max_keys = max_keys
        self.known_per_user = known_per_user
        self._table: OrderedDict[str, _Failures] = OrderedDict()
        # Addresses each user logged in from lately (newest last), exempt from the user lock.
        self._known: OrderedDict[str, list[str]] = OrderedDict()
        self._lock = threading.Lock()

    def _keys(self, username: str, address: str | None) -> list[tuple[str, int]]:
        """The counters a login touches, each with its number of free failures."""
        user = username.casefold()
        keys = [(f"user:{user}", self.free_per_user)]
        if address is not None:
            keys += [
                (f"pair:{user}\0{address}", self.free),
                (f"addr:{address}", self.free_per_address),
            ]
        return keys

    def retry_after(self, username: str, address: str | None, now: float | None = None) -> float:
        """Seconds until a login for this user from this address may be tried; 0: now."""
        now = time.monotonic() if now is None else now
        user = username.casefold()
        with self._lock:
            exempt = address is not None and address in self._known.get(user, [])
            waits = [0.0]
            for key, _ in self._keys(username, address):
                if exempt and key.startswith("user:"):
                    continue
                entry = self._table.get(key)
                if entry is not None:
                    waits.append(entry.locked_until - now)
            return max(waits)

    def failed(self, username: str, address: str | None, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            for key, free in self._keys(username, address):
                entry = self._table.pop(key, None) or _Failures()
                if now - entry.last > self.forget_s:
                    entry = _Failures()
                entry.count += 1
                entry.last = now
                if entry.count >= free:
                    lock = min(self.max_s, self.base_s * 2 ** (entry.count - free))
                    entry.locked_until = now + lock
                self._table[key] = entry
            self._bound(now)

    def _bound(self, now: float) -> None:
        excess = len(self._table) - self.max_keys
        if excess <= 0:
            return
        # Entries that lock nothing go first (oldest first); locks only when nothing else is
        # left, so failures from elsewhere cannot clear an account's lock.
        idle = [k for k, e in self._table.items() if e.locked_until <= now][:excess]
        for key in idle:
            del self._table[key]
        while len(self._table) > self.max_keys:
            self._table.popitem(last=False)

    def succeeded(self, username: str, address: str | None) -> None:
        """A right password: the pair's count is cleared and the address becomes known.

        A shared address (a proxy) and the name keep their records.
        """
        user = username.casefold()
        with self._lock:
            if address is None:
                self._table.pop(f"user:{user}", None)
                return
            self._table.pop(f"pair:{user}\0{address}", None)
            known = [a for a in self._known.pop(user, []) if a != address]
            self._known[user] = [*known, address][-self.known_per_user :]
            while len(self._known) > self.max_keys:
                self._known.popitem(last=False)
