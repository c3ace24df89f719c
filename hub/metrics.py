"""The hub's metrics, on ``prometheus_client``, exposed in the Prometheus text format 0.0.4.

Each hub has a ``CollectorRegistry`` of its own (never the process-wide one), so several
hubs in one process (tests, benchmarks) count apart. The classes here are thin handles on
``prometheus_client``'s metrics that add what the hub and its tests ask of a metric: its
value for a label set, the label names checked up front, and no ``*_created`` series (the
hub's metrics never carried them; a scrape shows what the hub counted, nothing else).
``Sampled`` is a custom collector for a value read when scraped rather than kept.
Updates come from the ingest's writer thread and scrapes from the web server's;
``prometheus_client`` locks each child, so both may run at once.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import prometheus_client
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric as Family
from prometheus_client.registry import Collector

LabelValues = tuple[str, ...]


class Metric:
    """One metric of the hub: a name, a help text and label names, fixed at creation."""

    kind = "untyped"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)
        self.native: Collector = self._make()

    def _make(self) -> Collector:
        raise NotImplementedError

    def _key(self, labels: dict[str, str]) -> LabelValues:
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {tuple(labels)}")
        return tuple(str(labels[name]) for name in self.label_names)

    def _child(self, labels: dict[str, str]) -> Any:
        native = self.native
        assert isinstance(native, MetricWrapperBase)  # noqa: S101 - counters and gauges
        key = self._key(labels)
        return native.labels(*key) if key else native

    def _samples(self) -> Iterator[tuple[str, LabelValues, float]]:
        for family in self.native.collect():
            for sample in family.samples:
                key = tuple(sample.labels.get(name, "") for name in self.label_names)
                yield sample.name, key, sample.value

    def value(self, **labels: str) -> float:
        """The value for this label set (0 if never set)."""
        key = self._key(labels)
        return next((v for n, k, v in self._samples() if n == self.name and k == key), 0.0)

    def total(self) -> float:
        """The sum over every label set."""
        return sum(v for n, _, v in self._samples() if n == self.name)


class Counter(Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        # prometheus_client names the family without "_total" and its sample with it; a
        # counter named otherwise would change name on the wire.
        if not name.endswith("_total"):
            raise ValueError(f"a counter's name ends in _total: {name}")
        super().__init__(name, help_text, labels)

    def _make(self) -> MetricWrapperBase:
        return prometheus_client.Counter(self.name, self.help, self.label_names, registry=None)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        self._child(labels).inc(amount)


class Gauge(Metric):
    kind = "gauge"

    def _make(self) -> MetricWrapperBase:
        return prometheus_client.Gauge(self.name, self.help, self.label_names, registry=None)

    def set(self, value: float, **labels: str) -> None:
        self._child(labels).set(float(value))


class Histogram(Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: Sequence[float]) -> None:
        self.buckets = tuple(sorted(buckets))
        super().__init__(name, help_text)

    def _make(self) -> MetricWrapperBase:
        return prometheus_client.Histogram(
            self.name, self.help, buckets=self.buckets, registry=None
        )

    def observe(self, value: float) -> None:
        self.native.observe(value)  # type: ignore[attr-defined]

    def observe_many(self, values: Iterable[float]) -> None:
        """Observe each of ``values``: counted per bucket first, then added to each bucket
        once (the ingest observes every event of a batch; one by one, each took a lock)."""
        native: Any = self.native
        bounds = native._upper_bounds  # ascending, the last +Inf
        counts = [0] * len(bounds)
        total = 0.0
        for value in values:
            counts[bisect.bisect_left(bounds, value)] += 1
            total += value
        if not any(counts):
            return
        native._sum.inc(total)
        for bucket, count in zip(native._buckets, counts, strict=True):
            if count:
                bucket.inc(count)

    def _sample(self, suffix: str) -> float:
        name = self.name + suffix
        return next((v for n, _, v in self._samples() if n == name), 0.0)

    @property
    def count(self) -> int:
        return int(self._sample("_count"))

    @property
    def sum(self) -> float:
        return self._sample("_sum")


class Sampled(Metric):
    """A gauge read when it is scraped: ``read()`` is called then, from the scraping thread,
    so it must be cheap and safe to call from there (no store query)."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self._read = read
        super().__init__(name, help_text)

    def _make(self) -> Collector:
        return _SampledCollector(self)


class _SampledCollector(Collector):
    def __init__(self, metric: Sampled) -> None:
        self._metric = metric

    def collect(self) -> Iterable[Family]:
        metric = self._metric
        yield GaugeMetricFamily(metric.name, metric.help, value=float(metric._read()))


M = TypeVar("M", bound="Metric")


class _Exposed(Collector):
    """The registry's families as the hub shows them: no ``*_created`` samples, and the
    samples of counters and gauges ordered by their labels (a stable page to read)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Family]:
        for family in self._registry.collect():
            samples = [s for s in family.samples if not s.name.endswith("_created")]
            if family.type in ("counter", "gauge"):
                samples.sort(key=lambda s: sorted(s.labels.items()))
            family.samples = samples
            yield family


class Registry:
    """The metrics of one hub, in a ``CollectorRegistry`` of their own."""

    CONTENT_TYPE = prometheus_client.CONTENT_TYPE_PLAIN_0_0_4

    def __init__(self) -> None:
        self.metrics: list[Metric] = []
        self.registry = CollectorRegistry(auto_describe=True)
        self._exposed = _Exposed(self.registry)

    def add(self, metric: Metric) -> None:
        if any(m.name == metric.name for m in self.metrics):
            raise ValueError(f"metric {metric.name} is registered twice")
        self.registry.register(metric.native)
        self.metrics.append(metric)

    def render(self) -> str:
        """The text exposition (format 0.0.4) of every metric, in the order added."""
        return prometheus_client.generate_latest(self._exposed).decode("utf-8")


class HubMetrics(Registry):
    """Everything the hub counts. ``render()`` is the body of ``GET /metrics``."""

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
