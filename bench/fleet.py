"""A whole facility as real processes, for fault injection: broker, hub, door nodes, links.

Each part is a process of its own, as in production, so a fault is a real one: Mosquitto
killed with SIGKILL and started again on the same port, ``pintu hub serve`` killed mid-batch,
``pintu node run`` killed mid-publish or mid-journal-write. Each node reaches the broker
through a :class:`LinkProxy` of its own, a TCP forwarder that can cut the link (both ends
closed, new connections refused) or stall it (bytes no longer forwarded, sockets left open:
a half-open link, as when a cable is pulled somewhere between the door and the broker).

Doors are fed by a folder of rendered camera frames played in a loop: a pass held up for
one frame, then empty frames, so each door decides at a fixed rate (a turnstile admits
about one person a second). GPIO runs on gpiozero's mock pins.

With ``registry=True`` the facility has a central registry too: a ``pintu registry serve``
process seeded the way the demo seeds one (an operator, a person per pass, the facility
requested, verified and activated with its doors, all over the registry's API). The doors'
passes and trust list then come from the registry's signing key, the doors pin its list
keys, and the hub syncs the lists it signs and pushes its visits to it (``[registry] kind
= "http"``, short intervals), so the registry can be killed and started again like any
other part.

:func:`check` holds the fleet to its promises once the faults are over: every event a node
journaled is stored by the hub exactly once, the hub's occupancy is its stored entries
minus exits, each journal passes SQLite's integrity check, and no relay pulse happened
without a decision that ordered it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import selectors
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from bench.memory import toml_text
from firmware.synthetic import PRESETS, render
from pintu.demo_config import registry_config
from pintu.demo_registry import DoorRequest, FacilityRequest, RegistryOperator, open_registry
from protocol import passes
from protocol.status import Status
from protocol.trust import SigningKey, TrustList
from provisioning.mosquitto import Mosquitto, free_port

logger = logging.getLogger(__name__)

FACILITY = "f-faults"
RELAY_PIN = 5
PULSE_MS = 150
# Released kinds: each one is a relay pulse the door ordered.
RELEASED = ("entry", "exit", "manual", "not_passed")
# A release: the relay pulsed open, or kept open longer when it still was.
_PULSE = re.compile(r"relay on GPIO\d+ (?:pulsed open|kept open)")
_OPENING = re.compile(r"relay on GPIO\d+ pulsed open")
_ORDER = re.compile(r"decision: admit ")
OPERATOR, OPERATOR_PASSWORD = "operator", "a long operator password for the faults"
PIC_EMAIL, PIC_PASSWORD = "pic@faults.example", "a long PIC password for the faults"
_METRIC = re.compile(r"^(\w+)(?:\{([^}]*)\})? (\S+)$")


class FleetError(RuntimeError):
    """A part of the fleet did not start or did not come back."""


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll ``condition`` until it holds (and return its value); FleetError after the deadline."""
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise FleetError(f"not within {timeout_s:.0f} s: {what}")
        pause.wait(0.05)
    return result


# -- links -----------------------------------------------------------------------------


