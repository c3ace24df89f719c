"""The node's MQTT link to the hub: delivers journaled events until the hub acks them.

Delivery is at-least-once by design: an event leaves the journal only when the hub's
application-level ``Ack`` says it is stored, never on the broker's PUBACK (a broker may drop
queued messages, and a PUBACK only means the broker took it). Whatever is not acked goes out
again, marked ``late``, after a reconnect or an ack timeout; the hub de-duplicates by
``event_id``.

Threads: paho's network thread runs the callbacks, which only hand work over; a sender
thread owns the journal traffic (publishing due events, applying acks); a command thread
runs the node's command handler; a state thread passes facility state to the node (only
the latest one matters, so a slow handler never builds a backlog). The hub's retained
trust and status lists go straight to ``on_lists``, which only hands them to a worker of
its own (``controller.lists``). The hub's passages (entries and exits at the facility's
other doors) go to a passages thread through a bounded queue, so a flood of them costs
bounded memory and never slows the network thread.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import Field, model_validator

from controller.errors import ConfigError, JournalError
from controller.journal import Journal
from protocol import topics
from protocol.events import (
    Ack,
    Command,
    CommandReply,
    FacilityState,
    NodeState,
    NodeStatus,
    Passage,
    Passages,
    PayloadError,
    utcnow,
)
from protocol.model import StrictModel

logger = logging.getLogger(__name__)

CREDENTIAL_NAME = "mqtt-password"
_LATENCY_SAMPLES = 1000
_ERROR_LIMIT = 200  # CommandReply.error is short text
# Passages waiting for the passages thread; past this they are dropped (and logged): the
# door then only misses an entry made elsewhere, and still decides on what it saw itself.
_PASSAGE_BACKLOG = 10_000
# The hub sends at most PASSAGES_PER_MESSAGE passages of about 190 bytes in one message.
_MAX_PASSAGE_BYTES = 65_536


class MqttConfig(StrictModel):
    """How the node reaches the facility's MQTT broker."""

    host: str = Field(default="127.0.0.1", min_length=1, description="Broker host name or address.")
    port: int = Field(
        default=1883, ge=1, le=65535, description="Broker TCP port (8883 is usual for TLS)."
    )
    username: str | None = Field(
        default=None, description="MQTT user name; each node has its own (and an ACL to match)."
    )
    password_file: Path | None = Field(
        default=None,
        description=(
            "File holding the MQTT password. Without it the password is read from "
            f"$CREDENTIALS_DIRECTORY/{CREDENTIAL_NAME} (systemd LoadCredential=). "
            "Never put the password itself in the configuration."
        ),
    )
    client_id: str | None = Field(
        default=None, max_length=64, description="MQTT client id; the node id when not set."
    )
    keepalive_s: int = Field(
        default=30,
        ge=5,
        le=65535,
        description="Seconds between keep-alive pings; a dead link is"
        " noticed after about 1.5 times this.",
    )
    tls_ca_file: Path | None = Field(
        default=None, description="CA certificate to verify the broker with; enables TLS when set."
    )
    reconnect_min_s: float = Field(
        default=0.5, gt=0, description="First wait before reconnecting; doubles after each failure."
    )
    reconnect_max_s: float = Field(
        default=30.0, gt=0, description="Longest wait between reconnects."
    )
    ack_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Send an event again (as late) if the hub has not acked it by then.",
    )
    max_in_flight: int = Field(
        default=500, ge=1, description="Most events sent but not yet acked by the hub at any time."
    )
    batch_size: int = Field(
        default=100, ge=1, description="Most events read from the journal and published in one go."
    )

    @model_validator(mode="after")
    def _reconnect_order(self) -> MqttConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must not be below reconnect_min_s")
        return self


def read_password(config: MqttConfig, environ: Mapping[str, str] | None = None) -> str | None:
    """The MQTT password from ``password_file`` or systemd's credentials directory.

    None when no user name is configured (an anonymous broker, as in the demo).
    """
    env = os.environ if environ is None else environ
    if config.username is None:
        return None
    if config.password_file is not None:
        path = config.password_file
    elif env.get("CREDENTIALS_DIRECTORY"):
        path = Path(env["CREDENTIALS_DIRECTORY"]) / CREDENTIAL_NAME
    else:
        raise ConfigError(
            f"mqtt.username is {config.username!r} but no password is given: set "
            f"mqtt.password_file or provide the {CREDENTIAL_NAME!r} systemd credential"
        )
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read the MQTT password file {path}: {err}") from err


