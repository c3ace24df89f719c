"""Staff accounts: passwords, roles, login sessions, CSRF tokens and login throttling.

* Passwords are hashed with Argon2id at OWASP's recommended minimum (19 MiB, 2 passes,
  one lane): a login costs about 19 MB for a few tens of milliseconds, and at most
  ``MAX_CONCURRENT_HASHES`` run at once (beyond that a login gets 429 at once, costing
  nothing). A hash made with other parameters is redone at the next good login.
* Roles are ordered: a viewer watches, a guard also acknowledges alerts and checks people
  in, an admin also changes capacity and counts.
* A session is a signed cookie (Starlette's ``SessionMiddleware``, SameSite=Strict) that
  names the user; the role is read from the store on every request, so demoting or
  disabling someone takes effect at once. Logging out revokes the session's id.
* Every state-changing request carries the session's CSRF token (header ``X-CSRF-Token``
  or form field ``csrf_token``).
* Wrong passwords are counted per (user name, address), per address and per user name;
  past a few, further attempts are refused for a while (429 with Retry-After) instead of
  being slowed down in the request, so an attacker cannot tie up the server either. A lock
  on a user name spares the addresses it logged in from lately, so guessing from elsewhere
  never locks the owner out (see ``runtime.throttle.LoginThrottle``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from starlette.requests import HTTPConnection

from hub.config import read_secret
from hub.errors import ConfigError, HubError
from hub.records import ROLES, Role, User
from hub.store import Store
from runtime.throttle import LoginThrottle

# The CSRF token is the same for every service's pages; the hub's modules find it here.
from runtime.web import CSRF_FIELD as CSRF_FIELD
from runtime.web import CSRF_HEADER as CSRF_HEADER
from runtime.web import SAFE_METHODS as SAFE_METHODS
from runtime.web import csrf_ok as csrf_ok
from runtime.web import csrf_token as csrf_token

logger = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024  # hashing a megabyte "password" is a cheap way to burn CPU
_RANK: dict[str, int] = {role: rank for rank, role in enumerate(ROLES)}
# OWASP's minimum for Argon2id: m=19 MiB, t=2, p=1. argon2-cffi's default (64 MiB, t=3)
# let a handful of concurrent logins take gigabytes on a small hub. Tests swap in a cheap
# one to stay fast.
HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# At most this many hashes at once: 4 x 19 MiB whatever the number of logins in flight.
MAX_CONCURRENT_HASHES = 4
# How long a session's account, once read, is believed (see ``Accounts._user``).
USER_FRESH_S = 2.0
MAX_USERS_KEPT = 10_000


class AuthError(HubError):
    """A login or a request is refused."""


class LoginRefused(AuthError):
    """Wrong user name or password, or a disabled account (never said which)."""


class LoginThrottled(AuthError):
    """Too many wrong passwords: try again after ``retry_after_s``."""

    busy = False

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


class LoginBusy(LoginThrottled):
    """Too many logins being checked at once: try again in a second."""

    busy = True

    def __init__(self) -> None:
        AuthError.__init__(self, "too many logins at once; try again in a second")
        self.retry_after_s = 1.0


def role_at_least(role: str, needed: Role) -> bool:
    return _RANK.get(role, -1) >= _RANK[needed]


def check_password(password: str) -> str:
    """The password, or ``ValueError`` saying why it cannot be one."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    return password


def hash_password(password: str) -> str:
    return HASHER.hash(check_password(password))


def verify_password(password_hash: str, password: str) -> tuple[bool, bool]:
    """(matches, needs a new hash with the current parameters)."""
    try:
        HASHER.verify(password_hash, password)
    except VerifyMismatchError:
        return False, False
    except (VerificationError, InvalidHashError):
        logger.error("a stored password hash is not a valid Argon2 hash")
        return False, False
    return True, HASHER.check_needs_rehash(password_hash)


@functools.cache
def _dummy_hash() -> str:
    return HASHER.hash(secrets.token_urlsafe(16))


def load_or_create_secret(path: Path | None) -> str:
    """The session signing key from ``path``, written there (mode 0600) if it is missing.

    Without a path, a new key for this run only: every restart logs everyone out.
    """
    if path is None:
        logger.warning("web.secret_key_file is not set: sessions end when the hub restarts")
        return secrets.token_urlsafe(48)
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    exists = path.is_file() or bool(
        creds and not path.is_absolute() and (Path(creds) / path).is_file()
    )
    if not exists:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: use theirs
        except OSError as err:
            raise ConfigError(f"{path}: cannot create the session key: {err.strerror}") from err
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(key + "\n")
            logger.info("%s: created a new session signing key", path)
    secret = read_secret(path)
    if len(secret) < 32:
        raise ConfigError(f"{path}: the session key is too short (at least 32 characters)")
    if path.is_file() and path.stat().st_mode & 0o077:
        logger.warning("%s: the session key is readable by others; chmod 600 it", path)
    return secret


