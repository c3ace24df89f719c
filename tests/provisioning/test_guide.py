"""docs/provisioning.md followed to the letter, from the facility's registration to a door
whose visits the registry accepts.

The commands are read from the guide's fenced ``sh`` blocks, not copied here, so the guide
and this test cannot drift apart. They run as written except for what a test must choose:

* the hosts and ports: the registry's URL, the broker's port (``--listen 127.0.0.1 --port``
  added to ``broker init``, with ``--persistence-dir`` and ``--run-as`` so a test's broker
  keeps its state in the test's folder and does not drop to the ``mosquitto`` user),
  ``hub.local`` (``localhost`` here), the hub's web port (a ``[web]`` section added to the
  guide's hub.toml);
* the paths: ``/etc/pintu``, ``/var/lib`` and ``~`` are folders of the test's own (and
  ``$PINTU_BROKER_DIR`` says where the default ``/etc/pintu/broker`` is);
* ``sudo`` is dropped, and ``--reload`` (systemd's ``reload mosquitto``) becomes the
  guide's own alternative for a broker not run by systemd, ``--broker-pid``.

What only systemd does is done the way the guide's units say: the hub and the nodes read
their secrets from a credentials directory holding the files the units' ``LoadCredential=``
lines name. The Pi's part is the project's simulated camera and mock pins, as in
``make demo``. The registry's operator (who verifies the request, not the technician) and
the visitor (a person with a pass) are the test's.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import zxingcpp
from click.testing import CliRunner, Result
from PIL import Image

from pintu import demo_config
from pintu.cli import cli
from provisioning.mosquitto import Mosquitto

from ..processes import ROOT, RegistryProcess, free_port, wait

GUIDE = ROOT / "docs" / "provisioning.md"
UNITS = ROOT / "systemd"
GUIDE_FACILITY = "mall-a-3f9c1e"  # the id the guide's registry answered
NIK = "3174054512900001"
PIC_PASSWORD = "a long enough password"  # noqa: S105 - a test account's password


def guide_commands(text: str) -> list[str]:
    """Every command line of the guide's ``sh`` blocks, continuations joined, comments cut."""
    lines: list[str] = []
    for block in re.findall(r"^ *```sh\n(.*?)^ *```", text, re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line:
                lines.append(" ".join(line.split()))
    return lines


def guide_toml(text: str) -> str:
    """The guide's hub.toml (its only ``toml`` block with an ``[mqtt]`` section)."""
    blocks = [b for b in re.findall(r"^```toml\n(.*?)^```", text, re.S | re.M) if "[mqtt]" in b]
    assert len(blocks) == 1, "the guide shows one hub.toml"
    return str(blocks[0])


def unit_credentials(name: str) -> dict[str, Path]:
    found = re.findall(r"^LoadCredential=([^:\s]+):(\S+)$", (UNITS / name).read_text(), re.M)
    return {cred: Path(source) for cred, source in found}


class Guide:
    """The guide's commands, found by how they start, with the test's hosts and paths."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.commands = guide_commands(GUIDE.read_text(encoding="utf-8"))
        self.facility_id = GUIDE_FACILITY
        self.swaps: list[tuple[str, str]] = []

    def path(self, absolute: str) -> Path:
        """Where the guide's absolute path is in this test."""
        return self.root / absolute.lstrip("/")

    def swap(self, text: str) -> str:
        text = text.replace(GUIDE_FACILITY, self.facility_id)
        for old, new in self.swaps:
            text = text.replace(old, new)
        text = re.sub(r"(?<![\w.])/(etc|var)/", lambda m: f"{self.root}/{m.group(1)}/", text)
        return text.replace("~/", f"{self.root}/home/")

    def find(self, start: str, *containing: str, without: str = "\0") -> list[str]:
        """The one command that starts with ``start`` (after ``sudo``) and has ``containing``."""
        found = [
            c
            for c in self.commands
            if c.removeprefix("sudo ").startswith(start)
            and all(s in c for s in containing)
            and without not in c
        ]
        assert len(found) == 1, f"the guide has one `{start} ... {containing}`: {found}"
        words = shlex.split(self.swap(found[0]))
        return words[1:] if words[0] == "sudo" else words

    def pintu(
        self, start: str, *containing: str, without: str = "\0", extra: tuple[str, ...] = ()
    ) -> Result:
        words = self.find(f"pintu {start}", *containing, without=without)
        result = CliRunner().invoke(cli, [*words[1:], *extra])
        assert result.exit_code == 0, f"{' '.join(words)}\n{result.output}{result.exception!r}"
        return result


class Service:
    """A ``pintu`` service in its own process, with the environment systemd would give it."""

    def __init__(self, name: str, log: Path, *args: str, credentials: Path | None) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "GPIOZERO_PIN_FACTORY": "mock"}
        env.pop("NOTIFY_SOCKET", None)
        env.pop("CREDENTIALS_DIRECTORY", None)
        if credentials is not None:
            env["CREDENTIALS_DIRECTORY"] = str(credentials)
        self.name = name
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pintu", *args], env=env, stdout=out, stderr=out
            )

    def alive(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"{self.name} exited: {self.log.read_text(errors='replace')[-3000:]}")
        return True

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def stack() -> Iterator[list[object]]:
    """What the test starts, stopped in the reverse order whatever happens."""
    started: list[object] = []
    yield started
    for thing in reversed(started):
        thing.stop()  # type: ignore[attr-defined]


