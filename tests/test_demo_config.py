"""The demo's facility on paper: a population the registry accepts, configs the hub and the
nodes accept (the nodes' taken from real enrolment bundles), and a work directory that a
second run clears only when it is a stopped demo's."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import numpy as np
import pytest

from controller.config import parse_config as parse_node_config
from hub.config import HubConfig
from pintu import demo_config
from pintu.demo import MARKER, Demo, DemoError, DemoOptions
from provisioning import hubdoors
from provisioning.enroll import EnrolRequest, enroll
from provisioning.inventory import Facility, init_fleet, open_fleet
from registry.subjects import validate_nik

FACILITY = "demo-mall-1a2b3c"


def test_the_population_has_valid_distinct_niks_and_the_status_mix() -> None:
    people = demo_config.population(500, np.random.default_rng(7))
    assert all(validate_nik(p.nik) == p.nik for p in people)
    assert len({p.nik for p in people}) == 500
    greens = sum(p.status.label == "green" for p in people)
    assert 300 < greens < 400  # about 70 %
    rows = demo_config.people_csv(people).splitlines()
    assert rows[0] == "nik,name,status,doses"
    assert rows[1].split(",")[2:] == [people[0].status.label, str(people[0].doses)]


def test_toml_round_trips_tables_and_arrays_of_tables() -> None:
    doc = {
        "a": 1,
        "name": 'Jalan "Raya" ü',
        "skip": None,
        "t": {"x": [1, 2], "ok": True, "inner": {"f": 0.5}},
        "facilities": [{"id": "f1", "doors": [{"id": "d1"}, {"id": "d2"}]}, {"id": "f2"}],
    }
    back = tomllib.loads(demo_config.to_toml(doc))
    assert back == {k: v for k, v in doc.items() if v is not None}


def test_hub_and_node_configs_come_from_the_provisioned_broker_directory(tmp_path: Path) -> None:
    broker_dir = tmp_path / "broker"
    init_fleet(broker_dir, [Facility(id=FACILITY, name="Demo Mall")], settings={"port": 18830})
    enrolments = [
        enroll(
            broker_dir,
            EnrolRequest(FACILITY, door.door_id, door.direction, "127.0.0.1:18830",  # type: ignore[arg-type]
                         door_name=door.name, node_id=door.node_id),
            tmp_path / "bundles",
        )
        for door in demo_config.doors_of(2, 1)
    ]  # fmt: skip
    hub_toml = tmp_path / "hub.toml"
    hub_toml.write_text(
        demo_config.hub_config(
            demo_config.HubSettings(
                workdir=tmp_path,
                web_port=18080,
                broker_port=18830,
                mqtt_username="hub",
                mqtt_password_file=broker_dir / "hub-mqtt-password",
                registry_url="http://127.0.0.1:18090",
                registry_token_file=tmp_path / "token",
                sync_interval_s=5.0,
                facility_id=FACILITY,
                capacity=30,
                doors_snippet=hubdoors.snippet_path(broker_dir, FACILITY),
            )
        )
    )
    hub = HubConfig.model_validate(tomllib.loads(hub_toml.read_text()))
    assert hub.mqtt.username == "hub"
    assert [d.nodes for d in hub.facilities[0].doors] == [
        ["node-in-1"],
        ["node-in-2"],
        ["node-out-1"],
    ]
    with open_fleet(broker_dir) as fleet:
        assert hubdoors.check_hub_config(hub_toml, FACILITY, fleet.nodes()) == []

    sim = demo_config.SimulatedDoor(tmp_path / "state", tmp_path / "visitors.txt", 12.5)
    node = parse_node_config(demo_config.node_config(enrolments[2].bundle_dir / "node.toml", sim))
    # The bundle's identity and broker login stay; the Pi's hardware is simulated.
    assert (node.node_id, node.door_id, node.direction) == ("node-out-1", "exit-1", "exit")
    assert (node.mqtt.port, node.mqtt.username) == (18830, "node-out-1")
    assert node.source.kind == "synthetic"
    assert node.pins.pin_factory == "mock"
    assert node.state_dir == tmp_path / "state"


def test_a_second_demo_clears_a_stopped_ones_directory_and_no_other(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    work.mkdir()
    (work / "old.db").write_text("from the last run")
    (work / MARKER).write_text("999999999\n")  # a pid no process has
    Demo(DemoOptions(workdir=work)).fresh_workdir()
    assert sorted(p.name for p in work.iterdir()) == [MARKER, "logs"]

    (work / MARKER).write_text(f"{os.getppid()}\n")  # a running process
    with pytest.raises(DemoError, match=r"another demo \(pid \d+\) is running"):
        Demo(DemoOptions(workdir=work)).fresh_workdir()
    assert (work / "logs").is_dir()

    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(DemoError, match="not a demo's"):
        Demo(DemoOptions(workdir=other)).fresh_workdir()
    assert (other / "notes.txt").read_text() == "keep me"
