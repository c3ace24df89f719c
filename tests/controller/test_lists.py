"""The node's side of list delivery: the hub's retained trust and status lists are checked,
written atomically to the state directory and loaded; anything else changes nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPin

from controller.config import NodeConfig
from controller.lists import InUse, ListReceiver, kind_of
from controller.node import Node
from firmware.synthetic import PRESETS, SyntheticSource
from protocol import passes, topics
from protocol.events import NodeStatus
from protocol.status import Status
from protocol.statuslist import StatusList
from protocol.trust import SigningKey, TrustList
from provisioning.mosquitto import Mosquitto

if TYPE_CHECKING:
    from tests.controller.conftest import MqttProbe, WaitFor

FACILITY = "f1"  # the facility of the conftest's broker helpers

OLD_KEY = SigningKey.generate()
NEW_KEY = SigningKey.generate()
SUBJECT = bytes.fromhex("0123456789abcdef01234567")


def trust(*keys: SigningKey, updated_at: int) -> TrustList:
    return TrustList.of([k.trusted() for k in keys], updated_at=updated_at)


def statuses(status: Status, changed_at: int, updated_at: int) -> StatusList:
    return StatusList.from_items([(SUBJECT, status, changed_at)], updated_at=updated_at)


class Lists:
    """A receiver on a state directory, with the lists 'in use' kept as a node keeps them."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.trust_path = state_dir / "trust.json"
        self.status_path = state_dir / "status.psl"
        self.in_use = InUse(trust(OLD_KEY, updated_at=1000), StatusList(updated_at=None))
        self.in_use.trust.save(self.trust_path)
        self.reloads = 0
        self.applied: list[str] = []
        self.receiver = ListReceiver(
            self.trust_path,
            self.status_path,
            in_use=lambda: self.in_use,
            reload=self.reload,
            applied=self.applied.append,
        )

    def reload(self) -> None:
        self.reloads += 1
        new_statuses = (
            StatusList.load(self.status_path) if self.status_path.exists() else StatusList()
        )
        self.in_use = InUse(TrustList.load(self.trust_path), new_statuses)


@pytest.fixture
def lists(tmp_path: Path) -> Lists:
    return Lists(tmp_path / "state")


def test_a_good_list_is_written_and_loaded(lists: Lists) -> None:
    payload = trust(OLD_KEY, NEW_KEY, updated_at=2000).dumps().encode()
    assert lists.receiver.apply("trust", payload)
    assert lists.trust_path.read_bytes() == payload
    assert set(lists.in_use.trust.keys) == {OLD_KEY.kid, NEW_KEY.kid}
    psl = statuses(Status.BLACK, 1500, 2000).dumps()
    assert lists.receiver.apply("status", psl)
    assert lists.status_path.read_bytes() == psl
    assert (lists.reloads, lists.applied) == (2, ["trust", "status"])
    # No temporary file is left behind.
    assert sorted(p.name for p in lists.trust_path.parent.iterdir()) == ["status.psl", "trust.json"]


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("trust", b"not json"),
        ("trust", b'{"format": "pintu-trust", "v": 2, "keys": []}'),
        ("trust", b""),  # a cleared retained message
        ("status", b"PSL1\x00\x00\x00\x02" + bytes(8) + bytes(17)),  # one record of two
        ("status", b"JUNK" + bytes(12)),
        ("status", b"PSL1\x00\x00\x00\x01" + bytes(8) + bytes(12) + b"\x09" + bytes(4)),
    ],
    ids=["not json", "wrong version", "empty", "truncated", "bad magic", "unknown status"],
)
def test_junk_changes_nothing(lists: Lists, kind: Any, payload: bytes) -> None:
    before = lists.trust_path.read_bytes()
    assert not lists.receiver.apply(kind, payload)
    assert lists.trust_path.read_bytes() == before and not lists.status_path.exists()
    assert lists.reloads == 0 and lists.receiver.stats.ignored == 1


def test_a_forged_key_id_is_junk(lists: Lists) -> None:
    doc = trust(NEW_KEY, updated_at=2000).to_json()
    doc["keys"][0]["kid"] = OLD_KEY.kid_hex  # someone else's key under a trusted id
    assert not lists.receiver.apply("trust", json.dumps(doc).encode())
    assert set(lists.in_use.trust.keys) == {OLD_KEY.kid}


def test_an_older_or_the_same_list_is_not_applied(lists: Lists) -> None:
    newer = trust(OLD_KEY, NEW_KEY, updated_at=3000).dumps().encode()
    assert lists.receiver.apply("trust", newer)
    # A replayed older copy (say, before a revocation) must not undo the newer one.
    assert not lists.receiver.apply("trust", trust(OLD_KEY, updated_at=2000).dumps().encode())
    assert not lists.receiver.apply("trust", newer)  # the one in use: nothing to do
    # Same time, other content: the hub says so, and it is taken.
    revoked = trust(OLD_KEY, NEW_KEY, updated_at=3000).revoke(OLD_KEY.kid)
    assert lists.receiver.apply("trust", revoked.dumps().encode())
    assert lists.in_use.trust.keys[OLD_KEY.kid].revoked
    assert lists.reloads == 2


