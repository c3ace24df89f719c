"""Visits: kept in an outbox, pushed to the registry (``hub.upstream.visits`` derives them).

**Pushing.** ``VisitPusher`` sends pending visits, a batch per facility with that
facility's hub token, to ``POST /api/v1/visits``. A 200 (stored or duplicate: the registry
is idempotent by visit id) marks them ``sent``. A network error or a 5xx keeps them and
retries with backoff; the outbox is in the store, so it survives a restart and any outage.
A 4xx that names rows (``visits[3].door_id``) parks those rows as ``failed`` with the
reason and sends the rest again; a 4xx that names none is narrowed down by halving the
batch, so one bad row never holds up the others. A refused token or facility (401, 403)
parks no visit, as the visits are not at fault, but stops the facility's pushes: sending
them again would be refused again. A 408 or 429 (the pace) is retried with backoff.

**Parked, not retried forever.** What the registry refused for good (rows parked as failed,
a facility stopped) raises a ``visits_refused`` alert on the dashboard with the reason, and
shows in the metrics; it is tried again only after the configuration changes: when the hub
starts (a changed configuration takes effect by a restart) or an admin asks for a sync
(``retry``), once the cause is mended (the doors registered at the registry, the right
facility id or hub token in the configuration).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from hub.metrics import Counter, Gauge, HubMetrics
from hub.records import AlertKind
from hub.upstream.client import HttpRegistryClient, RegistryError, RegistryRefused
from hub.upstream.records import Visit

if TYPE_CHECKING:
    from hub.store import Store

logger = logging.getLogger(__name__)

_ROW = re.compile(r"^visits\[(\d+)\]")


# --- pushing ----------------------------------------------------------------------------
@dataclass
class PushReport:
    sent: int = 0
    failed: int = 0
    kept: int = 0  # still pending: the registry could not be reached (or refused the token)


M = TypeVar("M", Counter, Gauge)


def registered(metrics: HubMetrics, metric: M) -> M:
    """``metric`` added to the hub's metrics, or the one of that name already there (a hub
    started again on the same metrics)."""
    existing = next((m for m in metrics.metrics if m.name == metric.name), None)
    if existing is None:
        metrics.add(metric)
        return metric
    if type(existing) is not type(metric):
        raise ValueError(f"metric {metric.name} is registered as another kind")
    return existing


class OutboxMetrics:
    """The outbox's figures, registered on the hub's metrics."""

    def __init__(self, metrics: HubMetrics) -> None:
        self.visits = registered(
            metrics,
            Gauge("pintu_hub_visits", "Visits in the hub's outbox, by state.", ["state"]),
        )
        self.pushed = registered(
            metrics,
            Counter(
                "pintu_hub_visits_pushed_total",
                "Visits the registry took (stored or already known).",
                ["facility"],
            ),
        )
        self.refused = registered(
            metrics,
            Counter(
                "pintu_hub_visits_failed_total",
                "Visits the registry refused (parked as failed).",
                ["facility"],
            ),
        )
        self.push_errors = registered(
            metrics,
            Counter(
                "pintu_hub_visit_push_errors_total",
                "Visit pushes that failed and will be retried, by cause.",
                ["cause"],
            ),
        )
        self.stopped = registered(
            metrics,
            Gauge(
                "pintu_hub_visit_push_stopped",
                "1 while the registry refuses a facility's token or id: its visits wait until "
                "the configuration changes.",
                ["facility"],
            ),
        )


class VisitPusher:
    """Sends the outbox's pending visits to the registry until it is stopped."""

    def __init__(
        self,
        store: Store,
        client: HttpRegistryClient,
        facility_ids: Sequence[str],
        *,
        metrics: HubMetrics,
        interval_s: float = 10.0,
        batch: int = 1000,
        retry_max_s: float = 300.0,
    ) -> None:
        self.store = store
        self.client = client
        self.facility_ids = list(facility_ids)
        self.metrics = OutboxMetrics(metrics)
        self.interval_s = interval_s
        self.batch = batch
        self.retry_max_s = retry_max_s
        self._wake = asyncio.Event()
        self.last_error: str | None = None
        # Facilities whose pushes the registry refuses as a whole (401, 403): the reason.
        self.stopped: dict[str, str] = {}

    def wake(self) -> None:
        """Push now rather than at the next interval."""
        self._wake.set()

    async def retry(self) -> int:
        """Try again what the registry refused for good (after the configuration changed):
        the stopped facilities, and their visits parked as failed go back to pending. How
        many visits went back."""
        requeued = 0
        for facility_id in self.facility_ids:
            self.stopped.pop(facility_id, None)
            self.metrics.stopped.set(0, facility=facility_id)
            while True:
                failed = await asyncio.to_thread(self.store.failed_visits, facility_id, self.batch)
                if not failed:
                    break
                ids = [v.visit_id for v in failed]
                await asyncio.to_thread(self.store.mark_visits, ids, "pending")
                requeued += len(ids)
            await asyncio.to_thread(self.store.clear_alerts, facility_id, AlertKind.VISITS_REFUSED)
        if requeued:
            logger.info("%d visits the registry refused are tried again", requeued)
        self.wake()
        return requeued

    async def run(self) -> None:
        # A start is how a changed configuration takes effect: what was refused is tried
        # once more.
        await self.retry()
        delay = self.interval_s
        while True:
            self._wake.clear()
            report = await self.push_all()
            if report.kept:
                # The registry is away: back off, up to retry_max_s.
                delay = min(max(delay * 2, self.interval_s), self.retry_max_s)
            else:
                delay = self.interval_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    async def push_all(self) -> PushReport:
        """One pass: every facility's pending visits, until none are left or one fails."""
        report = PushReport()
        for facility_id in self.facility_ids:
            if facility_id in self.stopped:
                continue  # refused until the configuration changes (``retry``)
            while True:
                pending = await asyncio.to_thread(
                    self.store.pending_visits, facility_id, self.batch
                )
                if not pending:
                    break
                done = await self._push(facility_id, pending)
                report.sent += done.sent
                report.failed += done.failed
                report.kept += done.kept
                if done.kept or len(pending) < self.batch:
                    break
        await self.update_counts()
        return report

    async def update_counts(self) -> None:
        counts = await asyncio.to_thread(self.store.outbox_counts)
        for state in ("pending", "sent", "failed"):
            self.metrics.visits.set(counts.get(state), state=state)

    async def _push(self, facility_id: str, visits: Sequence[Visit]) -> PushReport:
        """Push one batch; parks refused rows, narrowing a refusal down to its rows."""
        report = PushReport()
        try:
            answer = await self.client.push_visits(facility_id, [v.wire() for v in visits])
        except RegistryRefused as err:
            return await self._refused(facility_id, visits, err)
        except RegistryError as err:
            self._note_error("unreachable", f"visits of {facility_id} kept for later: {err}")
            report.kept = len(visits)
            return report
        ids = [v.visit_id for v in visits]
        await asyncio.to_thread(self.store.mark_visits, ids, "sent")
        self.metrics.pushed.inc(len(ids), facility=facility_id)
        if self.last_error is not None:
            logger.info("the registry takes visits again")
            self.last_error = None
        logger.debug(
            "%s: %d visits pushed (%d new, %d known)",
            facility_id,
            len(ids),
            answer.stored,
            answer.duplicates,
        )
        report.sent = len(ids)
        return report

    async def _refused(
        self, facility_id: str, visits: Sequence[Visit], err: RegistryRefused
    ) -> PushReport:
        report = PushReport()
        if err.status in (408, 429):
            # The pace is refused, not the visits: keep them, back off.
            self._note_error("refused_pace", f"visits of {facility_id} kept: {err}")
            report.kept = len(visits)
            return report
        if err.status in (401, 403):
            # The token (missing, replaced, another facility's) or the facility id: every
            # push would be refused the same way. Keep the visits; stop until it is mended.
            await self._stop(facility_id, err)
            report.kept = len(visits)
            return report
        rows = _named_rows(err, len(visits))
        if rows:
            bad = [visits[i] for i in sorted(rows)]
            report.failed += await self._park(facility_id, bad, err)
            rest = [v for i, v in enumerate(visits) if i not in rows]
            if rest:
                more = await self._push(facility_id, rest)
                report.sent += more.sent
                report.failed += more.failed
                report.kept += more.kept
            return report
        if len(visits) > 1:
            # Which row? Halve until the refusal is pinned on one (or two halves pass).
            half = len(visits) // 2
            for part in (visits[:half], visits[half:]):
                more = await self._push(facility_id, part)
                report.sent += more.sent
                report.failed += more.failed
                report.kept += more.kept
            return report
        report.failed += await self._park(facility_id, visits, err)
        return report

    async def _park(self, facility_id: str, visits: Sequence[Visit], err: RegistryRefused) -> int:
        reason = f"{err.status} {err.error}: {err.detail}"[:500]
        ids = [v.visit_id for v in visits]
        await asyncio.to_thread(self.store.mark_visits, ids, "failed", reason=reason)
        self.metrics.refused.inc(len(ids), facility=facility_id)
        logger.error(
            "the registry refused %d visit(s) of %s; parked as failed: %s",
            len(ids),
            facility_id,
            reason,
        )
        await self._alert(facility_id, f"{len(ids)} visit(s) parked: {reason}")
        return len(ids)

    async def _stop(self, facility_id: str, err: RegistryRefused) -> None:
        reason = f"{err.status} {err.error}: {err.detail}"[:500]
        self.stopped[facility_id] = reason
        self.metrics.stopped.set(1, facility=facility_id)
        self._note_error("refused_token", f"visits of {facility_id} refused: {reason}")
        logger.error(
            "the registry refuses the visits of %s (%s): they wait until the hub's "
            "[registry] configuration (the facility id, its hub token) is mended and the "
            "hub restarted, or an admin asks for a sync",
            facility_id,
            reason,
        )
        await self._alert(facility_id, f"pushes stopped: {reason}")

    async def _alert(self, facility_id: str, message: str) -> None:
        """The refusal on the dashboard: one open alert a facility, counted again."""
        await asyncio.to_thread(
            self.store.add_alert,
            facility_id,
            AlertKind.VISITS_REFUSED,
            message,
            coalesce=True,
        )

    def _note_error(self, cause: str, message: str) -> None:
        self.metrics.push_errors.inc(cause=cause)
        if message != self.last_error:
            logger.warning("%s", message)
        self.last_error = message


def _named_rows(err: RegistryRefused, count: int) -> set[int]:
    """The batch rows a refusal names (``visits[3].door_id``, or "row 3" in a conflict)."""
    rows: set[int] = set()
    for problem in err.problems:
        match = _ROW.match(problem.get("field", ""))
        if match:
            rows.add(int(match.group(1)))
    if not rows:
        for pattern in (r"\bvisits\[(\d+)\]", r"\brow (\d+)\b"):
            rows.update(int(m) for m in re.findall(pattern, err.detail))
    return {r for r in rows if r < count}
