"""Who is calling: passwords, bearer tokens and the principals they stand for.

* Passwords (operators and facility PICs) are hashed with Argon2id; a hash made with older
  parameters is upgraded at the next good login.
* Every credential a caller presents is a bearer token: a session token from
  ``POST /api/v1/login`` (operators and PICs, expiring) or a facility's hub token (no
  expiry; replaced by issuing a new one). Tokens are 256-bit random strings, kept only as
  their SHA-256: a stolen database does not log anyone in. A slow hash is not needed for
  random tokens, unlike for passwords.
* Wrong passwords are counted per user name, per address and per both; past a few, further
  attempts are refused for a while (429 with Retry-After) instead of being slowed down in
  the request (``login_throttle``).
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from registry.records import Role
from runtime.throttle import LoginThrottle

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024  # hashing a megabyte "password" is a cheap way to burn CPU
SESSION_PREFIX = "rs_"
HUB_PREFIX = "rh_"
ACTIVATION_PREFIX = "ra_"
# argon2-cffi's defaults (Argon2id, 64 MiB, t=3). Tests swap in a cheap one to stay fast.
HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Compared against when a user name is unknown, so a miss costs as long as a wrong
    password. Made on first use: hashing costs tens of milliseconds at every start."""
    return HASHER.hash("not a password of anyone")


def check_password(password: str) -> str:
    """The password, or ``ValueError`` saying why it cannot be one."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    return password


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; an unknown account (None) costs the same and fails."""
    try:
        matched = HASHER.verify(password_hash or _dummy_hash(), password)
        return matched and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return HASHER.check_needs_rehash(password_hash)


def new_token(prefix: str) -> str:
    """A bearer token; the prefix tells a person which kind of secret they hold."""
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    ``kind`` is ``operator`` or ``pic`` (a session) or ``hub`` (a facility's hub token);
    ``facility_id`` is set for hubs; a PIC's facilities are those naming their e-mail.
    """

    kind: Role | str
    name: str
    facility_id: str | None = None
    token_hash: str | None = None

    @property
    def actor(self) -> str:
        """How the audit trail names this caller."""
        return f"{self.kind}:{self.facility_id or self.name}"


def login_throttle() -> LoginThrottle:
    """The registry's limits on wrong passwords: 5 for a name within 5 minutes (from
    anywhere but the addresses it logged in from lately), 30 from one address; a lock
    lasts 5 minutes, twice as long after each further failure, up to 15."""
    return LoginThrottle(
        free=5, free_per_address=30, free_per_user=5, base_s=300.0, max_s=900.0, forget_s=300.0
    )