@dataclass(frozen=True)
class Staff:
    """Who is logged in on a request."""

    username: str
    role: Role
    csrf: str

    def may(self, needed: Role) -> bool:
        return role_at_least(self.role, needed)


def client_address(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client else "unknown"


class Accounts:
    """Logins and sessions against the store's users."""

    def __init__(
        self,
        store: Store,
        *,
        session_max_age_s: float,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.store = store
        self.session_max_age_s = session_max_age_s
        self.throttle = throttle or LoginThrottle()
        self._hashing = asyncio.Semaphore(MAX_CONCURRENT_HASHES)
        # Session ids logged out before they expired. Kept in memory: a restart forgets
        # them, but the browser has dropped the cookie at logout and it expires anyway.
        self._revoked: dict[str, float] = {}
        # Each session's account as read lately (time.monotonic(), the user or None): a
        # request a dashboard makes every few seconds need not read it each time. An
        # account disabled or changed (also by another process: `pintu hub add-user`)
        # takes effect within USER_FRESH_S.
        self._users: dict[str, tuple[float, User | None]] = {}

    async def _user(self, username: str) -> User | None:
        now = time.monotonic()
        kept = self._users.get(username)
        if kept is not None and now - kept[0] < USER_FRESH_S:
            return kept[1]
        user = await asyncio.to_thread(self.store.get_user, username)
        if len(self._users) >= MAX_USERS_KEPT:
            self._users.clear()
        self._users[username] = (now, user)
        return user

    async def login(self, conn: HTTPConnection, username: str, password: str) -> Staff:
        """Check the password and start a session; ``LoginRefused`` or ``LoginThrottled``."""
        address = client_address(conn)
        wait = self.throttle.retry_after(username, address)
        if wait > 0:
            raise LoginThrottled(wait)
        user = await asyncio.to_thread(self.store.get_user, username) if username else None
        ok, rehash = False, False
        if len(password) <= MAX_PASSWORD_LENGTH:
            if self._hashing.locked():
                # Refused before any memory is taken; a queue would hold the requests (and
                # their connections) instead.
                logger.warning(
                    "login for %r from %s refused: hashing is busy", username[:64], address
                )
                raise LoginBusy()
            async with self._hashing:
                # An unknown name costs the same as a wrong password, so timing tells nothing.
                stored = user.password_hash if user else _dummy_hash()
                ok, rehash = await asyncio.to_thread(verify_password, stored, password)
        if user is None or not ok or user.disabled:
            self.throttle.failed(username, address)
            logger.warning("failed login for %r from %s", username[:64], address)
            if user is not None:
                await asyncio.to_thread(
                    self.store.audit, user.username, "login.failed", detail=address
                )
            raise LoginRefused("wrong user name or password")
        self.throttle.succeeded(username, address)
        if rehash:
            async with self._hashing:
                new_hash = await asyncio.to_thread(hash_password, password)
            logger.info("%s: password hash redone with the current parameters", user.username)
            await asyncio.to_thread(self.store.update_user, user.username, password_hash=new_hash)
        await asyncio.to_thread(self.store.audit, user.username, "login", detail=address)
        self._users.pop(user.username, None)
        session: dict[str, Any] = conn.session
        # A fresh session id and token at login: a token planted before it is worthless.
        session.clear()
        session.update(
            user=user.username,
            sid=secrets.token_urlsafe(16),
            csrf=secrets.token_urlsafe(32),
            t=time.time(),
        )
        logger.info("%s logged in from %s", user.username, address)
        return Staff(user.username, user.role, session["csrf"])

    async def current(self, conn: HTTPConnection, *, fresh: bool = False) -> Staff | None:
        """The logged-in staff member of a request, or None; ``fresh`` checks again."""
        cached: Staff | bool | None = getattr(conn.state, "staff", False)
        if cached is not False and not fresh:
            return cached if isinstance(cached, Staff) else None
        staff = await self._current(conn)
        conn.state.staff = staff
        return staff

    async def _current(self, conn: HTTPConnection) -> Staff | None:
        session: dict[str, Any] = conn.session
        username, sid, csrf, started = (session.get(k) for k in ("user", "sid", "csrf", "t"))
        if not (isinstance(username, str) and isinstance(sid, str) and isinstance(csrf, str)):
            return None
        if not isinstance(started, int | float) or time.time() - started > self.session_max_age_s:
            return None
        if sid in self._revoked:
            return None
        user = await self._user(username)
        if user is None or user.disabled:
            return None
        return Staff(user.username, user.role, csrf)

    async def logout(self, conn: HTTPConnection) -> str | None:
        """End the session; the user name it belonged to, if any."""
        session: dict[str, Any] = conn.session
        username, sid = session.get("user"), session.get("sid")
        if isinstance(sid, str):
            now = time.time()
            self._revoked[sid] = now + self.session_max_age_s
            for old in [s for s, until in self._revoked.items() if until < now]:
                del self._revoked[old]
        session.clear()
        if isinstance(username, str):
            await asyncio.to_thread(self.store.audit, username, "logout")
            logger.info("%s logged out", username)
            return username
        return None
