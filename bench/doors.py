"""The door nodes' stand-in for the memory benchmark: one process that publishes events at
a steady rate, as a facility's doors send them.

It lives in a module of its own that imports nothing but paho, so that the spawned
process starts in a fraction of a second instead of importing the benchmark's world.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def publish_steadily(
    host: str,
    port: int,
    payloads: list[tuple[str, bytes]],
    rate: float,
    ready: Any,
    go: Any,
    failed: Any,
) -> None:
    """Connect, set ``ready``, wait for ``go``, then publish ``payloads`` (topic, bytes) at
    ``rate`` a second at QoS 1 and wait for every PUBACK; ``failed`` counts those missing."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-doors-{time.time_ns()}",
        protocol=mqtt.MQTTv5,
    )
    client.connect(host, port)
    client.loop_start()
    ready.set()
    if not go.wait(120):
        raise SystemExit("never told to start")
    pace = threading.Event()  # never set: its wait is the publisher's clock
    started = time.monotonic()
    infos = []
    for index, (topic, payload) in enumerate(payloads):
        pace.wait(max(0.0, started + index / rate - time.monotonic()))
        infos.append(client.publish(topic, payload, qos=1))
    for info in infos:
        info.wait_for_publish(60)
    failed.value = sum(1 for info in infos if not info.is_published())
    client.disconnect()
    client.loop_stop()
