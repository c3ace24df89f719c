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
  ``(topic, payload, mid)`` without paho's message object; anything else (properties, a
  topic alias, another QoS, a topic that is not UTF-8) takes paho's own path;
* ``ack_many`` sends the PUBACKs of a stored batch as one write.

It overrides four of paho's internal methods (``_create_socket``, ``loop_read``'s drain,
``_handle_publish``, ``_packet_queue``'s use): the paho versions it is known to work with are
pinned in pyproject.toml, and tests/hub/test_ingest_client.py checks each path on a real
broker.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

_UINT16 = struct.Struct("!H")
_PUBACK = 0x40  # MQTT's PUBACK packet type; remaining length 2: packet id, reason "success"
_QOS_BITS = 0x06
_QOS_1 = 0x02
# Packets taken from the buffer in one turn of paho's loop before it gets to write (acks,
# publishes, pings): enough for a full read buffer of small events.
_DRAIN_PACKETS = 512
_READ_SIZE = 65_536


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

    @property
    def buffered(self) -> int:
        return max(0, len(self._chunk) - self._at)

    def pending(self) -> int:
        inner = getattr(self._socket, "pending", None)
        return self.buffered + (inner() if inner is not None else 0)

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

    def _handle_publish(self) -> MQTTErrorCode:
        handler = self.fast_message
        packet = self._in_packet
        header: int = packet["command"]
        data = bytes(packet["packet"])
        if handler is not None and header & _QOS_BITS == _QOS_1 and len(data) >= 5:
            length = _UINT16.unpack_from(data)[0]
            at = 2 + length
            # A topic, the packet id, then the properties' length: 0 is none.
            if length and len(data) > at + 2 and data[at + 2] == 0:
                try:
                    topic = data[2:at].decode("utf-8")
                except UnicodeDecodeError:
                    return super()._handle_publish()
                handler(topic, data[at + 3 :], _UINT16.unpack_from(data, at)[0])
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._handle_publish()

    def ack_many(self, mids: list[int]) -> None:
        """Acknowledge these QoS 1 messages (received with ``manual_ack``) in one write."""
        if not mids:
            return
        pack = _UINT16.pack
        packets = b"".join(bytes((_PUBACK, 2)) + pack(mid) for mid in mids)
        self._packet_queue(_PUBACK, packets, 0, 0)
