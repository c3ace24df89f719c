"""Enrolment, revocation and replacement: the bundle, the inventory and the hub's doors."""

from __future__ import annotations

import base64
import stat
import tarfile
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller.config import parse_config
from controller.uplink import read_password
from hub.config import parse_config as parse_hub_config
from protocol import topics
from protocol.signedlist import ListKeys
from protocol.trust import SigningKey, TrustList
from provisioning import hubdoors, passwd
from provisioning.enroll import EnrolRequest, enroll, parse_broker, replace, revoke
from provisioning.errors import BundleError, InventoryError, NodeNotFoundError
from provisioning.inventory import Fleet

from .conftest import FACILITY, FacilityBroker, Peer, WaitFor

BROKER = "hub.local:1883"


def request(door: str = "main-in", direction: str = "entry", **extra: object) -> EnrolRequest:
    return EnrolRequest(FACILITY, door, direction, BROKER, **extra)  # type: ignore[arg-type]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_enrolment_writes_a_complete_private_bundle(
    broker_dir: tuple[Path, str], tmp_path: Path
) -> None:
    directory, _ = broker_dir
    trust = tmp_path / "trust.json"
    TrustList.of([SigningKey.generate().trusted()], 1_700_000_000).save(trust)
    list_keys = tmp_path / "list-keys.json"
    ListKeys.of(1, [SigningKey.generate().public_key], 1_700_000_000).save(list_keys)
    out = tmp_path / "out"
    enrolment = enroll(
        directory,
        request(
            hub_url="http://hub.local:8080",
            door_name="Main entrance",
            trust=trust,
            list_keys=list_keys,
        ),
        out,
    )
    record = enrolment.record
    assert record.node_id == "main-in-1"
    assert enrolment.bundle_dir == out / "main-in-1"
    files = {p.name: p for p in enrolment.bundle_dir.iterdir()}
    assert set(files) == {
        "node.toml",
        "mqtt-password",
        "node-key.pem",
        "node-key.pub",
        "trust.json",
        "list-keys.json",
        "broker-ca.pem",
        "pintu-node.service",
        "install.sh",
    }
    assert mode(enrolment.bundle_dir) == 0o700
    assert mode(files["mqtt-password"]) == 0o600
    assert mode(files["node-key.pem"]) == 0o600
    assert mode(files["install.sh"]) == 0o755
    assert mode(enrolment.archive) == 0o600
    assert not list(out.glob(".*"))  # no staging left behind

    # The config is one the node accepts, with the password from systemd's credentials.
    config = parse_config(files["node.toml"].read_text())
    assert (config.node_id, config.facility_id, config.door_id, config.direction) == (
        "main-in-1",
        FACILITY,
        "main-in",
        "entry",
    )
    assert str(config.state_dir) == "/var/lib/pintu-node"
    assert config.source.kind == "picamera2"
    assert (config.mqtt.host, config.mqtt.port, config.mqtt.username) == (
        "hub.local",
        1883,
        "main-in-1",
    )
    assert config.mqtt.password_file is None
    password = read_password(config.mqtt, {"CREDENTIALS_DIRECTORY": str(enrolment.bundle_dir)})
    assert password is not None and len(password) >= 32
    assert "password" not in files["node.toml"].read_text().split("[mqtt]")[1].split("#")[0]

    # Only the hash reaches the broker's files and the inventory.
    assert passwd.verify_password(password, record.password_hash)
    entries = passwd.parse((directory / "passwd").read_text())
    assert entries["main-in-1"] == record.password_hash
    assert password not in (directory / "fleet.json").read_text()

    # The private key stays in the bundle; the inventory has its public half.
    key = serialization.load_pem_private_key(files["node-key.pem"].read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert base64.b64decode(record.public_key) == raw
    assert "PRIVATE" not in (directory / "fleet.json").read_text()

    assert TrustList.load(files["trust.json"]).keys == TrustList.load(trust).keys
    assert ListKeys.load(files["list-keys.json"]) == ListKeys.load(list_keys)
    assert (
        files["pintu-node.service"].read_text()
        == (Path(__file__).parents[2] / "systemd" / "pintu-node.service").read_text()
    )

    with tarfile.open(enrolment.archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {"main-in-1"} | {f"main-in-1/{name}" for name in files}
    assert members["main-in-1/mqtt-password"].mode == 0o600
    assert members["main-in-1/install.sh"].mode == 0o755
    assert {m.uid for m in members.values()} == {0}

    assert enrolment.change.door_changes == [
        "facility mall-a: add door 'main-in' (direction 'entry') with nodes = [\"main-in-1\"]"
    ]


def test_ids_are_never_reused_and_names_are_checked(
    broker_dir: tuple[Path, str], tmp_path: Path
) -> None:
    directory, _ = broker_dir
    out = tmp_path / "out"
    first = enroll(directory, request(), out)
    second = enroll(directory, request(), out)
    assert (first.record.node_id, second.record.node_id) == ("main-in-1", "main-in-2")
    revoke(directory, "main-in-2", "test")
    assert enroll(directory, request(), out).record.node_id == "main-in-3"
    with pytest.raises(InventoryError, match="never reused"):
        enroll(directory, request(node_id="main-in-2"), out)
    with pytest.raises(InventoryError, match="reserved"):
        enroll(directory, request(node_id="hub"), out)
    with pytest.raises(InventoryError, match=r"not served by this broker.*mall-a, clinic"):
        enroll(directory, EnrolRequest("mall_a", "main-in", "entry", BROKER), out)


def test_a_failed_enrolment_leaves_nothing_behind(
    broker_dir: tuple[Path, str], tmp_path: Path
) -> None:
    directory, _ = broker_dir
    before = {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}
    out = tmp_path / "out"
    with pytest.raises(BundleError, match="no such file"):
        enroll(directory, request(trust=tmp_path / "missing.json"), out)
    # A trust list given where the list keys belong: refused before anything is written.
    wrong = tmp_path / "trust.json"
    TrustList.of([SigningKey.generate().trusted()], 1_700_000_000).save(wrong)
    with pytest.raises(BundleError, match="not the registry's list keys"):
        enroll(directory, request(list_keys=wrong), out)
    (out / "main-in-1").mkdir(parents=True)
    with pytest.raises(BundleError, match="already exists"):
        enroll(directory, request(), out)
    after = {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}
    assert after == before
    assert Fleet.load(directory).nodes() == []
    assert [p.name for p in out.iterdir()] == ["main-in-1"]


def test_concurrent_enrolments_all_land(broker_dir: tuple[Path, str], tmp_path: Path) -> None:
    directory, _ = broker_dir
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            enroll(directory, request(door=f"door-{i}"), tmp_path / "out")
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    fleet = Fleet.load(directory)
    assert sorted(r.node_id for r in fleet.nodes()) == [f"door-{i}-1" for i in range(6)]
    users = set(passwd.parse((directory / "passwd").read_text()))
    # The doors, the hub and the hub's presence login for each of the two facilities.
    assert users == {f"door-{i}-1" for i in range(6)} | {"hub", "hub.mall-a", "hub.clinic"}


def test_replace_keeps_the_door_and_revokes_the_old_node(
    broker_dir: tuple[Path, str], tmp_path: Path
) -> None:
    directory, _ = broker_dir
    out = tmp_path / "out"
    old = enroll(directory, request(door_name="Main entrance", hub_url="http://hub"), out)
    enroll(directory, request(door="food-out", direction="exit"), out)
    replacement = replace(directory, old.record.node_id, out, reason="camera broken")
    new = replacement.new.record
    assert new.node_id == "main-in-2"
    assert (new.facility_id, new.door_id, new.direction, new.door_name, new.hub_url) == (
        FACILITY,
        "main-in",
        "entry",
        "Main entrance",
        "http://hub",
    )
    assert new.replaces == "main-in-1"
    assert new.public_key != old.record.public_key
    assert new.password_hash != old.record.password_hash
    fleet = Fleet.load(directory)
    gone = fleet.node("main-in-1")
    assert (gone.state, gone.replaced_by, gone.revoke_reason) == (
        "revoked",
        "main-in-2",
        "camera broken",
    )
    users = passwd.parse((directory / "passwd").read_text())
    assert set(users) == {"hub", "hub.mall-a", "hub.clinic", "main-in-2", "food-out-1"}
    acl = (directory / "acl").read_text()
    assert "main-in-1" not in acl
    assert f"topic write {topics.node_events(FACILITY, 'main-in-2')}" in acl
    assert replacement.new.change.door_changes == [
        'facility mall-a, door \'main-in\': nodes = ["main-in-2"] (was ["main-in-1"])'
    ]
    config = parse_config((replacement.new.bundle_dir / "node.toml").read_text())
    assert (config.node_id, config.door_id) == ("main-in-2", "main-in")
    with pytest.raises(InventoryError, match="is revoked"):
        replace(directory, "main-in-1", out)
    with pytest.raises(NodeNotFoundError):
        revoke(directory, "nobody", "test")
    with pytest.raises(InventoryError, match="already revoked"):
        revoke(directory, "main-in-1", "again")


HUB_TOML = """
[store]
backend = "sqlite"
path = "hub.db"

[[facilities]]
id = "mall-a"
name = "Mall A"
"""


def test_the_hub_doors_snippet_is_a_valid_hub_config_that_tracks_the_fleet(
    broker_dir: tuple[Path, str], tmp_path: Path
) -> None:
    directory, _ = broker_dir
    out = tmp_path / "out"
    enroll(directory, request(door_name="Main entrance"), out)
    enroll(directory, request(door="main-out", direction="exit"), out)
    snippet = hubdoors.snippet_path(directory, FACILITY)
    hub_toml = tmp_path / "hub.toml"
    hub_toml.write_text(HUB_TOML + snippet.read_text())
    config = parse_hub_config(hub_toml.read_text())
    facility = config.facility(FACILITY)
    assert facility is not None
    assert [(d.id, d.name, d.direction, d.nodes) for d in facility.doors] == [
        ("main-in", "Main entrance", "entry", ["main-in-1"]),
        ("main-out", "main-out", "exit", ["main-out-1"]),
    ]
    fleet = Fleet.load(directory)
    assert hubdoors.check_hub_config(hub_toml, FACILITY, fleet.nodes(facility_id=FACILITY)) == []

    # Revoked but still in hub.toml: the check says so, and the snippet has moved on.
    replace(directory, "main-in-1", out)
    revoke(directory, "main-out-1", "door bricked up")
    fleet = Fleet.load(directory)
    problems = hubdoors.check_hub_config(hub_toml, FACILITY, fleet.nodes(facility_id=FACILITY))
    assert problems == [
        "door 'main-in' still allows revoked node 'main-in-1'",
        "door 'main-in' does not list node 'main-in-2': the hub refuses its events",
    ]
    hub_toml.write_text(HUB_TOML + snippet.read_text())
    facility = parse_hub_config(hub_toml.read_text()).facility(FACILITY)
    assert facility is not None
    # A door left without an active node keeps its revoked node: an empty list admits any.
    assert [(d.id, d.nodes) for d in facility.doors] == [
        ("main-in", ["main-in-2"]),
        ("main-out", ["main-out-1"]),
    ]
    assert hubdoors.check_hub_config(hub_toml, FACILITY, fleet.nodes(facility_id=FACILITY)) == []
    hub_toml.write_text(
        HUB_TOML + '\n[[facilities.doors]]\nid = "main-in"\nname = "x"\ndirection = "entry"\n'
    )
    assert hubdoors.check_hub_config(hub_toml, FACILITY, fleet.nodes(facility_id=FACILITY)) == [
        "door 'main-in' lists no nodes, so any node may report as it (set nodes = [\"main-in-2\"])"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hub.local", ("hub.local", 1883)),
        ("hub.local:8883", ("hub.local", 8883)),
        ("10.0.0.2:1884", ("10.0.0.2", 1884)),
        ("[fd00::2]:1883", ("fd00::2", 1883)),
        ("[fd00::2]", ("fd00::2", 1883)),
    ],
)
def test_broker_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_broker(text) == expected


@pytest.mark.parametrize("text", ["", "hub:", "hub:0", "hub:70000", "hub:x", "[fd00::2", "a b:1"])
def test_bad_broker_addresses(text: str) -> None:
    with pytest.raises(InventoryError):
        parse_broker(text)


def test_a_bundle_node_logs_in_with_what_its_bundle_holds(
    facility_broker: FacilityBroker, tmp_path: Path, wait_for: WaitFor
) -> None:
    """The node.toml and the credential file, read the way the node reads them, get it in."""
    enrolment = enroll(
        facility_broker.dir,
        EnrolRequest(FACILITY, "main-in", "entry", facility_broker.address),
        tmp_path / "out",
    )
    broker = facility_broker.start()
    config = parse_config((enrolment.bundle_dir / "node.toml").read_text())
    password = read_password(config.mqtt, {"CREDENTIALS_DIRECTORY": str(enrolment.bundle_dir)})
    assert (config.mqtt.host, config.mqtt.port) == (broker.host, broker.port)
    hub = Peer(broker, "hub", facility_broker.hub_password)
    node = Peer(broker, config.mqtt.username, password)
    try:
        hub.subscribe(topics.HUB_EVENTS_SHARED)
        events = topics.node_events(config.facility_id, config.node_id)
        assert not node.publish(events, b"event").is_failure
        wait_for(lambda: hub.received(events) == [b"event"], what="the event at the hub")
    finally:
        node.close()
        hub.close()
