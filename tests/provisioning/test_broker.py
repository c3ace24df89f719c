"""The broker's files against a real Mosquitto: who may log in, write and read what."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from protocol import topics
from provisioning import passwd
from provisioning.enroll import Enrolment, EnrolRequest, Reload, enroll, revoke
from provisioning.inventory import Fleet

from .conftest import FACILITY, FacilityBroker, Peer, WaitFor

PeerFactory = Callable[..., Peer]


def enrol(fb: FacilityBroker, out: Path, door: str, facility: str = FACILITY) -> Enrolment:
    return enroll(fb.dir, EnrolRequest(facility, door, "entry", fb.address), out)


def password_of(enrolment: Enrolment) -> str:
    return (enrolment.bundle_dir / "mqtt-password").read_text().strip()


@pytest.fixture
def two_nodes(facility_broker: FacilityBroker, tmp_path: Path) -> tuple[Enrolment, Enrolment]:
    """Two enrolled nodes of mall-a (main-1, side-1) and the broker started after them."""
    first = enrol(facility_broker, tmp_path / "out", "main")
    second = enrol(facility_broker, tmp_path / "out", "side")
    facility_broker.start()
    return first, second


# -- the password file -------------------------------------------------------------------


def test_hash_format_is_mosquitto_2() -> None:
    hashed = passwd.hash_password("s3cret", salt=bytes(range(12)))
    assert hashed.startswith("$7$101$AAECAwQFBgcICQoL$")
    prefix, seven, rounds, salt, digest = hashed.split("$")
    assert (prefix, seven, rounds) == ("", "7", "101")
    assert len(salt) == 16 and len(digest) == 88  # base64 of 12 and 64 bytes
    assert passwd.verify_password("s3cret", hashed)
    assert not passwd.verify_password("s3cret ", hashed)
    assert passwd.hash_password("s3cret") != passwd.hash_password("s3cret")  # salted


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="needs mosquitto_passwd")
def test_we_verify_what_mosquitto_passwd_writes(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(path), "alice", "Wonder land:1"], check=True
    )
    (hashed,) = passwd.parse(path.read_text()).values()
    assert passwd.verify_password("Wonder land:1", hashed)
    assert not passwd.verify_password("wonder land:1", hashed)


@pytest.mark.parametrize("junk", ["", "$6$abc$def", "$7$101$!!$!!", "$7$x$AAAA$AAAA", "plain"])
def test_junk_hashes_never_verify(junk: str) -> None:
    assert not passwd.verify_password("", junk)


# -- logging in ----------------------------------------------------------------------------


def test_the_broker_takes_our_hashes_and_refuses_everyone_else(
    facility_broker: FacilityBroker, two_nodes: tuple[Enrolment, Enrolment], peers: PeerFactory
) -> None:
    broker = facility_broker.broker
    main, side = two_nodes
    assert peers(broker, "hub", facility_broker.hub_password).accepted
    assert peers(broker, main.record.username, password_of(main)).accepted
    # Refused at CONNECT: a wrong password, another node's password, no user, an unknown user.
    for username, password in [
        (main.record.username, password_of(main) + "x"),
        (main.record.username, password_of(side)),
        (None, None),
        ("stranger", password_of(main)),
    ]:
        peer = peers(broker, username, password)
        assert not peer.accepted, f"{username} got in"
        assert peer.connack is not None
        assert peer.connack.getName() in ("Not authorized", "Bad user name or password")


# -- what a node may do --------------------------------------------------------------------


def test_a_node_publishes_its_own_events_to_the_hub(
    facility_broker: FacilityBroker,
    two_nodes: tuple[Enrolment, Enrolment],
    peers: PeerFactory,
    wait_for: WaitFor,
) -> None:
    main, _ = two_nodes
    hub = peers(facility_broker.broker, "hub", facility_broker.hub_password)
    # The hub's shared subscription: Mosquitto checks it without the $share/<group>/ prefix.
    assert not hub.subscribe(topics.HUB_EVENTS_SHARED).is_failure
    assert not hub.subscribe(topics.ALL_NODE_STATUS).is_failure
    node = peers(facility_broker.broker, main.record.username, password_of(main))
    events = topics.node_events(FACILITY, main.record.node_id)
    status = topics.node_status(FACILITY, main.record.node_id)
    assert not node.publish(events, b"event-1").is_failure
    assert not node.publish(status, b"online", retain=True).is_failure
    wait_for(lambda: hub.received(events) == [b"event-1"], what="the event at the hub")
    wait_for(lambda: hub.received(status) == [b"online"], what="the status at the hub")


def test_events_published_as_another_node_are_dropped(
    facility_broker: FacilityBroker,
    two_nodes: tuple[Enrolment, Enrolment],
    peers: PeerFactory,
    wait_for: WaitFor,
) -> None:
    main, side = two_nodes
    hub = peers(facility_broker.broker, "hub", facility_broker.hub_password)
    hub.subscribe(topics.HUB_EVENTS_SHARED)
    node = peers(facility_broker.broker, main.record.username, password_of(main))
    forged = topics.node_events(FACILITY, side.record.node_id)
    other_facility = topics.node_events("clinic", main.record.node_id)
    assert node.publish(forged, b"forged").getName() == "Not authorized"
    assert node.publish(other_facility, b"forged").getName() == "Not authorized"
    assert node.publish(topics.facility_state(FACILITY), b"full").getName() == "Not authorized"
    # The broker handles one client's messages in order: once the marker is in, anything
    # sent before it would have been too.
    own = topics.node_events(FACILITY, main.record.node_id)
    node.publish(own, b"marker")
    wait_for(lambda: b"marker" in hub.received(), what="the marker at the hub")
    assert hub.received() == [b"marker"]
    assert node.connack is not None and not node.disconnected.is_set()


def test_a_node_never_receives_another_nodes_commands(
    facility_broker: FacilityBroker,
    two_nodes: tuple[Enrolment, Enrolment],
    peers: PeerFactory,
    wait_for: WaitFor,
) -> None:
    main, side = two_nodes
    broker = facility_broker.broker
    node = peers(broker, main.record.username, password_of(main))
    victim = peers(broker, side.record.username, password_of(side))
    own_cmd = topics.node_cmd(FACILITY, main.record.node_id)
    other_cmd = topics.node_cmd(FACILITY, side.record.node_id)
    # Mosquitto 2.0 grants the subscription and checks the ACL on every delivery instead.
    node.subscribe(other_cmd)
    node.subscribe(topics.node_ack(FACILITY, side.record.node_id))
    node.subscribe(own_cmd)
    victim.subscribe(other_cmd)
    hub = peers(broker, "hub", facility_broker.hub_password)
    assert not hub.publish(other_cmd, b"open the side door").is_failure
    assert not hub.publish(topics.node_ack(FACILITY, side.record.node_id), b"ack").is_failure
    assert not hub.publish(own_cmd, b"marker").is_failure
    wait_for(lambda: victim.received(other_cmd) == [b"open the side door"], what="victim's cmd")
    wait_for(lambda: node.received(own_cmd) == [b"marker"], what="the node's own command")
    assert node.received() == [b"marker"]


def test_a_node_reads_its_facility_state_and_the_hub_writes_it(
    facility_broker: FacilityBroker,
    two_nodes: tuple[Enrolment, Enrolment],
    peers: PeerFactory,
    wait_for: WaitFor,
) -> None:
    main, _ = two_nodes
    broker = facility_broker.broker
    hub = peers(broker, "hub", facility_broker.hub_password)
    state = topics.facility_state(FACILITY)
    assert not hub.publish(state, b'{"full": false}', retain=True).is_failure
    assert not hub.publish(topics.hub_status(FACILITY), b"online", retain=True).is_failure
    assert not hub.publish("homeassistant/sensor/x/config", b"{}").is_failure
    # The hub reads events, it never writes them.
    own = topics.node_events(FACILITY, main.record.node_id)
    assert hub.publish(own, b"forged").getName() == "Not authorized"
    assert not hub.publish(topics.facility_state("clinic"), b"clinic", retain=True).is_failure
    node = peers(broker, main.record.username, password_of(main))
    node.subscribe(topics.facility_state("clinic"))  # granted, but never delivered
    node.subscribe(state)
    wait_for(lambda: node.received(state) == [b'{"full": false}'], what="the retained state")
    ack = topics.node_ack(FACILITY, main.record.node_id)
    node.subscribe(ack)
    assert not hub.publish(ack, b"marker").is_failure
    wait_for(lambda: node.received(ack) == [b"marker"], what="the ack")
    assert b"clinic" not in node.received()


def test_a_node_reads_its_facility_lists_the_hub_keeps_retained(
    facility_broker: FacilityBroker,
    two_nodes: tuple[Enrolment, Enrolment],
    peers: PeerFactory,
    wait_for: WaitFor,
) -> None:
    main, _ = two_nodes
    broker = facility_broker.broker
    hub = peers(broker, "hub", facility_broker.hub_password)
    trust, status = topics.lists_trust(FACILITY), topics.lists_status(FACILITY)
    assert not hub.publish(trust, b"trust list", retain=True).is_failure
    assert not hub.publish(status, b"status list", retain=True).is_failure
    assert not hub.publish(topics.lists_trust("clinic"), b"clinic", retain=True).is_failure
    node = peers(broker, main.record.username, password_of(main))
    # A node never writes the lists the doors believe.
    assert node.publish(trust, b"forged", retain=True).getName() == "Not authorized"
    node.subscribe(topics.lists_trust("clinic"))  # granted, but never delivered
    node.subscribe(topics.lists_filter(FACILITY))
    wait_for(
        lambda: sorted(node.received()) == [b"status list", b"trust list"],
        what="the retained lists",
    )
    assert b"clinic" not in node.received()


def test_only_the_hub_writes_passages_and_lists_and_nodes_read_their_own(
    facility_broker: FacilityBroker,
    two_nodes: tuple[Enrolment, Enrolment],
    peers: PeerFactory,
    wait_for: WaitFor,
) -> None:
    main, side = two_nodes
    broker = facility_broker.broker
    hub = peers(broker, "hub", facility_broker.hub_password)
    reader = peers(broker, side.record.username, password_of(side))
    passages = topics.facility_passages(FACILITY)
    trust = topics.lists_trust(FACILITY)
    reader.subscribe(passages)
    reader.subscribe(topics.lists_filter(FACILITY))
    reader.subscribe(topics.facility_passages("clinic"))  # granted, but never delivered
    node = peers(broker, main.record.username, password_of(main))
    # A node that could write these could lock a subject out of every entrance, or make
    # the doors believe a key of its own.
    for topic in (passages, trust, topics.lists_status(FACILITY)):
        assert node.publish(topic, b"spoofed").getName() == "Not authorized"
    assert not hub.publish(topics.facility_passages("clinic"), b"clinic").is_failure
    assert not hub.publish(trust, b"trust", retain=True).is_failure
    assert not hub.publish(passages, b"marker").is_failure
    wait_for(lambda: reader.received(passages) == [b"marker"], what="the passage")
    wait_for(lambda: reader.received(trust) == [b"trust"], what="the trust list")
    assert b"spoofed" not in reader.received()
    assert b"clinic" not in reader.received()


# -- revocation ----------------------------------------------------------------------------


def test_a_revoked_node_is_cut_off_at_once_and_refused_after(
    facility_broker: FacilityBroker,
    two_nodes: tuple[Enrolment, Enrolment],
    peers: PeerFactory,
    wait_for: WaitFor,
) -> None:
    main, side = two_nodes
    broker = facility_broker.broker
    assert broker.process is not None
    connected = peers(broker, main.record.username, password_of(main))
    assert connected.accepted
    revocation = revoke(
        facility_broker.dir, main.record.node_id, "stolen", reload=Reload(pid=broker.process.pid)
    )
    assert revocation.change.reloaded == f"sent SIGHUP to pid {broker.process.pid}"
    # Mosquitto re-checks connected clients against the reloaded password file.
    assert connected.disconnected.wait(10), "the revoked node kept its connection"
    again = peers(broker, main.record.username, password_of(main))
    assert not again.accepted
    assert peers(broker, side.record.username, password_of(side)).accepted
    assert main.record.username + ":" not in (facility_broker.dir / "passwd").read_text()
    assert f"user {main.record.username}\n" not in (facility_broker.dir / "acl").read_text()
    assert Fleet.load(facility_broker.dir).node(main.record.node_id).state == "revoked"


def test_a_node_enrolled_while_the_broker_runs_gets_in_after_a_reload(
    facility_broker: FacilityBroker, peers: PeerFactory, tmp_path: Path, wait_for: WaitFor
) -> None:
    broker = facility_broker.start()
    assert broker.process is not None
    late = enroll(
        facility_broker.dir,
        EnrolRequest(FACILITY, "late", "exit", facility_broker.address),
        tmp_path / "out",
        reload=Reload(pid=broker.process.pid),
    )
    accepted: list[Peer] = []

    def logs_in() -> bool:
        peer = peers(broker, late.record.username, password_of(late))
        accepted.append(peer)
        return peer.accepted

    # The SIGHUP is handled by the broker's own loop: try until it has been.
    wait_for(logs_in, what="the new node to get in")
    node = accepted[-1]
    events = topics.node_events(FACILITY, late.record.node_id)
    assert not node.publish(events, b"hello").is_failure
