"""The provisioning QR end to end: a blank node, a real hub and a real Mosquitto with the
facility's provisioned configuration (auth and ACL on), the synthetic camera in between.

The technician runs ``pintu provision node enroll --qr``; the PNG it writes is read back
and held up to the blank node's camera; the node fetches its sealed bundle once, writes its
files and starts, and its first event is stored at the hub. A second use of the QR and an
expired QR are refused, and nothing changes at the hub.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from argon2 import PasswordHasher
from click.testing import CliRunner
from gpiozero.pins.mock import MockFactory
from PIL import Image

import hub.auth
from controller.config import NodeConfig
from controller.enrolment import Enrolment, WaitSettings
from controller.node import Node
from firmware.camera import SyntheticSourceConfig
from firmware.pins import PinMap
from firmware.synthetic import PRESETS, SyntheticSource
from hub.auth import hash_password
from hub.config import HubConfig
from hub.web.server import ServiceThread
from pintu.cli import cli
from protocol import passes
from protocol.enrolment import (
    MAX_TEXT_LENGTH,
    ProvisioningCode,
    SealedBundle,
    encode_sealed,
    facility_pin,
    new_token,
    seal,
)
from protocol.events import EventKind
from protocol.signals import Signal
from protocol.signedlist import ListKeys
from protocol.status import Status
from protocol.trust import SigningKey
from provisioning import tlsca
from provisioning.inventory import Fleet
from provisioning.remote import HubAdmin
from runtime.listen import bind

from .conftest import FACILITY, FacilityBroker, WaitFor

ADMIN, ADMIN_PASSWORD = "admin1", "admin-pass-1"
NODE_ID, DOOR = "main-1", "main"
# A second blank node on pins of its own (the first node holds the reference wiring).
OTHER_PINS = PinMap.model_validate(
    {
        "leds": {"kind": "three", "red": 6, "yellow": 13, "green": 19},
        "relay": {"pin": 26, "active_high": False, "wiring": "fail_secure"},
    }
)


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 at its real cost takes ~0.1 s a hash; the tests check logic, not cost."""
    monkeypatch.setattr(
        hub.auth, "HASHER", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    )


@pytest.fixture
def hub_service(facility_broker: FacilityBroker, tmp_path: Path) -> Iterator[ServiceThread]:
    """The facility's hub on the provisioned broker (as its `hub` MQTT user), door `main`
    served by node main-1, an admin user, the web API on a free port."""
    broker = facility_broker.start()
    config = HubConfig.model_validate(
        {
            "mqtt": {
                "host": broker.host,
                "port": broker.port,
                "client_id": "hub-qr-test",
                "username": "hub",
                "password_file": str(facility_broker.dir / "hub-mqtt-password"),
                "tls_ca_file": str(facility_broker.dir / "ca.pem"),
            },
            "store": {"backend": "sqlite", "path": str(tmp_path / "hub.db")},
            "web": {"secret_key_file": str(tmp_path / "web-secret")},
            "facilities": [
                {
                    "id": FACILITY,
                    "name": "Mall A",
                    "doors": [
                        {"id": DOOR, "name": "Main", "direction": "entry", "nodes": [NODE_ID]}
                    ],
                }
            ],
        }
    )
    thread = ServiceThread(config, sock=bind("127.0.0.1", 0)).start()
    thread.hub.store.add_user(ADMIN, hash_password(ADMIN_PASSWORD), "admin")
    yield thread
    thread.stop()


@dataclass
class Waiting:
    """A blank node waiting for its QR on a thread of its own."""

    enrolment: Enrolment
    source: SyntheticSource
    stop: threading.Event = field(default_factory=threading.Event)
    result: list[NodeConfig | None] = field(default_factory=list)
    thread: threading.Thread | None = None

    def start(self) -> Waiting:
        self.thread = threading.Thread(
            target=lambda: self.result.append(self.enrolment.wait(self.stop)), daemon=True
        )
        self.thread.start()
        return self

    @property
    def done(self) -> bool:
        return bool(self.result)

    def show(self, text: str, frames: int = 6) -> None:
        self.source.show(text, frames)


