"""The node's side of list delivery: the trust and status lists the hub publishes, retained,
on ``pintu/<facility>/lists/trust`` and ``.../lists/status`` (docs/protocol.md § 5.1).

paho's thread only hands a payload over (``submit``); a worker thread of its own checks it
whole (``TrustList.loads`` / ``StatusList.loads``), writes it to the state directory
atomically (a temporary file, fsync, rename, so a power cut leaves the old list or the new
one, never half of either) and then has the node reload its lists. Only the latest payload
of each list waits: a slow SD card never builds a backlog of 17-byte-a-subject lists.

Nothing that fails a check changes anything: junk, a truncated list, an empty (cleared)
retained message, a list older than the one in use (by its ``updated_at``; a replayed
copy must not undo a revocation) or one dated more than ``MAX_FUTURE_S`` ahead of the
door's clock is logged and ignored, and the node keeps deciding with the lists it has. A
list from the future would otherwise make every genuine list after it look older and be
refused, keeping a forged list in use until the door's state is wiped.
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
from protocol.statuslist import StatusList
from protocol.trust import TrustList

logger = logging.getLogger(__name__)

ListKind = Literal["trust", "status"]
KINDS: tuple[ListKind, ...] = ("trust", "status")
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
    applied: int = 0  # lists written and reloaded
    ignored: int = 0  # refused copies: junk, older, or the one in use already
    last_error: str | None = None


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
        *,
        in_use: Callable[[], InUse],
        reload: Callable[[], object],
        applied: Callable[[ListKind], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.paths: dict[ListKind, Path] = {"trust": trust_path, "status": status_path}
        self._in_use = in_use
        self._reload = reload
        self._applied = applied
        self._clock = clock
        self._cond = threading.Condition()
        self._waiting: dict[ListKind, bytes] = {}
        self._busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.stats = ListStats()

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
        """Check, write and load one list; whether it was applied."""
        why = self._refusal(kind, payload)
        if why is not None:
            self.stats.ignored += 1
            return False
        try:
            write_atomically(self.paths[kind], payload)
        except OSError as err:
            self._ignored(kind, f"cannot write {self.paths[kind]}: {err}", error=True)
            return False
        self._reload()
        self.stats.applied += 1
        logger.info("new %s list from the hub applied (%d bytes)", kind, len(payload))
        if self._applied is not None:
            self._applied(kind)
        return True

    def _refusal(self, kind: ListKind, payload: bytes) -> str | None:
        """Why this copy must not replace the list in use, or None."""
        if not payload:
            return self._ignored(kind, "an empty message (a cleared retained list)")
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

    def _ignored(
        self, kind: ListKind, why: str, *, error: bool = False, quiet: bool = False
    ) -> str:
        if error:
            self.stats.last_error = why
            logger.warning("ignored a %s list from the hub, keeping the old one: %s", kind, why)
        elif quiet:
            logger.debug("ignored a %s list from the hub: %s", kind, why)
        else:
            logger.info("ignored a %s list from the hub: %s", kind, why)
        return why
