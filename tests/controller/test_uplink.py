"""The node's MQTT link, through a real Mosquitto: events, status, commands, facility state."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pydantic import ValidationError

from controller.errors import ConfigError, ControllerError
from controller.journal import Journal
from controller.uplink import MqttConfig, Uplink, read_password
from protocol import topics
from protocol.events import (
    Ack,
    Command,
    CommandReply,
    Event,
    EventKind,
    FacilityState,
    NodeState,
    NodeStatus,
)
from provisioning.mosquitto import Mosquitto

if TYPE_CHECKING:
    from tests.controller.conftest import FakeNode, MqttProbe, TestHub, WaitFor

STATUS = topics.node_status("f1", "n1")
CMD = topics.node_cmd("f1", "n1")
CMD_RESP = topics.node_cmd_resp("f1", "n1")
ACK = topics.node_ack("f1", "n1")
STATE = topics.facility_state("f1")


def replies(probe: MqttProbe) -> dict[str, CommandReply]:
    return {r.id: r for r in (CommandReply.parse(p) for p in probe.payloads(CMD_RESP))}


def statuses(probe: MqttProbe) -> list[NodeStatus]:
    return [NodeStatus.parse(p) for p in probe.payloads(STATUS) if p]


# -- settings ------------------------------------------------------------------------------


def test_config_defaults_and_strictness() -> None:
    config = MqttConfig()
    assert (config.host, config.port, config.max_in_flight) == ("127.0.0.1", 1883, 500)
    with pytest.raises(ValidationError, match="passwrd"):
        MqttConfig.model_validate({"passwrd": "x"})
    with pytest.raises(ValidationError):
        MqttConfig(port=0)
    with pytest.raises(ValidationError, match="reconnect_max_s"):
        MqttConfig(reconnect_min_s=5, reconnect_max_s=1)
    for name, field in MqttConfig.model_fields.items():
        assert field.description, f"mqtt.{name} has no description"


def test_password_comes_from_its_file_or_the_credentials_directory(tmp_path: Path) -> None:
    assert read_password(MqttConfig(), {}) is None
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n", encoding="utf-8")
    assert read_password(MqttConfig(username="n1", password_file=secret), {}) == "s3cret"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text("from-systemd", encoding="utf-8")
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    assert read_password(MqttConfig(username="n1"), env) == "from-systemd"


def test_a_missing_password_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match=str(missing)) as caught:
        read_password(MqttConfig(username="n1", password_file=missing), {})
    assert isinstance(caught.value, ControllerError)
    with pytest.raises(ConfigError, match="mqtt-password"):
        read_password(MqttConfig(username="n1"), {})
    with pytest.raises(ConfigError, match="mqtt-password"):
        read_password(MqttConfig(username="n1"), {"CREDENTIALS_DIRECTORY": str(tmp_path)})


def test_a_missing_ca_file_is_a_config_error(
    journal: Journal, make_uplink: Callable[..., Uplink], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="tls_ca_file"):
        make_uplink(journal, start=False, tls_ca_file=tmp_path / "ca.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate", encoding="utf-8")
    with pytest.raises(ConfigError, match="tls_ca_file"):
        make_uplink(journal, start=False, tls_ca_file=junk)


def test_connects_with_a_password_from_systemd_credentials(
    tmp_path: Path,
    journal: Journal,
    node: FakeNode,
    wait_for: WaitFor,
    make_broker: Callable[..., Mosquitto],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    passwords = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "n1", "door-secret"],
        check=True,
        capture_output=True,
    )
    server = make_broker("auth-broker", anonymous=False, extra_conf=f"password_file {passwords}")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text("door-secret\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    uplink = Uplink(
        MqttConfig(port=server.port, username="n1", reconnect_max_s=0.5),
        facility_id="f1",
        node_id="n1",
        journal=journal,
        status=node.status,
        on_command=node.handle_command,
        on_facility_state=node.on_facility_state,
    )
    try:
        uplink.start()
        wait_for(lambda: uplink.connected, what="an authenticated connection")
    finally:
        uplink.stop()


# -- events ----------------------------------------------------------------------------


def test_events_reach_the_hub_and_leave_the_journal(
    journal: Journal, make_uplink: Callable[..., Uplink], hub: TestHub, wait_for: WaitFor
) -> None:
    uplink = make_uplink(journal)
    appended = [journal.append(EventKind.ENTRY, signal="green", admit=True) for _ in range(20)]
    uplink.wake()
    wait_for(lambda: journal.pending_count() == 0, what="the journal to empty")
    assert hub.ids() == {e.event_id for e in appended}
    assert sorted(hub.events(), key=lambda e: e.seq) == appended
    stats = uplink.stats
    assert stats.acked == 20
    assert stats.sent >= 20
    assert stats.in_flight == 0
    assert stats.last_ack_latency_s is not None and stats.last_ack_latency_s >= 0
    assert len(stats.ack_latency_samples) == 20


def test_events_journaled_before_the_start_are_sent(
    journal: Journal, make_uplink: Callable[..., Uplink], hub: TestHub, wait_for: WaitFor
) -> None:
    appended = [journal.append(EventKind.NODE_START) for _ in range(3)]
    make_uplink(journal)
    wait_for(lambda: hub.count() == 3 and journal.pending_count() == 0, what="delivery")
    assert hub.ids() == {e.event_id for e in appended}


def test_in_flight_stays_under_the_limit_while_the_hub_is_silent(
    journal: Journal,
    make_uplink: Callable[..., Uplink],
    probe: Callable[..., MqttProbe],
    wait_for: WaitFor,
) -> None:
    listener = probe([topics.node_events("f1", "n1")])
    hub_side = probe([])
    for _ in range(30):
        journal.append(EventKind.ENTRY)
    uplink = make_uplink(journal, max_in_flight=7, batch_size=5, ack_timeout_s=60)
    wait_for(lambda: len(listener.messages()) == 7, what="the first seven events")
    wait_for(lambda: uplink.stats.in_flight == 7, what="seven in flight")
    assert journal.pending_count() == 30
    # Once seven are out, nothing more goes until an ack: the next one to send is seq 8.
    hub_side.publish(ACK, Ack(event_ids=[e.event_id for e in journal.pending(3)]).dumps())
    wait_for(lambda: len(listener.messages()) == 10, what="three more after three acks")
    # The sender counts a batch once it has published all of it, which may be a moment
    # after the listener has the last message.
    wait_for(lambda: uplink.stats.in_flight == 7, what="seven in flight again")
    assert uplink.stats.acked == 3
    assert [Event.parse(p).seq for p in listener.payloads(topics.node_events("f1", "n1"))] == list(
        range(1, 11)
    )


# -- status ----------------------------------------------------------------------------


def test_status_is_retained_online_and_republished_on_demand(
    journal: Journal,
    make_uplink: Callable[..., Uplink],
    node: FakeNode,
    probe: Callable[..., MqttProbe],
    wait_for: WaitFor,
) -> None:
    uplink = make_uplink(journal)
    wait_for(lambda: uplink.connected, what="a connection")
    late_comer = probe([STATUS])
    wait_for(lambda: statuses(late_comer), what="the retained status")
    first = statuses(late_comer)[0]
    assert first.state is NodeState.ONLINE
    assert first.ts is not None
    assert late_comer.messages(STATUS)[0][2], "the status is retained"

    node.state = NodeState.DEGRADED
    node.problems = ["camera: no frames for 10 s"]
    uplink.publish_status()
    wait_for(lambda: statuses(late_comer)[-1].state is NodeState.DEGRADED, what="degraded")
    assert statuses(late_comer)[-1].problems == ["camera: no frames for 10 s"]


def test_a_clean_stop_leaves_a_retained_offline_status(
    journal: Journal,
    make_uplink: Callable[..., Uplink],
    probe: Callable[..., MqttProbe],
    wait_for: WaitFor,
) -> None:
    uplink = make_uplink(journal)
    wait_for(lambda: uplink.connected, what="a connection")
    uplink.stop()
    assert not uplink.connected
    after = probe([STATUS])
    wait_for(lambda: statuses(after), what="the retained status")
    assert statuses(after)[-1].state is NodeState.OFFLINE


NODE_SCRIPT = """\
import sys
import threading
from pathlib import Path

