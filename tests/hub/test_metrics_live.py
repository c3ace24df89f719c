"""The metrics exposition, the live bus and Home Assistant's discovery configs on their own."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hub.config import HubConfig
from hub.ingest.discovery import discovery_messages, object_id
from hub.ingest.live import LiveBus
from hub.metrics import Counter, Gauge, Histogram, HubMetrics, Registry, Sampled
from protocol.events import Event, EventKind, new_event_id


def test_exposition_format() -> None:
    registry = Registry()
    counter = Counter("x_total", "Things.", ["reason"])
    gauge = Gauge("y", "A level.")
    histogram = Histogram("z_seconds", "Latency.", [0.1, 1])
    for metric in (counter, gauge, histogram):
        registry.add(metric)
    counter.inc(reason='say "hi"\n')
    counter.inc(2, reason="b")
    gauge.set(2.5)
    histogram.observe_many([0.05, 0.5, 3])
    # prometheus_client's text format: every value a float ("2.0"), bucket bounds too
    # (le="1.0"), and a histogram's _count before its _sum.
    assert registry.render() == (
        "# HELP x_total Things.\n# TYPE x_total counter\n"
        'x_total{reason="b"} 2.0\n'
        'x_total{reason="say \\"hi\\"\\n"} 1.0\n'
        "# HELP y A level.\n# TYPE y gauge\ny 2.5\n"
        "# HELP z_seconds Latency.\n# TYPE z_seconds histogram\n"
        'z_seconds_bucket{le="0.1"} 1.0\n'
        'z_seconds_bucket{le="1.0"} 2.0\n'
        'z_seconds_bucket{le="+Inf"} 3.0\n'
        "z_seconds_count 3.0\n"
        "z_seconds_sum 3.55\n"
    )
    with pytest.raises(ValueError, match="labels"):
        counter.inc(kind="x")
    with pytest.raises(ValueError, match="only goes up"):
        counter.inc(-1, reason="b")
    with pytest.raises(ValueError, match="twice"):
        registry.add(Gauge("y", "Again."))


def test_the_hub_metrics_render_before_anything_happens() -> None:
    text = HubMetrics().render()
    assert "pintu_hub_events_duplicate_total 0.0\n" in text
    assert 'pintu_hub_ack_latency_seconds_bucket{le="+Inf"} 0.0\n' in text
    assert text.count("# TYPE") == len(HubMetrics().metrics) == 15


def test_a_scrape_reads_back_as_what_the_hub_counted() -> None:
    """The exposition parsed by prometheus_client's own parser, as a Prometheus server
    would read it: names, label sets, HELP texts, types and values."""
    metrics = HubMetrics()
    metrics.events_in.inc(facility="mall-a")
    metrics.events_in.inc(3, facility="mall-b")
    metrics.rejected.inc(reason="schema")
    metrics.occupancy.set(42, facility="mall-a")
    metrics.capacity.set(150, facility="mall-a")
    metrics.mqtt_connected.set(1)
    metrics.ack_latency.observe_many([0.002, 0.004, 0.2])
    metrics.batch_size.observe(7)
    families = {f.name: f for f in text_string_to_metric_families(metrics.render())}
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    assert values[("pintu_hub_events_total", (("facility", "mall-a"),))] == 1
    assert values[("pintu_hub_events_total", (("facility", "mall-b"),))] == 3
    assert values[("pintu_hub_messages_rejected_total", (("reason", "schema"),))] == 1
    assert values[("pintu_hub_events_duplicate_total", ())] == 0
    assert values[("pintu_hub_occupancy", (("facility", "mall-a"),))] == 42
    assert values[("pintu_hub_capacity", (("facility", "mall-a"),))] == 150
    assert values[("pintu_hub_mqtt_connected", ())] == 1
    assert values[("pintu_hub_ack_latency_seconds_bucket", (("le", "0.005"),))] == 2
    assert values[("pintu_hub_ack_latency_seconds_bucket", (("le", "+Inf"),))] == 3
    assert values[("pintu_hub_ack_latency_seconds_count", ())] == 3
    assert values[("pintu_hub_ack_latency_seconds_sum", ())] == pytest.approx(0.206)
    assert values[("pintu_hub_batch_size_bucket", (("le", "10.0"),))] == 1
    assert not any(name.endswith("_created") for name, _ in values)
    # The names, kinds and HELP texts the hub had before, one family each.
    assert families["pintu_hub_events"].type == "counter"
    assert families["pintu_hub_events"].documentation == "Events stored (first copies)."
    assert families["pintu_hub_occupancy"].type == "gauge"
    assert families["pintu_hub_ack_latency_seconds"].type == "histogram"
    assert len(families) == len(metrics.metrics) == 15
    # The handles read the same values back.
    assert metrics.events_in.value(facility="mall-b") == 3 and metrics.events_in.total() == 4
    assert (metrics.ack_latency.count, metrics.batch_size.count) == (3, 1)


def test_two_hubs_count_apart_and_leave_the_global_registry_alone() -> None:
    first, second = HubMetrics(), HubMetrics()
    first.acks.inc()
    assert (first.acks.value(), second.acks.value()) == (1, 0)
    assert "pintu_hub_acks_total" not in generate_latest(REGISTRY).decode()


def test_a_sampled_gauge_is_read_when_scraped() -> None:
    registry = Registry()
    level = [3]
    streams = Sampled("streams", "Streams open.", lambda: level[0])
    registry.add(streams)
    assert "# TYPE streams gauge\nstreams 3.0\n" in registry.render()
    level[0] = 5
    assert streams.value() == 5
    assert "streams 5.0\n" in registry.render()


def test_live_bus_drops_the_oldest_for_a_slow_listener_and_ends_on_close() -> None:
    async def scenario() -> tuple[list[int], int, list[int]]:
        bus = LiveBus()
        bus.bind(asyncio.get_running_loop())
        slow = bus.subscribe(maxsize=2)
        async with bus.subscribe() as fast:
            for n in range(3):
                bus.publish({"type": "event", "n": n})
            got_fast = [(await fast.get())["n"] for _ in range(3)]
        assert bus.subscribers == 1
        got_slow = [(await slow.get())["n"] for _ in range(2)]
        bus.publish_threadsafe([{"type": "event", "n": 9}])
        await asyncio.sleep(0)  # let the loop run the hand-over it was given
        assert (await slow.get())["n"] == 9
        bus.close()
        rest = [m["n"] async for m in slow]
        assert rest == []
        return got_fast, slow.dropped, got_slow

    fast, dropped, slow = asyncio.run(scenario())
    assert fast == [0, 1, 2]
    assert (dropped, slow) == (1, [1, 2])


def test_discovery_ids_are_safe_for_home_assistant() -> None:
    assert object_id("mall.a", "door-1") == "pintu_mall_a_door-1"
    config = HubConfig.model_validate(
        {
            "store": {"backend": "sqlite", "path": "hub.db"},
            "homeassistant": {"discovery_prefix": "ha"},
            "facilities": [
                {
                    "id": "mall.a",
                    "name": "Mall A",
                    "doors": [{"id": "d", "name": "D", "direction": "entry", "nodes": ["n1"]}],
                }
            ],
        }
    )
    messages = dict(discovery_messages(config, [("mall.a", "n9", None), ("other", "n1", None)]))
    assert sorted(messages) == [
        "ha/binary_sensor/pintu_mall_a_n1/config",
        "ha/binary_sensor/pintu_mall_a_n9/config",
        "ha/sensor/pintu_mall_a_occupancy/config",
    ]
    sensor = json.loads(messages["ha/sensor/pintu_mall_a_occupancy/config"])
    assert sensor["state_topic"] == "pintu/mall.a/state"


def _event(index: int, facility: str = "mall-a") -> Event:
    return Event(
        event_id=new_event_id(),
        node_id="main-1",
        facility_id=facility,
        door_id="main",
        seq=index + 1,
        ts=datetime.now(UTC),
        kind=EventKind.ENTRY,
    )


def test_what_other_threads_publish_goes_out_coalesced() -> None:
    async def run() -> None:
        # A long interval: whatever goes out at once did so because the bus was quiet.
        bus = LiveBus(interval_s=3600, events_per_flush=5)
        bus.bind(asyncio.get_running_loop())
        async with bus.subscribe() as listener:
            lone = {"type": "occupancy", "facility_id": "mall-a", "occupancy": 1}
            await asyncio.to_thread(bus.publish_threadsafe, [lone])
            assert await asyncio.wait_for(listener.get(), 5) == lone
            # Now within the interval: a flood from the writer thread is held back ...
            events = [_event(i) for i in range(1000)]

            def flood() -> None:
                for start in range(0, len(events), 100):
                    bus.publish_events(events[start : start + 100])
                    bus.publish_threadsafe(
                        [{"type": "occupancy", "facility_id": "mall-a", "occupancy": start}]
                    )

            await asyncio.to_thread(flood)
            assert listener._queue.empty()
            # ... and goes out as the latest events and the latest occupancy only.
            bus._flush()
            got = [listener._queue.get_nowait() for _ in range(listener._queue.qsize())]
        assert [m["event_id"] for m in got if m["type"] == "event"] == [
            e.event_id for e in events[-5:]
        ]
        assert [m for m in got if m["type"] == "occupancy"] == [
            {"type": "occupancy", "facility_id": "mall-a", "occupancy": 900}
        ]
        assert got[-1]["type"] == "occupancy"  # drawn after what changed it
        assert listener.dropped == 0

    asyncio.run(run())


def test_nothing_is_kept_for_a_bus_without_listeners() -> None:
    async def run() -> None:
        bus = LiveBus()
        bus.bind(asyncio.get_running_loop())
        await asyncio.to_thread(bus.publish_events, [_event(0)])
        assert bus._events == {} and not bus._scheduled

    asyncio.run(run())


def test_a_batch_observed_at_once_counts_as_each_observed_alone() -> None:
    buckets = (0.005, 0.05, 0.5, 5.0)
    values = [0.0, 0.005, 0.0051, 0.05, 0.3, 0.5, 4.9, 5.0, 7.5, 120.0, -0.1]
    one, many = Histogram("a_seconds", "a", buckets), Histogram("a_seconds", "a", buckets)
    for value in values:
        one.observe(value)
    many.observe_many(iter(values))
    many.observe_many([])

    def counted(histogram: Histogram) -> list[tuple[str, tuple[str, ...], float]]:
        return [s for s in histogram._samples() if not s[0].endswith("_created")]

    assert counted(many) == counted(one)
    assert (many.count, many.sum) == (len(values), pytest.approx(sum(values)))
