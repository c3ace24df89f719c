"""The hub's MQTT client (paho with a shorter way in) on a real Mosquitto, plain and TLS:
every message arrives whole and in order by one path or the other, and ``ack_many``
acknowledges at the broker (a session resumed later gets nothing again)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hub.ingest.client import IngestClient, _ReadBuffer
from provisioning import tlsca
from provisioning.mosquitto import Mosquitto

TOPIC = "pintu/test/events"


@pytest.fixture(params=["plain", "tls"])
def any_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mosquitto]:
    if request.param == "tls":
        # A listener that speaks TLS only, as a facility's broker does.
        files = tlsca.ensure(tmp_path / "facility-ca", ["127.0.0.1"], "mall-a")
        conf = f"certfile {files.server_cert}\nkeyfile {files.server_key}\n"
        broker = Mosquitto(tmp_path / "broker", extra_conf=conf, ca_file=files.ca_cert)
    else:
        broker = Mosquitto(tmp_path / "broker")
    with broker:
        yield broker


class Receiver:
    """An ``IngestClient`` on a persistent session, recording which path each message took."""

    def __init__(self, broker: Mosquitto, client_id: str) -> None:
        self.got: list[tuple[str, bytes, int, str]] = []  # topic, payload, mid, path
        self.cond = threading.Condition()
        subscribed = threading.Event()
        self.client = IngestClient(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        self.client.fast_message = self._fast
        self.client.on_message = self._paho
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.disconnected = threading.Event()
        self.client.on_disconnect = lambda *args: self.disconnected.set()
        if broker.ca_file is not None:
            self.client.tls_set(ca_certs=str(broker.ca_file))
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 300
        properties.ReceiveMaximum = 1000
        self.client.connect(broker.host, broker.port, clean_start=False, properties=properties)
        self.client.loop_start()
        self.client.subscribe(TOPIC, qos=1)
        assert subscribed.wait(10), "no SUBACK"

    def _record(self, topic: str, payload: bytes, mid: int, path: str) -> None:
        with self.cond:
            self.got.append((topic, payload, mid, path))
            self.cond.notify_all()

    def _fast(self, topic: str, payload: bytes, mid: int) -> None:
        self._record(topic, payload, mid, "fast")

    def _paho(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._record(message.topic, bytes(message.payload), message.mid, "paho")
        if message.qos == 1:
            client.ack(message.mid, message.qos)

    def wait_for(self, count: int) -> list[tuple[str, bytes, int, str]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.got) >= count, 20), (
                f"received {len(self.got)} of {count}"
            )
            return list(self.got)

    def close(self) -> None:
        """Disconnect once everything queued is written: paho writes its packets in turn,
        and stopping its thread at once could leave the acks unsent."""
        self.client.disconnect()
        assert self.disconnected.wait(10), "no disconnect"
        self.client.loop_stop()


def publisher(broker: Mosquitto) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(100)
    if broker.ca_file is not None:
        client.tls_set(ca_certs=str(broker.ca_file))
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def test_every_message_arrives_whole_by_one_path_or_the_other(any_broker: Mosquitto) -> None:
    receiver = Receiver(any_broker, "ingest-client-paths")
    sender = publisher(any_broker)
    try:
        # Small events (many to a read), one larger than the read buffer, one with a
        # property and one at QoS 0 (both on paho's own path).
        sent: list[tuple[bytes, str]] = [
            (f"event {i:04d}".encode() * 7, "fast") for i in range(600)
        ]
        sent.insert(250, (bytes(range(256)) * 400, "fast"))  # 102,400 bytes
        user = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        user.UserProperty = ("k", "v")
        infos = []
        for index, (payload, _) in enumerate(sent):
            infos.append(sender.publish(TOPIC, payload, qos=1))
            if index == 400:
                infos.append(sender.publish(TOPIC, b"with a property", qos=1, properties=user))
                infos.append(sender.publish(TOPIC, b"at qos 0", qos=0))
        for info in infos:
            info.wait_for_publish(10)
        sent.insert(401, (b"with a property", "paho"))
        got = receiver.wait_for(len(sent) + 1)
        # QoS 1 messages keep their order; the QoS 0 one may overtake them.
        assert [(p, path) for _, p, _, path in got if p != b"at qos 0"] == sent
        assert [path for _, p, _, path in got if p == b"at qos 0"] == ["paho"]
        assert {topic for topic, *_ in got} == {TOPIC}
        mids = [mid for _, _, mid, path in got if path == "fast"]
        assert len(set(mids)) == len(mids) and min(mids) > 0
    finally:
        sender.disconnect()
        sender.loop_stop()
        receiver.close()


@pytest.mark.parametrize("acked", [True, False], ids=["acked", "not-acked"])
def test_ack_many_acknowledges_at_the_broker(any_broker: Mosquitto, acked: bool) -> None:
    """Acked in one write, the messages are gone from the session; not acked, the broker
    hands them over again when the session resumes (so the acks are what made them go)."""
    receiver = Receiver(any_broker, "ingest-client-acks")
    sender = publisher(any_broker)
    try:
        for index in range(50):
            sender.publish(TOPIC, f"event {index}".encode(), qos=1).wait_for_publish(10)
        first = receiver.wait_for(50)
        if acked:
            receiver.client.ack_many([mid for _, _, mid, _ in first])
            # A message after the acks on the same connection: the acks are out once the
            # broker has delivered it (it writes them before reading on).
            sender.publish(TOPIC, b"marker", qos=1).wait_for_publish(10)
            receiver.wait_for(51)
            receiver.client.ack_many([receiver.got[-1][2]])
            # The broker reads a connection in order: once it acks a message the receiver
            # sends after the acks, it has taken them (a session taken over at once by the
            # next connection may otherwise lose what it had not read yet).
            receiver.client.publish("pintu/test/done", b"", qos=1).wait_for_publish(10)
        receiver.close()
        again = Receiver(any_broker, "ingest-client-acks")
        try:
            sender.publish(TOPIC, b"after", qos=1).wait_for_publish(10)
            if acked:
                assert [payload for _, payload, _, _ in again.wait_for(1)] == [b"after"]
            else:
                redelivered = [payload for _, payload, _, _ in again.wait_for(51)]
                assert redelivered == [f"event {i}".encode() for i in range(50)] + [b"after"]
        finally:
            again.close()
    finally:
        sender.disconnect()
        sender.loop_stop()


class _Chunks:
    """A socket that hands out the given chunks, then says it has nothing more yet."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    def recv(self, size: int) -> bytes:
        if not self.chunks:
            raise BlockingIOError
        return self.chunks.pop(0)


