"""Mosquitto password files, hashed the way ``mosquitto_passwd`` of Mosquitto 2.0 does.

An entry is ``user:$7$<iterations>$<base64 salt>$<base64 hash>``: PBKDF2-HMAC-SHA512 over
the password with a 12-byte random salt and 101 iterations, giving a 64-byte hash. Doing it
here means the tools need no ``mosquitto_passwd`` binary on the technician's laptop, and the
inventory can keep hashes (never passwords) from which the file is regenerated at any time.
A test checks that a real broker accepts what this writes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable

from provisioning.errors import BrokerSetupError

ITERATIONS = 101  # mosquitto_passwd's own default in 2.0
SALT_BYTES = 12
HASH_BYTES = 64
# A colon would end the user name early; white space and control characters would not
# survive the line-based file format.
_USERNAME = re.compile(r"^[^:\s\x00-\x1f\x7f]{1,256}$")


def new_password() -> str:
    """A random password of 192 bits, safe to put in a file or on a command line."""
    return secrets.token_urlsafe(24)


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The ``$7$`` hash of ``password``, as ``mosquitto_passwd`` writes it."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, hashed: str) -> bool:
    """Whether ``password`` matches a ``$7$`` hash (from here or from mosquitto_passwd)."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[0] or parts[1] != "7" or not parts[2].isdigit():
        return False
    try:
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except (binascii.Error, ValueError):
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, int(parts[2]))
    return hmac.compare_digest(digest, expected)


def is_hash(text: str) -> bool:
    parts = text.split("$")
    return len(parts) == 5 and not parts[0] and parts[1] == "7" and parts[2].isdigit()


def check_username(username: str) -> str:
    if not _USERNAME.match(username):
        raise BrokerSetupError(f"not a usable MQTT user name: {username!r}")
    return username


def render(entries: Iterable[tuple[str, str]]) -> str:
    """A password file from ``(user, hash)`` pairs."""
    lines = []
    for username, hashed in entries:
        check_username(username)
        if not is_hash(hashed):
            raise BrokerSetupError(f"the password hash of {username!r} is not a $7$ hash")
        lines.append(f"{username}:{hashed}")
    return "\n".join(lines) + ("\n" if lines else "")


def parse(text: str) -> dict[str, str]:
    """``{user: hash}`` from a password file; blank lines and ``#`` comments are skipped."""
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        username, sep, hashed = stripped.partition(":")
        if not sep or not username:
            raise BrokerSetupError(f"password file line {number}: not 'user:hash'")
        entries[username] = hashed
    return entries


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