def credentials_dir(guide: Guide, unit: str, into: Path) -> Path:
    """What systemd's ``LoadCredential=`` lines of ``unit`` give the service."""
    into.mkdir(parents=True)
    for name, source in unit_credentials(unit).items():
        shutil.copyfile(guide.path(str(source)), into / name)
    return into


@pytest.mark.slow
def test_the_provisioning_guide_as_written_ends_in_visits_the_registry_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stack: list[object]
) -> None:
    guide = Guide(tmp_path / "root")
    work = tmp_path / "root" / "home"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    logs = tmp_path / "logs"
    logs.mkdir()

    # The registry, as its operator runs it; its keys are where the guide says they are.
    registry_dir = guide.path("/var/lib/pintu-registry")
    registry_dir.mkdir(parents=True)
    registry_toml = registry_dir / "registry.toml"
    registry_port = free_port()
    registry_toml.write_text(f'[web]\nhost = "127.0.0.1"\nport = {registry_port}\n')
    registry = RegistryProcess(registry_toml, registry_port)
    registry.start()
    stack.append(registry)
    assert (registry_dir / "keys" / "trust.json").is_file()
    broker_port, web_port = free_port(), free_port()
    guide.swaps = [
        ("https://registry.example.id", registry.url),
        ("http://hub.local:8080", f"http://127.0.0.1:{web_port}"),
        ("hub.local:8883", f"localhost:{broker_port}"),
        ("hub.local", "localhost"),
    ]

    # 0. The facility's registration: the id the registry answers is the one for everything.
    (export,) = [c for c in guide.commands if c.startswith("export PINTU_REGISTRY_URL=")]
    monkeypatch.setenv("PINTU_REGISTRY_URL", guide.swap(export.split("=", 1)[1]))
    out = guide.pintu("provision facility register").output
    found = re.search(r"^facility request (mall-a-[0-9a-f]{6}): requested$", out, re.M)
    assert found, out
    guide.facility_id = found.group(1)
    verified = CliRunner().invoke(
        cli,
        ["registry", "requests", "verify", "--config", str(registry_toml), guide.facility_id,
         "--json"],
    )  # fmt: skip
    assert verified.exit_code == 0, verified.output
    (work / "activation-token").write_text(json.loads(verified.output)["activation_token"])
    status = guide.pintu("provision facility status").output
    assert f"facility {guide.facility_id}: verified" in status, status
    (work / "pic-password").write_text(PIC_PASSWORD + "\n")
    guide.pintu("provision facility activate")
    assert (work / "registry-token").read_text().startswith("rh_")
    guide.pintu("provision facility doors add", "--door main-in ")
    guide.pintu("provision facility doors add", "--door main-out ")
    listed = guide.pintu("provision facility doors list").output
    assert "main-in" in listed and "main-out" in listed, listed

    # 1. The broker, then the hub's credentials.
    broker_dir = guide.path("/etc/pintu/broker")
    # The commands' default broker directory, /etc/pintu/broker, is the test's.
    monkeypatch.setenv("PINTU_BROKER_DIR", str(broker_dir))
    (tmp_path / "broker-state").mkdir()
    guide.pintu(
        "provision broker init",
        extra=(
            "--listen", "127.0.0.1", "--port", str(broker_port),
            "--persistence-dir", str(tmp_path / "broker-state"),
            "--run-as", "root",
        ),
    )  # fmt: skip
    broker = Mosquitto(
        tmp_path / "broker-run",
        broker_port,
        config_file=broker_dir / "mosquitto.conf",
        ca_file=broker_dir / "ca.pem",
    )
    broker.start()
    stack.append(broker)
    assert broker.process is not None
    for secret in ("hub-mqtt-password", "registry-token"):
        install = guide.find("install -m 0600", f"/etc/pintu/{secret}")
        subprocess.run(install, check=True)  # the guide's own `install` lines
    assert guide.path("/etc/pintu/registry-token").read_text().startswith("rh_")

    # 2. The doors' nodes (the wheel is a stand-in: a bundle only carries it to the Pi).
    (work / "dist").mkdir()
    (work / "dist" / "pintu-0.1.0-py3-none-any.whl").write_bytes(b"")
    reload = ("--broker-pid", str(broker.process.pid))
    bundles: dict[str, Path] = {}
    for door in ("main-in", "main-out"):
        words = guide.find("pintu provision node enroll", f"--door {door} ", "--wheel")
        words = [w for w in words if w != "--reload"]
        result = CliRunner().invoke(cli, [*words[1:], *reload])
        assert result.exit_code == 0, result.output
        node = re.search(r"^node (\S+) enrolled for", result.output, re.M)
        assert node, result.output
        bundles[door] = Path(guide.swap("~/bundles")) / node.group(1)

    # The guide's ACL example is what the tool wrote for the door's node, rule for rule.
    (example,) = re.findall(r"^```\n(user main-in-1\n.*?)^```", GUIDE.read_text(), re.S | re.M)
    acl = (broker_dir / "acl").read_text()
    written = re.search(r"^user main-in-1\n(?:topic .*\n)+", acl, re.M)
    assert written, acl
    assert written.group(0) == guide.swap(example)

    # 4. The hub's doors from the tool, under the facility's table of the guide's hub.toml.
    hub_toml = guide.path("/etc/pintu/hub.toml")
    doors = guide.pintu("provision hub-doors", without="--check").output
    hub_text = guide.swap(guide_toml(GUIDE.read_text(encoding="utf-8")))
    hub_text = hub_text.replace("port = 8883", f"port = {broker_port}")
    hub_toml.write_text(f"[web]\nport = {web_port}\n\n{hub_text}\n{doors}")
    guide.pintu("provision hub-doors", "--check")
    guide.pintu("hub check-config")

    # 5. The door's poster holds the door's address at the registry (its URL from the
    # guide's export), which a phone's camera opens.
    guide.pintu("provision poster")
    (poster,) = zxingcpp.read_barcodes(Image.open(work / "main-in.png"))
    assert poster.text == f"{registry.url}/d/{guide.facility_id}/main-in"

    # The hub as its unit runs it: the secrets only through the credentials directory.
    hub = Service(
        "the hub", logs / "hub.log", "-v", "hub", "serve", "--config", str(hub_toml),
        credentials=credentials_dir(guide, "pintu-hub.service", tmp_path / "hub-credentials"),
    )  # fmt: skip
    stack.append(hub)

    def answers() -> bool:
        hub.alive()
        try:
            return httpx.get(f"http://127.0.0.1:{web_port}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait(answers, 60, "the hub to answer")

    # A visitor with a pass from the registry, at the entrance, then at the exit.
    people = work / "people.csv"
    people.write_text(f"nik,name,status,doses\n{NIK},Siti Rahayu,green,2\n")
    for args in (
        ["registry", "import-csv", "--config", str(registry_toml), "--quiet", str(people)],
        ["registry", "issue-pass", "--config", str(registry_toml), "--nik", NIK, "--json"],
    ):
        done = CliRunner().invoke(cli, args)
        assert done.exit_code == 0, done.output
    visitors = work / "visitors.txt"
    visitors.write_text(json.loads(done.output)["text"] + "\n")

    nodes: dict[str, Service] = {}

    def start_node(door: str) -> None:
        bundle = bundles[door]
        state = tmp_path / "nodes" / door
        state.mkdir(parents=True)
        for name in ("trust.json", "list-keys.json"):  # as install.sh does
            shutil.copyfile(bundle / name, state / name)
        sim = demo_config.SimulatedDoor(state, visitors, visitors_per_minute=30.0)
        config = tmp_path / "nodes" / f"{door}.toml"
        config.write_text(demo_config.node_config(bundle / "node.toml", sim))
        nodes[door] = Service(
            door, logs / f"{door}.log", "-v", "node", "run", "--config", str(config),
            # install.sh puts the bundle's mqtt-password where the unit's credential is.
            credentials=bundle,
        )  # fmt: skip
        stack.append(nodes[door])

    hub_db = guide.path("/var/lib/pintu-hub/hub.db")

    def stored(kind: str) -> int:
        with contextlib.closing(sqlite3.connect(f"file:{hub_db}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT count(*) FROM events WHERE kind = ?", (kind,)).fetchone()
        return int(row[0])

    start_node("main-in")
    wait(lambda: nodes["main-in"].alive() and stored("entry") > 0, 60, "an entry stored")
    start_node("main-out")

    registry_db = registry_dir / "registry.db"

    def accepted() -> list[tuple[str, str]]:
        hub.alive()
        with contextlib.closing(sqlite3.connect(f"file:{registry_db}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT facility_id, door_id FROM visits").fetchall()
        return [tuple(r) for r in rows]

    visits = wait(accepted, 90, "a visit accepted by the registry")
    assert set(visits) == {(guide.facility_id, "main-in")}
    metrics = httpx.get(f"http://127.0.0.1:{web_port}/metrics", timeout=5).text
    assert not re.search(r'^pintu_hub_visits\{state="failed"\} [1-9]', metrics, re.M), metrics