def test_only_the_lists_topics_are_taken() -> None:
    assert kind_of(topics.lists_trust(FACILITY)) == "trust"
    assert kind_of(topics.lists_status(FACILITY)) == "status"
    assert kind_of(f"pintu/{FACILITY}/lists/other") is None


# --- a whole node on a real broker ---------------------------------------------------------
PINS: dict[str, Any] = {
    "pin_factory": "mock",
    "leds": {"kind": "three", "red": 17, "yellow": 27, "green": 22},
    "buzzer": {"pin": 18},
    "relay": {"pin": 5, "active_high": True, "pulse_ms": 150, "wiring": "fail_secure"},
}


@pytest.fixture
def node(tmp_path: Path, broker: Mosquitto) -> Iterator[Node]:
    previous = Device.pin_factory
    Device.pin_factory = MockFactory(pin_class=MockPin)
    state_dir = tmp_path / "node"
    state_dir.mkdir()
    # Two days old: the node starts degraded, its trust list is stale.
    trust(OLD_KEY, updated_at=int(time.time()) - 2 * 86_400).save(state_dir / "trust.json")
    config = NodeConfig.model_validate(
        {
            "node_id": "n1",
            "facility_id": FACILITY,
            "door_id": "d1",
            "direction": "entry",
            "state_dir": str(state_dir),
            "source": {"kind": "synthetic", "preset": "easy", "fps": 10},
            "pins": PINS,
            "gate": {"passage": "assume", "signal_s": 0.1},
            "mqtt": {
                "host": broker.host,
                "port": broker.port,
                "reconnect_min_s": 0.05,
                "reconnect_max_s": 0.5,
            },
        }
    )
    running = Node(config, source=SyntheticSource(PRESETS["easy"], seed=1, fps=10))
    running.start()
    yield running
    running.stop()
    Device.pin_factory.reset()
    Device.pin_factory = previous


def test_the_node_takes_the_hubs_lists_and_decides_by_them(
    node: Node, probe: Callable[..., MqttProbe], wait_for: WaitFor
) -> None:
    watcher = probe([topics.node_status(FACILITY, "n1")])
    hub = probe([], name="hub")
    now = int(time.time())
    issued = now - 60
    text = passes.issue(NEW_KEY, SUBJECT, Status.GREEN, 2, issued, issued + 3600)
    assert node.policy.decide(text, "entry", now).reason == "unknown_key"
    hub.publish(
        topics.lists_trust(FACILITY),
        trust(OLD_KEY, NEW_KEY, updated_at=now).dumps().encode(),
        retain=True,
    )
    wait_for(lambda: NEW_KEY.kid in node.policy.trust.keys, what="the new trust list")
    assert node.policy.decide(text, "entry", now).admit
    hub.publish(
        topics.lists_status(FACILITY), statuses(Status.BLACK, now, now).dumps(), retain=True
    )
    wait_for(lambda: len(node.policy.statuses) == 1, what="the new status list")
    decision = node.policy.decide(text, "entry", now + 1)
    assert (decision.admit, decision.reason) == (False, "status_black")

    # The node tells the hub at once that its lists are fresh again.
    def fresh() -> bool:
        payloads = watcher.payloads(topics.node_status(FACILITY, "n1"))
        if not payloads:
            return False
        status: NodeStatus = NodeStatus.parse(payloads[-1])
        ages = (status.trust_list_age_s, status.status_list_age_s)
        return all(a is not None and a < 600 for a in ages) and status.state == "online"

    wait_for(fresh, what="a status with fresh list ages")
    # Junk on both topics (even retained) changes nothing.
    assert node.lists is not None
    ignored = node.lists.stats.ignored
    hub.publish(topics.lists_trust(FACILITY), b"{junk", retain=True)
    hub.publish(topics.lists_status(FACILITY), b"PSL1junk", retain=True)
    wait_for(
        lambda: node.lists is not None and node.lists.stats.ignored == ignored + 2,
        what="both junk copies ignored",
    )
    assert NEW_KEY.kid in node.policy.trust.keys and len(node.policy.statuses) == 1
    assert TrustList.load(node.config.path(node.config.trust_list)).keys.keys() == {
        OLD_KEY.kid,
        NEW_KEY.kid,
    }
    assert node.policy.decide(text, "entry", now + 1).reason == "status_black"
    hub.publish(topics.lists_trust(FACILITY), b"", retain=True)
    hub.publish(topics.lists_status(FACILITY), b"", retain=True)
