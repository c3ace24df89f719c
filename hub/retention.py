"""Retention at the hub: nothing that names a subject outlives the tracing window.

Every ``purge_interval_s`` (and once at start) the hub deletes the visits that ended more
than ``[retention] days`` ago, and removes the subject id from older events and from the
staff desk's audit entries. The events themselves stay: occupancy is counted (and can be
recounted) from them, and a count with a time names nobody. The registry's statuses are
not visits and stay; they are the doors' status list.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from hub.errors import StoreError
from hub.metrics import Counter, HubMetrics
from hub.upstream.outbox import registered
from hub.upstream.records import Purged
from protocol.events import utcnow

if TYPE_CHECKING:
    from hub.store import Store

logger = logging.getLogger(__name__)


class Retention:
    def __init__(
        self,
        store: Store,
        *,
        days: int,
        interval_s: float = 3600.0,
        metrics: HubMetrics | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.window = timedelta(days=days)
        self.interval_s = interval_s
        self.clock = clock
        self.purged = (
            registered(
                metrics,
                Counter(
                    "pintu_hub_purged_total",
                    "Visits deleted and subject ids removed past the tracing window.",
                    ["what"],
                ),
            )
            if metrics is not None
            else None
        )

    async def purge(self) -> Purged:
        """One pass: forget what is older than the window."""
        before = self.clock() - self.window
        done = await asyncio.to_thread(self.store.purge_before, before)
        if self.purged is not None:
            self.purged.inc(done.visits, what="visits")
            self.purged.inc(done.events, what="event_subjects")
            self.purged.inc(done.audit, what="audit_subjects")
        if done.visits or done.events or done.audit:
            logger.info(
                "purged before %s: %d visits, subject ids of %d events and %d audit entries",
                before.isoformat(),
                done.visits,
                done.events,
                done.audit,
            )
        return done

    async def run(self) -> None:
        while True:
            try:
                await self.purge()
            except StoreError as err:
                logger.error("the retention purge failed (tried again later): %s", err)
            await asyncio.sleep(self.interval_s)