class LinkProxy:
    """A TCP forwarder from a local port to the broker that can be cut, stalled and restored."""

    def __init__(self, target_port: int, name: str, host: str = "127.0.0.1") -> None:
        self.name = name
        self.host = host
        self.target_port = target_port
        self.state: Literal["up", "cut", "stalled"] = "up"
        self._listener = socket.create_server((host, 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name=f"link-{name}", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.state == "cut":
                client.close()  # as a dead route looks to a reconnecting node
                continue
            try:
                upstream = socket.create_connection((self.host, self.target_port), timeout=2)
            except OSError:
                client.close()  # the broker is down: the node sees its connect fail
                continue
            upstream.settimeout(None)
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(
                target=self._pump, args=(client, upstream), name=f"link-{self.name}", daemon=True
            ).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(a, selectors.EVENT_READ, b)
            sel.register(b, selectors.EVENT_READ, a)
            try:
                while not self._closed and self.state != "cut":
                    if self.state == "stalled":
                        # Half-open: nothing read, nothing forwarded, nothing closed.
                        threading.Event().wait(0.05)
                        continue
                    for key, _ in sel.select(0.1):
                        src: socket.socket = key.fileobj  # type: ignore[assignment]
                        data = src.recv(65536)
                        if not data:
                            return
                        key.data.sendall(data)
            except OSError:
                return
            finally:
                with self._lock:
                    if (a, b) in self._pairs:
                        self._pairs.remove((a, b))
                for s in (a, b):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)
                    s.close()

    def cut(self) -> None:
        """Close both ends of every connection and refuse new ones."""
        self.state = "cut"
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            for s in pair:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def stall(self) -> None:
        """Stop forwarding but keep the sockets open: a half-open link."""
        self.state = "stalled"

    def restore(self) -> None:
        if self.state == "stalled":
            # A link that stalled long enough has been given up by both ends' keep-alives;
            # drop what is left so neither side writes into a dead connection.
            self.cut()
        self.state = "up"

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()


# -- the fleet -------------------------------------------------------------------------


@dataclass(frozen=True)
class DoorSpec:
    node_id: str
    door_id: str
    direction: Literal["entry", "exit"]


def doors(entries: int, exits: int) -> list[DoorSpec]:
    made = [DoorSpec(f"n-in-{i}", f"d-in-{i}", "entry") for i in range(1, entries + 1)]
    return made + [DoorSpec(f"n-out-{i}", f"d-out-{i}", "exit") for i in range(1, exits + 1)]


@dataclass
class Proc:
    name: str
    args: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    kills: int = 0
    starts: int = 0
    env: dict[str, str] = field(default_factory=dict)  # added to the fleet's environment

    def start(self, env: dict[str, str]) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # our own interpreter and module
                [sys.executable, "-m", "pintu", *self.args],
                stdout=subprocess.DEVNULL,
                stderr=out,
                env={**env, **self.env},
                start_new_session=True,
            )
        self.starts += 1

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.running and self.process is not None else None

    def kill(self) -> None:
        """SIGKILL: no clean-up, no last words, as a power cut or the OOM killer."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.kills += 1

    def stop(self, timeout_s: float = 30.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def tail(self, chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@dataclass
class Fleet:
    """Broker, hub and door nodes under ``workdir``; every part can be killed and restarted."""

    workdir: Path
    specs: list[DoorSpec] = field(default_factory=lambda: doors(2, 1))
    rate_per_s: float = 1.0  # decisions per second at each door
    fps: float = 4.0
    passes_per_door: int = 20
    seed: int = 2021
    ack_timeout_s: float = 3.0
    # Extra environment of some node processes (libfaketime for a clock step, say).
    node_env: dict[str, dict[str, str]] = field(default_factory=dict)
    # Nodes the caller runs in its own process (to reach their clock or pins); not spawned.
    in_process: frozenset[str] = frozenset()
    # A central registry process the hub syncs with and pushes visits to.
    registry: bool = False
    broker: Mosquitto = field(init=False)
    hub: Proc = field(init=False)
    nodes: dict[str, Proc] = field(init=False, default_factory=dict)
    links: dict[str, LinkProxy] = field(init=False, default_factory=dict)
    web_port: int = field(init=False, default=0)
    facility_id: str = field(init=False, default=FACILITY)  # the registry's id, with one
    registry_proc: Proc | None = field(init=False, default=None)
    registry_port: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.workdir = self.workdir.resolve()
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "PYTHONUNBUFFERED": "1"}
        self.broker = Mosquitto(self.workdir / "broker")
        self.web_port = free_port()

    # -- preparation ----------------------------------------------------------------

    def prepare(self) -> None:
        rng = np.random.default_rng(self.seed)
        # Mostly green, one in ten red: a denial is an event like any other.
        statuses = [
            Status.RED if i % 10 == 9 else Status.GREEN for i in range(self.passes_per_door)
        ]
        list_keys: bytes | None = None
        if self.registry:
            codes, trust, list_keys = self._prepare_registry(statuses)
        else:
            key = SigningKey.generate()
            now = int(time.time())
            trust = TrustList.of([key.trusted(not_before=now - 86_400)], now)
            codes = [
                passes.issue(
                    key,
                    (i + 1).to_bytes(passes.SUBJECT_BYTES, "big"),
                    status,
                    2,
                    now - 3600,
                    now + 7 * 86_400,
                )
                for i, status in enumerate(statuses)
            ]
        frames = self.workdir / "frames"
        frames.mkdir(exist_ok=True)
        blank = render(None, PRESETS["easy"], rng)
        gap = max(0, round(self.fps / self.rate_per_s) - 1)
        for i, code in enumerate(codes):
            Image.fromarray(render(code, PRESETS["easy"], rng)).save(frames / f"{i:03d}-0.png")
            for j in range(gap):
                Image.fromarray(blank).save(frames / f"{i:03d}-{j + 1}.png")
        (self.workdir / "idle").mkdir(exist_ok=True)
        Image.fromarray(blank).save(self.workdir / "idle" / "blank.png")
        self.broker.write_conf()
        (self.workdir / "hub.toml").write_text(self._hub_toml(), encoding="utf-8")
        for spec in self.specs:
            state = self.state_dir(spec.node_id)
            state.mkdir(exist_ok=True)
            trust.save(state / "trust.json")
            if list_keys is not None:
                # As enrolment with --list-keys: the doors believe the lists the registry signs.
                (state / "list-keys.json").write_bytes(list_keys)
            link = LinkProxy(self.broker.port, spec.node_id)
            self.links[spec.node_id] = link
            idle = self.workdir / "idle"
            for name, folder, fps in (("", frames, self.fps), ("-idle", idle, 2.0)):
                path = self.workdir / f"{spec.node_id}{name}.toml"
                path.write_text(toml_text(self._node_doc(spec, link, folder, fps)), "utf-8")
            self.nodes[spec.node_id] = Proc(
                spec.node_id,
                ["-v", "node", "run", "--config", str(self.workdir / f"{spec.node_id}.toml")],
                self.workdir / "logs" / f"{spec.node_id}.log",
                env=self.node_env.get(spec.node_id, {}),
            )
        self.hub = Proc(
            "hub",
            ["-v", "hub", "serve", "--config", str(self.workdir / "hub.toml")],
            self.workdir / "logs" / "hub.log",
        )

    def _prepare_registry(self, statuses: list[Status]) -> tuple[list[str], TrustList, bytes]:
        """Seed and start the registry; the passes it issued (texts), its trust list and the
        list keys the doors pin."""
        directory = self.workdir / "registry"
        directory.mkdir(exist_ok=True)
        config_path = directory / "registry.toml"
        self.registry_port = free_port()
        config_path.write_text(registry_config(self.registry_port), encoding="utf-8")
        registry = open_registry(config_path)
        try:
            registry.add_operator(OPERATOR, OPERATOR_PASSWORD)
        finally:
            registry.close()
        self.registry_proc = Proc(
            "registry",
            ["-v", "registry", "serve", "--config", str(config_path)],
            self.workdir / "logs" / "registry.log",
        )
        self.start_registry()
        operator = RegistryOperator(self.registry_url)
        try:
            operator.login(OPERATOR, OPERATOR_PASSWORD)
            codes = []
            for i, status in enumerate(statuses):
                nik = f"3174050101{i + 1:06d}"
                operator.set_person(nik, f"Visitor {i + 1}", status.label, 2)
                codes.append(operator.issue_pass(nik))
            request = FacilityRequest(
                name="Fault test facility",
                address="Jl. Gatot Subroto 1, Jakarta",
                type="office",
                capacity=500,
                pic_name="Dewi Lestari",
                pic_email=PIC_EMAIL,
                pic_password=PIC_PASSWORD,
            )
            doors = [
                DoorRequest(s.door_id, s.door_id, "entrance" if s.direction == "entry" else "exit")
                for s in self.specs
            ]
            active = operator.register_facility(request, doors)
            trust = TrustList.loads(operator.trust())
            list_keys = operator.list_keys()
        finally:
            operator.close()
        self.facility_id = active.facility_id
        token = self.workdir / "hub-token"
        token.write_text(active.hub_token + "\n", encoding="utf-8")
        token.chmod(0o600)
        return codes, trust, list_keys

    @property
    def registry_url(self) -> str:
        return f"http://127.0.0.1:{self.registry_port}"

    def state_dir(self, node_id: str) -> Path:
        return self.workdir / node_id

    def _hub_toml(self) -> str:
        doc: dict[str, Any] = {
            "mqtt": {"host": self.broker.host, "port": self.broker.port, "client_id": "hub-1"},
            "store": {"backend": "sqlite", "path": str(self.hub_db)},
            "web": {
                "host": "127.0.0.1",
                "port": self.web_port,
                "secret_key_file": str(self.workdir / "web-secret"),
            },
        }
        if self.registry:
            # Short intervals and a small backoff cap, so an outage of seconds shows.
            doc["registry"] = {
                "kind": "http",
                "url": self.registry_url,
                "credentials_file": str(self.workdir / "hub-token"),
                "timeout_s": 2.0,
                "sync_timeout_s": 5.0,
                "sync_interval_s": 1.0,
                "push_interval_s": 0.5,
                "retry_max_s": 2.0,
                # Unchanged lists go out again this often while the registry confirms them.
                "lists_refresh_s": 5.0,
            }
        text = toml_text(doc)
        text += f'\n[[facilities]]\nid = "{self.facility_id}"\nname = "Fault test facility"\n'
        for spec in self.specs:
            text += (
                f'\n[[facilities.doors]]\nid = "{spec.door_id}"\nname = "{spec.door_id}"\n'
                f'direction = "{spec.direction}"\nnodes = ["{spec.node_id}"]\n'
            )
        return text

    def _node_doc(
        self, spec: DoorSpec, link: LinkProxy, folder: Path, fps: float
    ) -> dict[str, Any]:
        return {
            "node_id": spec.node_id,
            "facility_id": self.facility_id,
            "door_id": spec.door_id,
            "direction": spec.direction,
            "state_dir": str(self.state_dir(spec.node_id)),
            "source": {"kind": "folder", "path": str(folder), "loop": True, "fps": fps},
            "scan": {"cooldown_s": 0.5, "restart_source_after_s": 1.0},
            "policy": {"anti_passback_s": 0},
            "gate": {"passage": "assume", "signal_s": 0.2},
            "pins": {
                "pin_factory": "mock",
                "leds": {"kind": "three", "red": 17, "yellow": 27, "green": 22},
                "buzzer": {"pin": 18},
                "relay": {
                    "pin": RELAY_PIN,
                    "active_high": True,
                    "pulse_ms": PULSE_MS,
                    "wiring": "fail_secure",
                },
            },
            "mqtt": {
                "host": "127.0.0.1",
                "port": link.port,
                "reconnect_min_s": 0.2,
                "reconnect_max_s": 2.0,
                "ack_timeout_s": self.ack_timeout_s,
                "keepalive_s": 5,
            },
        }

    @property
    def hub_db(self) -> Path:
        return self.workdir / "hub.db"

    # -- running --------------------------------------------------------------------

    def start(self) -> None:
        self.prepare()
        self.broker.start()
        self.start_hub()
        for node_id, proc in self.nodes.items():
            if node_id not in self.in_process:
                proc.start(self.env)

    def start_hub(self, timeout_s: float = 60.0) -> None:
        self.hub.start(self.env)
        wait_until(self._hub_ready, timeout_s, "the hub's /healthz")

    def _hub_ready(self) -> bool:
        if not self.hub.running:
            raise FleetError(f"the hub exited; its log ends:\n{self.hub.tail()}")
        try:
            url = f"http://127.0.0.1:{self.web_port}/healthz"
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def start_registry(self, timeout_s: float = 60.0) -> None:
        assert self.registry_proc is not None, "the fleet has no registry"
        self.registry_proc.start(self.env)
        wait_until(self._registry_ready, timeout_s, "the registry's /api/v1/health")

    def kill_registry(self) -> None:
        assert self.registry_proc is not None, "the fleet has no registry"
        self.registry_proc.kill()

    def _registry_ready(self) -> bool:
        assert self.registry_proc is not None
        if not self.registry_proc.running:
            raise FleetError(f"the registry exited; its log ends:\n{self.registry_proc.tail()}")
        try:
            url = f"http://127.0.0.1:{self.registry_port}/api/v1/health"
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    @property
    def _procs(self) -> list[Proc]:
        registry = [self.registry_proc] if self.registry_proc is not None else []
        return [self.hub, *self.nodes.values(), *registry]

    def check_alive(self) -> None:
        for proc in self._procs:
            if proc.process is not None and not proc.running and proc.process.returncode != -9:
                raise FleetError(f"{proc.name} exited ({proc.process.returncode}):\n{proc.tail()}")

    def run_for(self, seconds: float, each: Callable[[], None] | None = None) -> None:
        """Let the fleet run ``seconds``: the length of an outage, not a wait for a condition.

        ``each`` is called about twice a second meanwhile (to look at the hub, say).
        """
        end = time.monotonic() + seconds
        pause = threading.Event()
        while (left := end - time.monotonic()) > 0:
            self.check_alive()
            if each is not None:
                each()
            pause.wait(min(0.5, left))

    def restart_broker(self, down_s: float = 0.0) -> None:
        """SIGKILL Mosquitto, leave it down ``down_s`` seconds, start it on the same port."""
        self.broker.kill()
        self.run_for(down_s)
        self.broker.start()

    def kill_hub(self) -> None:
        self.hub.kill()

    def kill_node(self, node_id: str) -> None:
        self.nodes[node_id].kill()

    def start_node(self, node_id: str, idle: bool = False) -> None:
        proc = self.nodes[node_id]
        if idle:
            proc.args[-1] = str(self.workdir / f"{node_id}-idle.toml")
        proc.start(self.env)

    # -- reading state --------------------------------------------------------------

    def journal_path(self, node_id: str) -> Path:
        return self.state_dir(node_id) / "journal.db"

    def journal_bytes(self, node_id: str) -> int:
        path = self.journal_path(node_id)
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())

    def journal_state(self, node_id: str) -> tuple[int, set[int], bool]:
        """(last seq given out, seqs still pending, integrity ok) read from the file."""
        path = self.journal_path(node_id)
        if not path.exists():
            return 0, set(), True  # the node has not started yet
        # Read-only, so looking never creates or changes a journal.
        with contextlib.closing(
            sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        ) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if "events" not in tables:
                return 0, set(), True  # created, not yet migrated
            row = None
            if "sqlite_sequence" in tables:
                row = conn.execute(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'events'"
                ).fetchone()
            pending = {int(r[0]) for r in conn.execute("SELECT seq FROM events")}
            ok = conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return (int(row[0]) if row else 0), pending, ok

    def stored(self) -> list[tuple[str, str, int, str, str | None, int, int, str | None]]:
        """(event_id, node_id, seq, kind, direction, delta, late, flag) of every stored event."""
        with contextlib.closing(sqlite3.connect(self.hub_db, timeout=10)) as conn:
            rows = conn.execute(
                "SELECT event_id, node_id, seq, kind, direction, delta, late, flag FROM events"
                " WHERE facility_id = ?",
                (self.facility_id,),
            ).fetchall()
        return [tuple(r) for r in rows]

    def occupancy(self) -> int:
        with contextlib.closing(sqlite3.connect(self.hub_db, timeout=10)) as conn:
            row = conn.execute(
                "SELECT value FROM occupancy WHERE facility_id = ? AND zone_id = ''",
                (self.facility_id,),
            ).fetchone()
        return int(row[0]) if row else 0

    def counted(self) -> tuple[int, int]:
        """(occupancy, stored entries - exits) read in one transaction, so a running hub's
        next batch cannot fall between the two."""
        with contextlib.closing(sqlite3.connect(self.hub_db, timeout=10)) as conn:
            conn.execute("BEGIN")
            row = conn.execute(
                "SELECT value FROM occupancy WHERE facility_id = ? AND zone_id = ''",
                (self.facility_id,),
            ).fetchone()
            (net,) = conn.execute(
                "SELECT COALESCE(SUM(CASE WHEN delta > 0 THEN 1 WHEN delta < 0 THEN -1"
                " ELSE 0 END), 0) FROM events WHERE facility_id = ?",
                (self.facility_id,),
            ).fetchone()
            conn.rollback()
        return (int(row[0]) if row else 0), int(net)

    def hub_visits(self) -> dict[str, str]:
        """visit_id -> state (pending, sent, failed) of every visit the hub derived."""
        with contextlib.closing(sqlite3.connect(self.hub_db, timeout=10)) as conn:
            rows = conn.execute(
                "SELECT visit_id, state FROM visits WHERE facility_id = ?", (self.facility_id,)
            ).fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    def registry_visits(self) -> Counter[str]:
        """How many times each visit_id is stored at the registry (read from its file)."""
        path = self.workdir / "registry" / "registry.db"
        with contextlib.closing(
            sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        ) as conn:
            rows = conn.execute(
                "SELECT visit_id FROM visits WHERE facility_id = ?", (self.facility_id,)
            ).fetchall()
        return Counter(str(r[0]) for r in rows)

    def open_alerts(self, kind: str) -> list[str]:
        """node_id of each open (not cleared) alert of ``kind`` at the hub."""
        with contextlib.closing(sqlite3.connect(self.hub_db, timeout=10)) as conn:
            rows = conn.execute(
                "SELECT node_id FROM alerts WHERE facility_id = ? AND kind = ?"
                " AND cleared_at IS NULL",
                (self.facility_id, kind),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def list_ages(self) -> dict[str, tuple[float | None, float | None, str | None]]:
        """node_id -> (trust, status list age, when) as the node last reported them."""
        with contextlib.closing(sqlite3.connect(self.hub_db, timeout=10)) as conn:
            rows = conn.execute(
                "SELECT node_id, trust_list_age_s, status_list_age_s, status_ts FROM nodes"
                " WHERE facility_id = ?",
                (self.facility_id,),
            ).fetchall()
        return {str(r[0]): (r[1], r[2], r[3]) for r in rows}

    def hub_metrics(self) -> dict[str, float]:
        """``GET /metrics`` of the hub: ``name{labels}`` -> value; FleetError if it fails."""
        url = f"http://127.0.0.1:{self.web_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
        except (urllib.error.URLError, OSError) as err:
            raise FleetError(f"the hub's /metrics did not answer: {err}") from err
        found: dict[str, float] = {}
        for line in text.splitlines():
            if (match := _METRIC.match(line)) is not None:
                name, labels, value = match.groups()
                found[f"{name}{{{labels}}}" if labels else name] = float(value)
        return found

    def stored_seqs(self) -> dict[str, Counter[int]]:
        seqs: dict[str, Counter[int]] = {spec.node_id: Counter() for spec in self.specs}
        for _, node_id, seq, *_ in self.stored():
            seqs.setdefault(node_id, Counter())[seq] += 1
        return seqs

    # -- ending ---------------------------------------------------------------------

    def settle(self, timeout_s: float = 120.0) -> None:
        """Stop the doors and make sure every journaled event has reached the hub.

        Each node is stopped with SIGTERM; one whose journal still holds events the hub
        lacks is started once more with an empty camera view, so they go out, and stopped
        again when the hub has stored all it ever journaled.
        """
        for link in self.links.values():
            link.restore()
        if not self.broker.running:
            self.broker.start()
        if not self.hub.running:
            self.start_hub()
        if self.registry_proc is not None and not self.registry_proc.running:
            self.start_registry()
        for proc in self.nodes.values():
            proc.stop()
        # A node stopped cleanly has handed everything to the broker; only a node whose
        # journal still holds what the hub never got is started again to send it.
        with contextlib.suppress(FleetError):
            self._wait_all_stored(10.0, "events stored")
        behind = [n for n in self.nodes if not self._all_stored(n)]
        for node_id in behind:
            self.start_node(node_id, idle=True)
        self._wait_all_stored(timeout_s, "events stored")
        for node_id in behind:
            self.nodes[node_id].stop()
        self._wait_all_stored(timeout_s, "last events stored")

    def _wait_all_stored(self, timeout_s: float, what: str) -> None:
        def done() -> bool:
            return all(self._all_stored(node_id) for node_id in self.nodes)

        wait_until(done, timeout_s, what)

    def _all_stored(self, node_id: str) -> bool:
        last, _, _ = self.journal_state(node_id)
        seqs = self.stored_seqs().get(node_id, Counter())
        return set(range(1, last + 1)) <= set(seqs)

    def close(self) -> None:
        for proc in [*self.nodes.values(), getattr(self, "hub", None), self.registry_proc]:
            if proc is not None:
                proc.stop(10)
        for link in self.links.values():
            link.close()
        self.broker.stop()


# -- the invariants ----------------------------------------------------------------------


@dataclass
class Tally:
    """What the fleet did and whether it kept its promises."""

    sent: int = 0  # events the nodes journaled (seq 1..last of every node)
    stored: int = 0
    duplicated: int = 0  # stored more than once (same node and seq)
    lost: int = 0  # journaled but neither stored nor still in a journal
    late: int = 0  # stored from a resend (the journal doing its job)
    admitted: int = 0  # relay pulses the doors ordered
    pulses: int = 0  # relay pulses the nodes' logs show
    unordered_pulses: int = 0  # pulses with no decision before them
    occupancy: int = 0
    expected_occupancy: int = 0
    integrity_failures: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def count_openings(log: Path) -> int:
    """How many times a node's relay went open (a release while it was open keeps it open:
    no new pulse on the pin), across all its runs."""
    if not log.exists():
        return 0
    return sum(1 for line in log.read_text(errors="replace").splitlines() if _OPENING.search(line))


def count_pulses(log: Path) -> tuple[int, int]:
    """(pulses, pulses no decision ordered) from a node's log across all its runs."""
    pulses = unordered = orders = 0
    if not log.exists():
        return 0, 0
    for line in log.read_text(errors="replace").splitlines():
        if "journal " in line and " open: " in line:
            orders = 0  # a new process: nothing is pending from the last one
        if _ORDER.search(line):
            orders += 1
        elif _PULSE.search(line):
            pulses += 1
            if orders > 0:
                orders -= 1
            else:
                unordered += 1

    return pulses, unordered


