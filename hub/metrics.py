"""The hub's metrics, rendered in the Prometheus text exposition format (version 0.0.4).

The format is a few lines of text, so it is written here rather than pulled in with a
client library. Metrics are updated from the ingest's writer thread and read from the web
server's, so every update takes the metric's lock.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from typing import TypeVar

LabelValues = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{name}="{_escape(value)}"' for name, value in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)
        self._lock = threading.Lock()
        self._values: dict[LabelValues, float] = {}
        if not self.label_names:
            self._values[()] = 0.0

    def _key(self, labels: dict[str, str]) -> LabelValues:
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {tuple(labels)}")
        return tuple(str(labels[name]) for name in self.label_names)

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def total(self) -> float:
        """The sum over every label set."""
        with self._lock:
            return sum(self._values.values())

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in items]

    def render(self) -> str:
        head = f"# HELP {self.name} {self.help}\n# TYPE {self.name} {self.kind}\n"
        return head + "".join(f"{line}\n" for line in self.samples())


class Counter(Metric):
    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount


class Gauge(Metric):
    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)


class Histogram(Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: Sequence[float]) -> None:
        super().__init__(name, help_text)
        self.buckets = tuple(sorted(buckets))
        self._counts = [0] * (len(self.buckets) + 1)  # the last one is +Inf
        self._sum = 0.0
        self._count = 0

    def observe(self, value: float) -> None:
        self.observe_many((value,))

    def observe_many(self, values: Iterable[float]) -> None:
        with self._lock:
            for value in values:
                index = next(
                    (i for i, bound in enumerate(self.buckets) if value <= bound), len(self.buckets)
                )
                self._counts[index] += 1
                self._sum += value
                self._count += 1

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    @property
    def sum(self) -> float:
        with self._lock:
            return self._sum

    def samples(self) -> list[str]:
        with self._lock:
            counts, total, count = list(self._counts), self._sum, self._count
        lines = []
        cumulative = 0
        for bound, bucket in zip([*self.buckets, math.inf], counts, strict=True):
            cumulative += bucket
            lines.append(f'{self.name}_bucket{{le="{_number(bound)}"}} {cumulative}')
        lines.append(f"{self.name}_sum {_number(total)}")
        lines.append(f"{self.name}_count {count}")
        return lines


M = TypeVar("M", bound="Metric")


class Registry:
    def __init__(self) -> None:
        self.metrics: list[Metric] = []

    def add(self, metric: Metric) -> None:
        if any(m.name == metric.name for m in self.metrics):
            raise ValueError(f"metric {metric.name} is registered twice")
        self.metrics.append(metric)

    def render(self) -> str:
        return "".join(metric.render() for metric in self.metrics)


class HubMetrics(Registry):
    """Everything the hub counts. ``render()`` is the body of ``GET /metrics``."""

    CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        super().__init__()
        self.events_in = self._add(
            Counter("pintu_hub_events_total", "Events stored (first copies).", ["facility"])
        )
        self.rejected = self._add(
            Counter(
                "pintu_hub_messages_rejected_total",
                "MQTT messages refused unstored, by reason.",
                ["reason"],
            )
        )
        self.duplicates = self._add(
            Counter("pintu_hub_events_duplicate_total", "Events received again, acked again.")
        )
        self.acks = self._add(Counter("pintu_hub_acks_total", "Ack messages sent to nodes."))
        self.passages = self._add(
            Counter(
                "pintu_hub_passages_total",
                "Entries and exits broadcast to the facility's doors (anti-passback).",
                ["facility"],
            )
        )
        self.ack_latency = self._add(
            Histogram(
                "pintu_hub_ack_latency_seconds",
                "From an event's arrival at the hub to its ack being sent.",
                [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
            )
        )
        self.batch_size = self._add(
            Histogram(
                "pintu_hub_batch_size",
                "Messages stored per transaction.",
                [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000],
            )
        )
        self.seq_gaps = self._add(
            Counter("pintu_hub_seq_gaps_total", "Gaps found in nodes' event numbers.", ["facility"])
        )
        self.alerts = self._add(Counter("pintu_hub_alerts_total", "Alerts raised.", ["kind"]))
        self.store_errors = self._add(
            Counter("pintu_hub_store_errors_total", "Batches the store failed to write.")
        )
        self.commands = self._add(
            Counter("pintu_hub_commands_total", "Commands sent to nodes, by result.", ["result"])
        )
        self.occupancy = self._add(
            Gauge("pintu_hub_occupancy", "People inside the facility.", ["facility"])
        )
        self.capacity = self._add(
            Gauge("pintu_hub_capacity", "The facility's capacity (absent: none).", ["facility"])
        )
        self.nodes_online = self._add(
            Gauge("pintu_hub_nodes_online", "Door nodes online or degraded.", ["facility"])
        )
        self.mqtt_connected = self._add(
            Gauge("pintu_hub_mqtt_connected", "1 while the hub is connected to the broker.")
        )

    def _add(self, metric: M) -> M:
        self.add(metric)
        return metric
