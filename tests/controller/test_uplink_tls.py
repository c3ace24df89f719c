"""A rogue broker in the broker's place (DNS or ARP spoofing on the facility's network):
a door that verifies the broker against its facility CA never connects to it, so it sends
it neither its password nor its journal; the real broker, with a certificate from the
facility CA, gets both. Real Mosquitto processes, one plain and two speaking TLS."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from controller.journal import Journal
from controller.uplink import Uplink
from protocol.events import EventKind
from provisioning import tlsca
from provisioning.mosquitto import Mosquitto

from .conftest import FACILITY, NODE, WaitFor


def tls_conf(files: tlsca.BrokerTls) -> str:
    return f"certfile {files.server_cert}\nkeyfile {files.server_key}\n"


def listener(broker: Mosquitto, ca: Path | None) -> tuple[mqtt.Client, list[bytes]]:
    """A client on ``broker`` that takes every message (the rogue's view, or the hub's)."""
    got: list[bytes] = []
    lock = threading.Lock()

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with lock:
            got.append(bytes(message.payload))

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if ca is not None:
        client.tls_set(ca_certs=str(ca))
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe("#", qos=1)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client, got


# paho leaves the socket of a failed TLS handshake to the garbage collector, which warns.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_door_sends_nothing_to_a_broker_without_the_facility_certificate(
    journal: Journal,
    make_broker: Callable[..., Mosquitto],
    make_uplink: Callable[..., Uplink],
    tmp_path: Path,
    wait_for: WaitFor,
) -> None:
    facility = tlsca.ensure(tmp_path / "facility", ["127.0.0.1"], FACILITY)
    rogue_ca = tlsca.ensure(tmp_path / "rogue", ["127.0.0.1"], FACILITY)  # same names
    plain_rogue = make_broker("plain-rogue")
    tls_rogue = make_broker("tls-rogue", extra_conf=tls_conf(rogue_ca))
    real = make_broker("real", extra_conf=tls_conf(facility))
    secret = tmp_path / "mqtt-password"
    secret.write_text("the door's password\n")
    login = {"username": NODE, "password_file": secret, "tls_ca_file": facility.ca_cert}
    events = [journal.append(EventKind.ENTRY, signal="green", admit=True) for _ in range(5)]
    clients = []
    try:
        for rogue, ca in ((plain_rogue, None), (tls_rogue, rogue_ca.ca_cert)):
            spy, seen = listener(rogue, ca)
            clients.append(spy)
            uplink = make_uplink(journal, host=rogue.host, port=rogue.port, **login)
            wait_for(lambda u=uplink: u.stats.connect_failures >= 3, what="refused handshakes")
            stats = uplink.stats
            assert (stats.connects, stats.sent) == (0, 0)
            uplink.stop()
            assert seen == []  # no event and no availability reached the rogue
        assert journal.pending_count() == len(events)
        # The real broker shows a certificate from the facility CA: the journal drains to it.
        hub, delivered = listener(real, facility.ca_cert)
        clients.append(hub)
        uplink = make_uplink(journal, host=real.host, port=real.port, **login)
        wait_for(lambda: uplink.stats.sent >= len(events), what="the journal sent to the broker")
        wait_for(
            lambda: sum(e.event_id.encode() in p for e in events for p in delivered) == len(events),
            what="every event at the real broker",
        )
    finally:
        for client in clients:
            client.disconnect()
            client.loop_stop()
