"""Private brokers for the benchmarks: plain, or speaking TLS only as a facility's broker
does, with a certificate from a facility CA the provisioning tools' own code makes."""

from __future__ import annotations

import ssl
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from provisioning import tlsca
from provisioning.mosquitto import Mosquitto


def tls_broker(workdir: Path, facility: str, name: str = "broker-tls") -> Mosquitto:
    """A broker that speaks TLS only, its certificate from a facility CA made as ``pintu
    provision broker init`` makes them (``provisioning.tlsca``); its clients verify it
    against ``ca_file``, as the doors and the hub of a facility do."""
    files = tlsca.ensure(workdir / "facility-ca", ["127.0.0.1"], facility)
    # The listener's TLS lines as provisioning.broker.render_conf writes them.
    conf = f"certfile {files.server_cert}\nkeyfile {files.server_key}\n"
    return Mosquitto(workdir / name, extra_conf=conf, ca_file=files.ca_cert)


def tls_session(broker: Mosquitto) -> str:
    """The TLS version and cipher a paho client verifying ``broker`` agrees with it."""
    if broker.ca_file is None:
        raise ValueError("the broker does not speak TLS")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.tls_set(ca_certs=str(broker.ca_file))
    client.connect(broker.host, broker.port)  # the handshake, certificate checked
    try:
        sock = client.socket()
        if not isinstance(sock, ssl.SSLSocket):
            raise RuntimeError("the client did not connect over TLS")
        cipher = sock.cipher()
        return f"{sock.version()}, {cipher[0]}" if cipher else str(sock.version())
    finally:
        client.disconnect()
