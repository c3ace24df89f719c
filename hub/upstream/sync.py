"""The hub's sync with the central registry, and the lists it hands the doors.

**In.** Every ``sync_interval_s`` (and on demand, ``POST /api/v1/sync``) the hub asks the
registry for the doors' three signed lists (``GET /api/v1/lists/keys``, ``.../trust``,
``.../status``) with ``If-None-Match`` (a 304 costs one round trip, so a revocation or a
status change reaches the doors within one interval), then reads the status feed from its
stored cursor, page after page until ``more`` is false. Each page and its cursor are stored
in one transaction, so a hub stopped half way resumes from the last stored page. The next
page is fetched while the previous one is written.

**Out.** The doors get the lists exactly as the registry signed them (docs/protocol.md
§ 5.1), as retained MQTT messages on ``pintu/<facility>/lists/keys`` (the list-key chain),
``.../trust`` and ``.../status``. The hub cannot change them: a door believes a list only
when a list key it pinned at enrolment signed it. They are published again when they
change, after every (re)connect to the broker, and at least every ``lists_refresh_s``
while the registry answers: then the hub asks without ``If-None-Match`` for a copy the
registry dates anew, so a door's list age says how long ago the hub last heard from the
registry. The hub checks each copy as a door would (against the chain's newest keys)
before it publishes it, so a broken answer never reaches a door.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from hub.config import HttpRegistryConfig, HubConfig
from hub.errors import StoreError
from hub.metrics import Counter, Gauge, HubMetrics
from hub.upstream.channel import ChannelMetrics, Decide, PhoneChannel
from hub.upstream.client import FeedPage, HttpRegistryClient, RegistryError, RegistryUnavailable
from hub.upstream.outbox import VisitPusher, registered
from protocol import topics
from protocol.errors import ProtocolError
from protocol.events import utcnow
from protocol.signedlist import Kind, ListKeys
from protocol.statuslist import MAX_LIST_BYTES, StatusList
from protocol.trust import TrustList

if TYPE_CHECKING:
    from hub.store import Store

logger = logging.getLogger(__name__)


class Publish(Protocol):
    """How the lists reach the broker (the hub's MQTT connection, QoS 1)."""

    def __call__(self, topic: str, payload: bytes, *, retain: bool) -> object: ...


@dataclass
class SyncResult:
    """What one sync did."""

    ok: bool = True
    trust: str = "unchanged"  # "changed", "unchanged", or "error"
    statuses: int = 0  # status changes stored
    pages: int = 0
    cursor: int = 0
    published: list[str] = field(default_factory=list)  # lists re-published to the doors
    seconds: float = 0.0
    publish_seconds: float = 0.0  # of which building and publishing the doors' lists
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "trust": self.trust,
            "statuses": self.statuses,
            "pages": self.pages,
            "cursor": self.cursor,
            "published": list(self.published),
            "seconds": round(self.seconds, 3),
            "publish_seconds": round(self.publish_seconds, 3),
            "error": self.error,
        }


class SyncMetrics:
    def __init__(self, metrics: HubMetrics) -> None:
        self.last_success = registered(
            metrics,
            Gauge(
                "pintu_hub_registry_sync_last_success_timestamp_seconds",
                "When the last sync with the registry completed (Unix time).",
            ),
        )
        self.errors = registered(
            metrics,
            Counter(
                "pintu_hub_registry_sync_errors_total", "Syncs that failed, by cause.", ["cause"]
            ),
        )
        self.changes = registered(
            metrics,
            Counter("pintu_hub_status_changes_total", "Status changes stored from the feed."),
        )
        self.cursor = registered(
            metrics, Gauge("pintu_hub_status_feed_cursor", "The stored status feed cursor.")
        )
        self.published = registered(
            metrics,
            Counter("pintu_hub_lists_published_total", "Lists published to the doors.", ["list"]),
        )


DAY_S = 86_400
# In the order the hub publishes them: a door follows a list-key rotation before it meets
# a list signed by the new key.
LIST_NAMES: tuple[str, ...] = ("keys", "trust", "status")
_KINDS = {"keys": Kind.KEYS, "trust": Kind.TRUST, "status": Kind.STATUS}
_TOPICS: dict[str, Callable[[str], str]] = {
    "keys": topics.lists_keys,
    "trust": topics.lists_trust,
    "status": topics.lists_status,
}


