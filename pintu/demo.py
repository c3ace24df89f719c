"""A whole simulated facility on one machine: broker, hub with dashboard, door nodes.

Everything runs as real processes talking real MQTT: a private Mosquitto, ``pintu hub
serve`` and one ``pintu node run`` per door, each node fed by a synthetic camera scene in
which simulated visitors hold up passes of a mixed population (mostly green, some yellow,
red and black). GPIO runs on gpiozero's mock pins. Ctrl-C stops every process.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import numpy as np

from protocol import passes
from protocol.status import Status
from protocol.trust import SigningKey, TrustList
from provisioning.mosquitto import Mosquitto, free_port, port_open

logger = logging.getLogger(__name__)

FACILITY = "demo-mall"
# The population's mix of statuses: mostly fully vaccinated, as in 2021's rollout.
STATUS_MIX = {Status.GREEN: 0.70, Status.YELLOW: 0.12, Status.RED: 0.12, Status.BLACK: 0.06}
NAMES = (
    "Ayu", "Budi", "Citra", "Dewi", "Eko", "Fitri", "Gilang", "Hadi", "Indah", "Joko",
    "Kartika", "Lestari", "Made", "Nur", "Oki", "Putri", "Rizky", "Sari", "Taufik", "Wulan",
)  # fmt: skip
SURNAMES = ("Santoso", "Wijaya", "Saputra", "Lestari", "Hidayat", "Kusuma", "Pratama", "Nugroho")


class DemoError(RuntimeError):
    """The demo cannot start."""


@dataclass(frozen=True)
class DemoOptions:
    workdir: Path
    entries: int = 2
    exits: int = 1
    capacity: int = 30
    population: int = 200
    visitors_per_minute: float = 20.0
    web_port: int | None = None
    seed: int = 2021


@dataclass(frozen=True)
class Door:
    door_id: str
    node_id: str
    direction: str
    name: str


def doors_of(options: DemoOptions) -> list[Door]:
    doors = [
        Door(f"entrance-{i}", f"node-in-{i}", "entry", f"Entrance {i}")
        for i in range(1, options.entries + 1)
    ]
    doors += [
        Door(f"exit-{i}", f"node-out-{i}", "exit", f"Exit {i}") for i in range(1, options.exits + 1)
    ]
    return doors


def _toml_value(value: object) -> str:
    # JSON strings, numbers and booleans are valid TOML values.
    return json.dumps(value)


def _toml(tables: list[tuple[str, dict[str, object]]]) -> str:
    lines: list[str] = []
    for name, table in tables:
        if name:
            lines.append(f"\n{name}")
        lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
    return "\n".join(lines).lstrip() + "\n"


class Demo:
    def __init__(self, options: DemoOptions, say: Callable[[str], None] = logger.info) -> None:
        self.options = options
        self.say = say
        self.workdir = options.workdir.resolve()
        self.doors = doors_of(options)
        self.broker: Mosquitto | None = None
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.web_port = options.web_port or (8080 if not port_open("127.0.0.1", 8080) else 0)
        self.web_port = self.web_port or free_port()
        self.admin_password = ""

    # -- preparation -------------------------------------------------------------

    def prepare(self) -> None:
        """Keys, a population of passes, and the config of every process."""
        work = self.workdir
        (work / "logs").mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(self.options.seed)
        key = SigningKey.generate()
        key.save(work / "signing.pem")
        trust = TrustList.of([key.trusted(not_before=int(time.time()) - 86_400)], int(time.time()))
        trust.save(work / "trust.json")
        codes, people = self._population(key, rng)
        (work / "visitors.txt").write_text("\n".join(codes) + "\n", encoding="utf-8")
        (work / "people.csv").write_text(
            "nik,name,status\n" + "".join(f"{n},{name},{s}\n" for n, name, s in people),
            encoding="utf-8",
        )
        self.admin_password = secrets.token_urlsafe(9)
        secret = work / "admin-password"
        secret.write_text(self.admin_password + "\n", encoding="utf-8")
        secret.chmod(0o600)
        for door in self.doors:
            state = work / door.node_id
            state.mkdir(exist_ok=True)
            trust.save(state / "trust.json")

    def _population(
        self, key: SigningKey, rng: np.random.Generator
    ) -> tuple[list[str], list[tuple[str, str, str]]]:
        statuses = list(STATUS_MIX)
        weights = np.array([STATUS_MIX[s] for s in statuses])
        now = int(time.time())
        codes, people = [], []
        for i in range(self.options.population):
            status = statuses[int(rng.choice(len(statuses), p=weights))]
            doses = {Status.GREEN: 2, Status.YELLOW: 1}.get(status, 0)
            subject = rng.bytes(passes.SUBJECT_BYTES)
            codes.append(passes.issue(key, subject, status, doses, now - 3600, now + 7 * 86_400))
            nik = f"3171{int(rng.integers(10**11, 10**12)):012d}"
            name = f"{NAMES[i % len(NAMES)]} {SURNAMES[int(rng.integers(len(SURNAMES)))]}"
            people.append((nik, name, status.label))
        return codes, people

    def hub_config(self, broker: Mosquitto) -> str:
        work = self.workdir
        tables: list[tuple[str, dict[str, object]]] = [
            ("[mqtt]", {"host": broker.host, "port": broker.port, "client_id": "demo-hub"}),
            ("[store]", {"backend": "sqlite", "path": str(work / "hub.db")}),
            (
                "[web]",
                {
                    "host": "127.0.0.1",
                    "port": self.web_port,
                    "secret_key_file": str(work / "web-secret"),
                },
            ),
            ("[registry]", {"kind": "local", "path": str(work / "people.csv")}),
            (
                "[[facilities]]",
                {
                    "id": FACILITY,
                    "name": "Demo Mall",
                    "capacity": self.options.capacity,
                    "soft_threshold_percent": 80,
                    "timezone": "Asia/Jakarta",
                },
            ),
        ]
        for door in self.doors:
            tables.append(
                (
                    "[[facilities.doors]]",
                    {
                        "id": door.door_id,
                        "name": door.name,
                        "direction": door.direction,
                        "nodes": [door.node_id],
                    },
                )
            )
        return _toml(tables)

    def node_config(self, door: Door, broker: Mosquitto) -> str:
        per_minute = self.options.visitors_per_minute / max(
            1, self.options.entries if door.direction == "entry" else self.options.exits
        )
        if door.direction == "exit":
            per_minute *= 0.8  # people stay a while: the building fills up
        tables: list[tuple[str, dict[str, object]]] = [
            (
                "",
                {
                    "node_id": door.node_id,
                    "facility_id": FACILITY,
                    "door_id": door.door_id,
                    "direction": door.direction,
                    "state_dir": str(self.workdir / door.node_id),
                },
            ),
            (
                "[source]",
                {
                    "kind": "synthetic",
                    "preset": "default",
                    "fps": 8.0,
                    "visitors_file": str(self.workdir / "visitors.txt"),
                    "visitors_per_minute": round(per_minute, 2),
                    "visit_frames": 6,
                },
            ),
            ("[pins]", {"pin_factory": "mock"}),
            ("[pins.leds]", {"kind": "three", "red": 17, "yellow": 27, "green": 22}),
            ("[pins.buzzer]", {"pin": 18}),
            (
                "[pins.relay]",
                {"pin": 5, "active_high": False, "pulse_ms": 1500, "wiring": "fail_secure"},
            ),
            ("[gate]", {"passage": "assume", "signal_s": 1.5}),
            ("[mqtt]", {"host": broker.host, "port": broker.port}),
        ]
        return _toml(tables)

    # -- processes ---------------------------------------------------------------

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.workdir / "logs" / f"{name}.log").open("ab")
        env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "pintu", *args],
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,  # Ctrl-C reaches the demo, which stops them in order
        )
        log.close()
        self.processes.append((name, process))
        return process

    def _run(self, *args: str) -> None:
        result = subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "pintu", *args], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise DemoError(f"pintu {' '.join(args[:2])} failed: {result.stderr.strip()}")

    def start(self, broker: Mosquitto | None = None) -> None:
        self.prepare()
        self.say(f"workdir: {self.workdir}")
        self.broker = broker or Mosquitto(self.workdir / "broker")
        if broker is None:
            self.broker.start()
        self.say(f"broker: mqtt://{self.broker.host}:{self.broker.port}")
        hub_toml = self.workdir / "hub.toml"
        hub_toml.write_text(self.hub_config(self.broker), encoding="utf-8")
        self._run(
            "hub", "add-user", "--config", str(hub_toml), "--username", "admin",
            "--role", "admin", "--password-file", str(self.workdir / "admin-password"),
        )  # fmt: skip
        self._spawn("hub", "-v", "hub", "serve", "--config", str(hub_toml))
        self.wait_http(f"{self.url}/healthz", "the hub")
        for door in self.doors:
            path = self.workdir / f"{door.node_id}.toml"
            path.write_text(self.node_config(door, self.broker), encoding="utf-8")
            self._spawn(door.node_id, "-v", "node", "run", "--config", str(path))
        self.say(f"door nodes: {', '.join(d.node_id for d in self.doors)}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def wait_http(self, url: str, what: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        pause = threading.Event()
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - local
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            pause.wait(0.2)
        raise DemoError(f"{what} did not answer at {url} within {timeout_s:.0f} s")

    def check_alive(self) -> None:
        for name, process in self.processes:
            if process.poll() is not None:
                log = self.workdir / "logs" / f"{name}.log"
                tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
                raise DemoError(f"{name} exited with {process.returncode}; its log ends:\n{tail}")

    def stop(self) -> None:
        """Nodes first (their journals flush to the hub), then the hub, then the broker."""
        for _name, process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in reversed(self.processes):
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in 20 s; killing it", name)
                process.kill()
                process.wait()
        self.processes.clear()
        if self.broker is not None:
            self.broker.stop()


def run_demo(options: DemoOptions, duration_s: float | None, say: Callable[[str], None]) -> None:
    demo = Demo(options, say)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        demo.start()
        say("")
        say(f"  dashboard:  {demo.url}/")
        say(f"  log in as:  admin / {demo.admin_password}")
        say(f"  people for the staff desk (NIK, name, status): {demo.workdir / 'people.csv'}")
        say("")
        say("Press Ctrl-C to stop everything.")
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while not stop.wait(1.0):
            demo.check_alive()
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        say("stopping...")
        demo.stop()
        say("stopped.")
