"""The lists the doors believe, built and signed here, relayed unchanged by the hubs.

A door checks every list against the list keys it pinned at enrolment
(``protocol.signedlist``), so the hub can relay a list but not make one. The registry
serves three signed documents (``GET /api/v1/lists/...``, docs/registry.md):

* ``keys``: the list-key chain (``registry.listkeys``), so doors follow a rotation;
* ``trust``: the trust list of pass keys (docs/protocol.md § 2);
* ``status``: the doors' status list (§ 4), least data: only the subjects a still-valid
  pass could contradict (``protocol.statuslist.door_items``), from every person's latest
  status.

Each list's ``updated_at`` is the time the registry signed it, so a door's list age says
how long ago its hub last heard from the registry. The entity tag names the content and
the list key, not that time: a hub revalidates with ``If-None-Match`` at every sync (a 304
costs one round trip) and asks without it when it wants a freshly dated copy.
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from protocol.passes import SUBJECT_BYTES
from protocol.signedlist import Kind, seal
from protocol.status import Status
from protocol.statuslist import LIFETIME_MARGIN_S, RECORD_BYTES, StatusList, door_items
from protocol.trust import TrustList
from registry.keyring import Keyring
from registry.listkeys import ListKeyring
from registry.store import RegistryStore

_RECORD = struct.Struct(f">{SUBJECT_BYTES}sBI")
assert _RECORD.size == RECORD_BYTES  # noqa: S101 - the .psl record layout of docs/protocol.md
_BY_LABEL = {s.label: s for s in Status}
# The doors' status list is built again when the feed moves, and at least this often, as
# subjects leave it when their change grows older than a pass's lifetime.
REBUILD_S = 3600


@dataclass(frozen=True)
class Prepared:
    """A list ready to sign: its entity tag now, its signed bytes when asked."""

    kind: Kind
    etag: str
    count: int  # keys, statements or subjects
    sign: Callable[[], bytes]


@dataclass(frozen=True)
class _Statuses:
    cursor: int
    built_at: int
    records: bytes
    digest: str


class DoorLists:
    def __init__(
        self,
        keyring: Keyring,
        list_keys: ListKeyring,
        store: RegistryStore,
        pass_valid_s: int,
        clock: Callable[[], int],
    ) -> None:
        self.keyring = keyring
        self.list_keys = list_keys
        self.store = store
        self.pass_valid_s = pass_valid_s
        self.clock = clock
        self._lock = threading.Lock()
        self._statuses: _Statuses | None = None
        self._stamps: dict[Kind, tuple[str, int]] = {}

    def prepare(self, kind: Kind) -> Prepared:
        if kind is Kind.KEYS:
            state = self.list_keys.state()
            return Prepared(kind, state.etag, state.pinned.seq, lambda: state.chain)
        if kind is Kind.TRUST:
            return self._trust()
        return self._status()

    def _stamp(self, kind: Kind, etag: str) -> int:
        """The list's ``updated_at``: now, never older than the last copy, and newer by a
        second at least when the content changed, so a door can refuse an older copy."""
        with self._lock:
            now = self.clock()
            last = self._stamps.get(kind)
            if last is not None:
                last_etag, last_stamp = last
                now = max(now, last_stamp + 1) if etag != last_etag else max(now, last_stamp)
            self._stamps[kind] = (etag, now)
            return now

    @staticmethod
    def _etag(prefix: str, *parts: bytes) -> str:
        digest = hashlib.sha256()
        for part in parts:
            digest.update(part)
        return f'"{prefix}-{digest.hexdigest()[:32]}"'

    def _trust(self) -> Prepared:
        trust = self.keyring.trust_list()
        signer = self.list_keys.current()
        keys = json.dumps(trust.to_json()["keys"], sort_keys=True).encode()

        etag = self._etag("t", keys, signer.kid)

        def sign() -> bytes:
            stamp = self._stamp(Kind.TRUST, etag)
            payload = TrustList(trust.keys, stamp).dumps().encode("utf-8")
            return seal(signer, Kind.TRUST, payload)

        return Prepared(Kind.TRUST, etag, len(trust.keys), sign)

    def _status(self) -> Prepared:
        built = self._status_records()
        signer = self.list_keys.current()

        etag = f'"s-{built.digest}-{signer.kid_hex}"'

        def sign() -> bytes:
            stamp = self._stamp(Kind.STATUS, etag)
            payload = StatusList(built.records, updated_at=stamp).dumps()
            return seal(signer, Kind.STATUS, payload)

        return Prepared(Kind.STATUS, etag, len(built.records) // RECORD_BYTES, sign)

    def _status_records(self) -> _Statuses:
        with self._lock:
            now = self.clock()
            cursor = self.store.last_cursor()
            cached = self._statuses
            if cached is not None and cached.cursor == cursor and now - cached.built_at < REBUILD_S:
                return cached
            cursor, rows = self.store.status_snapshot()
            since = now - self.pass_valid_s - LIFETIME_MARGIN_S

            def items() -> Iterator[tuple[bytes, Status, int]]:
                # A cheap look at the text first: most people are green or changed long ago.
                for subject, label, changed_at in rows:
                    if label != "green" and changed_at >= since:
                        yield bytes.fromhex(subject), _BY_LABEL[label], changed_at

            # The store gives subjects in text order, which for fixed-width lower-case hex
            # is the byte order the status list's binary search needs.
            pack = _RECORD.pack
            records = b"".join(
                pack(subject, int(status), changed_at)
                for subject, status, changed_at in door_items(items(), now, self.pass_valid_s)
            )
            digest = hashlib.sha256(records).hexdigest()[:32]
            self._statuses = _Statuses(cursor, now, records, digest)
            return self._statuses
