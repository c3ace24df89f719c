"""The hub's MQTT side: events in, acks and facility state out, node availability, commands.

Threads and hand-offs:

* paho's network thread (through ``IngestClient``'s shorter way in for door events) only
  puts each message on a queue; parsing there too was measured to cost more than it saves,
  the two threads then taking turns at the interpreter's lock;
* one writer thread takes the messages off in batches, validates them, stores each batch in
  one transaction, and only then sends the nodes their acks, the broker its PUBACKs (one
  write for the batch) and everyone the new facility state;
* the asyncio loop gets live updates and command replies with ``call_soon_threadsafe``.

The broker's PUBACK is sent by hand after the commit (paho's ``manual_ack``), and the
session is persistent (``clean_start=False`` with a session expiry): a message the hub took
but did not store before it stopped is delivered again when it comes back, and events sent
while it was away wait for it at the broker. Nodes resend what is not acked anyway, so
the hub de-duplicates by ``event_id`` and acks duplicates again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import ValidationError

from hub.config import FacilityConfig, HubConfig
from hub.counting.rules import direction_sign
from hub.errors import CommandError, CommandTimeout, StoreDataError, StoreError
from hub.ingest.client import IngestClient
from hub.ingest.discovery import discovery_messages, node_sensor
from hub.ingest.live import LiveBus, Message
from hub.metrics import HubMetrics
from hub.records import Alert, AlertKind, BatchResult, Gap, Occupancy
from hub.store import Store
from protocol import topics
from protocol.checkins import PHONE_NODE
from protocol.events import (
    PASSAGES_PER_MESSAGE,
    Ack,
    Command,
    CommandReply,
    Event,
    FacilityState,
    NodeState,
    NodeStatus,
    PayloadError,
    encode_passages,
    utcnow,
    wire_time,
)

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    received: float  # time.monotonic() when paho handed it over


@dataclass(frozen=True, slots=True)
class _Connected:
    """The broker connection is (re)established: re-publish state and discovery."""


@dataclass(frozen=True, slots=True)
class _RefreshState:
    """Occupancy changed outside the ingest (a correction): publish the facility's state."""

    facility_id: str


@dataclass(frozen=True, slots=True)
class _Stop:
    pass


@dataclass(frozen=True, slots=True)
class _Local:
    """Events the hub made itself (a phone's check-in): stored, counted and sent on to the
    doors and dashboards as a door's are, with no ack to send; ``done`` gets the result."""

    events: list[Event]
    done: concurrent.futures.Future[BatchResult]


_Item = _Inbound | _Connected | _RefreshState | _Stop | _Local


@dataclass
class _Pending:
    facility_id: str
    node_id: str
    future: asyncio.Future[CommandReply]


class _RejectLog:
    """Logs rejected messages, at most one line per reason every ``interval_s``.

    A rogue or broken client can send thousands of junk messages a second; the log shows
    that it happens and an example, not every one.
    """

    def __init__(self, interval_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, reason: str, topic: str, detail: str) -> None:
        now = time.monotonic()
        if now - self._last.get(reason, -self.interval_s) < self.interval_s:
            self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
            return
        self._last[reason] = now
        more = self._suppressed.pop(reason, 0)
        logger.warning(
            "rejected a message on %s (%s): %s%s",
            topic,
            reason,
            detail,
            f" (and {more} more since the last report)" if more else "",
        )


def _json_invalid(err: PayloadError) -> bool:
    cause = err.__cause__
    return isinstance(cause, ValidationError) and cause.errors()[0]["type"] == "json_invalid"


def _status_payload(state: NodeState) -> bytes:
    return NodeStatus(state=state, ts=utcnow()).dumps()