@pytest.fixture
def blank_node(tmp_path: Path, mock_pins: MockFactory) -> Iterator[Callable[..., Waiting]]:
    made: list[Waiting] = []

    def make(
        name: str = "pi", pins: PinMap | None = None, facility_ca: Path | None = None
    ) -> Waiting:
        source = SyntheticSource(PRESETS["easy"], seed=len(made) + 3, fps=30)
        settings = WaitSettings(
            pins=pins or PinMap.default(),
            source=SyntheticSourceConfig(),
            cooldown_s=1.0,
            refused_s=0.3,
        )
        home = tmp_path / name
        enrolment = Enrolment(
            home / "etc" / "node.toml",
            home / "state",
            settings,
            source=source,
            facility_ca=facility_ca,
        )
        waiting = Waiting(enrolment, source).start()
        made.append(waiting)
        return waiting

    yield make
    for waiting in made:
        waiting.stop.set()
        if waiting.thread is not None:
            waiting.thread.join(10)


def enrol(
    fb: FacilityBroker,
    hub: ServiceThread,
    tmp_path: Path,
    node_id: str,
    qr: Path,
    *extra: str,
) -> dict[str, Any]:
    password_file = tmp_path / "admin-password"
    password_file.write_text(ADMIN_PASSWORD + "\n")
    assert fb.broker.process is not None
    result = CliRunner().invoke(
        cli,
        [
            "provision", "node", "enroll", "--broker-dir", str(fb.dir),
            "--facility", FACILITY, "--door", DOOR, "--direction", "entry",
            "--broker", fb.address, "--hub-url", hub.url, "--out", str(tmp_path / "out"),
            "--node-id", node_id, "--qr", str(qr), "--hub-user", ADMIN,
            "--hub-password-file", str(password_file),
            "--broker-pid", str(fb.broker.process.pid), "--json", *extra,
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def read_qr(path: Path) -> str:
    (code,) = zxingcpp.read_barcodes(Image.open(path))
    return str(code.text)


def hub_state(hub: ServiceThread) -> tuple[Any, ...]:
    """What a refused claim must not change: the enrolments, the audit log, the events."""
    store: Any = hub.hub.store
    rows = store.conn.execute(
        "SELECT lookup_id, sealed, expires_at, used_at FROM enrolments ORDER BY lookup_id"
    ).fetchall()
    return (
        [tuple(r) for r in rows],
        len(store.audit_log(limit=1000)),
        store.count_events(FACILITY),
    )


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_blank_node_enrols_from_its_qr_and_its_first_event_is_stored(
    facility_broker: FacilityBroker,
    hub_service: ServiceThread,
    blank_node: Callable[..., Waiting],
    mock_pins: MockFactory,
    tmp_path: Path,
    wait_for: WaitFor,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    caplog.set_level(logging.INFO)
    pi = blank_node()
    yellow = mock_pins.pin(27)
    wait_for(lambda: pi.enrolment.signal is Signal.PROVISIONING, what="the provisioning blink")
    # A slow yellow blink: the yellow LED goes on and off again, nothing else lights.
    wait_for(lambda: len(yellow.states) >= 3, timeout=5, what="the yellow LED blinking")
    assert not mock_pins.pin(17).state and not mock_pins.pin(22).state
    # A visitor's pass shown to the blank node is ignored, with a log line.
    pi.show(passes.issue(SigningKey.generate(), bytes(12), Status.GREEN, 2, 0, 2**31))
    wait_for(lambda: "not a provisioning QR" in caplog.text, what="the pass ignored")
    assert pi.enrolment.attempts == 0 and not pi.done

    started = time.monotonic()
    qr_png = tmp_path / "main-1.png"
    # The registry's list keys, as `pintu registry list-keys` writes them.
    pinned = ListKeys.of(3, [SigningKey.generate().public_key], 1_800_000_000)
    pinned.save(tmp_path / "list-keys.json")
    list_keys = ("--list-keys", str(tmp_path / "list-keys.json"))
    doc = enrol(facility_broker, hub_service, tmp_path, NODE_ID, qr_png, *list_keys)
    assert mode_of(qr_png) == 0o600
    text = read_qr(qr_png)
    code = ProvisioningCode.parse(text)
    assert (code.node_id, code.hub_url) == (NODE_ID, hub_service.url)
    assert len(text) <= MAX_TEXT_LENGTH and doc["qr"]["version"] <= 10
    pi.show(text)
    wait_for(lambda: pi.done, timeout=10, what="the node provisioned")
    config = pi.result[0]
    assert config is not None and config.node_id == NODE_ID
    node = Node(config, source=pi.source)
    node.start()
    try:
        store = hub_service.hub.store

        def first_event() -> bool:
            page = store.events(facility_id=FACILITY, node_id=NODE_ID, limit=10)
            return any(s.event.kind is EventKind.NODE_START for s in page.events)

        wait_for(first_event, timeout=15, what="the node's first event stored at the hub")
        elapsed = time.monotonic() - started
        request.node.user_properties.append(("enrol_to_first_stored_event_s", round(elapsed, 2)))
        logging.getLogger(__name__).info("enrol to first stored event: %.2f s", elapsed)
        assert elapsed < 10, f"{elapsed:.1f} s from enrolment to the first stored event"

        # The node's files, with safe modes; the QR's token is in none of them.
        etc = pi.enrolment.config_path.parent
        assert mode_of(etc / "mqtt-password") == 0o600
        assert mode_of(etc / "node-key.pem") == 0o600
        assert mode_of(etc / "node.toml") == 0o644
        written = (etc / "node.toml").read_text()
        assert code.token not in written and "password =" not in written
        # The list keys came in the sealed bundle, which the hub cannot read or change:
        # the node pins them and believes only lists they signed.
        assert ListKeys.load(config.path(config.list_keys)) == pinned
        assert node.lists is not None and node.lists.pins == pinned
        # The hub dropped the ciphertext on its one use.
        record = store.enrolment(code.lookup_id)
        assert record is not None and record.used_at is not None
        assert hub_state(hub_service)[0][0][1] is None
        assert Fleet.load(facility_broker.dir).node(NODE_ID).active

        # The provisioned node ignores its provisioning QR now.
        before = store.count_events(FACILITY)
        pi.show(text)
        wait_for(lambda: "provisioned already" in caplog.text, what="the QR ignored")
        assert node.devices is not None and node.devices.indicator.signal is not Signal.RED

        # Another blank node shown the same QR: refused (used), red, still waiting.
        other = blank_node("other", OTHER_PINS)
        wait_for(lambda: other.enrolment.signal is Signal.PROVISIONING, what="the blink")
        unchanged = hub_state(hub_service)
        other.show(text)
        wait_for(lambda: other.enrolment.refusals, what="the second use refused")
        assert "409 token_used" in other.enrolment.refusals[0]
        assert "was used at" in other.enrolment.refusals[0]
        red = mock_pins.pin(6)
        wait_for(lambda: any(s.state for s in red.states), what="red for the refusal")
        wait_for(lambda: other.enrolment.signal is Signal.PROVISIONING, what="back to blinking")
        assert not other.done and not other.enrolment.config_path.exists()
        assert hub_state(hub_service)[:2] == unchanged[:2]
        assert store.count_events(FACILITY) >= before

        # An expired QR: refused (expired); nothing changes at the hub.
        expired_png = tmp_path / "side.png"
        side = enrol(
            facility_broker, hub_service, tmp_path, "main-2", expired_png, "--token-ttl", "1s"
        )
        expires_at = datetime.fromisoformat(side["qr"]["expires_at"])
        wait_for(lambda: datetime.now(UTC) > expires_at, timeout=5, what="the token to expire")
        unchanged = hub_state(hub_service)
        other.show(read_qr(expired_png))
        wait_for(lambda: len(other.enrolment.refusals) == 2, what="the expired QR refused")
        assert "410 token_expired" in other.enrolment.refusals[1]
        assert hub_state(hub_service)[:2] == unchanged[:2]
        assert not other.done and not other.enrolment.config_path.exists()
    finally:
        node.stop()


def test_a_hub_that_refuses_or_is_away_leaves_nothing_enrolled(
    facility_broker: FacilityBroker, hub_service: ServiceThread, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not the password\n")
    qr = tmp_path / "qr.png"
    common = [
        "provision", "node", "enroll", "--broker-dir", str(facility_broker.dir),
        "--facility", FACILITY, "--door", DOOR, "--direction", "entry",
        "--broker", facility_broker.address, "--out", str(tmp_path / "out"),
        "--qr", str(qr), "--hub-user", ADMIN, "--hub-password-file", str(wrong),
    ]  # fmt: skip
    for hub_url, reason in [
        (hub_service.url, "401 login_failed: Wrong user name or password."),
        ("http://127.0.0.1:9", "cannot be reached"),
    ]:
        result = CliRunner().invoke(cli, [*common, "--hub-url", hub_url])
        assert result.exit_code == 1
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and reason in errors[0], result.stderr
        assert Fleet.load(facility_broker.dir).nodes() == []
        assert not qr.exists() and list((tmp_path / "out").iterdir()) == []
    store: Any = hub_service.hub.store
    assert store.conn.execute("SELECT count(*) FROM enrolments").fetchone()[0] == 0
    # --qr needs the hub's URL and an admin to file the bundle.
    missing = CliRunner().invoke(cli, common[: common.index("--hub-user")])
    assert missing.exit_code == 2 and "--qr needs --hub-url" in missing.stderr


def test_pintu_node_run_without_a_configuration_waits_and_stops_on_sigterm(
    tmp_path: Path, wait_for: WaitFor
) -> None:
    config = tmp_path / "state" / "node.toml"
    log = tmp_path / "node.log"
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock"}
    env.pop("NOTIFY_SOCKET", None)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pintu", "-v", "node", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        # Off the Pi there is no camera: said clearly, and the node still waits.
        wait_for(
            lambda: (
                "waiting for a provisioning QR" in log.read_text()
                and "needs picamera2" in log.read_text()
            ),
            what="the waiting node and its missing camera",
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    assert "released locked" in text
    assert not config.exists()


@pytest.fixture
def rogue_hub(
    facility_broker: FacilityBroker, hub_service: ServiceThread, tmp_path: Path
) -> Iterator[ServiceThread]:
    """A stranger's own hub (a real one, with an admin of theirs), on another port."""
    config = hub_service.hub.config.model_copy(
        update={
            "store": hub_service.hub.config.store.model_copy(
                update={"path": str(tmp_path / "rogue-hub.db")}
            ),
            "mqtt": hub_service.hub.config.mqtt.model_copy(update={"client_id": "rogue-hub"}),
        }
    )
    thread = ServiceThread(config, sock=bind("127.0.0.1", 0)).start()
    thread.hub.store.add_user(ADMIN, hash_password(ADMIN_PASSWORD), "admin")
    yield thread
    thread.stop()


def rogue_code(hub: ServiceThread, tmp_path: Path, *, with_pin: bool) -> ProvisioningCode:
    """A code a stranger makes: their own CA, their own broker, their own hub."""
    ca_pem = tlsca.ensure(tmp_path / "rogue-tls", ["rogue.example"], "rogue").ca_cert.read_text()
    bundle = SealedBundle(
        node_toml=(
            f'node_id = "{NODE_ID}"\nfacility_id = "{FACILITY}"\ndoor_id = "{DOOR}"\n'
            'direction = "entry"\n[mqtt]\nhost = "rogue.example"\nport = 8883\n'
        ),
        mqtt_password="rogue-password",  # noqa: S106 - the stranger's own
        node_key_pem="-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n",
        broker_ca_pem=ca_pem,
    )
    code = ProvisioningCode(
        node_id=NODE_ID,
        token=new_token(),
        hub_url=hub.url,
        pin=facility_pin(ca_pem) if with_pin else None,
    )
    sealed = seal(code.token, NODE_ID, bundle.dumps())
    with HubAdmin(hub.url) as admin:
        admin.login(ADMIN, ADMIN_PASSWORD)
        admin.add_enrolment(code.lookup_id, encode_sealed(sealed), 600, NODE_ID)
    return code


def test_a_node_bound_to_its_facility_refuses_a_strangers_code_before_asking_their_hub(
    facility_broker: FacilityBroker,
    hub_service: ServiceThread,
    rogue_hub: ServiceThread,
    blank_node: Callable[..., Waiting],
    tmp_path: Path,
    wait_for: WaitFor,
) -> None:
    """The attack: a stranger holds their own provisioning QR up to a blank door before the
    technician does, to take the door to a broker and hub of theirs."""
    facility_ca = facility_broker.dir / "ca.pem"
    pi = blank_node(facility_ca=facility_ca)
    assert pi.enrolment.pin == facility_pin(facility_ca.read_text())
    wait_for(lambda: pi.enrolment.signal is Signal.PROVISIONING, what="the blink")
    for with_pin, reason in [(True, "is for the facility with pin"), (False, "names no")]:
        code = rogue_code(rogue_hub, tmp_path / str(with_pin), with_pin=with_pin)
        refused = len(pi.enrolment.refusals)
        pi.show(code.text())
        wait_for(
            lambda before=refused: len(pi.enrolment.refusals) > before,
            what="the stranger's code refused",
        )
        assert reason in pi.enrolment.refusals[-1]
        # Refused before any hub was asked: the stranger's bundle is still unclaimed.
        record = rogue_hub.hub.store.enrolment(code.lookup_id)
        assert record is not None and record.used_at is None
        assert not pi.done and not pi.enrolment.config_path.exists()

    # The technician's code for this facility carries the same pin, and is taken.
    qr_png = tmp_path / "main-1.png"
    doc = enrol(facility_broker, hub_service, tmp_path, NODE_ID, qr_png)
    text = read_qr(qr_png)
    assert ProvisioningCode.parse(text).pin == doc["qr"]["facility_pin"] == pi.enrolment.pin
    pi.show(text)
    wait_for(lambda: pi.done, timeout=10, what="the node provisioned")
    assert pi.result[0] is not None and pi.result[0].node_id == NODE_ID


def test_a_node_that_knew_no_facility_keeps_the_first_one_it_enrolled_with(
    facility_broker: FacilityBroker,
    hub_service: ServiceThread,
    rogue_hub: ServiceThread,
    blank_node: Callable[..., Waiting],
    tmp_path: Path,
    wait_for: WaitFor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    pi = blank_node()
    assert pi.enrolment.pin is None
    qr_png = tmp_path / "main-1.png"
    doc = enrol(facility_broker, hub_service, tmp_path, NODE_ID, qr_png)
    pi.show(read_qr(qr_png))
    wait_for(lambda: pi.done, timeout=10, what="the node provisioned")
    pin = doc["qr"]["facility_pin"]
    assert pin is not None
    # The node said which facility it now belongs to, for the technician to compare.
    assert f"pin {pin}" in caplog.text
    # Wiped back to blank (its configuration deleted), it still knows its facility.
    pi.enrolment.config_path.unlink()
    again = blank_node("pi")
    assert again.enrolment.pin == pin
    code = rogue_code(rogue_hub, tmp_path / "rogue", with_pin=True)
    again.show(code.text())
    wait_for(lambda: again.enrolment.refusals, what="the stranger's code refused")
    assert "this node belongs to the one with pin" in again.enrolment.refusals[0]
    record = rogue_hub.hub.store.enrolment(code.lookup_id)
    assert record is not None and record.used_at is None
