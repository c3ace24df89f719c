"""The node's side of list delivery: the signed lists the hub relays, retained, on
``pintu/<facility>/lists/keys``, ``.../trust`` and ``.../status`` (docs/protocol.md § 5.1).

paho's thread only hands a payload over (``submit``); a worker thread of its own checks it
whole, writes it to the state directory atomically (a temporary file, fsync, rename, so a
power cut leaves the old list or the new one, never half of either) and then has the node
reload its lists. Only the latest payload of each list waits: a slow SD card never builds
a backlog of 17-byte-a-subject lists.

**Signed by the registry.** A list is believed only when a list key the door pinned at
enrolment (``list_keys`` in the state directory, ``protocol.signedlist``) signed it: the
hub and the broker relay lists, they cannot make one, and neither can a rogue broker or a
client with a door's password. A list signed by a key not pinned (yet) is kept aside: when
the list-key chain brings a rotation that a pinned key signed, the door pins the new key
and tries that list again.

Nothing that fails a check changes anything: an unsigned list, a bad signature, a key not
pinned, junk, a truncated list, an empty (cleared) retained message, a list older than the
one in use (by its ``updated_at``; a replayed copy must not undo a revocation) or one
dated more than ``MAX_FUTURE_S`` ahead of the door's clock is logged and ignored, and the
node keeps deciding with the lists it has. A refusal for any of those reasons but the
harmless ones (empty, older, the same) is also reported in the node's status until a good
copy of that list arrives.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from protocol.errors import ProtocolError
from protocol.signedlist import Kind, ListKeys, SignedListError
from protocol.statuslist import StatusList
from protocol.trust import TrustList

logger = logging.getLogger(__name__)

ListKind = Literal["keys", "trust", "status"]
# The worker takes the key chain first: a rotation must be pinned before the lists the new
# key signed are looked at.
KINDS: tuple[ListKind, ...] = ("keys", "trust", "status")
_SIGNED: dict[ListKind, Kind] = {"keys": Kind.KEYS, "trust": Kind.TRUST, "status": Kind.STATUS}
# How far ahead of the door's clock a list's updated_at may be: the same allowance for
# drifting clocks as a pass's issued-at (docs/protocol.md, section 1).
MAX_FUTURE_S = 300


@dataclass(frozen=True)
class InUse:
    """What the node decides with now, to compare a new copy against."""

    trust: TrustList
    statuses: StatusList


@dataclass
class ListStats:
    applied: int = 0  # lists written and reloaded, and list-key rotations pinned
    ignored: int = 0  # refused copies: unsigned, junk, older, or the one in use already
    last_error: str | None = None
    last_reason: str | None = None  # the code of the last signature refusal (SignedListError)


def kind_of(topic: str) -> ListKind | None:
    """``trust`` or ``status`` for a lists topic, None for anything else."""
    leaf = topic.rsplit("/", 1)[-1]
    return leaf if leaf in KINDS else None


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader (or a power cut) sees all or nothing."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # The rename itself must reach the disk too, or a power cut can bring back the old name.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class ListReceiver:
    """Checks, stores and applies the lists the hub sends; ``start`` it, ``stop`` it."""

    def __init__(
        self,
        trust_path: Path,
        status_path: Path,
        keys_path: Path,
        *,
        in_use: Callable[[], InUse],
        reload: Callable[[], object],
        applied: Callable[[ListKind], None] | None = None,
        problem: Callable[[ListKind, str | None], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.paths: dict[ListKind, Path] = {
            "trust": trust_path,
            "status": status_path,
            "keys": keys_path,
        }
        self._in_use = in_use
        self._reload = reload
        self._applied = applied
        self._problem = problem
        self._clock = clock
        self._cond = threading.Condition()
        self._waiting: dict[ListKind, bytes] = {}
        self._parked: dict[ListKind, bytes] = {}
        self._busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.stats = ListStats()
        self.pins = self._load_pins()

    def _load_pins(self) -> ListKeys:
        path = self.paths["keys"]
        if not path.exists():
            logger.warning(
                "no list key pinned (%s): every list the hub sends is refused; enrol the "
                "door with the registry's list keys",
                path,
            )
            return ListKeys()
        try:
            pins = ListKeys.load(path)
        except ProtocolError as err:
            logger.error("the pinned list keys cannot be read, so no list is believed: %s", err)
            self._report("keys", f"the pinned list keys cannot be read: {err}")
            return ListKeys()
        logger.info("list keys pinned: %s (statement %d)", ", ".join(pins.kids), pins.seq)
        return pins

    # -- paho's thread: hand over, never block ------------------------------------------

    def submit(self, topic: str, payload: bytes) -> None:
        kind = kind_of(topic)
        if kind is None:
            logger.debug("ignored a message on %s", topic)
            return
        with self._cond:
            self._waiting[kind] = payload  # a newer copy replaces one not yet looked at
            self._cond.notify_all()

    # -- the worker ---------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._main, name="lists", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def idle(self) -> bool:
        """Nothing waiting and nothing being applied (for tests and diagnostics)."""
        with self._cond:
            return not self._waiting and not self._busy

    def _main(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._waiting) or self._stopping)
                if self._stopping:
                    return
                kind = next(k for k in KINDS if k in self._waiting)
                payload = self._waiting.pop(kind)
                self._busy = True
            try:
                self.apply(kind, payload)
            except Exception:
                # The node must keep its lists and its worker whatever one copy does.
                logger.exception("the %s list could not be applied", kind)
            finally:
                with self._cond:
                    self._busy = False

    def apply(self, kind: ListKind, payload: bytes) -> bool:
        """Check, write and load one list (or pin a rotation); whether it was applied."""
        if not payload:
            self._ignored(kind, "an empty message (a cleared retained list)")
            return False
        if kind == "keys":
            return self._rotate(payload)
        try:
            inner = self.pins.open(payload, _SIGNED[kind], f"the {kind} list from the hub")
        except SignedListError as err:
            if err.reason == "unknown_key":
                # Perhaps signed by a list key the next rotation pins: tried again then.
                self._parked[kind] = payload
            self.stats.last_reason = err.reason
            self._ignored(kind, str(err), error=True)
            return False
        why = self._refusal(kind, inner)
        if why is not None:
            return False
        try:
            write_atomically(self.paths[kind], inner)
        except OSError as err:
            self._ignored(kind, f"cannot write {self.paths[kind]}: {err}", error=True)
            return False
        self._parked.pop(kind, None)
        self._reload()
        self.stats.applied += 1
        self._report(kind, None)
        logger.info("new %s list from the hub applied (%d bytes)", kind, len(inner))
        if self._applied is not None:
            self._applied(kind)
        return True

    def _rotate(self, chain: bytes) -> bool:
        """Follow the registry's list-key chain from the keys pinned now."""
        try:
            pins = self.pins.advance(chain, "the list-key chain from the hub")
        except SignedListError as err:
            self.stats.last_reason = err.reason
            self._ignored("keys", str(err), error=True)
            return False
        if pins.seq == self.pins.seq:
            self._report("keys", None)
            self._ignored("keys", "no statement newer than the keys pinned", quiet=True)
            return False
        try:
            write_atomically(self.paths["keys"], pins.dumps().encode("utf-8"))
        except OSError as err:
            self._ignored("keys", f"cannot write {self.paths['keys']}: {err}", error=True)
            return False
        logger.warning(
            "list key rotated: now pinning %s (statement %d, was %s)",
            ", ".join(pins.kids),
            pins.seq,
            ", ".join(self.pins.kids) or "none",
        )
        self.pins = pins
        self.stats.applied += 1
        self._report("keys", None)
        if self._applied is not None:
            self._applied("keys")
        for kind in ("trust", "status"):
            parked = self._parked.pop(kind, None)
            if parked is not None:
                self.apply(kind, parked)
        return True

    def _refusal(self, kind: ListKind, payload: bytes) -> str | None:
        """Why this (signed) copy must not replace the list in use, or None."""
        in_use = self._in_use()
        try:
            if kind == "trust":
                new_trust = TrustList.loads(payload, "the trust list from the hub")
                current_stamp, new_stamp = in_use.trust.updated_at, new_trust.updated_at
                same = new_trust.to_json() == in_use.trust.to_json()
            else:
                new_statuses = StatusList.loads(payload, "the status list from the hub")
                current_stamp, new_stamp = in_use.statuses.updated_at, new_statuses.updated_at
                same = current_stamp == new_stamp and payload == in_use.statuses.dumps()
        except ProtocolError as err:
            return self._ignored(kind, str(err), error=True)
        if same:
            self._report(kind, None)  # the registry confirms the list in use
            return self._ignored(kind, "it is the list in use", quiet=True)
        now = self._clock()
        if new_stamp is not None and new_stamp > now + MAX_FUTURE_S:
            return self._ignored(
                kind,
                f"it is dated in the future (updated_at {new_stamp}, {new_stamp - now:.0f} s "
                "ahead of this door's clock)",
                error=True,
            )
        if (current_stamp or 0) > (new_stamp or 0):
            return self._ignored(
                kind, f"it is older (updated_at {new_stamp}) than the one in use ({current_stamp})"
            )
        return None

    def _report(self, kind: ListKind, problem: str | None) -> None:
        if self._problem is not None:
            self._problem(kind, problem)

    def _ignored(
        self, kind: ListKind, why: str, *, error: bool = False, quiet: bool = False
    ) -> str:
        self.stats.ignored += 1
        if error:
            self.stats.last_error = why
            logger.warning("ignored a %s list from the hub, keeping the old one: %s", kind, why)
            self._report(kind, f"refused a {kind} list from the hub: {why}")
        elif quiet:
            logger.debug("ignored a %s list from the hub: %s", kind, why)
        else:
            logger.info("ignored a %s list from the hub: %s", kind, why)
        return why
