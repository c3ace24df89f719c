"""Nothing is lost, nothing is counted twice: delivery through outages and slow hubs.

Every test ends the same way: the hub's stored set of event ids is exactly the set the node
journaled, each stored once, and the node's journal is empty. Copies received twice are
allowed (the hub de-duplicates by id) and are reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from statistics import median, quantiles
from typing import TYPE_CHECKING

import psutil
import pytest

from controller.journal import Journal
from controller.uplink import Uplink
from protocol.events import Event, EventKind
from provisioning.mosquitto import Mosquitto

if TYPE_CHECKING:
    from tests.controller.conftest import TestHub, WaitFor

Record = Callable[[str, object], None]


def assert_exactly_once(hub: TestHub, journal: Journal, appended: list[Event]) -> None:
    stored = hub.events()
    assert len(stored) == len(appended), f"stored {len(stored)} of {len(appended)}"
    assert {e.event_id for e in stored} == {e.event_id for e in appended}
    by_id = {e.event_id: e for e in appended}
    for event in stored:
        assert event.model_copy(update={"late": False}) == by_id[event.event_id]
    seqs = sorted(e.seq for e in stored)
    assert seqs == sorted(e.seq for e in appended), "a seq is missing or repeated"
    assert journal.pending_count() == 0


def report(record: Record, hub: TestHub, uplink: Uplink) -> dict[str, object]:
    stats = uplink.stats
    figures: dict[str, object] = {
        "stored": hub.count(),
        "received": hub.received,
        "duplicates_received": hub.duplicates,
        "late_received": hub.late_received,
        "sent": stats.sent,
        "resent": stats.resent,
        "connects": stats.connects,
    }
    for name, value in figures.items():
        record(name, value)
    return figures


def test_a_broker_outage_loses_nothing(
    broker: Mosquitto,
    journal: Journal,
    make_uplink: Callable[..., Uplink],
    hub: TestHub,
    wait_for: WaitFor,
    figure: Record,
) -> None:
    uplink = make_uplink(journal)
    appended = [journal.append(EventKind.ENTRY) for _ in range(50)]
    uplink.wake()
    wait_for(lambda: journal.pending_count() == 0, what="the first fifty")

    broker.stop()
    wait_for(lambda: not uplink.connected, what="the uplink to notice the outage")
    sent_before = uplink.stats.sent
    for n in range(200):
        appended.append(journal.append(EventKind.EXIT if n % 2 else EventKind.ENTRY))
        uplink.wake()
    assert journal.pending_count() == 200, "nothing can be acked while the broker is down"
    # Nothing goes to paho while the link is down: the journal is the only queue.
    assert uplink.stats.sent == sent_before

    broker.start()
    wait_for(lambda: journal.pending_count() == 0, 30, "the journal to empty")
    wait_for(lambda: hub.count() == 250, what="the hub to store all")
    assert_exactly_once(hub, journal, appended)
    figures = report(figure, hub, uplink)
    assert uplink.stats.connects >= 2, figures


def test_a_slow_hub_gets_everything_and_late_copies_are_only_duplicates(
    journal: Journal,
    make_uplink: Callable[..., Uplink],
    hub_factory: Callable[..., TestHub],
    wait_for: WaitFor,
    figure: Record,
) -> None:
    hub = hub_factory(ack_delay_s=0.3)
    uplink = make_uplink(journal, ack_timeout_s=0.1)
    appended = []
    for _ in range(100):
        appended.append(journal.append(EventKind.ENTRY))
        uplink.wake()
    wait_for(lambda: journal.pending_count() == 0, 30, "the journal to empty")
    assert_exactly_once(hub, journal, appended)
    figures = report(figure, hub, uplink)
    # The ack timeout is shorter than the hub's delay, so copies were sent again, late.
    assert uplink.stats.resent > 0, figures
    assert hub.late_received > 0, figures
    assert hub.duplicates > 0, figures


def test_a_hub_that_acks_only_some_messages_gets_everything(
    journal: Journal,
    make_uplink: Callable[..., Uplink],
    hub_factory: Callable[..., TestHub],
    wait_for: WaitFor,
    figure: Record,
) -> None:
    hub = hub_factory(ack_every=3)
    uplink = make_uplink(journal, ack_timeout_s=0.2)
    appended = [journal.append(EventKind.EXIT) for _ in range(60)]
    uplink.wake()
    wait_for(lambda: journal.pending_count() == 0, 30, "the journal to empty")
    assert_exactly_once(hub, journal, appended)
    figures = report(figure, hub, uplink)
    assert uplink.stats.resent > 0, figures


def test_events_sent_while_the_hub_was_away_are_sent_again(
    journal: Journal,
    make_uplink: Callable[..., Uplink],
    hub_factory: Callable[..., TestHub],
    wait_for: WaitFor,
    figure: Record,
) -> None:
    # The broker takes the events (PUBACK) but nobody stores them: only the hub's ack counts.
    uplink = make_uplink(journal, ack_timeout_s=0.3)
    appended = [journal.append(EventKind.ENTRY) for _ in range(40)]
    uplink.wake()
    wait_for(lambda: uplink.stats.sent >= 40, what="the events to be published")
    assert journal.pending_count() == 40
    hub = hub_factory(persistent=False)
    wait_for(lambda: journal.pending_count() == 0, 30, "the journal to empty")
    assert_exactly_once(hub, journal, appended)
    assert all(e.late for e in hub.events()), "every stored copy was a resend"
    report(figure, hub, uplink)


def test_a_node_restart_resends_what_was_never_acked_as_late(
    journal_factory: Callable[..., Journal],
    make_uplink: Callable[..., Uplink],
    hub_factory: Callable[..., TestHub],
    wait_for: WaitFor,
) -> None:
    journal = journal_factory()
    first = make_uplink(journal, ack_timeout_s=60)
    appended = [journal.append(EventKind.ENTRY) for _ in range(10)]
    first.wake()
    wait_for(lambda: first.stats.sent == 10, what="the events to be published")
    first.stop()
    journal.close()

    journal = journal_factory()
    assert journal.pending_count() == 10
    hub = hub_factory()
    second = make_uplink(journal)
    wait_for(lambda: journal.pending_count() == 0, 30, "the journal to empty")
    assert_exactly_once(hub, journal, appended)
    assert all(e.late for e in hub.events())
    assert second.stats.resent == 10
    assert journal.append(EventKind.NODE_START).seq == 11


@pytest.mark.slow
def test_ten_thousand_events_through_three_broker_restarts(
    broker: Mosquitto,
    journal: Journal,
    make_uplink: Callable[..., Uplink],
    hub: TestHub,
    wait_for: WaitFor,
    figure: Record,
) -> None:
    total = 10_000
    # (appended so far, action): the broker goes down and comes back while events keep coming.
    outages = {2_000: "stop", 2_600: "start", 4_500: "kill", 5_100: "start"}
    outages |= {7_500: "stop", 8_100: "start"}
    process = psutil.Process()
    rss_start = process.memory_info().rss
    started = time.monotonic()

    uplink = make_uplink(journal, ack_timeout_s=2.0)
    appended: list[Event] = []
    for n in range(total):
        action = outages.get(n)
        if action == "stop":
            broker.stop()
        elif action == "kill":
            broker.kill()
        elif action == "start":
            broker.start()
        appended.append(journal.append(EventKind.ENTRY if n % 3 else EventKind.EXIT))
        uplink.wake()
    appended_s = time.monotonic() - started

    wait_for(lambda: journal.pending_count() == 0, 60, "the journal to empty")
    wait_for(lambda: hub.count() == total, 10, "the hub to store all")
    elapsed = time.monotonic() - started
    rss_end = process.memory_info().rss

    assert_exactly_once(hub, journal, appended)
    assert sorted(e.seq for e in hub.events()) == list(range(1, total + 1))
    figures = report(figure, hub, uplink)
    latencies = list(uplink.stats.ack_latency_samples)
    figures |= {
        "elapsed_s": round(elapsed, 1),
        "append_phase_s": round(appended_s, 1),
        "lost": total - hub.count(),
        "ack_latency_median_s": round(median(latencies), 4),
        "ack_latency_p95_s": round(quantiles(latencies, n=20)[-1], 4),
        "rss_growth_mb": round((rss_end - rss_start) / 2**20, 1),
    }
    for name in ("elapsed_s", "append_phase_s", "lost", "ack_latency_median_s"):
        figure(name, figures[name])
    figure("ack_latency_p95_s", figures["ack_latency_p95_s"])
    figure("rss_growth_mb", figures["rss_growth_mb"])
    assert uplink.stats.connects >= 4, figures
    assert elapsed < 90, figures
