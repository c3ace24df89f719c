"""Visits: derived from the doors' events, kept in an outbox, pushed to the registry.

**Deriving.** A visit is a check-in closed by a check-out of the same subject at the same
facility. A check-in is an ``entry`` event (or a ``manual`` one with direction ``entry``)
carrying a subject; a check-out is an ``exit`` (or ``manual`` exit) with one. The store
derives visits in the same transaction that stores the events (``derive_visits``, called
from ``store_batch``), so a stored exit and its visit are never apart: both are there, or
neither. The rules, in the order the new events happened:

* a new **check-out** X closes the subject's latest check-in E at the facility at or before
  X, when E is not closed yet and X is at most ``max_visit`` after E;
* a new **check-in** E (one that arrived late, from a node's journal) is closed by the
  subject's earliest check-out X at or after it, when X closes no visit yet, X is at most
  ``max_visit`` after E and no other check-in of the subject lies between them.

So the order in which the events reach the hub does not matter. A check-in never closed
(someone left through a door that saw no pass) makes no visit. The visit's id is the
check-in's event id, its door the check-in's door; times are kept to the second (check-in
rounded down, check-out up), as the registry keeps them.

**Pushing.** ``VisitPusher`` sends pending visits, a batch per facility with that
facility's hub token, to ``POST /api/v1/visits``. A 200 (stored or duplicate: the registry
is idempotent by visit id) marks them ``sent``. A network error or a 5xx keeps them and
retries with backoff; the outbox is in the store, so it survives a restart and any outage.
A 4xx that names rows (``visits[3].door_id``) parks those rows as ``failed`` with the
reason and sends the rest again; a 4xx that names none is narrowed down by halving the
batch, so one bad row never holds up the others. A refused token (401, 403) parks nothing:
it is logged and retried, since the visits are not at fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol, TypeVar

from hub.metrics import Counter, Gauge, HubMetrics
from hub.registry_client import HttpRegistryClient, RegistryError, RegistryRefused
from hub.registry_records import Visit, ceil_second, floor_second
from protocol.events import Event, EventKind

if TYPE_CHECKING:
    from hub.store import Store

logger = logging.getLogger(__name__)

# The same rules as ``is_check_in`` / ``is_check_out``, for a store's SQL.
CHECK_IN_SQL = "(kind = 'entry' OR (kind = 'manual' AND direction = 'entry'))"
CHECK_OUT_SQL = "(kind = 'exit' OR (kind = 'manual' AND direction = 'exit'))"
_ROW = re.compile(r"^visits\[(\d+)\]")


def is_check_in(event: Event) -> bool:
    return event.subject is not None and (
        event.kind == EventKind.ENTRY
        or (event.kind == EventKind.MANUAL and event.direction == "entry")
    )


def is_check_out(event: Event) -> bool:
    return event.subject is not None and (
        event.kind == EventKind.EXIT
        or (event.kind == EventKind.MANUAL and event.direction == "exit")
    )


class PairingIndex(Protocol):
    """What ``derive_visits`` asks of the stored events and visits (new events included),
    inside the transaction that stores them."""

    def latest_check_in(
        self, facility_id: str, subject: str, at: datetime
    ) -> tuple[str, str, datetime] | None:
        """(event_id, door_id, ts) of the subject's last check-in at or before ``at``."""
        ...

    def earliest_check_out(
        self, facility_id: str, subject: str, at: datetime
    ) -> tuple[str, datetime] | None:
        """(event_id, ts) of the subject's first check-out at or after ``at``."""
        ...

    def check_in_between(
        self, facility_id: str, subject: str, after: datetime, until: datetime, other_than: str
    ) -> bool:
        """Whether another check-in of the subject lies in ``[after, until]``."""
        ...

    def closed(self, check_in_id: str) -> bool:
        """Whether this check-in already has its visit."""
        ...

    def used(self, check_out_id: str) -> bool:
        """Whether this check-out already closes a visit."""
        ...

    def add(self, visit: Visit) -> None: ...


@dataclass(frozen=True)
class Mark:
    """A stored check-in or check-out, as pairing needs it (``id``: its row in the store,
    which breaks ties between equal times as the store's order does)."""

    id: int
    event_id: str
    facility_id: str
    subject: str
    door_id: str
    ts: datetime
    check_in: bool


@dataclass(frozen=True)
class PairingWindow:
    """What a store reads for a batch's pairing: the check-ins and check-outs of these
    subjects between ``start`` and ``end``, and the visits that close any of them."""

    subjects: list[str]
    start: datetime
    end: datetime