def check(fleet: Fleet) -> Tally:
    """The invariants, after :meth:`Fleet.settle`; each broken one is a line in ``problems``."""
    tally = Tally()
    rows = fleet.stored()
    by_node = fleet.stored_seqs()
    tally.stored = len(rows)
    tally.late = sum(1 for r in rows if r[6])
    ids = Counter(r[0] for r in rows)
    if any(n > 1 for n in ids.values()):
        tally.problems.append("an event_id is stored twice")
    for spec in fleet.specs:
        last, pending, ok = fleet.journal_state(spec.node_id)
        tally.sent += last
        if not ok:
            tally.integrity_failures += 1
            tally.problems.append(f"{spec.node_id}: journal fails the integrity check")
        seqs = by_node.get(spec.node_id, Counter())
        doubled = sum(n - 1 for n in seqs.values() if n > 1)
        tally.duplicated += doubled
        missing = set(range(1, last + 1)) - set(seqs) - pending
        tally.lost += len(missing)
        if doubled:
            tally.problems.append(f"{spec.node_id}: {doubled} events stored twice")
        if missing:
            tally.problems.append(f"{spec.node_id}: seqs lost: {sorted(missing)[:10]}")
        extra = set(seqs) - set(range(1, last + 1))
        if extra:
            tally.problems.append(f"{spec.node_id}: stored seqs the journal never gave out")
        released = sum(1 for r in rows if r[1] == spec.node_id and r[3] in RELEASED)
        pulses, unordered = count_pulses(fleet.nodes[spec.node_id].log)
        tally.admitted += released
        tally.pulses += pulses
        tally.unordered_pulses += unordered
        if unordered:
            tally.problems.append(f"{spec.node_id}: {unordered} relay pulses nobody ordered")
        # Every pulse has its event; a node killed between journaling an admission and
        # its pulse leaves one event (unconfirmed) without a pulse.
        if not 0 <= released - pulses <= fleet.nodes[spec.node_id].kills:
            tally.problems.append(
                f"{spec.node_id}: {pulses} relay pulses but {released} released events"
            )
    tally.occupancy = fleet.occupancy()
    entries = sum(1 for r in rows if r[5] > 0)
    exits = sum(1 for r in rows if r[5] < 0)
    tally.expected_occupancy = entries - exits
    if tally.occupancy != tally.expected_occupancy:
        tally.problems.append(f"occupancy {tally.occupancy} != entries {entries} - exits {exits}")
    for event_id, _, _, kind, _, delta, _, flag in rows:
        # An entry counts one in; an exit one out, or nothing when flagged (nobody inside).
        right = {"entry": delta == 1, "exit": delta == -1 or (delta == 0 and flag is not None)}
        if not right.get(kind, delta == 0 or kind == "manual"):
            tally.problems.append(f"event {event_id} ({kind}) counted as {delta}")
            break
    return tally
