"""What the demo's facility is made of: its population, doors and the processes' configs.

The population is seeded into the registry through its CSV import; the configs are the
files a technician writes for the registry and the hub, and the door nodes' configs are
their enrolment bundles' ``node.toml`` with the Pi's hardware swapped for a synthetic
camera and mock GPIO pins.
"""

from __future__ import annotations

import csv
import io
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from protocol.status import Status

# The population's mix of statuses: mostly fully vaccinated, as in 2021's rollout.
STATUS_MIX = {Status.GREEN: 0.70, Status.YELLOW: 0.12, Status.RED: 0.12, Status.BLACK: 0.06}
DOSES = {Status.GREEN: 2, Status.YELLOW: 1}
NAMES = (
    "Ayu", "Budi", "Citra", "Dewi", "Eko", "Fitri", "Gilang", "Hadi", "Indah", "Joko",
    "Kartika", "Lestari", "Made", "Nur", "Oki", "Putri", "Rizky", "Sari", "Taufik", "Wulan",
)  # fmt: skip
SURNAMES = ("Santoso", "Wijaya", "Saputra", "Lestari", "Hidayat", "Kusuma", "Pratama", "Nugroho")


class DemoError(RuntimeError):
    """The demo cannot start, or a part of it stopped: the root of the demo's errors."""


@dataclass(frozen=True)
class Person:
    nik: str
    name: str
    status: Status

    @property
    def doses(self) -> int:
        return DOSES.get(self.status, 0)


@dataclass(frozen=True)
class Door:
    door_id: str
    node_id: str
    direction: str  # the hub's and the node's words: entry | exit
    name: str

    @property
    def registry_direction(self) -> str:
        return "entrance" if self.direction == "entry" else "exit"


def doors_of(entries: int, exits: int) -> list[Door]:
    doors = [
        Door(f"entrance-{i}", f"node-in-{i}", "entry", f"Entrance {i}")
        for i in range(1, entries + 1)
    ]
    return doors + [
        Door(f"exit-{i}", f"node-out-{i}", "exit", f"Exit {i}") for i in range(1, exits + 1)
    ]


def population(size: int, rng: np.random.Generator) -> list[Person]:
    """``size`` people of Jakarta with valid, distinct NIKs and the usual status mix."""
    statuses = list(STATUS_MIX)
    weights = np.array([STATUS_MIX[s] for s in statuses])
    people = []
    for i in range(size):
        status = statuses[int(rng.choice(len(statuses), p=weights))]
        day = int(rng.integers(1, 29)) + (40 if i % 2 else 0)  # women's NIKs add 40
        month, year = int(rng.integers(1, 13)), int(rng.integers(50, 100))
        # Province 31, regency 71, district 01; the serial keeps every NIK distinct.
        nik = f"317101{day:02d}{month:02d}{year:02d}{i + 1:04d}"
        name = f"{NAMES[i % len(NAMES)]} {SURNAMES[int(rng.integers(len(SURNAMES)))]}"
        people.append(Person(nik, name, status))
    return people