@dataclass(frozen=True)
class UplinkStats:
    """A snapshot of the uplink's counters."""

    connects: int = 0  # successful connections, the first included
    connect_failures: int = 0  # broker unreachable, or not the broker (TLS verification)
    sent: int = 0  # event publishes, first sends and resends
    resent: int = 0  # of which were resends (``late``)
    acked: int = 0  # events the hub's acks removed from the journal
    in_flight: int = 0  # sent and not yet acked
    last_ack_latency_s: float | None = None  # first send to ack, for the last acked event
    ack_latency_samples: tuple[float, ...] = ()  # the most recent ones


class _Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connects = 0
        self.connect_failures = 0
        self.sent = 0
        self.resent = 0
        self.acked = 0
        self.in_flight = 0
        self.latencies: deque[float] = deque(maxlen=_LATENCY_SAMPLES)

    def snapshot(self) -> UplinkStats:
        with self.lock:
            return UplinkStats(
                connects=self.connects,
                connect_failures=self.connect_failures,
                sent=self.sent,
                resent=self.resent,
                acked=self.acked,
                in_flight=self.in_flight,
                last_ack_latency_s=self.latencies[-1] if self.latencies else None,
                ack_latency_samples=tuple(self.latencies),
            )


def _recover_id(payload: bytes) -> str | None:
    """The request id of a command that failed validation, if one can be found."""
    try:
        data: Any = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if isinstance(data, dict):
        value = data.get("id")
        if isinstance(value, str) and 0 < len(value) <= 64:
            return value
    return None


