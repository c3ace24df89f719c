"""The registry's signing keys and the trust list that publishes them.

``keys_dir`` has the layout ``pintu keys generate`` writes: one ``signing-<kid>.pem`` per
private key (mode 0600) and ``trust.json``, the trust list the hubs fetch. The trust list is
the record of each key's signing window and revocation; the current key is the newest one
that is neither retired (``not_after`` set) nor revoked and whose private key is here.

* Rotation makes a new key current and sets the others' ``not_after`` to now: they keep
  vouching for the passes they signed until those expire.
* Revocation sets ``revoked``: every pass of that key is refused once doors have the list.
  Revoking the current key first rotates, so passes can still be issued.

The running service and CLI commands share the directory: writers take a lock file, and
readers reload ``trust.json`` whenever it changes on disk, so a rotation made from the
command line takes effect at the next request.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from protocol.errors import ProtocolError
from protocol.trust import SigningKey, TrustedKey, TrustList
from registry.errors import NotFound, SigningKeyError

logger = logging.getLogger(__name__)

TRUST_FILE = "trust.json"
LOCK_FILE = ".lock"


@contextlib.contextmanager
def locked(keys_dir: Path) -> Iterator[None]:
    """Hold the keys directory's lock: one writer at a time across processes."""
    try:
        keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(keys_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        raise SigningKeyError(f"{keys_dir}: cannot use the keys directory: {err}") from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@dataclass(frozen=True)
class TrustDocument:
    """The trust list as served: its bytes and their entity tag."""

    body: bytes
    etag: str
    trust: TrustList


@dataclass(frozen=True)
class Rotation:
    new_kid: str
    retired: tuple[str, ...]


class Keyring:
    def __init__(self, keys_dir: Path) -> None:
        self.keys_dir = keys_dir
        self._guard = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._document: TrustDocument | None = None
        self._private: dict[str, SigningKey] = {}

    @property
    def trust_path(self) -> Path:
        return self.keys_dir / TRUST_FILE

    def key_path(self, kid_hex: str) -> Path:
        return self.keys_dir / f"signing-{kid_hex}.pem"

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return locked(self.keys_dir)

    # Reading.

    def document(self) -> TrustDocument:
        """The trust list, read again if the file changed since the last call."""
        try:
            st = self.trust_path.stat()
        except FileNotFoundError as err:
            raise SigningKeyError(
                f"{self.trust_path}: no trust list yet; start the registry or run "
                "'pintu registry rotate-key' to make a first key"
            ) from err
        except OSError as err:
            raise SigningKeyError(f"{self.trust_path}: {err.strerror}") from err
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._guard:
            if self._document is not None and stamp == self._stamp:
                return self._document
            try:
                trust = TrustList.load(self.trust_path)
            except ProtocolError as err:
                raise SigningKeyError(str(err)) from err
            body = trust.dumps().encode("utf-8")
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            self._document = TrustDocument(body, etag, trust)
            self._stamp = stamp
            return self._document

    def trust_list(self) -> TrustList:
        return self.document().trust

    def _private_key(self, kid_hex: str) -> SigningKey | None:
        return private_key(self._private, self.key_path(kid_hex), kid_hex)

    def _current_entry(self, trust: TrustList) -> TrustedKey | None:
        usable = [
            k
            for k in trust.keys.values()
            if k.not_after is None and not k.revoked and self.key_path(k.kid_hex).exists()
        ]
        if not usable:
            return None
        return max(usable, key=lambda k: (k.not_before or 0, k.kid))

    def current(self) -> SigningKey:
        """The key that signs passes now."""
        entry = self._current_entry(self.trust_list())
        key = None if entry is None else self._private_key(entry.kid_hex)
        if key is None:
            raise SigningKeyError(
                f"{self.keys_dir}: no current signing key; run 'pintu registry rotate-key'"
            )
        return key

    # Writing.

    def ensure_key(self, now: int) -> str | None:
        """Make a first key when there is no trust list yet; its kid, or None."""
        with self._locked():
            if self.trust_path.exists():
                return None
            if any(self.keys_dir.glob("signing-*.pem")):
                raise SigningKeyError(
                    f"{self.keys_dir}: holds signing keys but no {TRUST_FILE}; restore it "
                    "rather than start a new one"
                )
            key = self._new_key()
            TrustList.of([key.trusted(not_before=now)], updated_at=now).save(self.trust_path)
        logger.warning("made a first signing key %s in %s", key.kid_hex, self.keys_dir)
        return key.kid_hex

    def _new_key(self) -> SigningKey:
        key = SigningKey.generate()
        try:
            key.save(self.key_path(key.kid_hex))
        except OSError as err:
            raise SigningKeyError(f"{self.keys_dir}: cannot write a key: {err.strerror}") from err
        return key

    def _load_for_update(self) -> TrustList:
        if not self.trust_path.exists():
            return TrustList()
        try:
            return TrustList.load(self.trust_path)
        except ProtocolError as err:
            raise SigningKeyError(str(err)) from err

    def rotate(self, now: int) -> Rotation:
        """A new current key; every other active key is retired as of ``now``."""
        with self._locked():
            trust = self._load_for_update()
            key = self._new_key()
            retired = []
            keys = []
            for entry in trust.keys.values():
                if entry.not_after is None and not entry.revoked:
                    entry = replace(entry, not_after=now)
                    retired.append(entry.kid_hex)
                keys.append(entry)
            keys.append(key.trusted(not_before=now))
            TrustList.of(keys, updated_at=now).save(self.trust_path)
        logger.warning("signing key %s is current; retired %s", key.kid_hex, retired or "none")
        return Rotation(key.kid_hex, tuple(sorted(retired)))

    def revoke(self, kid_hex: str, now: int) -> Rotation | None:
        """Revoke a key; when it was the current one, rotate first (the new key is named)."""
        kid_hex = kid_hex.strip().lower()
        rotation = None
        trust = self._load_for_update()
        entry = next((k for k in trust.keys.values() if k.kid_hex == kid_hex), None)
        if entry is None:
            raise NotFound(f"no key {kid_hex!r} in {self.trust_path}")
        current = self._current_entry(trust)
        if current is not None and current.kid == entry.kid:
            rotation = self.rotate(now)
        with self._locked():
            trust = self._load_for_update()
            if entry.kid not in trust.keys:
                raise NotFound(f"no key {kid_hex!r} in {self.trust_path}")
            trust = trust.revoke(entry.kid)
            TrustList.of(trust.keys.values(), updated_at=now).save(self.trust_path)
        self._private.pop(kid_hex, None)
        logger.warning("signing key %s revoked: its passes are refused from the next sync", kid_hex)
        return rotation


def private_key(kept: dict[str, SigningKey], path: Path, kid_hex: str) -> SigningKey | None:
    """The private key ``kid_hex`` from ``kept``, or read from ``path`` (and kept); None
    when there is no such file, ``SigningKeyError`` for one that holds another key."""
    key = kept.get(kid_hex)
    if key is not None:
        return key
    if not path.exists():
        return None
    try:
        key = SigningKey.load(path)
    except ProtocolError as err:
        raise SigningKeyError(str(err)) from err
    if key.kid_hex != kid_hex:
        raise SigningKeyError(f"{path}: holds key {key.kid_hex}, not {kid_hex}")
    kept[kid_hex] = key
    return key
