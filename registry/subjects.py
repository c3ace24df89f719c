"""NIKs and the pseudonymous subject ids derived from them.

A NIK (Nomor Induk Kependudukan) is 16 digits: province (2), regency (2), district (2),
date of birth as DDMMYY where women add 40 to the day (6), and a serial (4). The registry
checks what can be checked without the civil registry: the digits, a province code in
11..94, a day in 1..31 (41..71 for women) and a month in 1..12.

The subject id is ``HMAC-SHA256(subject_key, NIK)`` cut to 12 bytes (24 hex digits). The
key never leaves the registry, so nobody who sees subject ids (a hub, a door, a pass) can
test a guessed NIK against them: NIKs are far too structured to be hidden by a plain hash.
The registry does not store NIKs at all; it finds a person by recomputing the subject id.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from protocol.passes import SUBJECT_BYTES
from registry.errors import ConfigError, InvalidInput

logger = logging.getLogger(__name__)

NIK_LENGTH = 16
KEY_BYTES = 32
_SEPARATORS = re.compile(r"[\s-]")
_NAME_SPACES = re.compile(r"\s+")
MAX_NAME_LENGTH = 200


def normalise_nik(text: str) -> str:
    """The NIK without the spaces and dashes people type to group its digits."""
    return _SEPARATORS.sub("", text)


def _bad(field: str, message: str) -> InvalidInput:
    # The error table promises a 422 lists its problems by field, whichever check failed.
    return InvalidInput(message, [{"field": field, "message": message}])


def validate_nik(text: str) -> str:
    """The normalised NIK, or ``InvalidInput`` saying what is wrong with it."""
    nik = normalise_nik(text)
    if not nik:
        raise _bad("nik", "the NIK is empty")
    if not nik.isascii() or not nik.isdigit():
        raise _bad("nik", "a NIK has digits only")
    if len(nik) != NIK_LENGTH:
        raise _bad("nik", f"a NIK has {NIK_LENGTH} digits, this one has {len(nik)}")
    province = int(nik[0:2])
    if not 11 <= province <= 94:
        raise _bad("nik", f"province code {nik[0:2]} is not one of 11..94")
    day, month = int(nik[6:8]), int(nik[8:10])
    if not (1 <= day <= 31 or 41 <= day <= 71):
        raise _bad("nik", f"day of birth {nik[6:8]} is not 01..31 (41..71 for women)")
    if not 1 <= month <= 12:
        raise _bad("nik", f"month of birth {nik[8:10]} is not 01..12")
    return nik


def normalise_name(text: str) -> str:
    """A name with runs of white space as one space; ``InvalidInput`` when empty or long."""
    name = _NAME_SPACES.sub(" ", text).strip()
    if not name:
        raise _bad("name", "the name is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise _bad("name", f"a name has at most {MAX_NAME_LENGTH} characters")
    if not name.isprintable():
        raise _bad("name", "the name holds control characters")
    return name


def same_name(a: str, b: str) -> bool:
    """Names compare case-insensitively, white space runs as one space."""
    return (
        _NAME_SPACES.sub(" ", a).strip().casefold() == _NAME_SPACES.sub(" ", b).strip().casefold()
    )


@dataclass(frozen=True)
class SubjectKey:
    """The secret of the keyed hash from NIK to subject id."""

    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise ValueError("a subject key has at least 16 bytes")

    def __repr__(self) -> str:
        # Never let the secret reach a log line or a traceback.
        return "SubjectKey(<secret>)"

    def subject(self, nik: str) -> bytes:
        """The 12-byte subject id of a (valid, normalised) NIK."""
        digest = hmac.new(self.secret, nik.encode("ascii"), hashlib.sha256).digest()
        return digest[:SUBJECT_BYTES]

    def subject_hex(self, nik: str) -> str:
        return self.subject(nik).hex()

    @classmethod
    def load_or_create(cls, path: Path) -> SubjectKey:
        """Read the key file, or create it (mode 0600) with a new random key."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls.load(path)
        except OSError as err:
            raise ConfigError(f"{path}: cannot create the subject key: {err.strerror}") from err
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_hex(KEY_BYTES) + "\n")
        logger.warning(
            "created a new subject key at %s: back it up, subject ids depend on it", path
        )
        return cls.load(path)

    @classmethod
    def load(cls, path: Path) -> SubjectKey:
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: cannot read the subject key: {err}") from err
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            logger.warning("%s: the subject key is readable by others; chmod 600 it", path)
        try:
            secret = bytes.fromhex(text)
            return cls(secret)
        except ValueError as err:
            raise ConfigError(f"{path}: not a subject key (hex, at least 16 bytes)") from err
