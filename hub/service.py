"""The facility hub as one asyncio object: config, store, MQTT ingest, live updates,
end-of-day resets, metrics. The web dashboard and API are built on a running ``Hub``.

``serve(config_path)`` runs it as a service: it stops cleanly on SIGTERM or SIGINT and
tells systemd when it is ready, petting the watchdog while the ingest is alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from typing import Any
from zoneinfo import ZoneInfo

from hub.config import FacilityConfig, HubConfig
from hub.errors import HubError, NotFound
from hub.ingest.live import LiveBus
from hub.ingest.mqtt import Ingest
from hub.ingest.phone import PhoneDoors
from hub.metrics import HubMetrics, Sampled
from hub.records import Adjustment, Alert, Occupancy
from hub.retention import Retention
from hub.store import Store, open_store
from hub.upstream.sync import RegistryLink
from protocol.checkins import PHONE_NODE
from protocol.events import CommandReply, utcnow
from runtime.notify import Notifier

logger = logging.getLogger(__name__)

SYSTEM_USER = "system"  # who made the automatic adjustments (end-of-day reset)
_HEARTBEAT_LIMIT_S = 30.0  # a writer silent this long is stuck: stop petting the watchdog


def next_reset(now: datetime, reset_at: clock_time, tz: ZoneInfo) -> datetime:
    """The first ``reset_at`` local time in ``tz`` strictly after ``now``, in UTC."""
    local = now.astimezone(tz)
    candidate = datetime.combine(local.date(), reset_at, tzinfo=tz)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), reset_at, tzinfo=tz)
    return candidate.astimezone(UTC)


class Hub:
    """One facility hub process. ``await run(stop)``, or ``start()`` then ``stop()``.

    Pass ``store`` to share an open store (the caller closes it); otherwise the hub opens
    the configured one at start and closes it at stop.
    """

    def __init__(self, config: HubConfig, *, store: Store | None = None) -> None:
        self.config = config
        self.live = LiveBus()
        self.metrics = HubMetrics()
        self.metrics.add(
            Sampled(
                "pintu_hub_live_streams",
                "Dashboard live streams open.",
                lambda: self.live.subscribers,
            )
        )
        self._store = store
        self._own_store = store is None
        self._ingest: Ingest | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # With an http registry: the sync, the doors' lists and the visits outbox.
        self.registry: RegistryLink | None = None
        # Phone check-ins that come over the registry link, decided as a door would.
        self.phones: PhoneDoors | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            raise HubError("the hub is not started")
        return self._store

    @property
    def ingest(self) -> Ingest:
        if self._ingest is None:
            raise HubError("the hub is not started")
        return self._ingest

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.live.bind(loop)
        if self._store is None:
            self._store = await asyncio.to_thread(open_store, self.config)
        self._store.configure_visits(self.config.retention.max_visit_hours * 3600)
        try:
            self._ingest = Ingest(self.config, self._store, metrics=self.metrics, live=self.live)
            self.registry = RegistryLink.create(
                self.config, self._store, self._ingest.publish, self.metrics
            )
        except HubError:
            await self._close_store()
            raise
        if self.registry is not None:
            self._ingest.connect_hooks.append(self.registry.publisher.on_connect)
            self.phones = PhoneDoors(self.config, self._store, self._ingest)
            self.registry.open_channels(self.phones.decide)
        for configured in self.config.facilities:
            # A capacity staff set at run time outlives a restart; the store has it.
            facility = self._store.facility_config(configured.id) or configured
            capacity = facility.effective_capacity
            if capacity is not None:
                self.metrics.capacity.set(capacity, facility=facility.id)
            occupancy = await asyncio.to_thread(self._store.occupancy, facility.id)
            self.metrics.occupancy.set(occupancy.occupancy, facility=facility.id)
            if facility.reset_at is not None:
                self._tasks.append(
                    asyncio.create_task(self._daily_reset(facility), name=f"reset-{facility.id}")
                )
        retention = self.config.retention
        purge = Retention(
            self._store,
            days=retention.days,
            interval_s=retention.purge_interval_s,
            metrics=self.metrics,
        )
        self._tasks.append(asyncio.create_task(purge.run(), name="retention"))
        if self.registry is not None:
            self._tasks += self.registry.start()
        self._ingest.start(loop)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.registry is not None:
            await self.registry.aclose()
            self.registry = None
        if self._ingest is not None:
            await asyncio.to_thread(self._ingest.stop)
            self._ingest = None
        self.live.close()
        await self._close_store()

    async def _close_store(self) -> None:
        if self._own_store and self._store is not None:
            await asyncio.to_thread(self._store.close)
            self._store = None

    async def run(self, stop: asyncio.Event, *, notifier: Notifier | None = None) -> None:
        """Run until ``stop`` is set."""
        notifier = notifier or Notifier()
        await self.start()
        try:
            names = ", ".join(f.id for f in self.config.facilities)
            notifier.ready(f"serving {names}")
            interval = notifier.watchdog_interval_s
            while not stop.is_set():
                # Wake up once per watchdog half-period (never, without a watchdog).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=interval)
                if self.alive:
                    notifier.pet()
                else:
                    logger.error("the ingest's writer is stuck; not petting the watchdog")
        finally:
            notifier.stopping()
            await self.stop()

    async def wait_ready(self, timeout_s: float = 10.0) -> bool:
        """Whether the hub is connected and subscribed within ``timeout_s``."""
        return await asyncio.to_thread(self.ingest.wait_ready, timeout_s)

    @property
    def alive(self) -> bool:
        """The writer thread runs and has taken a turn recently (what the watchdog asks:
        a restart mends a stuck writer, not a full disk)."""
        ingest = self._ingest
        if ingest is None or not ingest.writer_alive:
            return False
        return (time.monotonic() - ingest.heartbeat) < _HEARTBEAT_LIMIT_S

    @property
    def store_ok(self) -> bool:
        """The store took the last batch (or none has failed since the start)."""
        ingest = self._ingest
        return ingest is None or ingest.store_failing_since is None

    @property
    def healthy(self) -> bool:
        """Alive, and able to store what arrives."""
        return self.problem is None

    @property
    def problem(self) -> str | None:
        """Why the hub cannot take events in now, or None when it can."""
        ingest = self._ingest
        if not self.alive or ingest is None:
            return "the ingest's writer is not running or is stuck"
        now = time.monotonic()
        failing = ingest.store_failing_since
        if failing is not None and now - failing >= self.config.ingest.unhealthy_after_s:
            return f"the store has refused every batch for {now - failing:.0f} s"
        return None

    # --- what staff do --------------------------------------------------------------------
    def facility(self, facility_id: str) -> FacilityConfig:
        facility = self.config.facility(facility_id)
        if facility is None:
            raise NotFound(f"unknown facility {facility_id!r}")
        return facility

    async def occupancy(self, facility_id: str) -> Occupancy:
        self.facility(facility_id)
        return await asyncio.to_thread(self.store.occupancy, facility_id)

    async def manual_correction(
        self,
        facility_id: str,
        value: int,
        user: str,
        note: str = "",
        *,
        zone_id: str | None = None,
    ) -> Adjustment:
        """Set the headcount to what staff counted; recorded with who did it."""
        self.facility(facility_id)
        adjustment = await asyncio.to_thread(
            self.store.adjust, facility_id, "correction", value, user, note, zone_id=zone_id
        )
        logger.info(
            "%s corrected %s%s to %d (%+d)",
            user,
            facility_id,
            f"/{zone_id}" if zone_id else "",
            value,
            adjustment.delta,
        )
        self.ingest.refresh_state(facility_id)
        return adjustment

    async def reset(self, facility_id: str, user: str = SYSTEM_USER, note: str = "") -> Adjustment:
        """Set the facility and its zones to zero (the end-of-day reset, or by hand)."""
        self.facility(facility_id)
        adjustment = await asyncio.to_thread(self.store.adjust, facility_id, "reset", 0, user, note)
        logger.info("%s reset %s (%+d)", user, facility_id, adjustment.delta)
        self.ingest.refresh_state(facility_id)
        return adjustment

    def settings(self, facility_id: str) -> FacilityConfig:
        """The facility's settings in effect, with any capacity staff have set since start."""
        facility = self.facility(facility_id)
        return self.store.facility_config(facility_id) or facility

    async def set_capacity(
        self,
        facility_id: str,
        user: str,
        *,
        capacity: int | None = None,
        capacity_percent: float | None = None,
        nominal_max: int | None = None,
        soft_threshold_percent: float | None = None,
    ) -> Occupancy:
        """Change the capacity (absolute, or a percentage of the nominal maximum); the nodes
        get the new retained state, so entry nodes refuse or admit by it at once."""
        self.facility(facility_id)
        updated = await asyncio.to_thread(
            self.store.set_capacity,
            facility_id,
            user,
            capacity=capacity,
            capacity_percent=capacity_percent,
            nominal_max=nominal_max,
            soft_threshold_percent=soft_threshold_percent,
        )
        logger.info(
            "%s set the capacity of %s to %s", user, facility_id, updated.effective_capacity
        )
        if updated.effective_capacity is not None:
            self.metrics.capacity.set(updated.effective_capacity, facility=facility_id)
        self.ingest.refresh_state(facility_id)
        return await self.occupancy(facility_id)

    async def ack_alert(self, alert_id: int, user: str) -> Alert:
        alert = await asyncio.to_thread(self.store.ack_alert, alert_id, user)
        self.live.publish({"type": "alert", **alert.as_dict()})
        return alert

    async def command(
        self,
        facility_id: str,
        node_id: str,
        cmd: str,
        args: dict[str, Any] | None = None,
        *,
        timeout_s: float = 5.0,
        user: str | None = None,
    ) -> CommandReply:
        """Send a command to a node and wait for its reply; audited when ``user`` is given."""
        self.facility(facility_id)
        if user is not None:
            await asyncio.to_thread(
                self.store.audit,
                user,
                f"command.{cmd}",
                facility_id=facility_id,
                target=node_id,
                detail=str(args or {}),
            )
        return await self.ingest.command(facility_id, node_id, cmd, args, timeout_s)

    async def open_door(
        self, facility_id: str, door_id: str, user: str, reason: str, *, timeout_s: float = 5.0
    ) -> CommandReply:
        """Release a door once (a guard's remote open) through a node that guards it."""
        node_id = await self._node_for_door(facility_id, door_id)
        return await self.command(
            facility_id, node_id, "open", {"reason": reason}, timeout_s=timeout_s, user=user
        )

    async def _node_for_door(self, facility_id: str, door_id: str) -> str:
        facility = self.facility(facility_id)
        door = facility.door(door_id)
        if facility.doors and door is None:
            raise NotFound(f"facility {facility_id!r} has no door {door_id!r}")
        nodes = await asyncio.to_thread(self.store.nodes, facility_id)
        candidates = [
            n
            for n in nodes
            if n.node_id != PHONE_NODE
            and (n.door_id == door_id or (door and n.node_id in door.nodes))
        ]
        # Prefer a node that is up; a configured one that never reported is the last resort.
        for node in sorted(candidates, key=lambda n: n.state not in ("online", "degraded")):
            return node.node_id
        if door is not None and door.nodes:
            return door.nodes[0]
        raise NotFound(f"no node is known at door {door_id!r}")

    def metrics_text(self) -> str:
        """The Prometheus exposition of the hub's metrics (content type: ``CONTENT_TYPE``)."""
        return self.metrics.render()

    # --- end of day -------------------------------------------------------------------
    async def _daily_reset(self, facility: FacilityConfig) -> None:
        assert facility.reset_at is not None  # noqa: S101 - only scheduled when set
        while True:
            due = next_reset(utcnow(), facility.reset_at, facility.tz)
            logger.info("next end-of-day reset of %s at %s", facility.id, due.isoformat())
            while (remaining := (due - utcnow()).total_seconds()) > 0:
                # Wake up now and then: the wall clock can jump (NTP, a suspended VM).
                await asyncio.sleep(min(remaining, 300.0))
            try:
                await self.reset(facility.id, SYSTEM_USER, "end of day")
            except HubError as err:
                logger.error("the end-of-day reset of %s failed: %s", facility.id, err)
