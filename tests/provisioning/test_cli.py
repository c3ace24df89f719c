"""``pintu provision`` as a technician types it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from click.testing import CliRunner
from PIL import Image

from pintu.cli import cli

from .conftest import FacilityBroker, Peer, WaitFor


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def run(runner: CliRunner, *args: str, code: int = 0) -> str:
    result = runner.invoke(cli, list(args))
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output


def run_json(runner: CliRunner, *args: str) -> Any:
    result = runner.invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def broker_dir(runner: CliRunner, tmp_path: Path) -> Path:
    directory = tmp_path / "broker"
    doc = run_json(
        runner,
        "provision",
        "broker",
        "init",
        "--dir",
        str(directory),
        "--facility",
        "mall-a=Mall A Kelapa Gading",
        "--port",
        "1884",
        "--tls-name",
        "hub.local",
        "--persistence-dir",
        str(tmp_path / "state"),
    )
    assert doc["new"] is True
    assert doc["facilities"] == ["mall-a"]
    assert Path(doc["hub_password_file"]).stat().st_mode & 0o777 == 0o600
    return directory


def enroll_args(directory: Path, out: Path, door: str = "main-in", *extra: str) -> list[str]:
    return [
        "provision", "node", "enroll", "--broker-dir", str(directory), "--facility", "mall-a",
        "--door", door, "--direction", "entry", "--broker", "hub.local:1883", "--out", str(out),
        *extra,
    ]  # fmt: skip


def test_init_again_adds_a_facility_and_keeps_the_hub_password(
    runner: CliRunner, broker_dir: Path
) -> None:
    password = (broker_dir / "hub-mqtt-password").read_text()
    conf = (broker_dir / "mosquitto.conf").read_text()
    assert "listener 1884\n" in conf
    doc = run_json(
        runner,
        "provision", "broker", "init", "--dir", str(broker_dir), "--facility", "clinic",
        "--max-queued", "50000",
    )  # fmt: skip
    assert doc["new"] is False
    assert doc["facilities"] == ["mall-a", "clinic"]
    assert (broker_dir / "hub-mqtt-password").read_text() == password
    conf = (broker_dir / "mosquitto.conf").read_text()
    assert "listener 1884\n" in conf  # kept
    assert "max_queued_messages 50000\n" in conf


def test_enroll_list_show_revoke_replace(
    runner: CliRunner, broker_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bundles"
    enrolled = run_json(runner, *enroll_args(broker_dir, out, "main-in", "--door-name", "Main"))
    assert enrolled["node_id"] == "main-in-1"
    assert enrolled["mqtt_username"] == "main-in-1"
    assert "password_hash" not in enrolled
    assert Path(enrolled["archive"]).is_file()
    assert enrolled["broker_reloaded"] is None
    assert enrolled["hub_doors_changes"] == [
        "facility mall-a: add door 'main-in' (direction 'entry') with nodes = [\"main-in-1\"]"
    ]
    text = run(runner, *enroll_args(broker_dir, out, "side"))
    assert "node side-1 enrolled for mall-a/side (entry)" in text
    assert "broker: NOT reloaded; run `systemctl reload mosquitto.service`" in text
    assert "facility mall-a: add door 'side'" in text

    listed = run_json(runner, "provision", "node", "list", "--broker-dir", str(broker_dir))
    assert [n["node_id"] for n in listed["nodes"]] == ["main-in-1", "side-1"]
    shown = run_json(
        runner, "provision", "node", "show", "main-in-1", "--broker-dir", str(broker_dir)
    )
    assert (shown["door_id"], shown["door_name"], shown["state"]) == ("main-in", "Main", "active")

    revoked = run_json(
        runner, "provision", "node", "revoke", "side-1", "--reason", "stolen",
        "--broker-dir", str(broker_dir),
    )  # fmt: skip
    assert (revoked["state"], revoked["revoke_reason"]) == ("revoked", "stolen")
    replaced = run_json(
        runner, "provision", "node", "replace", "main-in-1", "--out", str(out),
        "--broker-dir", str(broker_dir),
    )  # fmt: skip
    assert replaced["revoked"]["replaced_by"] == replaced["node_id"] == "main-in-2"
    assert replaced["door_id"] == "main-in"
    assert replaced["hub_doors_changes"] == [
        'facility mall-a, door \'main-in\': nodes = ["main-in-2"] (was ["main-in-1"])'
    ]
    active = run_json(runner, "provision", "node", "list", "--broker-dir", str(broker_dir))
    assert [n["node_id"] for n in active["nodes"]] == ["main-in-2"]
    every = run_json(runner, "provision", "node", "list", "--all", "--broker-dir", str(broker_dir))
    assert len(every["nodes"]) == 3
    text = run(runner, "provision", "node", "list", "--all", "--broker-dir", str(broker_dir))
    assert "side-1" in text and "revoked" in text


def test_hub_doors_prints_and_checks(runner: CliRunner, broker_dir: Path, tmp_path: Path) -> None:
    run(runner, *enroll_args(broker_dir, tmp_path / "out"))
    snippet = run(
        runner, "provision", "hub-doors", "--facility", "mall-a", "--broker-dir", str(broker_dir)
    )
    assert 'nodes = ["main-in-1"]' in snippet
    hub_toml = tmp_path / "hub.toml"
    hub_toml.write_text('[[facilities]]\nid = "mall-a"\nname = "Mall A"\n' + snippet)
    args = ["provision", "hub-doors", "--facility", "mall-a", "--broker-dir", str(broker_dir)]
    assert "agree with the fleet" in run(runner, *args, "--check", str(hub_toml))
    replace = ["provision", "node", "replace", "main-in-1", "--out", str(tmp_path / "out")]
    run(runner, *replace, "--broker-dir", str(broker_dir))
    text = run(runner, *args, "--check", str(hub_toml), code=1)
    assert "door 'main-in' still allows revoked node 'main-in-1'" in text
    result = runner.invoke(cli, [*args, "--check", str(hub_toml), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["ok"] is False


def test_a_reload_by_pid_lets_the_new_node_in(
    runner: CliRunner, facility_broker: FacilityBroker, tmp_path: Path, wait_for: WaitFor
) -> None:
    broker = facility_broker.start()
    assert broker.process is not None
    doc = run_json(
        runner, "provision", "node", "enroll", "--broker-dir", str(facility_broker.dir),
        "--facility", "mall-a", "--door", "gate", "--direction", "both",
        "--broker", facility_broker.address, "--out", str(tmp_path / "out"),
        "--broker-pid", str(broker.process.pid),
    )  # fmt: skip
    assert doc["broker_reloaded"] == f"sent SIGHUP to pid {broker.process.pid}"
    password = (Path(doc["bundle"]) / "mqtt-password").read_text().strip()
    peers: list[Peer] = []

    def logs_in() -> bool:
        peers.append(Peer(broker, doc["mqtt_username"], password))
        return peers[-1].accepted

    try:
        wait_for(logs_in, what="the new node to get in")
    finally:
        for peer in peers:
            peer.close()


def test_poster_takes_names_from_the_inventory(
    runner: CliRunner, broker_dir: Path, tmp_path: Path
) -> None:
    run(runner, *enroll_args(broker_dir, tmp_path / "out", "main-in", "--door-name", "Main"))
    out = tmp_path / "poster.png"
    doc = run_json(
        runner, "provision", "poster", "--facility", "mall-a", "--door", "main-in",
        "--out", str(out), "--broker-dir", str(broker_dir),
        "--registry", "https://registry.example.id/",
    )  # fmt: skip
    address = "https://registry.example.id/d/mall-a/main-in"
    assert doc["uri"] == address
    with Image.open(out) as image:
        assert [r.text for r in zxingcpp.read_barcodes(image)] == [address]


def test_poster_for_a_door_phones_may_scan_too(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The registry's address may come from the environment, as for the facility commands.
    monkeypatch.setenv("PINTU_REGISTRY_URL", "https://registry.example.id")
    made = {}
    for kind in ("camera", "both"):
        out = tmp_path / f"{kind}.png"
        said = run(
            runner, "provision", "poster", "--facility", "mall-a", "--door", "side",
            "--out", str(out), "--kind", kind,
        )  # fmt: skip
        assert said == f"poster for https://registry.example.id/d/mall-a/side written to {out}\n"
        with Image.open(out) as image:
            made[kind] = image.tobytes()
    assert made["camera"] != made["both"]
    refused = run(
        runner, "provision", "poster", "--facility", "mall-a", "--door", "side",
        "--out", str(tmp_path / "p.png"), "--kind", "poster", code=2,
    )  # fmt: skip
    assert "--kind" in refused


def test_poster_needs_the_registrys_address(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PINTU_REGISTRY_URL", raising=False)
    out = tmp_path / "p.png"
    args = ["provision", "poster", "--facility", "mall-a", "--door", "main-in", "--out", str(out)]
    assert "Missing option '--registry'" in run(runner, *args, code=2)
    said = run(runner, *args, "--registry", "registry.example.id", code=1)
    assert "not a registry address: 'registry.example.id'" in said
    assert not out.exists()


REG = ("--registry", "http://registry.local")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["node", "list", "--broker-dir", "NOWHERE"], 1, "holds no fleet inventory"),
        (["node", "show", "ghost", "--broker-dir", "BROKER"], 1, "no node 'ghost'"),
        (["node", "revoke", "ghost", "--reason", "x", "--broker-dir", "BROKER"], 1, "no node"),
        (["hub-doors", "--facility", "clinic", "--broker-dir", "BROKER"], 1, "not served"),
        (["poster", "--facility", "a/b", "--door", "d", "--out", "OUT", *REG], 1, "not a valid"),
        (["broker", "init", "--dir", "NOWHERE", "--facility", "a b"], 2, "--facility: letters"),
    ],
)
def test_mistakes_get_one_clear_line(
    runner: CliRunner, broker_dir: Path, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    swap = {
        "BROKER": str(broker_dir),
        "NOWHERE": str(tmp_path / "nowhere"),
        "OUT": str(tmp_path / "p.png"),
    }
    output = run(runner, "provision", *[swap.get(a, a) for a in args], code=code)
    assert message in output


def test_enroll_mistakes(runner: CliRunner, broker_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    output = run(runner, *enroll_args(broker_dir, out, "main in"), code=2)
    assert "Invalid value for --door: letters, digits" in output
    args = enroll_args(broker_dir, out)
    args[args.index("mall-a")] = "mall_a"
    assert "facility 'mall_a' is not served by this broker (known: mall-a)" in run(
        runner, *args, code=1
    )
    args = enroll_args(broker_dir, out)
    args[args.index("hub.local:1883")] = "hub.local:99999"
    assert "bad port" in run(runner, *args, code=1)
