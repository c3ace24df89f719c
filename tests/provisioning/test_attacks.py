"""Attacks on a facility's broker, run against a real Mosquitto on the provisioned files.

One broker serves the whole module: two doors of mall-a are enrolled before it starts.
Each test is an attack that worked on an unhardened broker and must fail here.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from hub.config import MqttConfig
from protocol import topics
from provisioning.broker import DEFAULT_MAX_PACKET
from provisioning.enroll import Enrolment, EnrolRequest, enroll
from provisioning.inventory import Facility, init_fleet
from provisioning.mosquitto import Mosquitto, free_port

from .conftest import FACILITY, Peer, wait_until

PeerFactory = Callable[..., Peer]


@dataclass
class Site:
    broker: Mosquitto
    hub_password: str
    main: Enrolment
    side: Enrolment

    def password_of(self, enrolment: Enrolment) -> str:
        return (enrolment.bundle_dir / "mqtt-password").read_text().strip()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("attacks")
    port = free_port()
    directory = root / "broker"
    _, hub_password = init_fleet(
        directory,
        [Facility(id=FACILITY, name="Mall A"), Facility(id="clinic", name="Clinic")],
        settings={
            "listen": "127.0.0.1",
            "port": port,
            "persistence_dir": root / "state",
            "run_as": pwd.getpwuid(os.geteuid()).pw_name,
        },
    )
    assert hub_password is not None
    address = f"127.0.0.1:{port}"
    main = enroll(directory, EnrolRequest(FACILITY, "main", "entry", address), root / "out")
    side = enroll(directory, EnrolRequest(FACILITY, "side", "exit", address), root / "out")
    broker = Mosquitto(
        root / "run", port, config_file=directory / "mosquitto.conf", ca_file=directory / "ca.pem"
    )
    broker.start()
    yield Site(broker, hub_password, main, side)
    broker.stop()


def roundtrip(sender: Peer, receiver: Peer, topic: str, payload: bytes) -> None:
    """``sender`` publishes on ``topic`` and ``receiver`` gets it: both connections work."""
    assert not sender.publish(topic, payload).is_failure
    wait_until(lambda: payload in receiver.received(topic), what=f"{payload!r} on {topic}")


def test_a_door_password_cannot_take_over_the_hubs_or_another_doors_client_id(
    site: Site, peers: PeerFactory
) -> None:
    """Finding 2: the broker takes the user name as the client id, whatever is asked."""
    hub = peers(site.broker, "hub", site.hub_password, "pintu-hub")
    victim = peers(site.broker, site.side.record.username, site.password_of(site.side))
    victim_cmd = topics.node_cmd(FACILITY, site.side.record.node_id)
    victim.subscribe(victim_cmd)
    hub.subscribe(topics.ALL_NODE_STATUS)
    main_status = topics.node_status(FACILITY, site.main.record.node_id)
    door_login = (site.main.record.username, site.password_of(site.main))
    # A door's password with the hub's client id, then with the other door's: each gets in
    # as the door it is, and the connections it aimed at stay up and keep working.
    for wanted in ("pintu-hub", site.side.record.username):
        thief = peers(site.broker, *door_login, wanted)
        assert thief.accepted
        roundtrip(hub, victim, victim_cmd, f"still there ({wanted})".encode())
        roundtrip(thief, hub, main_status, f"as the door ({wanted})".encode())
        assert not hub.disconnected.is_set()
        assert not victim.disconnected.is_set()
        thief.close()


def test_a_door_cannot_take_a_share_of_the_hubs_events(site: Site, peers: PeerFactory) -> None:
    """Finding 3: a door in the hub's shared subscription would be dealt events it drops."""
    group = MqttConfig(username="hub").events_group(site.hub_password)
    hub = peers(site.broker, "hub", site.hub_password)
    assert not hub.subscribe(f"$share/{group}/{topics.ALL_NODE_EVENTS}").is_failure
    door_password = site.password_of(site.side)
    rogue = peers(site.broker, site.side.record.username, door_password)
    # The group names a door could know or guess, and the plain filter.
    near_miss = group[:-1] + ("1" if group.endswith("0") else "0")  # one digit off
    for guess in ("pintu-hub", "hub", near_miss, "pintu"):
        rogue.subscribe(f"$share/{guess}/{topics.ALL_NODE_EVENTS}")
    rogue.subscribe(topics.ALL_NODE_EVENTS)
    door = peers(site.broker, site.main.record.username, site.password_of(site.main))
    own = topics.node_events(FACILITY, site.main.record.node_id)
    sent = [f"event-{n}".encode() for n in range(50)]
    for payload in sent:
        assert not door.publish(own, payload).is_failure
    # Every event reaches the hub at once; none waits for a door's resend.
    wait_until(lambda: len(hub.received(own)) == len(sent), what="all 50 events at the hub")
    assert hub.received(own) == sent
    assert rogue.received() == []


def test_an_oversized_message_is_refused_and_never_retained(site: Site, peers: PeerFactory) -> None:
    """Finding 9: the broker takes nothing larger than the protocol's largest message."""
    hub = peers(site.broker, "hub", site.hub_password)
    trust = topics.lists_trust(FACILITY)
    oversized = b"x" * (DEFAULT_MAX_PACKET + 1)
    hub.client.publish(trust, oversized, qos=1, retain=True)
    wait_until(hub.disconnected.is_set, what="the broker closing the sender")
    hub.close()  # no reconnecting: the next hub login would close it again
    door = peers(site.broker, site.main.record.username, site.password_of(site.main))
    door.client.publish(topics.node_events(FACILITY, site.main.record.node_id), oversized, qos=1)
    wait_until(door.disconnected.is_set, what="the broker closing the door")
    door.close()
    # The broker is still up, stored nothing, and a list of a sane size goes through.
    reader = peers(site.broker, "hub", site.hub_password)
    assert not reader.publish(trust, b"a sane list", retain=True).is_failure
    late = peers(site.broker, site.side.record.username, site.password_of(site.side))
    late.subscribe(trust)
    wait_until(lambda: late.received(trust) == [b"a sane list"], what="the retained list")
    assert site.broker.running


def test_the_broker_configuration_names_its_limits(site: Site) -> None:
    conf = site.broker.conf_path.read_text()
    assert "use_username_as_clientid true" in conf
    assert f"max_packet_size {DEFAULT_MAX_PACKET}" in conf
    assert "max_queued_bytes 0" not in conf


def test_each_hub_connection_logs_in_under_its_own_name(site: Site, peers: PeerFactory) -> None:
    """The hub's presence connection for a second facility has a login of its own, so it
    and the hub's main connection never close each other."""
    config = MqttConfig(username="hub")
    presence_user = config.login_for("clinic", presence=True)
    assert presence_user == "hub.clinic"
    main = peers(site.broker, "hub", site.hub_password)
    presence = peers(site.broker, presence_user, site.hub_password)
    assert presence.accepted and main.accepted
    assert not presence.publish(topics.hub_status("clinic"), b"online", retain=True).is_failure
    # The presence login writes only its facility's hub status.
    assert presence.publish(topics.hub_status(FACILITY), b"x").getName() == "Not authorized"
    assert not main.disconnected.is_set() and not presence.disconnected.is_set()