def _publish(topic: bytes, payload: bytes, *, first: int = 0x32, props: bytes = b"\0") -> bytes:
    body = len(topic).to_bytes(2, "big") + topic + (7).to_bytes(2, "big") + props + payload
    length, encoded = len(body), b""
    while True:
        byte, length = length & 0x7F, length >> 7
        encoded += bytes([byte | (0x80 if length else 0)])
        if not length:
            return bytes([first]) + encoded + body


def test_whole_publishes_are_taken_from_the_buffer_and_nothing_else() -> None:
    big = b"x" * 300  # a remaining length of two bytes
    dup_retained = _publish(b"t/2", b"again", first=0x3B)
    with_property = _publish(b"t/3", b"p", props=b"\x02\x02\0\0\0\x05")  # expiry: paho's path
    not_utf8 = _publish(b"t/\xff", b"q")
    qos0 = _publish(b"t/5", b"r", first=0x30)
    stream = _publish(b"t/1", big) + dup_retained + with_property
    buffer = _ReadBuffer(_Chunks(stream, not_utf8 + qos0))
    assert buffer.take_publish() is None  # nothing read yet: paho's read fills the buffer
    assert buffer.recv(1) == stream[:1]
    buffer = _ReadBuffer(_Chunks(stream, not_utf8 + qos0))
    buffer.recv(0)  # fill
    assert buffer.take_publish() == ("t/1", big, 7)
    assert buffer.take_publish() == ("t/2", b"again", 7)
    assert buffer.take_publish() is None  # a property: left for paho
    assert buffer.recv(len(with_property)) == with_property
    buffer.recv(0)
    assert buffer.take_publish() is None  # not UTF-8
    assert buffer.recv(len(not_utf8)) == not_utf8
    assert buffer.take_publish() is None  # QoS 0
    # A packet cut at the end of the chunk is left whole for paho to read in pieces.
    cut = _publish(b"t/6", b"y" * 50)
    buffer = _ReadBuffer(_Chunks(cut[:20], cut[20:]))
    buffer.recv(0)
    assert buffer.take_publish() is None
    assert buffer.pending() == 20
