"""The node's side of list delivery: the hub's retained trust and status lists are believed
only when signed by a list key the door pinned, then checked, written atomically to the
state directory and loaded; anything else changes nothing and is reported. A rotation of
the list key is followed when a pinned key signed it."""

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
from protocol.signedlist import Kind, ListKeys, seal, statement
from protocol.status import Status
from protocol.statuslist import StatusList
from protocol.trust import SigningKey, TrustList
from provisioning.mosquitto import Mosquitto

from ..signing import flipped

if TYPE_CHECKING:
    from tests.controller.conftest import MqttProbe, WaitFor

FACILITY = "f1"  # the facility of the conftest's broker helpers

OLD_KEY = SigningKey.generate()
NEW_KEY = SigningKey.generate()
SUBJECT = bytes.fromhex("0123456789abcdef01234567")
# The registry's list keys: the first one, the one it rotates to, and an attacker's.
LIST_KEY = SigningKey.generate()
NEXT_LIST_KEY = SigningKey.generate()
ROGUE_KEY = SigningKey.generate()
PINNED = ListKeys.of(1, [LIST_KEY.public_key], 1000)
ROTATED = ListKeys.of(2, [NEXT_LIST_KEY.public_key], 2000)
CHAIN = statement(LIST_KEY, PINNED) + statement(LIST_KEY, ROTATED)


def signed(kind: Kind, payload: bytes | str, key: SigningKey = LIST_KEY) -> bytes:
    return seal(key, kind, payload.encode() if isinstance(payload, str) else payload)


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
        self.keys_path = state_dir / "list-keys.json"
        self.in_use = InUse(trust(OLD_KEY, updated_at=1000), StatusList(updated_at=None))
        self.in_use.trust.save(self.trust_path)
        PINNED.save(self.keys_path)
        self.reloads = 0
        self.applied: list[str] = []
        self.problems: dict[str, str] = {}
        self.receiver = ListReceiver(
            self.trust_path,
            self.status_path,
            self.keys_path,
            in_use=lambda: self.in_use,
            reload=self.reload,
            applied=self.applied.append,
            problem=self.problem,
        )

    def problem(self, kind: str, text: str | None) -> None:
        if text is None:
            self.problems.pop(kind, None)
        else:
            self.problems[kind] = text

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
    assert lists.receiver.apply("trust", signed(Kind.TRUST, payload))
    # The door keeps the list itself; its signature was checked on the way in.
    assert lists.trust_path.read_bytes() == payload
    assert set(lists.in_use.trust.keys) == {OLD_KEY.kid, NEW_KEY.kid}
    psl = statuses(Status.BLACK, 1500, 2000).dumps()
    assert lists.receiver.apply("status", signed(Kind.STATUS, psl))
    assert lists.status_path.read_bytes() == psl
    assert (lists.reloads, lists.applied) == (2, ["trust", "status"])
    # No temporary file is left behind.
    assert sorted(p.name for p in lists.trust_path.parent.iterdir()) == [
        "list-keys.json",
        "status.psl",
        "trust.json",
    ]
    assert lists.problems == {}


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
    # Signed or not: junk is junk.
    for copy in (payload, signed(Kind.TRUST if kind == "trust" else Kind.STATUS, payload)):
        assert not lists.receiver.apply(kind, copy)
    assert lists.trust_path.read_bytes() == before and not lists.status_path.exists()
    assert lists.reloads == 0 and lists.receiver.stats.ignored == 2


def test_a_forged_key_id_is_junk(lists: Lists) -> None:
    doc = trust(NEW_KEY, updated_at=2000).to_json()
    doc["keys"][0]["kid"] = OLD_KEY.kid_hex  # someone else's key under a trusted id
    assert not lists.receiver.apply("trust", signed(Kind.TRUST, json.dumps(doc)))
    assert set(lists.in_use.trust.keys) == {OLD_KEY.kid}


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("unsigned", "unsigned"),
        ("signed by a key not pinned", "unknown_key"),
        ("signed by a pass key", "unknown_key"),
        ("signature changed", "bad_signature"),
        ("signed as a status list", "wrong_kind"),
    ],
)
def test_a_list_not_signed_by_a_pinned_key_is_refused_and_reported(
    lists: Lists, how: str, reason: str
) -> None:
    """Finding 1: a list with the attacker's key, correctly formed and newer than the one in
    use, was applied by any door it reached."""
    forged = trust(OLD_KEY, ROGUE_KEY, updated_at=2000).dumps().encode()
    payload = {
        "unsigned": forged,
        "signed by a key not pinned": signed(Kind.TRUST, forged, ROGUE_KEY),
        "signed by a pass key": signed(Kind.TRUST, forged, OLD_KEY),
        "signature changed": flipped(signed(Kind.TRUST, forged)),
        "signed as a status list": signed(Kind.STATUS, forged),
    }[how]
    before = lists.trust_path.read_bytes()
    assert not lists.receiver.apply("trust", payload)
    assert lists.trust_path.read_bytes() == before and lists.reloads == 0
    assert ROGUE_KEY.kid not in lists.in_use.trust.keys
    assert lists.receiver.stats.last_reason == reason
    assert "refused a trust list from the hub" in lists.problems["trust"]
    # The registry's next list clears the report.
    genuine = signed(Kind.TRUST, trust(OLD_KEY, updated_at=2001).dumps())
    assert lists.receiver.apply("trust", genuine)
    assert lists.problems == {}


