"""paho's MQTT client with a shorter way in for the hub's stream of small QoS 1 events.

paho spends about 95 µs of CPU on each message it receives here (docs/benchmarks.md, "Hub
ingest"), as much as the hub spends storing and counting it: it reads every packet with
three or more ``recv`` calls and one ``select`` turn, builds an MQTT 5 ``Properties`` object
for each PUBLISH even when it has none, and sends each PUBACK with a wake-up of its network
thread and a ``send`` of its own. ``IngestClient`` keeps everything else of paho (connecting,
TLS, the session, the Last Will, keep-alive, publishing) and changes three things:

* the socket is read through ``_ReadBuffer``: one ``recv`` of up to 64 KiB serves many
  packets, and ``loop_read`` goes on while whole packets are already buffered;
* a QoS 1 PUBLISH without properties (what doors send) goes to ``fast_message`` as
  ``(topic, payload, mid)`` without paho's message object: taken whole from the buffer
  when it is all there, else read by paho and handed over the same way; anything else
  (properties, a topic alias, another QoS, a topic that is not UTF-8) takes paho's path;
* ``ack_many`` sends the PUBACKs of a stored batch as one write.

It reaches into paho's internals (``_create_socket``, ``_packet_read``, ``_handle_publish``,
``_in_packet``, ``_packet_queue``): the paho versions it is known to work with are pinned in
pyproject.toml, and tests/hub/test_ingest_client.py checks each path on a real broker.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

_UINT16 = struct.Struct("!H")
_PUBACK = 0x40  # MQTT's PUBACK packet type; remaining length 2: packet id, reason "success"
_PUBLISH_QOS_1 = 0x32  # a PUBLISH's first byte at QoS 1, the DUP and RETAIN flags masked
_QOS_BITS = 0x06
_QOS_1 = 0x02
# Packets taken from the buffer in one turn of paho's loop before it gets to write (acks,
# publishes, pings): enough for a full read buffer of small events.
_DRAIN_PACKETS = 512
_READ_SIZE = 65_536


def _publish_body(data: bytes, start: int, end: int) -> tuple[str, bytes, int] | None:
    """``(topic, payload, packet id)`` of a QoS 1 PUBLISH whose variable header and
    payload are ``data[start:end]``, if it has no properties and its topic is UTF-8;
    otherwise None (paho's own path reads it)."""
    if end - start < 5:
        return None
    topic_end = start + 2 + _UINT16.unpack_from(data, start)[0]
    props = topic_end + 2  # after the packet id, the properties' length: 0 is none
    if topic_end == start + 2 or props >= end or data[props]:
        return None
    try:
        topic = data[start + 2 : topic_end].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return topic, data[props + 1 : end], _UINT16.unpack_from(data, topic_end)[0]


class _ReadBuffer:
    """A connected socket (plain or TLS) read in large chunks, handed out in small ones.

    paho reads a packet's fixed header a byte at a time; each of those reads is served from
    the chunk here. ``pending()`` tells paho's loop that bytes are waiting without a
    ``select``, as it already asks a TLS socket. Everything else goes to the socket.
    """

    __slots__ = ("_at", "_chunk", "_socket")

    def __init__(self, sock: Any) -> None:
        self._socket = sock
        self._chunk = b""
        self._at = 0

    def recv(self, size: int) -> bytes:
        chunk, at = self._chunk, self._at
        if at >= len(chunk):
            chunk = bytes(self._socket.recv(_READ_SIZE))  # BlockingIOError etc. go to paho
            if not chunk:
                return chunk  # the broker closed the connection
            self._chunk, at = chunk, 0
        end = at + size
        self._at = end
        return chunk[at:end]

    def take_publish(self) -> tuple[str, bytes, int] | None:
        """``(topic, payload, packet id)`` of the next packet if it is a QoS 1 PUBLISH
        without properties, whole in the chunk; otherwise None and nothing taken."""
        chunk, at = self._chunk, self._at
        end = len(chunk)
        if at >= end or chunk[at] & 0xF6 != _PUBLISH_QOS_1:  # type, and QoS (not DUP, RETAIN)
            return None
        # The remaining length: 1 to 4 bytes of 7 bits, the lowest first.
        length, shift, pos = 0, 0, at + 1
        while True:
            if pos >= end or shift > 21:
                return None
            byte = chunk[pos]
            length |= (byte & 0x7F) << shift
            pos += 1
            if not byte & 0x80:
                break
            shift += 7
        last = pos + length
        if last > end:
            return None
        taken = _publish_body(chunk, pos, last)
        if taken is not None:
            self._at = last
        return taken

    def pending(self) -> int:
        inner = getattr(self._socket, "pending", None)
        buffered = len(self._chunk) - self._at
        return max(0, buffered) + (inner() if inner is not None else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._socket, name)


class IngestClient(mqtt.Client):
    """paho's ``Client`` reading faster; see the module's text. With ``fast_message`` unset
    it behaves as paho's own."""

    fast_message: Callable[[str, bytes, int], None] | None = None

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        if self._transport == "websockets":
            return sock
        return _ReadBuffer(sock)

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        for _ in range(_DRAIN_PACKETS):
            sock = self._sock
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or not isinstance(sock, _ReadBuffer):
                break
            if not sock.pending():
                break
            rc = super().loop_read(max_packets)
        return rc

    def _packet_read(self) -> MQTTErrorCode:
        handler, sock = self.fast_message, self._sock
        if handler is not None and isinstance(sock, _ReadBuffer) and not self._in_packet["command"]:
            taken = sock.take_publish()
            if taken is not None:
                handler(*taken)
                self._last_bytes_received = time.monotonic()  # paho's keep-alive reads it
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._packet_read()

    def _handle_publish(self) -> MQTTErrorCode:
        """A PUBLISH paho read itself (it came in pieces): the same shorter way if it can."""
        handler = self.fast_message
        packet = self._in_packet
        header: int = packet["command"]
        if handler is not None and header & _QOS_BITS == _QOS_1:
            data = bytes(packet["packet"])
            taken = _publish_body(data, 0, len(data))
            if taken is not None:
                handler(*taken)
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._handle_publish()

    def ack_many(self, mids: list[int]) -> None:
        """Acknowledge these QoS 1 messages (received with ``manual_ack``) in one write."""
        if not mids:
            return
        pack = _UINT16.pack
        packets = b"".join(bytes((_PUBACK, 2)) + pack(mid) for mid in mids)
        self._packet_queue(_PUBACK, packets, 0, 0)