class Ingest:
    """The hub's MQTT client. ``start()`` connects in the background; ``stop()`` drains."""

    def __init__(
        self,
        config: HubConfig,
        store: Store,
        *,
        metrics: HubMetrics | None = None,
        live: LiveBus | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics or HubMetrics()
        self.live = live or LiveBus()
        self.connected = threading.Event()
        self.subscribed = threading.Event()  # the broker confirmed the subscriptions
        self.heartbeat = time.monotonic()  # the writer thread's last turn, for the watchdog
        self._facilities: dict[str, FacilityConfig] = {f.id: f for f in config.facilities}
        self._doors = {(f.id, d.id): d for f in config.facilities for d in f.doors}
        self._node_doors = {
            (f.id, node): door.id
            for f in config.facilities
            for door in f.doors
            for node in door.nodes
        }
        group = config.mqtt.events_group(config.mqtt.password())
        self._events_topic = f"$share/{group}/{topics.ALL_NODE_EVENTS}"
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._accepting = False
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: threading.Thread | None = None
        self._pending: dict[str, _Pending] = {}
        self._offline_due: dict[tuple[str, str], float] = {}
        self._stale: set[tuple[str, str]] = set()
        self._announced: set[tuple[str, str]] = set()
        self._reject_log = _RejectLog()
        self._max_ahead = timedelta(seconds=config.ingest.max_clock_ahead_s)
        self._max_age = timedelta(days=config.retention.days)
        # Since when the store has refused every batch (time.monotonic()), or None.
        self.store_failing_since: float | None = None
        # Called from the writer thread after every (re)connect, once the state is out.
        self.connect_hooks: list[Callable[[], None]] = []
        password = config.mqtt.password()
        first = config.facilities[0].id
        self._client = self._make_client(config.mqtt.client_id, first, password)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.fast_message = self._received
        # One connection carries one Last Will; each further facility gets a small
        # connection of its own whose will marks that facility's hub offline.
        self._presence = [_Presence(self, f.id, password) for f in config.facilities[1:]]

    # --- lifecycle ----------------------------------------------------------------------
    def _make_client(
        self, client_id: str, facility_id: str, password: str | None, *, persistent: bool = True
    ) -> IngestClient:
        client = IngestClient(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=persistent,
        )
        username = self.config.mqtt.login_for(facility_id, presence=not persistent)
        if username:
            client.username_pw_set(username, password)
        self.config.mqtt.apply_tls(client)
        client.will_set(
            topics.hub_status(facility_id), _status_payload(NodeState.OFFLINE), qos=1, retain=True
        )
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_inflight_messages_set(1000)
        client.enable_logger(logging.getLogger(f"{__name__}.paho"))
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self.config.mqtt.session_expiry_s if persistent else 0
        # How many unacknowledged events the broker may hand over at once. Without it a
        # broker keeps its own default (Mosquitto: 20), and as the hub acks after each
        # commit, every batch would hold at most 20 events.
        properties.ReceiveMaximum = min(65_535, 2 * self.config.ingest.batch_max)
        client.connect_async(
            self.config.mqtt.host,
            self.config.mqtt.port,
            keepalive=self.config.mqtt.keepalive_s,
            clean_start=not persistent,
            properties=properties,
        )
        return client

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the writer thread and connect (in the background, retrying)."""
        self._loop = loop
        self._accepting = True
        self._writer = threading.Thread(target=self._run_writer, name="hub-writer", daemon=True)
        self._writer.start()
        self._client.loop_start()
        for presence in self._presence:
            presence.start()
        logger.info(
            "connecting to mqtt://%s:%d as %s",
            self.config.mqtt.host,
            self.config.mqtt.port,
            self.config.mqtt.client_id,
        )

    def stop(self, timeout_s: float = 10.0) -> None:
        """Store what has arrived, ack it, mark the hub offline and disconnect.

        Messages arriving after this starts are left un-acknowledged at the broker, which
        delivers them again to the next hub with the same session.
        """
        self._accepting = False
        if self._writer is not None:
            self._queue.put(_Stop())
            self._writer.join(timeout_s)
            if self._writer.is_alive():
                # A failing store keeps its batch and retries; give up on it now.
                self._stopping.set()
                self._writer.join(timeout_s)
                if self._writer.is_alive():
                    logger.error("the writer thread did not stop in time")
        self._stopping.set()
        self._go_offline(self._client, self.config.facilities[0].id)
        for presence in self._presence:
            presence.stop()
        self.metrics.mqtt_connected.set(0)
        for pending in list(self._pending.values()):
            self._fail_pending(pending, CommandError("the hub is stopping"))

    def _fail_pending(self, pending: _Pending, error: Exception) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(_fail, pending.future, error)

    @staticmethod
    def _go_offline(client: mqtt.Client, facility_id: str) -> None:
        if client.is_connected():
            info = client.publish(
                topics.hub_status(facility_id),
                _status_payload(NodeState.OFFLINE),
                qos=1,
                retain=True,
            )
            try:
                info.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError) as err:
                logger.warning("could not publish the hub's offline status: %s", err)
            # paho's network thread may take one more turn on the closed socket and log it
            # as an error; after a clean disconnect that is noise.
            client.disable_logger()
            client.disconnect()
        client.loop_stop()

    def wait_ready(self, timeout_s: float) -> bool:
        """Whether the hub is connected and subscribed within ``timeout_s``."""
        return self.subscribed.wait(timeout_s)

    @property
    def writer_alive(self) -> bool:
        return self._writer is not None and self._writer.is_alive()

    # --- paho callbacks (network thread: hand over, never block) ------------------------
    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            logger.error("the broker refused the connection: %s", reason_code)
            return
        logger.info("connected to the broker (session present: %s)", flags.session_present)
        self.connected.set()
        self.metrics.mqtt_connected.set(1)
        # Subscribing again is harmless when the session kept the subscriptions, and needed
        # when it expired.
        client.subscribe(
            [
                (self._events_topic, SubscribeOptions(qos=1)),
                (topics.ALL_NODE_STATUS, SubscribeOptions(qos=1)),
                (topics.ALL_CMD_RESP, SubscribeOptions(qos=1)),
            ]
        )
        client.publish(
            topics.hub_status(self.config.facilities[0].id),
            _status_payload(NodeState.ONLINE),
            qos=1,
            retain=True,
        )
        self._queue.put(_Connected())

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        failed = [str(code) for code in reason_codes if code.is_failure]
        if failed:
            logger.error("the broker refused subscriptions: %s (check the ACL)", ", ".join(failed))
        self.subscribed.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connected.clear()
        self.subscribed.clear()
        self.metrics.mqtt_connected.set(0)
        if self._accepting:
            logger.warning("disconnected from the broker (%s); reconnecting", reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._received(message.topic, bytes(message.payload), message.mid, message.qos)

    def _received(self, topic: str, payload: bytes, mid: int, qos: int = 1) -> None:
        """A message from the broker (paho's network thread: hand over, never block)."""
        if topic.endswith("/cmd_resp"):
            loop = self._loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self._resolve, topic, payload)
            self._client.ack(mid, qos)
            return
        if not self._accepting:
            return  # not acked: the broker delivers it again to the next session
        self._queue.put(_Inbound(topic, payload, mid, qos, time.monotonic()))

    # --- the writer thread ------------------------------------------------------------
    def _run_writer(self) -> None:
        batch_max = self.config.ingest.batch_max
        wait_s = self.config.ingest.batch_wait_s
        stop = False
        while not stop:
            self.heartbeat = time.monotonic()
            try:
                first = self._queue.get(timeout=self._timer_timeout())
            except queue.Empty:
                self._run_timers()
                continue
            batch = [first]
            stop = isinstance(first, _Stop)
            deadline = time.monotonic() + wait_s
            while not stop and len(batch) < batch_max:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        item = self._queue.get(timeout=remaining)
                    except queue.Empty:
                        break
                batch.append(item)
                stop = isinstance(item, _Stop)
            try:
                self._process(batch)
                self._run_timers()
            except StoreError as err:
                logger.error("store failure, the batch stays unacknowledged: %s", err)
            except Exception:
                # A bug must not kill the writer: the batch stays unacked (nodes resend it)
                # and the next one is tried.
                logger.exception("cannot process a batch of %d messages", len(batch))

    def _process(self, batch: Sequence[_Item]) -> None:
        events: list[Event] = []
        accepted: list[_Inbound] = []
        statuses: list[tuple[topics.NodeTopic, _Inbound]] = []
        inbound: list[_Inbound] = []
        refresh: set[str] = set()
        local: list[_Local] = []
        connected = False
        for item in batch:
            if isinstance(item, _Connected):
                connected = True
                continue
            if isinstance(item, _Local):
                local.append(item)
                continue
            if isinstance(item, _RefreshState):
                refresh.add(item.facility_id)
                continue
            if isinstance(item, _Stop):
                continue
            inbound.append(item)
            where = topics.parse_node_topic(item.topic)
            if where is None:
                self._reject("bad_topic", item.topic, "not a node topic")
            elif where.leaf == "events":
                checked = self._validate(where, item)
                if isinstance(checked, Event):
                    events.append(checked)
                    accepted.append(item)
                else:
                    self._reject(checked[0], item.topic, checked[1])
            elif where.leaf == "status":
                statuses.append((where, item))
            else:
                self._reject("bad_topic", item.topic, "not a topic the hub reads")
        if events:
            stored = self._store_isolating(events, accepted)
            if stored is None:
                return  # stopping with the store failing: leave the whole batch unacked
            for result, kept, taken in stored:
                self._after_store(kept, taken, result)
                refresh -= set(result.occupancy)
        for made in local:
            self._store_local(made)
            refresh -= {e.facility_id for e in made.events}
        for where, item in statuses:
            try:
                self._handle_status(where, item)
            except StoreError as err:
                # A status is retained: the broker hands it over again on the next connect.
                logger.error("cannot record the status on %s: %s", item.topic, err)
        self._client.ack_many([item.mid for item in inbound if item.qos == 1])
        for facility_id in sorted(refresh):
            self._refresh(facility_id)
        if connected:
            self._announce()

    def _validate(self, where: topics.NodeTopic, item: _Inbound) -> Event | tuple[str, str]:
        """The event in ``item``, or why it is refused: (reason, detail)."""
        if len(item.payload) > self.config.ingest.max_payload_bytes:
            return "oversize", f"{len(item.payload)} bytes"
        try:
            event: Event = Event.parse(item.payload)
        except PayloadError as err:
            return ("not_json" if _json_invalid(err) else "schema"), str(err)
        if event.facility_id != where.facility_id or event.node_id != where.node_id:
            return "topic_mismatch", f"payload claims {event.facility_id}/{event.node_id}"
        if event.node_id == PHONE_NODE:
            # The hub's own node for phone check-ins: no door may speak for it.
            return "reserved_node", f"{event.node_id} is the hub's phone check-ins"
        if event.ts.tzinfo is None:
            return "schema", "ts has no time zone"
        ahead = event.ts - utcnow()
        if -ahead > self._max_age:
            # Older than the tracing window: a door whose clock was never set (1970) would
            # otherwise have the whole history counted again, and it would be purged anyway.
            return "too_old", f"ts {event.ts.isoformat()} is before the tracing window"
        if ahead > self._max_ahead:
            return "future_time", f"ts is {ahead.total_seconds():.0f} s ahead of the hub's clock"
        facility = self._facilities.get(event.facility_id)
        if facility is None:
            return "unknown_facility", event.facility_id
        if facility.doors:
            door = self._doors.get((event.facility_id, event.door_id))
            if door is None:
                return "unknown_door", event.door_id
            if door.nodes and event.node_id not in door.nodes:
                return "node_not_allowed", f"{event.node_id} at door {event.door_id}"
            way = _way(event)
            if way is not None and door.direction != "both" and way != door.direction:
                return "wrong_direction", (
                    f"{event.kind.value} ({way}) at door {event.door_id}, an {door.direction}"
                )
        return event

    def _reject(self, reason: str, topic: str, detail: str) -> None:
        self.metrics.rejected.inc(reason=reason)
        self._reject_log(reason, topic, detail)

    def _store_isolating(
        self, events: list[Event], accepted: list[_Inbound]
    ) -> list[tuple[BatchResult, list[Event], list[_Inbound]]] | None:
        """Store the batch; if the store refuses a value in it, store the rest without the
        events it refuses (each refused with its reason, and acked so it leaves the broker).

        A batch is split in halves until the refused events stand alone, so one bad event
        costs a few more transactions and never holds back the good ones. None if stopping
        while the store fails.
        """
        try:
            result = self._store(events)
        except StoreDataError as err:
            if len(events) == 1:
                self._reject("unstorable", accepted[0].topic, f"{events[0].event_id}: {err}")
                return []
            middle = len(events) // 2
            done: list[tuple[BatchResult, list[Event], list[_Inbound]]] = []
            for part, taken in (
                (events[:middle], accepted[:middle]),
                (events[middle:], accepted[middle:]),
            ):
                stored = self._store_isolating(part, taken)
                if stored is None:
                    return None
                done += stored
            return done
        return None if result is None else [(result, events, accepted)]

    def _store(self, events: list[Event]) -> BatchResult | None:
        """Store the batch, retrying while the store fails; None if stopping meanwhile."""
        delay = 0.5
        while True:
            try:
                result = self.store.store_batch(events)
                self.store_failing_since = None
                return result
            except StoreDataError:
                raise
            except StoreError as err:
                if self.store_failing_since is None:
                    self.store_failing_since = time.monotonic()
                self.metrics.store_errors.inc()
                logger.error(
                    "cannot store %d events (retrying in %.1f s): %s", len(events), delay, err
                )
            if self._stopping.wait(delay):
                return None
            delay = min(delay * 2, 10.0)

    def submit(self, events: list[Event]) -> concurrent.futures.Future[BatchResult]:
        """Store and count events the hub made itself, in the writer's order with the
        doors' (the future fails with ``StoreError`` or ``StoreDataError`` if they are not
        stored)."""
        done: concurrent.futures.Future[BatchResult] = concurrent.futures.Future()
        if self._stopping.is_set() or self._writer is None:
            done.set_exception(StoreError("the hub's ingest is not running"))
        else:
            self._queue.put(_Local(events, done))
        return done

    def _store_local(self, made: _Local) -> None:
        if not made.done.set_running_or_notify_cancel():
            return
        try:
            result = self._store(made.events)
        except StoreDataError as err:
            made.done.set_exception(err)
            return
        if result is None:
            made.done.set_exception(StoreError("the hub is stopping"))
            return
        self._after_store(made.events, [], result, ack=False)
        made.done.set_result(result)

    def _after_store(
        self,
        events: Sequence[Event],
        accepted: Sequence[_Inbound],
        result: BatchResult,
        *,
        ack: bool = True,
    ) -> None:
        by_node: dict[tuple[str, str], list[str]] = {}
        for event in events:
            by_node.setdefault((event.facility_id, event.node_id), []).append(event.event_id)
        # The metrics first: whoever sees an ack then also sees it counted.
        self.metrics.batch_size.observe(len(events))
        stored_in = Counter(event.facility_id for event in result.stored)
        for facility_id, count in stored_in.items():
            self.metrics.events_in.inc(count, facility=facility_id)
        if result.duplicates:
            self.metrics.duplicates.inc(len(result.duplicates))
            logger.debug("%d duplicate events acked again", len(result.duplicates))
        # One line a node and batch, not one a gap: hub workers sharing a node's events
        # each see the other's seq numbers missing for a moment, thousands a minute.
        by_gap_node: dict[tuple[str, str], list[Gap]] = {}
        for gap in result.gaps:
            by_gap_node.setdefault((gap.facility_id, gap.node_id), []).append(gap)
        for (facility_id, node_id), node_gaps in by_gap_node.items():
            self.metrics.seq_gaps.inc(len(node_gaps), facility=facility_id)
            first, last = node_gaps[0], node_gaps[-1]
            logger.warning(
                "node %s/%s: seq %d to %d missing%s",
                facility_id,
                node_id,
                first.first_seq,
                first.last_seq,
                f" (and {len(node_gaps) - 1} more gaps up to seq {last.last_seq}; "
                f"{sum(g.missing for g in node_gaps)} events missing in all)"
                if len(node_gaps) > 1
                else "",
            )
        for alert in result.alerts:
            self.metrics.alerts.inc(kind=alert.kind)
        for occupancy in result.occupancy.values():
            self.metrics.occupancy.set(occupancy.occupancy, facility=occupancy.facility_id)
        sent = time.monotonic()
        self.metrics.ack_latency.observe_many([sent - item.received for item in accepted])
        if not ack:
            by_node = {}
        # Before the acks, as the metrics: a door that sees its ack may count on the others
        # having been told (and whoever sees the ack, on the passages counted).
        self._publish_passages(result.stored)
        self.metrics.acks.inc(len(by_node))
        for (facility_id, node_id), ids in by_node.items():
            # The ids were validated on the way in: no need to validate them again.
            payload = Ack.model_construct(event_ids=ids).dumps()
            self._client.publish(topics.node_ack(facility_id, node_id), payload, qos=1)
        for occupancy in result.occupancy.values():
            self.publish_state(occupancy)
        if self.live.subscribers:
            self.live.publish_events(result.stored)
            messages: list[Message] = [
                {"type": "alert", **a.as_dict()} for a in result.alerts + result.cleared
            ]
            messages += [{"type": "occupancy", **o.as_dict()} for o in result.occupancy.values()]
            # A late event corrected earlier counts and history: the dashboard reads again.
            messages += [
                {"type": "resync", "facility_id": facility_id, "from": minute.isoformat()}
                for facility_id, minute in result.corrected.items()
            ]
            self.live.publish_threadsafe(messages)

    def _publish_passages(self, stored: Sequence[Event]) -> None:
        """Tell each facility's doors who went in or out (facility-wide anti-passback): one
        message per facility for the batch, in chunks. Only stored events get here, so a
        duplicate is never sent twice."""
        by_facility: dict[str, list[dict[str, str]]] = {}
        for event in stored:
            direction = _way(event)
            if event.subject is None or event.admit is False or direction is None:
                continue
            by_facility.setdefault(event.facility_id, []).append(
                {
                    "node_id": event.node_id,
                    "door_id": event.door_id,
                    "subject": event.subject,
                    "direction": direction,
                    "ts": wire_time(event.ts),
                    "event_id": event.event_id,
                }
            )
        for facility_id, passages in by_facility.items():
            topic = topics.facility_passages(facility_id)
            for start in range(0, len(passages), PASSAGES_PER_MESSAGE):
                chunk = passages[start : start + PASSAGES_PER_MESSAGE]
                self._client.publish(topic, encode_passages(facility_id, chunk), qos=1)
            self.metrics.passages.inc(len(passages), facility=facility_id)

    def publish_state(self, occupancy: Occupancy) -> None:
        """Publish the facility's retained state; entry nodes refuse entry while full."""
        state = FacilityState(
            facility_id=occupancy.facility_id,
            occupancy=occupancy.occupancy,
            capacity=occupancy.capacity,
            full=occupancy.full,
            ts=utcnow(),
        )
        self._client.publish(
            topics.facility_state(occupancy.facility_id), state.dumps(), qos=1, retain=True
        )
        self.metrics.occupancy.set(occupancy.occupancy, facility=occupancy.facility_id)

    def refresh_state(self, facility_id: str) -> None:
        """Re-publish a facility's state after a change made outside the ingest.

        It goes through the writer thread, so it is published after any batch that was
        being stored: the retained state never goes back to an older count.
        """
        self._queue.put(_RefreshState(facility_id))

    def _refresh(self, facility_id: str) -> None:
        occupancy = self.store.occupancy(facility_id)
        self.publish_state(occupancy)
        self.live.publish_threadsafe([{"type": "occupancy", **occupancy.as_dict()}])

    def _announce(self) -> None:
        """After (re)connecting: the retained state of every facility, discovery configs."""
        for facility in self.config.facilities:
            self.publish_state(self.store.occupancy(facility.id))
        if self.config.homeassistant.enabled:
            extra = [(f, n, self._node_doors.get((f, n))) for f, n in sorted(self._announced)]
            for topic, payload in discovery_messages(self.config, extra):
                self._client.publish(topic, payload, qos=1, retain=True)
        for hook in list(self.connect_hooks):
            hook()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish with QoS 1 on the hub's connection (the registry's lists to the doors)."""
        self._client.publish(topic, payload, qos=1, retain=retain)

    # --- node availability ------------------------------------------------------------
    def _handle_status(self, where: topics.NodeTopic, item: _Inbound) -> None:
        facility = self._facilities.get(where.facility_id)
        if facility is None:
            logger.debug("status of a node of another facility: %s", item.topic)
            return
        if not item.payload:
            return  # a cleared retained status: the node was removed
        try:
            status: NodeStatus = NodeStatus.parse(item.payload)
        except PayloadError as err:
            self._reject("bad_status", item.topic, str(err))
            return
        key = (where.facility_id, where.node_id)
        door_id = self._node_doors.get(key)
        change = self.store.upsert_node_status(
            where.facility_id, where.node_id, status, door_id=door_id
        )
        messages: list[Message] = [{"type": "node", **change.node.as_dict()}]
        if change.node.state != change.previous:
            logger.info("node %s/%s is %s", *key, change.node.state)
        if status.state == NodeState.OFFLINE:
            if key not in self._offline_due and not self._offline_alerted(
                key, change.node.state_since
            ):
                since = change.node.state_since or utcnow()
                elapsed = (utcnow() - since).total_seconds()
                self._offline_due[key] = time.monotonic() + max(
                    0.0, self.config.node_offline_after_s - elapsed
                )
        else:
            self._offline_due.pop(key, None)
            if change.previous == NodeState.OFFLINE:
                messages += self._cleared(
                    self.store.clear_alerts(key[0], AlertKind.NODE_OFFLINE, key[1])
                )
            messages += self._check_lists(key, status)
        self.metrics.nodes_online.set(
            sum(1 for n in self.store.nodes(facility.id) if n.state in ("online", "degraded")),
            facility=facility.id,
        )
        if self.config.homeassistant.enabled and door_id is None and key not in self._announced:
            # A node the config does not list gets its sensor when it first shows up.
            self._announced.add(key)
            topic, config = node_sensor(
                self.config.homeassistant.discovery_prefix, facility, where.node_id, None
            )
            self._client.publish(topic, _json(config), qos=1, retain=True)
        self._run_timers()
        self.live.publish_threadsafe(messages)

    def _offline_alerted(self, key: tuple[str, str], since: datetime | None) -> bool:
        """Whether this outage has already raised its alert (before a hub restart)."""
        alerts = self.store.alerts(key[0], open_only=False, kind=AlertKind.NODE_OFFLINE, limit=50)
        return any(a.node_id == key[1] and (since is None or a.last_at >= since) for a in alerts)

    def _check_lists(self, key: tuple[str, str], status: NodeStatus) -> list[Message]:
        ages = [a for a in (status.trust_list_age_s, status.status_list_age_s) if a is not None]
        if not ages:
            return []
        oldest = max(ages)
        if oldest > self.config.stale_lists_after_s:
            if key in self._stale:
                return []
            self._stale.add(key)
            alert = self.store.add_alert(
                key[0],
                AlertKind.STALE_LISTS,
                f"Node {key[1]}'s trust or status list is {oldest / 3600:.1f} h old",
                node_id=key[1],
                coalesce=True,
            )
            self.metrics.alerts.inc(kind=alert.kind)
            return [{"type": "alert", **alert.as_dict()}]
        self._stale.discard(key)
        return self._cleared(self.store.clear_alerts(key[0], AlertKind.STALE_LISTS, key[1]))

    @staticmethod
    def _cleared(alerts: list[Alert]) -> list[Message]:
        return [{"type": "alert", **a.as_dict()} for a in alerts]

    def _timer_timeout(self) -> float:
        if not self._offline_due:
            return 1.0
        return max(0.0, min(1.0, min(self._offline_due.values()) - time.monotonic()))

    def _run_timers(self) -> None:
        now = time.monotonic()
        for key, due in list(self._offline_due.items()):
            if due > now:
                continue
            del self._offline_due[key]
            door = self._node_doors.get(key)
            alert = self.store.add_alert(
                key[0],
                AlertKind.NODE_OFFLINE,
                f"Node {key[1]}{f' at door {door}' if door else ''} is offline",
                node_id=key[1],
                door_id=door,
                coalesce=True,
            )
            self.metrics.alerts.inc(kind=alert.kind)
            self.live.publish_threadsafe([{"type": "alert", **alert.as_dict()}])

    # --- commands ---------------------------------------------------------------------
    async def command(
        self,
        facility_id: str,
        node_id: str,
        cmd: str,
        args: dict[str, Any] | None = None,
        timeout_s: float = 5.0,
    ) -> CommandReply:
        """Send a command to a node and wait for its reply (which may say ``ok: false``)."""
        if not self.connected.is_set():
            self.metrics.commands.inc(result="error")
            raise CommandError("the hub is not connected to the broker")
        loop = asyncio.get_running_loop()
        request = Command(id=uuid.uuid4().hex, cmd=cmd, args=args or {})
        future: asyncio.Future[CommandReply] = loop.create_future()
        self._pending[request.id] = _Pending(facility_id, node_id, future)
        try:
            info = self._client.publish(
                topics.node_cmd(facility_id, node_id), request.dumps(), qos=1
            )
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self.metrics.commands.inc(result="error")
                raise CommandError(f"cannot send {cmd!r} to node {node_id}: {info.rc.name}")
            try:
                reply = await asyncio.wait_for(future, timeout_s)
            except TimeoutError:
                self.metrics.commands.inc(result="timeout")
                raise CommandTimeout(
                    f"node {node_id} did not answer {cmd!r} within {timeout_s:g} s"
                ) from None
        finally:
            self._pending.pop(request.id, None)
        self.metrics.commands.inc(result="ok" if reply.ok else "refused")
        return reply

    def _resolve(self, topic: str, payload: bytes) -> None:
        """A command reply arrived (runs on the event loop)."""
        where = topics.parse_node_topic(topic)
        try:
            reply: CommandReply = CommandReply.parse(payload)
        except PayloadError as err:
            self._reject("bad_cmd_resp", topic, str(err))
            return
        pending = self._pending.get(reply.id)
        if pending is None:
            logger.debug("reply %s on %s matches no waiting command", reply.id, topic)
            return
        if where is None or (where.facility_id, where.node_id) != (
            pending.facility_id,
            pending.node_id,
        ):
            self._reject(
                "cmd_resp_mismatch", topic, f"reply to a command sent to {pending.node_id}"
            )
            return
        if not pending.future.done():
            pending.future.set_result(reply)


_WAYS: dict[int, Literal["entry", "exit"]] = {1: "entry", -1: "exit"}


def _way(event: Event) -> Literal["entry", "exit"] | None:
    """Which way a passage went, as counting sees it; None for an event that is none."""
    return _WAYS.get(direction_sign(event.kind, event.direction))


def _fail(future: asyncio.Future[CommandReply], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)


def _json(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode("utf-8")


class _Presence:
    """A facility's hub status on a connection of its own, whose Last Will marks it offline."""

    def __init__(self, ingest: Ingest, facility_id: str, password: str | None) -> None:
        self.facility_id = facility_id
        self.client = ingest._make_client(
            f"{ingest.config.mqtt.client_id}.{facility_id}", facility_id, password, persistent=False
        )
        self.client.on_connect = self._on_connect

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if not reason_code.is_failure:
            client.publish(
                topics.hub_status(self.facility_id),
                _status_payload(NodeState.ONLINE),
                qos=1,
                retain=True,
            )

    def start(self) -> None:
        self.client.loop_start()

    def stop(self) -> None:
        Ingest._go_offline(self.client, self.facility_id)