class Uplink:
    """The node's link to the hub; ``start`` it once, ``stop`` it once."""

    def __init__(
        self,
        config: MqttConfig,
        *,
        facility_id: str,
        node_id: str,
        journal: Journal,
        status: Callable[[], NodeStatus],
        on_command: Callable[[Command], CommandReply],
        on_facility_state: Callable[[FacilityState], None],
        on_lists: Callable[[str, bytes], None] | None = None,
        on_passage: Callable[[Passage], None] | None = None,
    ) -> None:
        self.config = config
        self.facility_id = facility_id
        self.node_id = node_id
        self.journal = journal
        self._status = status
        self._on_command = on_command
        self._on_facility_state = on_facility_state
        # The hub's retained trust and status lists; the callee hands them to a worker.
        self._on_lists = on_lists
        self._on_passage = on_passage

        self._t_events = topics.node_events(facility_id, node_id)
        self._t_status = topics.node_status(facility_id, node_id)
        self._t_ack = topics.node_ack(facility_id, node_id)
        self._t_cmd = topics.node_cmd(facility_id, node_id)
        self._t_cmd_resp = topics.node_cmd_resp(facility_id, node_id)
        self._t_state = topics.facility_state(facility_id)
        self._t_lists = topics.lists_filter(facility_id)
        self._lists_prefix = self._t_lists.removesuffix("#")
        self._t_passages = topics.facility_passages(facility_id)

        self._client = self._make_client(read_password(config))

        # Shared with the paho thread, guarded by ``_cond``.
        self._cond = threading.Condition()
        self._connected = False
        # The broker confirmed this connection's subscriptions: commands, acks and state
        # sent from now on reach the node.
        self._subscribed = False
        self._subscribe_mid: int | None = None
        self._kick = False
        self._link_up = False  # a (re)connect the sender has not handled yet
        self._acks: list[bytes] = []
        self._stopping = False

        # Owned by the sender thread.
        self._in_flight: set[str] = set()
        self._first_sent: dict[str, float] = {}

        self._commands: queue.Queue[bytes | None] = queue.Queue()
        self._passages: queue.Queue[bytes | None] = queue.Queue(_PASSAGE_BACKLOG)
        self._passages_dropped = 0
        self._state_cond = threading.Condition()
        self._state_payload: bytes | None = None

        self._counters = _Counters()
        self._threads: list[threading.Thread] = []
        self._started = False
        self._stopped = False
        # Resends are checked at least this often, so an ack timeout is noticed in time.
        self._tick_s = max(0.05, min(1.0, config.ack_timeout_s / 4))

    # -- set-up ------------------------------------------------------------------------

    def _make_client(self, password: str | None) -> mqtt.Client:
        config = self.config
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=config.client_id or self.node_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        client.enable_logger(logging.getLogger(f"{__name__}.paho"))
        if config.username is not None:
            client.username_pw_set(config.username, password)
        if config.tls_ca_file is not None:
            if not config.tls_ca_file.is_file():
                raise ConfigError(f"mqtt.tls_ca_file {config.tls_ca_file} is not a readable file")
            try:
                client.tls_set(ca_certs=str(config.tls_ca_file))
            except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
                raise ConfigError(f"mqtt.tls_ca_file {config.tls_ca_file}: {err}") from err
        offline = NodeStatus(state=NodeState.OFFLINE)
        client.will_set(self._t_status, offline.dumps(), qos=1, retain=True)
        # paho annotates these as int but waits on any number of seconds.
        client.reconnect_delay_set(
            config.reconnect_min_s,  # type: ignore[arg-type]
            config.reconnect_max_s,  # type: ignore[arg-type]
        )
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        for name, target in (
            ("sender", self._sender_main),
            ("commands", self._commands_main),
            ("state", self._state_main),
            ("passages", self._passages_main),
        ):
            thread = threading.Thread(target=target, name=f"uplink-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        # A clean session on every connect: a command queued while the node was away
        # (an "open", say) must not run late; anything the hub missed is in the journal.
        self._client.connect_async(
            self.config.host, self.config.port, self.config.keepalive_s, clean_start=True
        )
        self._client.loop_start()
        logger.info(
            "uplink to %s:%d started for %s/%s",
            self.config.host,
            self.config.port,
            self.facility_id,
            self.node_id,
        )

    def stop(self, timeout_s: float = 5.0) -> None:
        """Hand what is due to the broker, publish ``offline``, disconnect, join threads."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        deadline = time.monotonic() + timeout_s

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._threads[0].join(left())  # the sender makes a last pass before it ends
        if self.connected:
            info = self._client.publish(
                self._t_status,
                NodeStatus(state=NodeState.OFFLINE, ts=utcnow()).dumps(),
                qos=1,
                retain=True,
            )
            try:
                info.wait_for_publish(left())
            except (RuntimeError, ValueError) as err:
                logger.warning("offline status not delivered: %s", err)
        self._client.disconnect()
        self._client.loop_stop()
        self._commands.put(None)
        try:
            self._passages.put_nowait(None)
        except queue.Full:
            with self._passages.mutex:
                self._passages.queue.clear()
            self._passages.put_nowait(None)
        with self._state_cond:
            self._state_cond.notify_all()
        for thread in self._threads[1:]:
            thread.join(left())
        for thread in self._threads:
            if thread.is_alive():
                logger.warning("uplink thread %s did not stop in %.1fs", thread.name, timeout_s)
        logger.info("uplink stopped")

    # -- public ------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        with self._cond:
            return self._connected

    @property
    def subscribed(self) -> bool:
        """Connected, and the broker confirmed the subscriptions to acks, commands and
        facility state."""
        with self._cond:
            return self._connected and self._subscribed

    @property
    def stats(self) -> UplinkStats:
        return self._counters.snapshot()

    def wake(self) -> None:
        """New events are in the journal: send them now rather than at the next tick."""
        with self._cond:
            self._kick = True
            self._cond.notify_all()

    def publish_status(self) -> None:
        """Publish the node's current status, retained (also done on every connect)."""
        if not self.connected:
            return  # published on the next connect
        try:
            status = self._status()
        except Exception:
            logger.exception("node status not available; status not published")
            return
        if status.ts is None:
            status = status.model_copy(update={"ts": utcnow()})
        self._client.publish(self._t_status, status.dumps(), qos=1, retain=True)

    # -- paho callbacks (network thread: hand over, never block) -------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            logger.warning("broker refused the connection: %s", reason_code)
            return
        wanted = [(self._t_ack, 1), (self._t_cmd, 1), (self._t_state, 1)]
        if self._on_lists is not None:
            wanted.append((self._t_lists, 1))
        if self._on_passage is not None:
            wanted.append((self._t_passages, 1))
        _, mid = client.subscribe(wanted)
        with self._cond:
            self._subscribe_mid = mid
            self._subscribed = False
            self._connected = True
            self._link_up = True
            self._kick = True
            self._cond.notify_all()
        with self._counters.lock:
            self._counters.connects += 1
        logger.info("connected to %s:%d", self.config.host, self.config.port)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # Nothing was sent: with tls_ca_file a broker that cannot show a certificate from
        # the facility CA fails here, before the password or any event goes out.
        with self._counters.lock:
            self._counters.connect_failures += 1
            failures = self._counters.connect_failures
        log = logger.warning if failures in (1, 10, 100) else logger.debug
        log(
            "cannot connect to the broker at %s:%d%s (%d tries)",
            self.config.host,
            self.config.port,
            ": unreachable, or its certificate is not from the facility CA"
            if self.config.tls_ca_file is not None
            else "",
            failures,
        )

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            # The ACL lets a provisioned node read all of these; a refusal is a broker
            # set up for another node, and the door would miss commands or acks.
            logger.error("broker refused subscriptions of this node: %s", ", ".join(refused))
        with self._cond:
            if mid == self._subscribe_mid:
                self._subscribed = True

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._cond:
            was_connected = self._connected
            self._connected = False
            self._subscribed = False
            stopping = self._stopping
        if stopping:
            logger.info("disconnected from the broker")
        elif was_connected:
            logger.warning("lost the broker (%s); reconnecting", reason_code)
        else:
            logger.debug("broker unreachable (%s); retrying", reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        topic = message.topic
        payload = bytes(message.payload)
        if topic == self._t_ack:
            with self._cond:
                self._acks.append(payload)
                self._kick = True
                self._cond.notify_all()
        elif topic == self._t_cmd:
            if message.retain:
                # A retained command would run again at every reconnect: refuse it.
                logger.warning("ignored a retained command on %s", topic)
                return
            self._commands.put(payload)
        elif topic == self._t_state:
            with self._state_cond:
                self._state_payload = payload
                self._state_cond.notify_all()
        elif self._on_lists is not None and topic.startswith(self._lists_prefix):
            self._on_lists(topic, payload)
        elif topic == self._t_passages and self._on_passage is not None:
            try:
                self._passages.put_nowait(payload)
            except queue.Full:
                self._passages_dropped += 1
                if self._passages_dropped % 1000 == 1:
                    logger.warning(
                        "passages arrive faster than they are taken in: %d dropped",
                        self._passages_dropped,
                    )
        else:
            logger.debug("ignored a message on %s", topic)

    # -- the sender thread ---------------------------------------------------------------

    def _sender_main(self) -> None:
        last_pass = False
        while not last_pass:
            with self._cond:
                self._cond.wait_for(lambda: self._kick or self._stopping, self._tick_s)
                last_pass = self._stopping
                self._kick = False
                link_up, self._link_up = self._link_up, False
                acks, self._acks = self._acks, []
            try:
                if acks:
                    self._apply_acks(acks)
                if link_up:
                    self._after_connect()
                if self._send_due():
                    with self._cond:
                        self._kick = True  # more is due: go again without waiting
            except Exception:
                # The sender must outlive any one failure (a full disk, a bad row): events
                # stay in the journal and the next pass tries again.
                logger.exception("uplink sender pass failed; retrying")
                with self._cond:
                    self._cond.wait_for(lambda: self._stopping, self._tick_s)

    def _after_connect(self) -> None:
        # Nothing sent before this connection is known to have reached the hub.
        self._in_flight.clear()
        again = self.journal.unsend_all()
        if again:
            logger.info("%d unacknowledged events will be sent again", again)
        self._set_in_flight()
        self.publish_status()

    def _set_in_flight(self) -> None:
        with self._counters.lock:
            self._counters.in_flight = len(self._in_flight)

    def _send_due(self) -> bool:
        """Publish one batch of due events; True if more may be due at once."""
        with self._cond:
            # Not connected: paho would queue them in memory; the journal is the queue. A
            # connection the sender has not taken in yet: its pass resends everything, so
            # sending now would only send the same events twice.
            if not self._connected or self._link_up:
                return False
        config = self.config
        now = time.monotonic()
        due = self.journal.due(config.batch_size, config.ack_timeout_s, now)
        sent: list[str] = []
        resent = 0
        full = False
        for event in due:
            first_time = event.event_id not in self._in_flight
            if first_time and len(self._in_flight) >= config.max_in_flight:
                full = True
                break
            info = self._client.publish(self._t_events, event.dumps(), qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                # The link just went down; the reconnect makes everything due again.
                logger.info(
                    "publish refused (%s); waiting for the link", mqtt.error_string(info.rc)
                )
                break
            sent.append(event.event_id)
            self._in_flight.add(event.event_id)
            self._first_sent.setdefault(event.event_id, now)
            if event.late:
                resent += 1
        if sent:
            self.journal.mark_sent(sent, now)
        with self._counters.lock:
            self._counters.sent += len(sent)
            self._counters.resent += resent
            self._counters.in_flight = len(self._in_flight)
        return len(sent) == len(due) == config.batch_size and not full

    def _apply_acks(self, payloads: list[bytes]) -> None:
        ids: list[str] = []
        for payload in payloads:
            try:
                ack: Ack = Ack.parse(payload)
            except PayloadError as err:
                logger.warning("ignored a bad ack on %s: %s", self._t_ack, err)
                continue
            ids.extend(ack.event_ids)
        if not ids:
            return
        try:
            removed = self.journal.ack(ids)
        except JournalError:
            # The ack is lost with this pass; the events go out again and the hub acks again.
            logger.exception("acked events not removed from the journal")
            return
        now = time.monotonic()
        latencies: list[float] = []
        for event_id in ids:
            self._in_flight.discard(event_id)
            first = self._first_sent.pop(event_id, None)
            if first is not None:
                latencies.append(now - first)
        with self._counters.lock:
            self._counters.acked += removed
            self._counters.in_flight = len(self._in_flight)
            self._counters.latencies.extend(latencies)

    # -- the command and state threads --------------------------------------------------

    def _commands_main(self) -> None:
        while True:
            payload = self._commands.get()
            if payload is None:
                return
            reply = self._run_command(payload)
            if reply is not None:
                self._client.publish(self._t_cmd_resp, reply.dumps(), qos=1)

    def _run_command(self, payload: bytes) -> CommandReply | None:
        try:
            command: Command = Command.parse(payload)
        except PayloadError as err:
            request_id = _recover_id(payload)
            logger.warning("bad command on %s (id %s): %s", self._t_cmd, request_id, err)
            if request_id is None:
                return None
            return CommandReply(id=request_id, ok=False, error=f"bad command: {err}"[:_ERROR_LIMIT])
        logger.info("command %s (id %s)", command.cmd, command.id)
        try:
            reply = self._on_command(command)
        except Exception as err:
            logger.exception("command %s (id %s) failed", command.cmd, command.id)
            error = f"command failed: {type(err).__name__}: {err}"[:_ERROR_LIMIT]
            return CommandReply(id=command.id, ok=False, error=error)
        if reply.id != command.id:
            logger.warning("reply to %s carried id %s; fixed", command.id, reply.id)
            reply = reply.model_copy(update={"id": command.id})
        return reply

    def _passages_main(self) -> None:
        while True:
            payload = self._passages.get()
            if payload is None:
                return
            if self._on_passage is None:
                continue
            if len(payload) > _MAX_PASSAGE_BYTES:
                logger.warning("ignored oversize passages (%d bytes)", len(payload))
                continue
            try:
                message: Passages = Passages.parse(payload)
            except PayloadError as err:
                logger.warning("ignored bad passages on %s: %s", self._t_passages, err)
                continue
            if message.facility_id != self.facility_id:
                logger.warning("ignored passages of facility %s", message.facility_id)
                continue
            for passage in message.passages:
                try:
                    self._on_passage(passage)
                except Exception:
                    logger.exception("the passage handler failed")

    def _state_main(self) -> None:
        while True:
            with self._state_cond:
                self._state_cond.wait_for(lambda: self._state_payload is not None or self._stopped)
                if self._stopped:
                    return
                payload, self._state_payload = self._state_payload, None
            if payload is None:
                continue
            try:
                state: FacilityState = FacilityState.parse(payload)
            except PayloadError as err:
                logger.warning("ignored a bad facility state on %s: %s", self._t_state, err)
                continue
            if state.facility_id != self.facility_id:
                logger.warning("ignored the state of facility %s", state.facility_id)
                continue
            try:
                self._on_facility_state(state)
            except Exception:
                logger.exception("the facility state handler failed")