@dataclass(frozen=True)
class SignedCopy:
    """A door list as the registry signed it, and when the hub received it."""

    body: bytes
    etag: str | None
    received_at: datetime


class ListPublisher:
    """Publishes the registry's signed lists, retained and unchanged, to every facility's
    doors; it holds the newest copy of each."""

    def __init__(
        self,
        publish: Publish,
        facility_ids: Sequence[str],
        *,
        refresh_s: float = 3600.0,
        metrics: SyncMetrics | None = None,
    ) -> None:
        self._publish = publish
        self.facility_ids = list(facility_ids)
        self.refresh_s = refresh_s
        self.metrics = metrics
        self.copies: dict[str, SignedCopy] = {}
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[list[str]]] = set()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def on_connect(self) -> None:
        """The hub (re)connected to the broker (called from the ingest's thread)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._republish)

    def _republish(self) -> None:
        task = asyncio.get_running_loop().create_task(self.publish(again=True))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def due(self, name: str, now: datetime) -> bool:
        """Whether a freshly dated copy of ``name`` is due (the chain carries no date)."""
        copy = self.copies.get(name)
        if copy is None:
            return True
        return name != "keys" and (now - copy.received_at).total_seconds() >= self.refresh_s

    def offer(self, name: str, copy: SignedCopy) -> bool:
        """Keep ``copy`` as the newest of ``name``; whether it differs from the last."""
        last = self.copies.get(name)
        self.copies[name] = copy
        return last is None or last.body != copy.body

    async def publish(self, names: Iterable[str] = (), *, again: bool = False) -> list[str]:
        """Publish the named lists, or (``again``) every list the hub holds."""
        wanted = set(names)
        async with self._lock:
            done: list[str] = []
            for name in LIST_NAMES:
                copy = self.copies.get(name)
                if copy is None or not (again or name in wanted):
                    continue
                for facility_id in self.facility_ids:
                    self._publish(_TOPICS[name](facility_id), copy.body, retain=True)
                done.append(name)
                if self.metrics is not None:
                    self.metrics.published.inc(list=name)
            if done:
                logger.info("published to the doors: %s", ", ".join(done))
            return done

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class RegistrySync:
    """Pulls the signed door lists and the status feed, then updates the doors."""

    def __init__(
        self,
        store: Store,
        client: HttpRegistryClient,
        publisher: ListPublisher,
        *,
        metrics: SyncMetrics,
        interval_s: float = 60.0,
        page_size: int = 10_000,
    ) -> None:
        self.store = store
        self.client = client
        self.publisher = publisher
        self.metrics = metrics
        self.interval_s = interval_s
        self.page_size = page_size
        self.last: SyncResult | None = None
        self._lock = asyncio.Lock()
        self._failing = False
        # A list over the size a message may carry: its ETag, so it is not fetched again
        # (nor logged again) until the registry's list changes.
        self._oversize: dict[str, str | None] = {}

    async def run(self) -> None:
        """Sync every ``interval_s`` until cancelled."""
        while True:
            await self.sync_now()
            await asyncio.sleep(self.interval_s)

    async def sync_now(self) -> SyncResult:
        """One whole sync; a failure is in the result (and logged), never raised."""
        async with self._lock:
            started = time.perf_counter()
            result = SyncResult()
            # The doors' lists first, and whatever the feed does: they are what doors need.
            changed: list[str] = []
            away = False
            try:
                await self._sync_lists(result, changed)
            except RegistryUnavailable as err:
                away = True
                self._failed(result, "registry", str(err))
            except RegistryError as err:
                self._failed(result, "registry", str(err))
            except StoreError as err:
                self._failed(result, "store", str(err))
            # Whatever was received before a failure still goes out to the doors.
            result.published = await self.publisher.publish(changed)
            result.publish_seconds = time.perf_counter() - started
            # A list the doors would refuse does not hold up the feed; a registry away does.
            if not away:
                try:
                    await self._sync_statuses(result)
                except RegistryError as err:
                    self._failed(result, "registry", str(err))
                except StoreError as err:
                    self._failed(result, "store", str(err))
            if result.ok:
                self.metrics.last_success.set(time.time())
                if self._failing:
                    logger.info("the registry answers again; the lists are in sync")
                self._failing = False
            result.seconds = time.perf_counter() - started
            self.last = result
            if result.statuses or result.trust == "changed":
                logger.info(
                    "synced with the registry: trust %s, %d status changes in %d pages "
                    "(cursor %d) in %.1f s",
                    result.trust,
                    result.statuses,
                    result.pages,
                    result.cursor,
                    result.seconds,
                )
            return result

    def _failed(self, result: SyncResult, cause: str, message: str) -> None:
        result.ok = False
        result.error = result.error or message  # the first failure says most
        self.metrics.errors.inc(cause=cause)
        # One warning when the registry goes away, not one a minute while it stays away.
        log = logger.debug if self._failing else logger.warning
        log("sync with the registry failed (the doors keep their lists): %s", message)
        self._failing = True

    async def _sync_lists(self, result: SyncResult, changed: list[str]) -> None:
        """Fetch the signed door lists that changed (or are due again), naming each in
        ``changed`` as it is taken (a list taken before a failure still goes out)."""
        keys: ListKeys | None = None
        for name in LIST_NAMES:
            now = utcnow()
            copy = self.publisher.copies.get(name)
            # A copy due for a refresh is asked for afresh: the registry dates it anew.
            etag = None if copy is None or self.publisher.due(name, now) else copy.etag
            etag = self._oversize.get(name) or etag
            try:
                fetched = await self.client.door_list(name, etag)
            except RegistryError:
                if name == "trust":
                    result.trust = "error"
                raise
            if fetched.body is None and name in self._oversize:
                continue  # still too large; the doors keep the lists they have
            if fetched.body is None:
                if copy is not None:
                    # Still the registry's word, but dated when it was signed: the copy
                    # keeps its time, so a freshly dated one is asked for when it is due.
                    self.publisher.copies[name] = replace(copy, etag=fetched.etag)
                    if name == "keys":
                        keys = ListKeys.from_chain(copy.body)
                if name == "trust":
                    await asyncio.to_thread(self.store.save_trust, None, fetched.etag, now)
                continue
            if len(fetched.body) > MAX_LIST_BYTES:
                # The broker would close the hub's connection over it, again at every retry.
                self._oversize[name] = fetched.etag
                logger.error(
                    "the registry's %s list is %d bytes, over the %d a message may carry: not "
                    "published (the doors keep their lists and report them stale)",
                    name,
                    len(fetched.body),
                    MAX_LIST_BYTES,
                )
                continue
            self._oversize.pop(name, None)
            try:
                checked = await asyncio.to_thread(self._check, name, fetched.body, keys)
            except ProtocolError as err:
                if name == "trust":
                    result.trust = "error"
                # Junk from the registry never reaches a door: the last good copy stays.
                raise RegistryError(
                    f"the registry sent a {name} list the doors would refuse: {err}"
                ) from err
            if name == "keys":
                assert isinstance(checked, ListKeys)  # noqa: S101 - _check's contract
                keys = checked
            elif name == "trust":
                assert isinstance(checked, TrustList)  # noqa: S101 - _check's contract
                result.trust = await self._save_trust(checked, fetched.etag, now)
            if self.publisher.offer(name, SignedCopy(fetched.body, fetched.etag, now)):
                changed.append(name)

    @staticmethod
    def _check(name: str, body: bytes, keys: ListKeys | None) -> ListKeys | TrustList | StatusList:
        """A copy checked as a door checks it; ``ProtocolError`` if a door would refuse it."""
        if name == "keys":
            return ListKeys.from_chain(body, "the registry's list-key chain")
        if keys is None:
            raise ProtocolError("no list-key chain to check it against")
        payload = keys.open(body, _KINDS[name], f"the registry's {name} list")
        if name == "trust":
            return TrustList.loads(payload, "the registry's trust list")
        return StatusList.loads(payload, "the registry's status list")

    async def _save_trust(self, trust: TrustList, etag: str | None, now: datetime) -> str:
        """Keep the trust list's keys in the store (the hub's record); changed or not."""
        state = await asyncio.to_thread(self.store.sync_state)
        text = json.dumps(trust.to_json()["keys"], sort_keys=True)
        before = None
        if state.trust is not None:
            try:
                before = json.dumps(
                    TrustList.loads(state.trust.body).to_json()["keys"], sort_keys=True
                )
            except ProtocolError:
                before = None
        await asyncio.to_thread(self.store.save_trust, trust.dumps(), etag, now)
        return "unchanged" if before == text else "changed"

    async def _sync_statuses(self, result: SyncResult) -> None:
        state = await asyncio.to_thread(self.store.sync_state)
        since = result.cursor = state.cursor
        writing: asyncio.Task[int] | None = None
        try:
            while True:
                page = await self.client.statuses(since, self.page_size)
                if writing is not None:
                    result.statuses += await writing
                writing = asyncio.create_task(asyncio.to_thread(self._save, page))
                result.pages += 1
                since = page.next
                if not page.more:
                    break
        finally:
            if writing is not None:
                result.statuses += await writing
        result.cursor = since
        self.metrics.cursor.set(since)

    def _save(self, page: FeedPage) -> int:
        stored = self.store.save_statuses(page.changes, page.next, utcnow(), complete=not page.more)
        self.metrics.changes.inc(stored)
        return stored


class RegistryLink:
    """A hub's whole link to an http registry: sync in, lists out, visits out."""

    def __init__(
        self,
        config: HubConfig,
        registry: HttpRegistryConfig,
        store: Store,
        publish: Publish,
        metrics: HubMetrics,
        *,
        client: HttpRegistryClient | None = None,
    ) -> None:
        facility_ids = [f.id for f in config.facilities]
        self.registry = registry
        self.facility_ids = facility_ids
        self.client = client or HttpRegistryClient.from_config(registry, facility_ids)
        sync_metrics = SyncMetrics(metrics)
        self.publisher = ListPublisher(
            publish, facility_ids, refresh_s=registry.lists_refresh_s, metrics=sync_metrics
        )
        self.sync = RegistrySync(
            store,
            self.client,
            self.publisher,
            metrics=sync_metrics,
            interval_s=registry.sync_interval_s,
            page_size=registry.page_size,
        )
        self.outbox = VisitPusher(
            store,
            self.client,
            facility_ids,
            metrics=metrics,
            interval_s=registry.push_interval_s,
            batch=registry.push_batch,
            retry_max_s=registry.retry_max_s,
        )
        self._channel_metrics = ChannelMetrics(metrics)
        self.channels: list[PhoneChannel] = []

    @classmethod
    def create(
        cls, config: HubConfig, store: Store, publish: Publish, metrics: HubMetrics
    ) -> RegistryLink | None:
        """The link for ``config``'s ``[registry]``; None unless it is an http registry."""
        registry = config.registry
        if not isinstance(registry, HttpRegistryConfig):
            return None
        return cls(config, registry, store, publish, metrics)

    def open_channels(self, decide: Decide) -> None:
        """Take phone check-ins from the registry for every facility, decided by ``decide``
        (call before ``start``; without it the hub takes none)."""
        registry = self.registry
        if not registry.phone_checkins:
            return
        self.channels = [
            PhoneChannel(
                self.client,
                facility_id,
                decide,
                wait_s=registry.channel_wait_s,
                retry_max_s=min(registry.retry_max_s, 60.0),
                metrics=self._channel_metrics,
            )
            for facility_id in self.facility_ids
        ]

    def start(self) -> list[asyncio.Task[None]]:
        self.publisher.bind(asyncio.get_running_loop())
        return [
            asyncio.create_task(_forever(self.sync.run, "registry sync"), name="registry-sync"),
            asyncio.create_task(_forever(self.outbox.run, "visit push"), name="visit-push"),
            *[
                asyncio.create_task(
                    _forever(c.run, "phone check-in channel"), name=f"phone-{c.facility_id}"
                )
                for c in self.channels
            ],
        ]

    async def aclose(self) -> None:
        await self.publisher.aclose()
        await self.client.aclose()


async def _forever(run: Callable[[], Any], what: str) -> None:
    """Run a service loop; a bug in one pass is logged and the loop started again."""
    while True:
        try:
            await run()
        except Exception:
            # The loops handle the failures they expect; this is a bug. Logged with its
            # traceback, and the loop goes on: the doors must not lose their updates.
            logger.exception("the %s broke; starting it again in 10 s", what)
        await asyncio.sleep(10.0)