def test_a_door_that_pinned_no_list_key_believes_no_list(tmp_path: Path) -> None:
    lists = Lists(tmp_path / "state")
    lists.keys_path.unlink()
    receiver = ListReceiver(
        lists.trust_path,
        lists.status_path,
        lists.keys_path,
        in_use=lambda: lists.in_use,
        reload=lists.reload,
        problem=lists.problem,
    )
    assert not receiver.apply("trust", signed(Kind.TRUST, trust(NEW_KEY, updated_at=2000).dumps()))
    assert receiver.stats.last_reason == "no_pinned_key"
    # Nor does the hub's chain give it a first key.
    assert not receiver.apply("keys", CHAIN)
    assert not lists.keys_path.exists() and lists.reloads == 0


def test_a_rotation_signed_by_the_pinned_key_is_followed(lists: Lists) -> None:
    newer = trust(OLD_KEY, NEW_KEY, updated_at=2000).dumps()
    # The new key's list before the chain that names it: kept aside, not believed.
    assert not lists.receiver.apply("trust", signed(Kind.TRUST, newer, NEXT_LIST_KEY))
    assert lists.receiver.stats.last_reason == "unknown_key"
    assert NEW_KEY.kid not in lists.in_use.trust.keys
    assert lists.receiver.apply("keys", CHAIN)
    assert ListKeys.load(lists.keys_path) == ROTATED
    # ... and taken once the rotation is pinned.
    assert NEW_KEY.kid in lists.in_use.trust.keys
    assert lists.applied == ["keys", "trust"] and lists.problems == {}
    # From now on only the new key's lists are believed.
    older_key_list = signed(Kind.TRUST, trust(OLD_KEY, updated_at=3000).dumps(), LIST_KEY)
    assert not lists.receiver.apply("trust", older_key_list)
    assert lists.receiver.stats.last_reason == "unknown_key"
    # The same chain again changes nothing.
    assert not lists.receiver.apply("keys", CHAIN)


def test_a_rotation_no_pinned_key_signed_is_refused(lists: Lists) -> None:
    rogue = ListKeys.of(2, [ROGUE_KEY.public_key], 2000)
    for chain in (
        statement(LIST_KEY, PINNED) + statement(ROGUE_KEY, rogue),  # the attacker's own
        statement(OLD_KEY, rogue),  # signed by a pass key
        statement(LIST_KEY, PINNED) + flipped(statement(LIST_KEY, rogue)),  # changed
        ListKeys.of(2, [ROGUE_KEY.public_key], 2000).dumps().encode(),  # not signed at all
    ):
        assert not lists.receiver.apply("keys", chain)
        assert "refused a keys list from the hub" in lists.problems["keys"]
    assert ListKeys.load(lists.keys_path) == PINNED
    # A list the attacker signed is still refused.
    forged = trust(OLD_KEY, ROGUE_KEY, updated_at=2000).dumps()
    assert not lists.receiver.apply("trust", signed(Kind.TRUST, forged, ROGUE_KEY))
    assert ROGUE_KEY.kid not in lists.in_use.trust.keys


def test_an_older_or_the_same_list_is_not_applied(lists: Lists) -> None:
    newer = signed(Kind.TRUST, trust(OLD_KEY, NEW_KEY, updated_at=3000).dumps())
    assert lists.receiver.apply("trust", newer)
    # A replayed older copy (say, before a revocation) must not undo the newer one.
    replayed = signed(Kind.TRUST, trust(OLD_KEY, updated_at=2000).dumps())
    assert not lists.receiver.apply("trust", replayed)
    assert not lists.receiver.apply("trust", newer)  # the one in use: nothing to do
    # Same time, other content: the registry says so, and it is taken.
    revoked = trust(OLD_KEY, NEW_KEY, updated_at=3000).revoke(OLD_KEY.kid)
    assert lists.receiver.apply("trust", signed(Kind.TRUST, revoked.dumps()))
    assert lists.in_use.trust.keys[OLD_KEY.kid].revoked
    assert lists.reloads == 2
    assert lists.problems == {}  # an older copy is no attack: not reported


def test_only_the_lists_topics_are_taken() -> None:
    assert kind_of(topics.lists_trust(FACILITY)) == "trust"
    assert kind_of(topics.lists_status(FACILITY)) == "status"
    assert kind_of(topics.lists_keys(FACILITY)) == "keys"
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
    PINNED.save(state_dir / "list-keys.json")
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
        signed(Kind.TRUST, trust(OLD_KEY, NEW_KEY, updated_at=now).dumps()),
        retain=True,
    )
    wait_for(lambda: NEW_KEY.kid in node.policy.trust.keys, what="the new trust list")
    assert node.policy.decide(text, "entry", now).admit
    hub.publish(
        topics.lists_status(FACILITY),
        signed(Kind.STATUS, statuses(Status.BLACK, now, now).dumps()),
        retain=True,
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
    # ... and the node says so in its status until the registry's next list.
    wait_for(
        lambda: any(
            "refused a trust list" in p
            for p in NodeStatus.parse(
                watcher.payloads(topics.node_status(FACILITY, "n1"))[-1]
            ).problems
        ),
        what="the refusal reported in the node's status",
    )
    hub.publish(topics.lists_trust(FACILITY), b"", retain=True)
    hub.publish(topics.lists_status(FACILITY), b"", retain=True)