def people_csv(people: list[Person]) -> str:
    """The registry's import format: nik,name,status,doses."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["nik", "name", "status", "doses"])
    writer.writerows([p.nik, p.name, p.status.label, p.doses] for p in people)
    return out.getvalue()


# -- TOML ------------------------------------------------------------------------------


def _is_tables(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _emit(doc: Mapping[str, Any], path: str, lines: list[str]) -> None:
    for key, value in doc.items():
        if value is not None and not isinstance(value, dict) and not _is_tables(value):
            # JSON strings, numbers, booleans and arrays of them are valid TOML values.
            lines.append(f"{key} = {json.dumps(value)}")
    for key, value in doc.items():
        name = f"{path}.{key}" if path else key
        if isinstance(value, dict):
            lines += ["", f"[{name}]"]
            _emit(value, name, lines)
        elif _is_tables(value):
            for item in value:
                lines += ["", f"[[{name}]]"]
                _emit(item, name, lines)


def to_toml(doc: Mapping[str, Any]) -> str:
    """A TOML document of plain keys, tables and arrays of tables; None values left out."""
    lines: list[str] = []
    _emit(doc, "", lines)
    return "\n".join(lines).strip() + "\n"


# -- configs -----------------------------------------------------------------------------


def registry_config(port: int) -> str:
    # Keys, store and the subject key sit beside the file (relative paths).
    return to_toml({"web": {"host": "127.0.0.1", "port": port}})


@dataclass(frozen=True)
class HubSettings:
    workdir: Path
    web_port: int
    broker_port: int
    mqtt_username: str
    mqtt_password_file: Path
    registry_url: str
    registry_token_file: Path
    sync_interval_s: float
    facility_id: str
    capacity: int
    doors_snippet: Path  # the broker directory's hub-doors-<facility>.toml
    broker_ca_file: Path | None = None  # the facility CA (the broker speaks TLS)


def hub_config(s: HubSettings) -> str:
    # The provisioning tools keep the doors and their nodes: the hub takes them as written.
    snippet = tomllib.loads(s.doors_snippet.read_text(encoding="utf-8"))
    doors = snippet.get("facilities", {}).get("doors", [])
    return to_toml(
        {
            "mqtt": {
                "host": "127.0.0.1",
                "port": s.broker_port,
                "username": s.mqtt_username,
                "password_file": str(s.mqtt_password_file),
                "client_id": "pintu-hub",
                **({"tls_ca_file": str(s.broker_ca_file)} if s.broker_ca_file else {}),
            },
            "store": {"backend": "sqlite", "path": str(s.workdir / "hub.db")},
            "web": {
                "host": "127.0.0.1",
                "port": s.web_port,
                "secret_key_file": str(s.workdir / "web-secret"),
            },
            "registry": {
                "kind": "http",
                "url": s.registry_url,
                "credentials_file": str(s.registry_token_file),
                # Short, so that a status changed at the registry reaches the doors while
                # somebody watches; visits go up as often.
                "sync_interval_s": s.sync_interval_s,
                "push_interval_s": s.sync_interval_s,
                "retry_max_s": 10.0,
            },
            "facilities": [
                {
                    "id": s.facility_id,
                    "name": "Demo Mall",
                    "capacity": s.capacity,
                    "soft_threshold_percent": 80,
                    "timezone": "Asia/Jakarta",
                    "doors": doors,
                }
            ],
        }
    )


@dataclass(frozen=True)
class SimulatedDoor:
    state_dir: Path
    visitors_file: Path
    visitors_per_minute: float
    # Read the file again as it changes (an exit door: the people inside come out).
    follow: bool = False


def node_config(bundle_toml: Path, sim: SimulatedDoor) -> str:
    """The bundle's node.toml with a synthetic camera and mock pins instead of a Pi's."""
    doc: dict[str, Any] = tomllib.loads(bundle_toml.read_text(encoding="utf-8"))
    doc["state_dir"] = str(sim.state_dir)
    mqtt = doc.get("mqtt", {})
    if "tls_ca_file" in mqtt:
        # The bundle names the CA where install.sh puts it on a Pi; here it is in the bundle.
        mqtt["tls_ca_file"] = str(bundle_toml.parent / Path(mqtt["tls_ca_file"]).name)
    doc["source"] = {
        "kind": "synthetic",
        "preset": "default",
        "fps": 8.0,
        "visitors_file": str(sim.visitors_file),
        "visitors_follow": sim.follow,
        "visitors_per_minute": round(sim.visitors_per_minute, 2),
        "visit_frames": 6,
    }
    doc["pins"]["pin_factory"] = "mock"
    doc["pins"]["relay"]["pulse_ms"] = 1500
    doc["gate"] = {"passage": "assume", "signal_s": 1.5}
    return to_toml(doc)