from controller.journal import Journal
from controller.uplink import MqttConfig, Uplink
from protocol.events import CommandReply, NodeState, NodeStatus

journal = Journal(Path(sys.argv[2]), node_id="n1", facility_id="f1", door_id="d1")
uplink = Uplink(
    MqttConfig(port=int(sys.argv[1]), reconnect_min_s=0.05, reconnect_max_s=0.5),
    facility_id="f1",
    node_id="n1",
    journal=journal,
    status=lambda: NodeStatus(state=NodeState.ONLINE),
    on_command=lambda command: CommandReply(id=command.id, ok=True),
    on_facility_state=lambda state: None,
)
uplink.start()
threading.Event().wait()
"""


def test_the_last_will_says_offline_when_the_node_is_killed(
    tmp_path: Path,
    broker: Mosquitto,
    probe: Callable[..., MqttProbe],
    wait_for: WaitFor,
) -> None:
    script = tmp_path / "node.py"
    script.write_text(NODE_SCRIPT, encoding="utf-8")
    watcher = probe([STATUS])
    command = [sys.executable, str(script), str(broker.port), str(tmp_path / "j.db")]
    child = subprocess.Popen(command)
    try:
        wait_for(lambda: any(s.state is NodeState.ONLINE for s in statuses(watcher)), 20, "online")
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        wait_for(lambda: statuses(watcher)[-1].state is NodeState.OFFLINE, what="the will")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    after = probe([STATUS])
    wait_for(lambda: statuses(after), what="the retained will")
    assert statuses(after)[-1].state is NodeState.OFFLINE


# -- commands ----------------------------------------------------------------------------


def test_commands_are_answered_with_their_request_id(
    journal: Journal,
    make_uplink: Callable[..., Uplink],
    node: FakeNode,
    probe: Callable[..., MqttProbe],
    wait_for: WaitFor,
) -> None:
    uplink = make_uplink(journal)
    wait_for(lambda: uplink.subscribed, what="a connection with its subscriptions")
    hub_side = probe([CMD_RESP])
    hub_side.publish(CMD, Command(id="r1", cmd="ping").dumps())
    hub_side.publish(CMD, Command(id="r2", cmd="dance", args={"style": "jaipong"}).dumps())
    hub_side.publish(CMD, Command(id="r3", cmd="boom").dumps())
    wait_for(lambda: len(replies(hub_side)) == 3, what="three replies")
    got = replies(hub_side)
    assert got["r1"].ok and got["r1"].result == {"pong": True}
    assert not got["r2"].ok and got["r2"].error == "unknown command 'dance'"
    assert not got["r3"].ok
    assert got["r3"].error is not None and "RuntimeError" in got["r3"].error
    assert [c.id for c in node.commands] == ["r1", "r2", "r3"]
    assert node.commands[1].args == {"style": "jaipong"}


def test_junk_commands_get_an_error_or_are_logged_and_nothing_breaks(
    journal: Journal,
    make_uplink: Callable[..., Uplink],
    node: FakeNode,
    probe: Callable[..., MqttProbe],
    wait_for: WaitFor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    uplink = make_uplink(journal)
    wait_for(lambda: uplink.subscribed, what="a connection with its subscriptions")
    hub_side = probe([CMD_RESP])
    for junk in (
        b"not json at all",
        b"\xff\xfe\x00",
        b"[" * 10_000,
        b'{"id": "j1", "cmd": ""}',
        b'{"id": "j2"}',
        b'{"v": 2, "id": "j3", "cmd": "ping"}',
        b'{"id": 7, "cmd": "ping"}',
    ):
        hub_side.publish(CMD, junk)
    hub_side.publish(CMD, Command(id="after", cmd="ping").dumps())
    wait_for(lambda: "after" in replies(hub_side), what="the reply to a good command")
    got = replies(hub_side)
    assert set(got) == {"j1", "j2", "j3", "after"}
    for request_id in ("j1", "j2", "j3"):
        assert not got[request_id].ok
        assert (got[request_id].error or "").startswith("bad command: ")
    assert got["after"].ok
    assert [c.id for c in node.commands] == ["after"]
    assert uplink.connected and uplink.stats.connects == 1
    assert "bad command" in caplog.text


def test_a_retained_command_is_not_run(
    journal: Journal,
    make_uplink: Callable[..., Uplink],
    node: FakeNode,
    probe: Callable[..., MqttProbe],
    wait_for: WaitFor,
) -> None:
    hub_side = probe([CMD_RESP])
    hub_side.publish(CMD, Command(id="stale", cmd="ping").dumps(), retain=True)
    uplink = make_uplink(journal)
    wait_for(lambda: uplink.subscribed, what="a connection with its subscriptions")
    hub_side.publish(CMD, Command(id="fresh", cmd="ping").dumps())
    wait_for(lambda: "fresh" in replies(hub_side), what="the live command's reply")
    # Commands run in arrival order and the retained one arrived first: it was refused.
    assert set(replies(hub_side)) == {"fresh"}
    assert [c.id for c in node.commands] == ["fresh"]


# -- acks ----------------------------------------------------------------------------------


def test_junk_on_the_ack_topic_is_ignored(
    journal: Journal,
    make_uplink: Callable[..., Uplink],
    probe: Callable[..., MqttProbe],
    wait_for: WaitFor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    uplink = make_uplink(journal, ack_timeout_s=60)
    events = [journal.append(EventKind.ENTRY) for _ in range(3)]
    uplink.wake()
    wait_for(lambda: uplink.stats.in_flight == 3, what="three events in flight")
    hub_side = probe([])
    for junk in (
        b"",
        b"\x00\xff",
        b"{}",
        b'{"event_ids": ["not-hex"]}',
        b'{"event_ids": "' + events[0].event_id.encode() + b'"}',
        b'{"v": 1, "event_ids": [], "more": 1}',
        b'{"event_ids": ["' + b"f" * 32 + b'"]}',  # well formed, but for no event of ours
    ):
        hub_side.publish(ACK, junk)
    hub_side.publish(ACK, b'{"event_ids": ["' + events[1].event_id.encode() + b'"]}')
    wait_for(lambda: journal.pending_count() == 2, what="the good ack")
    assert [e.event_id for e in journal.pending()] == [events[0].event_id, events[2].event_id]
    assert uplink.connected and uplink.stats.connects == 1
    assert uplink.stats.acked == 1
    assert "ignored a bad ack" in caplog.text


# -- facility state --------------------------------------------------------------------------


def test_facility_state_reaches_the_node_and_junk_does_not(
    journal: Journal,
    make_uplink: Callable[..., Uplink],
    node: FakeNode,
    probe: Callable[..., MqttProbe],
    wait_for: WaitFor,
) -> None:
    hub_side = probe([])
    retained = FacilityState(facility_id="f1", occupancy=10, capacity=50)
    hub_side.publish(STATE, retained.dumps(), retain=True)
    uplink = make_uplink(journal)
    wait_for(lambda: node.seen_states() == [retained], what="the retained state")

    hub_side.publish(STATE, b"garbage")
    hub_side.publish(STATE, FacilityState(facility_id="other", occupancy=1).dumps())
    full = FacilityState(facility_id="f1", occupancy=50, capacity=50, full=True)
    hub_side.publish(STATE, full.dumps())
    wait_for(lambda: node.seen_states()[-1] == full, what="the full state")
    assert all(s.facility_id == "f1" for s in node.seen_states())
    assert uplink.connected and uplink.stats.connects == 1
