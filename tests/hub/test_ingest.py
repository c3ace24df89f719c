"""The hub's MQTT side against a real Mosquitto, with plain paho clients as door nodes."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from hub.errors import CommandTimeout
from hub.records import BatchResult
from hub.store.sqlite import SqliteStore
from protocol import topics
from protocol.events import CommandReply, Event, FacilityState, NodeState, NodeStatus, Passages

FACILITY = "mall-a"
Factory = Callable[..., Any]


def state_of(listener: Any) -> FacilityState:
    state: FacilityState = FacilityState.parse(listener.last(topics.facility_state(FACILITY)))
    return state


def stored_ids(runner: Any) -> list[str]:
    page = runner.hub.store.events(facility_id=FACILITY, limit=1000)
    return [e.event.event_id for e in page.events]


def test_events_are_stored_once_acked_and_counted(
    make_config: Factory, run_hub: Factory, clients: Factory
) -> None:
    runner = run_hub(make_config())
    main, north = clients(), clients(node_id="north-1", door_id="north")
    sent = main.send(
        main.event("entry"),
        main.event("entry"),
        main.event("manual", direction="entry"),
        main.event("exit"),
        main.event("denied", admit=False, reason="expired"),
        main.event("not_passed"),
        main.event("manual", direction="exit"),
    )
    sent += north.send(north.event("entry"), north.event("node_start"))
    main.wait_acked(sent[:7])
    north.wait_acked(sent[7:])
    store = runner.hub.store
    occupancy = store.occupancy(FACILITY)
    # entry + entry + manual in - exit - manual out, plus one through the north door
    assert occupancy.occupancy == 2
    assert occupancy.zones == {"north": 1}
    assert sorted(stored_ids(runner)) == sorted(e.event_id for e in sent)
    # Each node gets acks for its own events only.
    assert set(main.acked()) == {e.event_id for e in sent[:7]}
    assert set(north.acked()) == {e.event_id for e in sent[7:]}


def test_an_exit_with_nobody_inside_is_flagged_not_counted(
    make_config: Factory, run_hub: Factory, clients: Factory
) -> None:
    runner = run_hub(make_config())
    node = clients()
    sent = node.send(node.event("exit"), node.event("entry"))
    node.wait_acked(sent)
    store = runner.hub.store
    assert store.occupancy(FACILITY).occupancy == 1
    flagged = store.event(sent[0].event_id)
    assert flagged is not None
    assert (flagged.delta, flagged.flag) == (0, "exit_without_entry")
    assert [a.kind for a in store.alerts(FACILITY)] == ["exit_without_entry"]


def test_duplicates_are_stored_once_and_acked_every_time(
    make_config: Factory, run_hub: Factory, clients: Factory
) -> None:
    runner = run_hub(make_config())
    node = clients()
    first = node.emit("entry")
    node.wait_acked([first])
    node.send(first)  # the same message again
    node.send(first.model_copy(update={"late": True}))  # a resend from the journal
    node.wait_for(lambda: node.acked().count(first.event_id) == 3, what="three acks")
    assert stored_ids(runner) == [first.event_id]
    assert runner.hub.store.occupancy(FACILITY).occupancy == 1
    assert runner.hub.metrics.duplicates.value() == 2
    assert runner.hub.metrics.events_in.value(facility=FACILITY) == 1


def test_junk_changes_nothing_and_is_counted(
    make_config: Factory, run_hub: Factory, clients: Factory, wait_until: Factory
) -> None:
    runner = run_hub(make_config())
    node = clients()
    rogue = clients(topics=[])
    own = node.events_topic
    rogue.publish(own, b"not json at all")
    rogue.publish(own, b'{"v": 1, "kind": "entry"}')
    rogue.publish(own, b"\xff\xfe\x00binary")
    rogue.publish(own, b'{"pad": "' + b"x" * 20_000 + b'"}')
    rogue.publish(own, b"{}")
    unknown_field = {**json.loads(node.event("entry").dumps()), "colour": "green"}
    rogue.publish(own, json.dumps(unknown_field).encode())
    # A valid event, but it claims to come from another node, or another facility.
    rogue.publish(own, node.event("entry", node_id="north-1").dumps())
    rogue.publish(own, node.event("entry", facility_id="mall-b").dumps())
    # Another facility's topic: this hub does not serve it.
    elsewhere = node.event("entry", facility_id="mall-b")
    rogue.publish(topics.node_events("mall-b", "main-1"), elsewhere.dumps())
    # A door the facility does not have, and a node not listed for the door it claims.
    rogue.publish(own, node.event("entry", door_id="back").dumps())
    rogue.publish(own, node.event("entry", door_id="north").dumps())
    rejected = runner.hub.metrics.rejected
    reasons = {
        "not_json": 2,
        "schema": 3,
        "oversize": 1,
        "topic_mismatch": 2,
        "unknown_facility": 1,
        "unknown_door": 1,
        "node_not_allowed": 1,
    }
    wait_until(
        lambda: all(rejected.value(reason=r) == n for r, n in reasons.items()),
        what=f"rejections {reasons}",
    )
    good = node.emit("entry")
    node.wait_acked([good])
    assert node.acked() == [good.event_id]
    assert stored_ids(runner) == [good.event_id]
    assert runner.hub.store.occupancy(FACILITY).occupancy == 1
    text = runner.hub.metrics_text()
    assert 'pintu_hub_messages_rejected_total{reason="oversize"} 1' in text


def test_a_seq_gap_raises_an_alert_that_the_late_event_clears(
    make_config: Factory, run_hub: Factory, clients: Factory
) -> None:
    runner = run_hub(make_config())
    node = clients()
    one, two, three = node.event("entry"), node.event("entry"), node.event("exit")
    node.send(one, three)
    node.wait_acked([one, three])
    store = runner.hub.store
    [gap] = store.gaps(FACILITY)
    assert (gap.node_id, gap.first_seq, gap.last_seq, gap.missing) == ("main-1", 2, 2, 1)
    [alert] = store.alerts(FACILITY)
    assert alert.kind == "seq_gap" and alert.node_id == "main-1"
    assert runner.hub.metrics.seq_gaps.value(facility=FACILITY) == 1
    node.send(two.model_copy(update={"late": True}))
    node.wait_acked([two])
    assert store.gaps(FACILITY) == []
    assert store.alerts(FACILITY) == []
    [cleared] = store.alerts(FACILITY, open_only=False)
    assert cleared.cleared_at is not None


def test_many_gaps_of_a_batch_are_counted_each_and_logged_once(
    make_config: Factory, run_hub: Factory, clients: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    runner = run_hub(make_config())
    node = clients()
    events = [node.event("entry") for _ in range(7)]
    sent = events[0::2]  # seq 1, 3, 5, 7: 2, 4 and 6 missing
    with caplog.at_level(logging.WARNING, logger="hub.ingest.mqtt"):
        node.send(*sent)
        node.wait_acked(sent)
    assert runner.hub.metrics.seq_gaps.value(facility=FACILITY) == 3
    assert [(g.first_seq, g.missing) for g in runner.hub.store.gaps(FACILITY)] == [
        (2, 1),
        (4, 1),
        (6, 1),
    ]
    # However the four were dealt into batches, each batch logs a line for the node.
    lines = [r.getMessage() for r in caplog.records if "missing" in r.getMessage()]
    assert 1 <= len(lines) <= runner.hub.metrics.batch_size.count
    # The line of one batch with three gaps:
    caplog.clear()
    gaps = runner.hub.store.gaps(FACILITY)
    with caplog.at_level(logging.WARNING, logger="hub.ingest.mqtt"):
        runner.hub.ingest._after_store([], [], BatchResult(gaps=gaps))
    assert [r.getMessage() for r in caplog.records] == [
        f"node {FACILITY}/main-1: seq 2 to 2 missing "
        "(and 2 more gaps up to seq 6; 3 events missing in all)"
    ]
    assert runner.hub.metrics.seq_gaps.value(facility=FACILITY) == 6


def test_full_and_not_full_are_retained_for_the_nodes(
    make_config: Factory, run_hub: Factory, clients: Factory
) -> None:
    run_hub(make_config())
    node = clients()
    node.wait_acked(node.send(*(node.event("entry") for _ in range(3))))
    # A node that connects later still gets the state: it is retained.
    late_listener = clients(topics=[topics.facility_state(FACILITY)])
    late_listener.wait_for(lambda: state_of(late_listener).occupancy == 3, what="occupancy 3")
    state = state_of(late_listener)
    assert (state.capacity, state.full) == (3, True)
    node.wait_acked([node.emit("exit")])
    late_listener.wait_for(lambda: state_of(late_listener).occupancy == 2, what="occupancy 2")
    assert state_of(late_listener).full is False


def test_alarms_raise_alerts(make_config: Factory, run_hub: Factory, clients: Factory) -> None:
    runner = run_hub(make_config())
    node = clients()
    sent = node.send(
        node.event("alarm", detail="black_pass", signal="black"),
        node.event("alarm", detail="forced_door"),
        node.event("alarm", detail="camera_failed", message="no frames for 5 s"),
        node.event("alarm", detail="camera_failed"),
    )
    node.wait_acked(sent)
    alerts = runner.hub.store.alerts(FACILITY)
    assert sorted(a.kind for a in alerts) == ["black_pass", "camera_failed", "forced_door"]
    camera = next(a for a in alerts if a.kind == "camera_failed")
    assert camera.count == 2  # a repeat adds to the open alert
    assert runner.hub.store.occupancy(FACILITY).occupancy == 0
    assert runner.hub.metrics.alerts.value(kind="black_pass") == 1


def test_node_offline_raises_an_alert_and_coming_back_clears_it(
    make_config: Factory, run_hub: Factory, clients: Factory, wait_until: Factory
) -> None:
    runner = run_hub(make_config())
    node = clients()
    status_topic = topics.node_status(FACILITY, "main-1")
    store = runner.hub.store
    online = NodeStatus(state=NodeState.ONLINE, trust_list_age_s=60.0, direction="both")
    node.publish(status_topic, online.dumps(), retain=True)
    online_gauge = runner.hub.metrics.nodes_online
    wait_until(lambda: online_gauge.value(facility=FACILITY) == 1, what="counted online")
    assert [n.state for n in store.nodes(FACILITY)] == ["online"]
    assert store.alerts(FACILITY) == []
    node.publish(status_topic, NodeStatus(state=NodeState.OFFLINE).dumps(), retain=True)
    wait_until(lambda: [a.kind for a in store.alerts(FACILITY)] == ["node_offline"], what="alert")
    [view] = store.nodes(FACILITY)
    assert (view.state, view.door_id) == ("offline", "main")
    assert runner.hub.metrics.nodes_online.value(facility=FACILITY) == 0
    node.publish(status_topic, online.dumps(), retain=True)
    wait_until(lambda: store.alerts(FACILITY) == [], what="alert cleared")
    [cleared] = store.alerts(FACILITY, open_only=False)
    assert cleared.cleared_at is not None and cleared.acknowledged_at is None


def test_stale_lists_raise_an_alert(
    make_config: Factory, run_hub: Factory, clients: Factory, wait_until: Factory
) -> None:
    runner = run_hub(make_config(stale_lists_after_s=3600))
    node = clients()
    stale = NodeStatus(state=NodeState.DEGRADED, status_list_age_s=7200.0, problems=["lists"])
    node.publish(topics.node_status(FACILITY, "main-1"), stale.dumps())
    store = runner.hub.store
    wait_until(lambda: [a.kind for a in store.alerts(FACILITY)] == ["stale_lists"], what="alert")
    fresh = NodeStatus(state=NodeState.ONLINE, status_list_age_s=10.0)
    node.publish(topics.node_status(FACILITY, "main-1"), fresh.dumps())
    wait_until(lambda: store.alerts(FACILITY) == [], what="alert cleared")


def test_home_assistant_discovery_and_hub_availability(
    make_config: Factory, run_hub: Factory, clients: Factory
) -> None:
    run_hub(make_config())
    listener = clients(topics=["homeassistant/#", topics.hub_status(FACILITY)])
    sensor = json.loads(listener.last("homeassistant/sensor/pintu_mall-a_occupancy/config"))
    assert sensor["state_topic"] == topics.facility_state(FACILITY)
    assert sensor["value_template"] == "{{ value_json.occupancy }}"
    assert sensor["unit_of_measurement"] == "people"
    assert sensor["availability"][0]["topic"] == topics.hub_status(FACILITY)
    door = json.loads(listener.last("homeassistant/binary_sensor/pintu_mall-a_main-1/config"))
    assert door["state_topic"] == topics.node_status(FACILITY, "main-1")
    assert door["payload_on"] == "online"
    assert "value_json.state" in door["value_template"]
    assert listener.last("homeassistant/binary_sensor/pintu_mall-a_north-1/config")
    hub_status = NodeStatus.parse(listener.last(topics.hub_status(FACILITY)))
    assert hub_status.state == NodeState.ONLINE


def test_stopping_marks_the_hub_offline(
    make_config: Factory, run_hub: Factory, clients: Factory
) -> None:
    runner = run_hub(make_config())
    runner.stop()
    listener = clients(topics=[topics.hub_status(FACILITY)])
    status = NodeStatus.parse(listener.last(topics.hub_status(FACILITY)))
    assert status.state == NodeState.OFFLINE


def test_metrics_count_events_acks_and_occupancy(
    make_config: Factory, run_hub: Factory, clients: Factory
) -> None:
    runner = run_hub(make_config())
    node = clients()
    node.wait_acked(node.send(node.event("entry"), node.event("entry")))
    text = runner.hub.metrics_text()
    assert 'pintu_hub_events_total{facility="mall-a"} 2' in text
    assert 'pintu_hub_occupancy{facility="mall-a"} 2' in text
    assert 'pintu_hub_capacity{facility="mall-a"} 3' in text
    assert "pintu_hub_ack_latency_seconds_count 2" in text
    assert 'pintu_hub_ack_latency_seconds_bucket{le="+Inf"} 2' in text
    assert "pintu_hub_mqtt_connected 1" in text
    assert "# TYPE pintu_hub_messages_rejected_total counter" in text


def test_a_command_is_answered_or_times_out(
    make_config: Factory, run_hub: Factory, clients: Factory
) -> None:
    runner = run_hub(make_config())
    node = clients(topics=[topics.node_cmd(FACILITY, "main-1")])

    def answer(message: mqtt.MQTTMessage) -> None:
        request = json.loads(message.payload)
        reply = CommandReply(id=request["id"], ok=True, result={"cmd": request["cmd"]})
        node.client.publish(topics.node_cmd_resp(FACILITY, "main-1"), reply.dumps(), qos=1)

    node.hook = answer
    reply = runner.call(runner.hub.command(FACILITY, "main-1", "ping", user="guard1"))
    assert reply.ok and reply.result == {"cmd": "ping"}
    opened = runner.call(runner.hub.open_door(FACILITY, "main", "guard1", "visitor without phone"))
    assert opened.result == {"cmd": "open"}
    audit = runner.hub.store.audit_log(user="guard1")
    assert [a.action for a in audit] == ["command.open", "command.ping"]
    with pytest.raises(CommandTimeout, match="north-1"):
        runner.call(runner.hub.command(FACILITY, "north-1", "ping", timeout_s=0.3))
    assert runner.hub.metrics.commands.value(result="timeout") == 1


def test_live_listeners_get_events_occupancy_and_alerts(
    make_config: Factory, run_hub: Factory, clients: Factory
) -> None:
    runner = run_hub(make_config())
    hub = runner.hub

    async def subscribe() -> Any:
        return hub.live.subscribe()

    subscription = runner.call(subscribe())
    node = clients()
    sent = node.send(node.event("entry"), node.event("alarm", detail="black_pass"))
    node.wait_acked(sent)

    async def collect() -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        while {"event", "occupancy", "alert"} - {m["type"] for m in seen}:
            seen.append(await subscription.get())
        subscription.close()
        return seen

    messages = runner.call(collect())
    events = [m for m in messages if m["type"] == "event"]
    assert [e["event_id"] for e in events] == [e.event_id for e in sent]
    occupancy = next(m for m in messages if m["type"] == "occupancy")
    assert occupancy["occupancy"] == 1 and occupancy["facility_id"] == FACILITY
    assert next(m for m in messages if m["type"] == "alert")["kind"] == "black_pass"


def test_a_restart_mid_stream_loses_nothing_and_doubles_nothing(
    make_config: Factory, run_hub: Factory, clients: Factory, wait_until: Factory
) -> None:
    config = make_config()
    first = run_hub(config)
    node = clients()
    # Alternate entries and exits: every event counts, so a lost or doubled one shows.
    during = [node.event("entry" if i % 2 == 0 else "exit") for i in range(300)]
    publisher = threading.Thread(target=node.send, args=during)
    publisher.start()
    wait_until(lambda: len(stored_ids(first)) >= 50, what="50 events stored")
    first.stop()  # while the node keeps publishing
    publisher.join(30)
    # Sent while no hub runs at all: the broker keeps them for the hub's session.
    after = node.send(*(node.event("entry") for _ in range(20)))
    second = run_hub(config)
    everything = during + after
    node.wait_acked(everything, timeout_s=20)
    wait_until(lambda: len(stored_ids(second)) >= len(everything), what="all stored")
    ids = stored_ids(second)
    assert len(ids) == len(everything)
    assert set(ids) == {e.event_id for e in everything}
    assert second.hub.store.occupancy(FACILITY).occupancy == 20
    assert second.hub.store.gaps(FACILITY) == []


def test_a_short_outage_raises_no_alert(
    make_config: Factory, run_hub: Factory, clients: Factory, wait_until: Factory
) -> None:
    runner = run_hub(make_config(node_offline_after_s=1.0))
    node = clients()
    status_topic = topics.node_status(FACILITY, "main-1")
    store, ingest = runner.hub.store, runner.hub.ingest

    def state() -> list[str]:
        return [n.state for n in store.nodes(FACILITY)]

    node.publish(status_topic, NodeStatus(state=NodeState.OFFLINE).dumps(), retain=True)
    wait_until(lambda: state() == ["offline"], what="offline")
    node.publish(status_topic, NodeStatus(state=NodeState.ONLINE).dumps(), retain=True)
    wait_until(lambda: state() == ["online"], what="back online")
    assert ingest._offline_due == {}  # the pending alert was called off
    assert store.alerts(FACILITY, open_only=False) == []
    node.publish(status_topic, NodeStatus(state=NodeState.OFFLINE).dumps(), retain=True)
    wait_until(lambda: [a.kind for a in store.alerts(FACILITY)] == ["node_offline"], what="alert")
    [alert] = store.alerts(FACILITY)
    assert (alert.node_id, alert.door_id) == ("main-1", "main")
    assert (alert.created_at - store.nodes(FACILITY)[0].state_since).total_seconds() >= 0.9


def test_every_facility_has_its_hub_status_and_last_will(
    make_config: Factory, run_hub: Factory, clients: Factory
) -> None:
    facilities = [
        {"id": FACILITY, "name": "Mall A", "capacity": 3},
        {"id": "clinic", "name": "Clinic", "capacity": 5},
    ]
    runner = run_hub(make_config(facilities=facilities))
    status_topics = [topics.hub_status(FACILITY), topics.hub_status("clinic")]
    listener = clients(topics=status_topics)

    def states() -> list[NodeState | None]:
        seen = [listener.on(t) for t in status_topics]
        return [NodeStatus.parse(p[-1]).state if p else None for p in seen]

    listener.wait_for(lambda: states() == ["online", "online"], what="both online")
    clinic = clients(node_id="desk-1", door_id="desk", facility_id="clinic")
    clinic.wait_acked([clinic.emit("entry")])
    assert runner.hub.store.occupancy("clinic").occupancy == 1
    runner.stop()
    listener.wait_for(lambda: states() == ["offline", "offline"], what="both offline")


def test_events_are_parsed_strictly_and_believed_only_of_their_door(
    make_config: Factory, run_hub: Factory, clients: Factory, wait_until: Factory
) -> None:
    doors = [
        {"id": "main", "name": "Main entrance", "direction": "entry", "nodes": ["main-1"]},
        {"id": "north", "name": "North exit", "direction": "exit", "nodes": ["north-1"]},
    ]
    runner = run_hub(make_config(facility={"doors": doors, "zones": []}))
    entrance, exit_door = clients(), clients(node_id="north-1", door_id="north")
    rogue = clients(topics=[])
    green = "ab" * 12

    def tampered(node: Any, kind: str, **changes: Any) -> bytes:
        data = json.loads(node.event(kind, subject=green, admit=True, signal="green").dumps())
        data.update(changes)
        return json.dumps(data).encode()

    wrong = [
        tampered(entrance, "entry", seq="7"),
        tampered(entrance, "entry", seq=3.0),
        tampered(entrance, "entry", admit="yes"),
        tampered(entrance, "entry", admit=1),
        tampered(entrance, "entry", late="false"),
        tampered(entrance, "entry", signal="purple"),
        tampered(entrance, "entry", direction=None),
        tampered(entrance, "entry", admit=False),
        tampered(entrance, "entry", message="two\nlines"),
    ]
    for payload in wrong:
        rogue.publish(entrance.events_topic, payload)
    rogue.publish(exit_door.events_topic, tampered(exit_door, "exit", direction="entry"))
    # Well formed, but not what this door can say: an entry through an exit, an exit
    # through an entrance, a manual check-in the wrong way.
    rogue.publish(exit_door.events_topic, tampered(exit_door, "entry"))
    rogue.publish(entrance.events_topic, tampered(entrance, "exit"))
    rogue.publish(entrance.events_topic, tampered(entrance, "manual", direction="exit"))
    rejected = runner.hub.metrics.rejected
    reasons = {"schema": len(wrong) + 1, "wrong_direction": 3}
    wait_until(
        lambda: all(rejected.value(reason=r) == n for r, n in reasons.items()),
        what=f"rejections {reasons}",
    )
    good = entrance.emit("entry", subject=green, admit=True, signal="green")
    # A second later: two doors' events in one millisecond have no order but their seqs.
    later = good.ts + timedelta(seconds=1)
    left = exit_door.emit("exit", subject=green, admit=True, signal="green", ts=later)
    entrance.wait_acked([good])
    exit_door.wait_acked([left])
    assert sorted(stored_ids(runner)) == sorted([good.event_id, left.event_id])
    assert runner.hub.store.occupancy(FACILITY).occupancy == 0
    assert runner.hub.metrics.passages.value(facility=FACILITY) == 2


def test_passages_go_out_one_message_a_stored_batch(
    make_config: Factory, run_hub: Factory, clients: Factory
) -> None:
    runner = run_hub(make_config(facility={"capacity": None}))
    doors = clients(topics=[topics.facility_passages(FACILITY)])
    node = clients()
    sent = node.send(*(node.event("entry", subject=f"{i:024x}", admit=True) for i in range(60)))
    sent += node.send(node.event("denied", subject="ff" * 12, admit=False))
    node.wait_acked(sent)
    topic = topics.facility_passages(FACILITY)
    doors.wait_for(
        lambda: sum(len(Passages.parse(p).passages) for p in doors.on(topic)) >= 60,
        what="60 passages",
    )
    messages = [Passages.parse(p) for p in doors.on(topic)]
    subjects = [p.subject for m in messages for p in m.passages]
    assert sorted(subjects) == sorted(e.subject for e in sent[:60])  # none for the refusal
    assert {m.facility_id for m in messages} == {FACILITY}
    # One message for each stored batch that held passages, not one for each event.
    assert len(messages) <= runner.hub.metrics.batch_size.count


def test_the_broker_hands_the_hub_more_than_its_default_in_flight(
    make_config: Factory, run_hub: Factory, clients: Factory, tmp_path: Path, wait_until: Factory
) -> None:
    """The hub acks after each commit; with Mosquitto's default of 20 unacked messages a
    client, a batch could never hold more than 20 events. MQTT 5's Receive Maximum in the
    hub's CONNECT widens that for the hub alone."""
    config = make_config()
    store = StallingStore(tmp_path / "stalling.db")
    store.facilities = {f.id: f for f in config.facilities}
    runner = run_hub(config, store)
    node = clients()
    sent = node.send(*(node.event("node_start") for _ in range(100)))
    try:
        # The writer holds its first batch in the stalled store; the rest queue up behind.
        wait_until(
            lambda: store.holding + runner.hub.ingest._queue.qsize() >= len(sent),
            what="all 100 events handed over unacked",
        )
    finally:
        store.go.set()
    node.wait_acked(sent)


class StallingStore(SqliteStore):
    """Holds the first batch until ``go`` is set."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.go = threading.Event()
        self.holding = 0

    def store_batch(self, events: Sequence[Event], received_at: datetime | None = None) -> Any:
        if not self.go.is_set():
            self.holding = len(events)
            self.go.wait(30)
        return super().store_batch(events, received_at)
