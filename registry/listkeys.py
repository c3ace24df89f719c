"""The registry's list keys: the keys that sign the lists the doors believe.

A list key signs the doors' trust list, their status list and the next list key, nothing
else; a pass key never signs a list (``protocol.signedlist``). ``keys_dir`` holds, beside
the pass keys of ``registry.keyring``:

    list-<kid>.pem       a list key's private half (mode 0600)
    list-keys.chain      every list-key statement so far, oldest first (what hubs relay)
    list-keys.json       the newest statement's keys: what a door pins at enrolment
                         (``pintu provision node enroll --list-keys``)

Statement 1 names the first list key and is signed by it. ``rotate`` makes a new key and
appends statement *n + 1*, naming only the new key, signed by the key of statement *n*: a
door that pins the old key follows it, and from then on the lists are signed by the new
one. The running service and the CLI share the directory through its lock file; readers
load the chain again when it changes on disk.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from protocol.errors import ProtocolError
from protocol.signedlist import ListKeys, statement
from protocol.trust import SigningKey
from registry.errors import SigningKeyError
from registry.keyring import locked, private_key

logger = logging.getLogger(__name__)

CHAIN_FILE = "list-keys.chain"
PIN_FILE = "list-keys.json"


@dataclass(frozen=True)
class ListKeyState:
    """The chain as served to hubs, and the keys its newest statement names."""

    chain: bytes
    pinned: ListKeys
    etag: str


@dataclass(frozen=True)
class ListKeyRotation:
    new_kid: str
    old_kids: tuple[str, ...]
    seq: int


class ListKeyring:
    def __init__(self, keys_dir: Path) -> None:
        self.keys_dir = keys_dir
        self._guard = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._state: ListKeyState | None = None
        self._private: dict[str, SigningKey] = {}

    @property
    def chain_path(self) -> Path:
        return self.keys_dir / CHAIN_FILE

    @property
    def pin_path(self) -> Path:
        return self.keys_dir / PIN_FILE

    def key_path(self, kid_hex: str) -> Path:
        return self.keys_dir / f"list-{kid_hex}.pem"

    # Reading.

    def state(self) -> ListKeyState:
        """The chain and its newest keys, read again if the file changed."""
        try:
            st = self.chain_path.stat()
        except FileNotFoundError as err:
            raise SigningKeyError(
                f"{self.chain_path}: no list key yet; start the registry or run "
                "'pintu registry rotate-list-key' to make a first one"
            ) from err
        except OSError as err:
            raise SigningKeyError(f"{self.chain_path}: {err.strerror}") from err
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._guard:
            if self._state is not None and stamp == self._stamp:
                return self._state
            self._state = self._read()
            self._stamp = stamp
            return self._state

    def _read(self) -> ListKeyState:
        try:
            chain = self.chain_path.read_bytes()
            pinned = ListKeys.from_chain(chain, str(self.chain_path))
        except OSError as err:
            raise SigningKeyError(f"{self.chain_path}: {err.strerror}") from err
        except ProtocolError as err:
            raise SigningKeyError(f"the list-key chain is damaged: {err}") from err
        etag = '"' + hashlib.sha256(chain).hexdigest()[:32] + '"'
        return ListKeyState(chain, pinned, etag)

    def current(self) -> SigningKey:
        """The list key that signs the doors' lists now."""
        pinned = self.state().pinned
        for kid in sorted(pinned.keys):
            key = self._private_key(kid.hex())
            if key is not None:
                return key
        raise SigningKeyError(
            f"{self.keys_dir}: the private half of list key {', '.join(pinned.kids)} is "
            "missing; restore it from a backup (doors pin it, so a new one cannot replace it)"
        )

    def _private_key(self, kid_hex: str) -> SigningKey | None:
        return private_key(self._private, self.key_path(kid_hex), kid_hex)

    # Writing.

    def ensure_key(self, now: int) -> str | None:
        """Make a first list key when there is none yet; its kid, or None."""
        with locked(self.keys_dir):
            if self.chain_path.exists():
                return None
            if any(self.keys_dir.glob("list-*.pem")):
                raise SigningKeyError(
                    f"{self.keys_dir}: holds list keys but no {CHAIN_FILE}; restore it "
                    "rather than start a new one (doors pin the old key)"
                )
            key = self._new_key()
            first = ListKeys.of(1, [key.public_key], now)
            self._write(statement(key, first), first)
        logger.warning("made a first list key %s in %s", key.kid_hex, self.keys_dir)
        return key.kid_hex

    def rotate(self, now: int) -> ListKeyRotation:
        """A new list key, named by a statement the current one signs."""
        with locked(self.keys_dir):
            if not self.chain_path.exists():
                key = self._new_key()
                first = ListKeys.of(1, [key.public_key], now)
                self._write(statement(key, first), first)
                logger.warning("made a first list key %s", key.kid_hex)
                return ListKeyRotation(key.kid_hex, (), 1)
            state = self._read()
            signer = self.current()
            key = self._new_key()
            nxt = ListKeys.of(state.pinned.seq + 1, [key.public_key], now)
            self._write(state.chain + statement(signer, nxt), nxt)
        logger.warning(
            "list key %s is current (statement %d, signed by %s); doors follow it at their "
            "next sync",
            key.kid_hex,
            nxt.seq,
            signer.kid_hex,
        )
        return ListKeyRotation(key.kid_hex, tuple(state.pinned.kids), nxt.seq)

    def _new_key(self) -> SigningKey:
        key = SigningKey.generate()
        try:
            key.save(self.key_path(key.kid_hex))
        except OSError as err:
            raise SigningKeyError(
                f"{self.keys_dir}: cannot write a list key: {err.strerror}"
            ) from err
        return key

    def _write(self, chain: bytes, newest: ListKeys) -> None:
        try:
            tmp = self.chain_path.with_name(f".{CHAIN_FILE}.tmp")
            tmp.write_bytes(chain)
            os.replace(tmp, self.chain_path)
            newest.save(self.pin_path)
        except OSError as err:
            raise SigningKeyError(
                f"{self.keys_dir}: cannot write the list-key chain: {err.strerror}"
            ) from err
