"""The metrics exposition, the live bus and Home Assistant's discovery configs on their own."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from hub.config import HubConfig
from hub.discovery import discovery_messages, object_id
from hub.live import LiveBus
from hub.metrics import Counter, Gauge, Histogram, HubMetrics, Registry
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
    assert registry.render() == (
        "# HELP x_total Things.\n# TYPE x_total counter\n"
        'x_total{reason="b"} 2\n'
        'x_total{reason="say \\"hi\\"\\n"} 1\n'
        "# HELP y A level.\n# TYPE y gauge\ny 2.5\n"
        "# HELP z_seconds Latency.\n# TYPE z_seconds histogram\n"
        'z_seconds_bucket{le="0.1"} 1\n'
        'z_seconds_bucket{le="1"} 2\n'
        'z_seconds_bucket{le="+Inf"} 3\n'
        "z_seconds_sum 3.55\n"
        "z_seconds_count 3\n"
    )
    with pytest.raises(ValueError, match="labels"):
        counter.inc(kind="x")
    with pytest.raises(ValueError, match="only goes up"):
        counter.inc(-1, reason="b")
    with pytest.raises(ValueError, match="twice"):
        registry.add(Gauge("y", "Again."))


def test_the_hub_metrics_render_before_anything_happens() -> None:
    text = HubMetrics().render()
    assert "pintu_hub_events_duplicate_total 0\n" in text
    assert 'pintu_hub_ack_latency_seconds_bucket{le="+Inf"} 0\n' in text
    assert text.count("# TYPE") == len(HubMetrics().metrics) == 15


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
