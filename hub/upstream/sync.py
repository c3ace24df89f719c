"""The hub's sync with the central registry, and the lists it hands the doors.

**In.** Every ``sync_interval_s`` (and on demand, ``POST /api/v1/sync``) the hub asks for
the trust list with ``If-None-Match`` (a 304 costs one round trip, so a revocation reaches
the doors within one interval, not within the list's ``max-age``), then reads the status
feed from its stored cursor, page after page until ``more`` is false. Each page and its
cursor are stored in one transaction, so a hub stopped half way resumes from the last
stored page. The next page is fetched while the previous one is written.

**Out.** The doors get both lists as retained MQTT messages (docs/protocol.md § 5.1):
``pintu/<facility>/lists/trust`` (the trust list, JSON) and ``pintu/<facility>/lists/status``
(the ``.psl`` status list built from the statuses table, least data: only the subjects a
door must be told of, see ``door_items``). They are published again when
they change, after every (re)connect to the broker, and at least every ``lists_refresh_s``
while the registry confirms them. Each list's ``updated_at`` is the time the registry last
confirmed it to the hub, so a door's list age says how long ago the hub last heard from
the registry; it only grows, and grows by at least a second when the content changes, so a
door can refuse an older copy.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from hub.config import HttpRegistryConfig, HubConfig
from hub.errors import StoreError
from hub.metrics import Counter, Gauge, HubMetrics
from hub.upstream.channel import ChannelMetrics, Decide, PhoneChannel
from hub.upstream.client import FeedPage, HttpRegistryClient, RegistryError
from hub.upstream.outbox import VisitPusher, registered
from hub.upstream.records import TrustCopy
from protocol import topics
from protocol.errors import ProtocolError
from protocol.events import utcnow
from protocol.status import Status
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
# Registry and hub clocks may differ; a change this much older than the pass lifetime is
# still sent, never one a little younger.
_LIFETIME_MARGIN_S = DAY_S


def door_items(
    items: Iterable[tuple[bytes, Status, int]], now: float, pass_valid_s: float
) -> Iterator[tuple[bytes, Status, int]]:
    """The status records a door needs: those a still-valid pass could contradict.

    A pass carries the status of the day it was issued, and lasts ``pass_valid_s``. A
    subject whose status last changed longer ago than that holds only passes issued after
    the change, which already say it: the door needs no record. A subject now green needs
    none either: an older pass says worse and is refused, and a new pass says green. What is
    left is the subjects turned yellow, red or black within a pass's lifetime, usually a
    small share of the population; a stolen door yields only those subject ids.
    """
    since = now - pass_valid_s - _LIFETIME_MARGIN_S
    for subject, status, changed_at in items:
        if status is not Status.GREEN and changed_at >= since:
            yield subject, status, changed_at


class ListPublisher:
    """Publishes the trust and status lists, retained, to every facility's doors."""

    def __init__(
        self,
        store: Store,
        publish: Publish,
        facility_ids: Sequence[str],
        *,
        refresh_s: float = 3600.0,
        metrics: SyncMetrics | None = None,
        pass_valid_s: float = 30 * DAY_S,
    ) -> None:
        self.store = store
        self.pass_valid_s = pass_valid_s
        self._publish = publish
        self.facility_ids = list(facility_ids)
        self.refresh_s = refresh_s
        self.metrics = metrics
        self._lock = asyncio.Lock()
        self._trust_stamp = 0
        self._trust_keys: str | None = None
        self._status_stamp = 0
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

    async def publish(
        self, *, trust_changed: bool = False, statuses_changed: bool = False, again: bool = False
    ) -> list[str]:
        """Publish what changed, what is due for a refresh, or (``again``) both."""
        async with self._lock:
            done: list[str] = []
            try:
                state = await asyncio.to_thread(self.store.sync_state)
                if state.trust is not None and self._trust(state.trust, trust_changed, again):
                    done.append("trust")
                checked = state.statuses_checked_at
                if checked is not None and await self._statuses(checked, statuses_changed, again):
                    done.append("status")
            except (StoreError, ProtocolError) as err:
                logger.error("cannot publish the lists to the doors: %s", err)
            return done

    def _stamp(self, confirmed: datetime, last: int, changed: bool) -> int:
        stamp = int(confirmed.timestamp())
        return max(stamp, last + 1) if changed else max(stamp, last)

    def _trust(self, copy: TrustCopy, changed: bool, again: bool) -> bool:
        trust = TrustList.loads(copy.body, "the stored trust list")
        keys = json.dumps(trust.to_json()["keys"], sort_keys=True)
        changed = changed or keys != self._trust_keys
        stamp = self._stamp(copy.checked_at, self._trust_stamp, changed)
        if not (changed or again or stamp - self._trust_stamp >= self.refresh_s):
            return False
        payload = TrustList(trust.keys, stamp).dumps().encode("utf-8")
        for facility_id in self.facility_ids:
            self._publish(topics.lists_trust(facility_id), payload, retain=True)
        self._trust_stamp, self._trust_keys = stamp, keys
        if self.metrics is not None:
            self.metrics.published.inc(list="trust")
        logger.info("published the trust list (%d keys) to the doors", len(trust.keys))
        return True

    async def _statuses(self, confirmed: datetime, changed: bool, again: bool) -> bool:
        stamp = self._stamp(confirmed, self._status_stamp, changed)
        if not (changed or again or stamp - self._status_stamp >= self.refresh_s):
            return False
        started = time.perf_counter()
        payload = await asyncio.to_thread(self._build_status_list, stamp)
        if len(payload) > MAX_LIST_BYTES:
            # The broker would close the hub's connection over it, again at every retry.
            logger.error(
                "the doors' status list is %d bytes, over the %d a message may carry: not "
                "published (the doors keep their lists and report them stale)",
                len(payload),
                MAX_LIST_BYTES,
            )
            return False
        for facility_id in self.facility_ids:
            self._publish(topics.lists_status(facility_id), payload, retain=True)
        self._status_stamp = stamp
        if self.metrics is not None:
            self.metrics.published.inc(list="status")
        logger.info(
            "published the status list (%d bytes, built in %.1f s) to the doors",
            len(payload),
            time.perf_counter() - started,
        )
        return True

    def _build_status_list(self, stamp: int) -> bytes:
        items = door_items(self.store.status_items(), time.time(), self.pass_valid_s)
        return StatusList.from_items(items, updated_at=stamp).dumps()

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class RegistrySync:
    """Pulls the trust list and the status feed into the store, then updates the doors."""

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
            trust_changed = False
            try:
                trust_changed = await self._sync_trust(result)
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
            # Whatever was stored before a failure still goes out to the doors.
            publishing = time.perf_counter()
            result.published = await self.publisher.publish(
                trust_changed=trust_changed, statuses_changed=result.statuses > 0
            )
            result.publish_seconds = time.perf_counter() - publishing
            result.seconds = time.perf_counter() - started
            self.last = result
            if result.statuses or trust_changed:
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
        result.error = message
        self.metrics.errors.inc(cause=cause)
        # One warning when the registry goes away, not one a minute while it stays away.
        log = logger.debug if self._failing else logger.warning
        log("sync with the registry failed (the doors keep their lists): %s", message)
        self._failing = True

    async def _sync_trust(self, result: SyncResult) -> bool:
        state = await asyncio.to_thread(self.store.sync_state)
        etag = state.trust.etag if state.trust is not None else None
        try:
            fetched = await self.client.trust(etag)
        except RegistryError:
            result.trust = "error"
            raise
        now = utcnow()
        if fetched.body is None:
            await asyncio.to_thread(self.store.save_trust, None, fetched.etag, now)
            return False
        try:
            text = fetched.body.decode("utf-8")
            TrustList.loads(text, "the registry's trust list")
        except (UnicodeDecodeError, ProtocolError) as err:
            result.trust = "error"
            # Junk from the registry never reaches a door: the last good list stays.
            raise RegistryError(
                f"the registry sent a trust list the doors cannot use: {err}"
            ) from err
        changed = state.trust is None or state.trust.body != text
        await asyncio.to_thread(self.store.save_trust, text, fetched.etag, now)
        result.trust = "changed" if changed else "unchanged"
        return changed

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
            store,
            publish,
            facility_ids,
            refresh_s=registry.lists_refresh_s,
            metrics=sync_metrics,
            pass_valid_s=registry.pass_valid_days * DAY_S,
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