def pairing_window(new: Sequence[Event], max_visit_s: float) -> PairingWindow | None:
    """The window of stored events that can pair with the new ones, or None if none can.

    From the longest visit (and a margin for rounding) before the batch's earliest check-in
    or check-out to as long after its latest one: a pairing outside it would make a visit
    longer than the longest, which ``derive_visits`` refuses anyway. So answers from what a
    store reads once are those of a query per question, for two reads a batch instead of
    one or more an event.
    """
    pairable = [e for e in new if is_check_in(e) or is_check_out(e)]
    if not pairable:
        return None
    margin = timedelta(seconds=max_visit_s + 2)
    return PairingWindow(
        sorted({e.subject for e in pairable if e.subject}),
        min(e.ts for e in pairable) - margin,
        max(e.ts for e in pairable) + margin,
    )


class BatchPairing(PairingIndex):
    """``derive_visits``'s questions, answered from the marks and visits a store read for
    the batch's ``pairing_window`` (the batch's own events included). New visits collect
    in ``added``; the store writes them in the batch's transaction."""

    def __init__(
        self, marks: Iterable[Mark], closed_ids: Iterable[str], used_ids: Iterable[str]
    ) -> None:
        self.marks: dict[tuple[str, str], list[Mark]] = {}
        for mark in marks:
            self.marks.setdefault((mark.facility_id, mark.subject), []).append(mark)
        self.closed_ids = set(closed_ids)
        self.used_ids = set(used_ids)
        self.added: list[Visit] = []

    def latest_check_in(
        self, facility_id: str, subject: str, at: datetime
    ) -> tuple[str, str, datetime] | None:
        found = [m for m in self.marks.get((facility_id, subject), []) if m.check_in and m.ts <= at]
        if not found:
            return None
        mark = max(found, key=lambda m: (m.ts, m.id))
        return mark.event_id, mark.door_id, mark.ts

    def earliest_check_out(
        self, facility_id: str, subject: str, at: datetime
    ) -> tuple[str, datetime] | None:
        found = [
            m for m in self.marks.get((facility_id, subject), []) if not m.check_in and m.ts >= at
        ]
        if not found:
            return None
        mark = min(found, key=lambda m: (m.ts, m.id))
        return mark.event_id, mark.ts

    def check_in_between(
        self, facility_id: str, subject: str, after: datetime, until: datetime, other_than: str
    ) -> bool:
        return any(
            m.check_in and after <= m.ts <= until and m.event_id != other_than
            for m in self.marks.get((facility_id, subject), [])
        )

    def closed(self, check_in_id: str) -> bool:
        return check_in_id in self.closed_ids

    def used(self, check_out_id: str) -> bool:
        return check_out_id in self.used_ids

    def add(self, visit: Visit) -> None:
        self.closed_ids.add(visit.visit_id)
        self.used_ids.add(visit.exit_event_id)
        self.added.append(visit)


def derive_visits(
    new: Sequence[Event], index: PairingIndex, max_visit_s: float, now: datetime
) -> list[Visit]:
    """The visits the new (just stored) events close, added through ``index``."""
    made: list[Visit] = []
    ordered = sorted((e for e in new if is_check_in(e) or is_check_out(e)), key=lambda e: e.ts)
    for event in ordered:
        subject = event.subject
        assert subject is not None  # noqa: S101 - is_check_in/out require one
        if is_check_out(event):
            found = index.latest_check_in(event.facility_id, subject, event.ts)
            if found is None or index.closed(found[0]) or index.used(event.event_id):
                continue
            entry_id, door_id, entry_ts = found
            exit_id, exit_ts = event.event_id, event.ts
        else:
            later = index.earliest_check_out(event.facility_id, subject, event.ts)
            if later is None or index.closed(event.event_id) or index.used(later[0]):
                continue
            if index.check_in_between(
                event.facility_id, subject, event.ts, later[1], event.event_id
            ):
                continue  # that check-out belongs to a later check-in
            entry_id, door_id, entry_ts = event.event_id, event.door_id, event.ts
            exit_id, exit_ts = later
        check_in, check_out = floor_second(entry_ts), ceil_second(exit_ts)
        if (check_out - check_in).total_seconds() > max_visit_s:
            continue  # too long to be one visit: the exit of another, unseen, check-in
        visit = Visit(
            visit_id=entry_id,
            facility_id=event.facility_id,
            subject=subject,
            door_id=door_id,
            check_in=check_in,
            check_out=check_out,
            exit_event_id=exit_id,
            created_at=now,
        )
        index.add(visit)
        made.append(visit)
    return made


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

    def wake(self) -> None:
        """Push now rather than at the next interval."""
        self._wake.set()

    async def run(self) -> None:
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
        if err.status in (401, 403, 408, 429):
            # The token (a missing, replaced or another facility's one) or the pace is
            # refused, not the visits: keep them.
            self._note_error("refused_token", f"visits of {facility_id} kept: {err}")
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
        return len(ids)

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
